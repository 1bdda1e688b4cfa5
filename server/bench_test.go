package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tensafe/tensafe/api"
)

// BenchmarkStatusConcurrent64: 64 concurrent clients on loopback polling the
// GET status endpoints (a training client, a future, dp_metrics), each
// request authenticated against the SQLite store. It reports the latency
// percentiles of single requests (target: p95 < 5 ms).
//
//	go test ./server -run '^$' -bench StatusConcurrent64 -benchtime 5000x
func BenchmarkStatusConcurrent64(b *testing.B) {
	f := newFixture(b, nil)
	tok := f.tok["A-trainer"]
	var tc api.TrainingClient
	f.must(b, 201, tok, "POST", "/api/v1/training_clients", tinyConfig(1, 8, 2, 100), &tc)
	var fut api.Future
	f.must(b, 202, tok, "POST", "/api/v1/training_clients/"+tc.ID+"/forward", api.ForwardRequest{Batch: textBatch("hi")}, &fut)
	f.await(b, tok, fut, nil)
	paths := []string{"/api/v1/training_clients/" + tc.ID, "/api/v1/futures/" + fut.ID, "/api/v1/training_clients/" + tc.ID + "/dp_metrics"}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, MaxConnsPerHost: 64}}
	const workers = 64
	var mu sync.Mutex
	var lat []time.Duration
	next := make(chan int, b.N)
	for i := range b.N {
		next <- i
	}
	close(next)
	b.ResetTimer()
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			for i := range next {
				req, _ := http.NewRequest("GET", f.http.URL+paths[i%len(paths)], nil)
				req.Header.Set("Authorization", "Bearer "+tok)
				start := time.Now()
				res, err := client.Do(req)
				if err != nil {
					b.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, res.Body)
				res.Body.Close()
				mine = append(mine, time.Since(start))
				if res.StatusCode != 200 {
					b.Errorf("status %d", res.StatusCode)
					return
				}
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	b.StopTimer()
	slices.Sort(lat)
	if len(lat) == 0 {
		return
	}
	q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
	b.ReportMetric(q(0.50), "p50-ms")
	b.ReportMetric(q(0.95), "p95-ms")
	b.ReportMetric(q(0.99), "p99-ms")
}

// BenchmarkTraining16: 16 training clients of one tenant train concurrently
// over HTTP on tensafe-tiny (forward_backward + optim_step per round, DP on).
// One op is one round of every client. Afterwards every future has
// succeeded (none lost) and the audit chain verifies. For the 30 s
// run:
//
//	go test ./server -run '^$' -bench Training16 -benchtime 30s
func BenchmarkTraining16(b *testing.B) {
	f := newFixture(b, nil)
	tok := f.tok["A-trainer"]
	const clients = 16
	ids := make([]string, clients)
	for i := range ids {
		var tc api.TrainingClient
		f.must(b, 201, tok, "POST", "/api/v1/training_clients", tinyConfig(1, 1000, 2, 1000), &tc)
		ids[i] = tc.ID
	}
	var ops, rounds int64
	var mu sync.Mutex
	b.ResetTimer()
	for range b.N {
		var wg sync.WaitGroup
		for _, id := range ids {
			wg.Add(1)
			go func() {
				defer wg.Done()
				p := "/api/v1/training_clients/" + id
				for _, step := range []struct {
					path string
					body any
				}{{p + "/forward_backward", api.ForwardBackwardRequest{Batch: textBatch("hello", "world")}}, {p + "/optim_step", struct{}{}}} {
					if err := f.run(tok, step.path, step.body); err != nil {
						b.Error(err)
						return
					}
					mu.Lock()
					ops++
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		rounds++
	}
	b.StopTimer()
	b.ReportMetric(float64(ops)/b.Elapsed().Seconds(), "ops/s")
	for _, id := range ids {
		var m api.DPMetrics
		f.must(b, 200, tok, "GET", "/api/v1/training_clients/"+id+"/dp_metrics", nil, &m)
		if m.Steps != rounds {
			b.Fatalf("client %s: %d steps, want %d", id, m.Steps, rounds)
		}
	}
	var v AuditVerification
	f.must(b, 200, tok, "GET", "/api/v1/audit/verify", nil, &v)
	if !v.Verified {
		b.Fatalf("audit: %+v", v)
	}
}

// run submits one operation and long-polls it to success; it is safe to call
// from any goroutine (it reports instead of failing the benchmark).
func (f *fixture) run(tok, path string, body any) error {
	call := func(method, path string, body any, want int) (api.Future, error) {
		var rd io.Reader
		if body != nil {
			j, err := json.Marshal(body)
			if err != nil {
				return api.Future{}, err
			}
			rd = bytes.NewReader(j)
		}
		req, err := http.NewRequest(method, f.http.URL+path, rd)
		if err != nil {
			return api.Future{}, err
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		res, err := f.http.Client().Do(req)
		if err != nil {
			return api.Future{}, err
		}
		defer res.Body.Close()
		data, err := io.ReadAll(res.Body)
		if err != nil {
			return api.Future{}, err
		}
		if res.StatusCode != want {
			return api.Future{}, fmt.Errorf("%s %s: status %d: %s", method, path, res.StatusCode, data)
		}
		var fut api.Future
		return fut, json.Unmarshal(data, &fut)
	}
	fut, err := call("POST", path, body, http.StatusAccepted)
	for err == nil && !fut.Done() {
		fut, err = call("GET", "/api/v1/futures/"+fut.ID+"?wait=10", nil, http.StatusOK)
	}
	if err != nil {
		return err
	}
	if fut.State != api.FutureSucceeded {
		return fmt.Errorf("%s: %s %+v", fut.Kind, fut.State, fut.Error)
	}
	return nil
}
