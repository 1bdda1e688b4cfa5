package server

import (
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
