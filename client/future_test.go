package client

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tensafe/tensafe/api"
)

func TestFutureLongPolls(t *testing.T) {
	var rec recorder
	var mu sync.Mutex
	polls := 0
	c, waits := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
		s := rec.add(r)
		switch {
		case s.method == "POST" && s.path == "/api/v1/training_clients/tc_1/forward_backward":
			var req api.ForwardBackwardRequest
			if err := json.Unmarshal([]byte(s.body), &req); err != nil || len(req.Batch.InputIDs) != 1 || req.Loss == nil || req.Loss.Type != "token_ce" {
				writeErr(w, 400, api.CodeInvalidArgument, "bad body", "batch")
				return
			}
			writeJSON(w, 202, api.Future{ID: "op_1", ClientID: "tc_1", Kind: "forward_backward", State: api.FutureQueued})
		case s.method == "GET" && s.path == "/api/v1/futures/op_1":
			mu.Lock()
			polls++
			n := polls
			mu.Unlock()
			f := api.Future{ID: "op_1", Kind: "forward_backward", State: api.FutureRunning}
			if n == 3 {
				f.State = api.FutureSucceeded
				f.Result = json.RawMessage(`{"loss":2.5,"per_example_loss":[2.5],"tokens":3,"fraction_clipped":1,"pending_examples":1}`)
			}
			writeJSON(w, 200, f)
		default:
			writeErr(w, 404, api.CodeNotFound, "no route", "")
		}
	}, WithPollWait(7*time.Second))
	tc := &TrainingClient{c: c, ID: "tc_1"}
	batch := api.Batch{InputIDs: [][]int{{256, 104, 105}}, Labels: [][]int{{256, 104, 105}}}
	f, err := tc.ForwardBackward(context.Background(), batch, &api.LossSpec{Type: "token_ce"})
	if err != nil {
		t.Fatal(err)
	}
	res, err := f.Result(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if res.Loss != 2.5 || res.Tokens != 3 || res.PendingExamples != 1 {
		t.Errorf("result = %+v", res)
	}
	reqs := rec.all()
	if len(reqs) != 4 {
		t.Fatalf("%d requests, want 1 submit + 3 polls", len(reqs))
	}
	for _, s := range reqs[1:] {
		if s.query != "wait=7" {
			t.Errorf("poll query %q, want wait=7", s.query)
		}
	}
	// The fake answered at once, so the client paced its polls.
	if len(*waits) != 2 || (*waits)[0] <= 0 || (*waits)[1] < (*waits)[0] {
		t.Errorf("poll pacing waits = %v", *waits)
	}
}

func TestFailedFuture(t *testing.T) {
	tests := []struct {
		name   string
		err    *api.ErrorBody
		code   string
		status int
		is     func(error) bool
	}{
		{"budget at run time", &api.ErrorBody{Code: api.CodePrivacyBudgetExceeded, Message: "epsilon would reach 8.2 > 8"},
			api.CodePrivacyBudgetExceeded, 409, IsBudgetExceeded},
		{"restart", &api.ErrorBody{Code: api.CodeServerRestarted, Message: "the server restarted"},
			api.CodeServerRestarted, 503, IsServerRestarted},
		{"no error body", nil, api.CodeInternal, 500, func(error) bool { return true }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
				writeJSON(w, 200, api.Future{ID: "op_2", Kind: "optim_step", State: api.FutureFailed, Error: tt.err})
			})
			_, err := FutureOf[api.OptimStepResult](c, "op_2").Result(context.Background())
			var fe *FutureError
			if !errors.As(err, &fe) || fe.FutureID != "op_2" || fe.Kind != "optim_step" {
				t.Fatalf("err = %v, want *FutureError of op_2", err)
			}
			if fe.Err.Code != tt.code || fe.Err.Status != tt.status || !tt.is(err) {
				t.Errorf("err = %+v", fe.Err)
			}
		})
	}
}

func TestFutureMalformed(t *testing.T) {
	for _, body := range []string{
		`{"id":"op_3","kind":"sample","state":"succeeded"}`,
		`{"id":"op_3","kind":"sample","state":"succeeded","result":{"sequences":"no"}}`,
	} {
		c, _ := newTestClient(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(body)) })
		if _, err := FutureOf[api.SampleResult](c, "op_3").Result(context.Background()); !errors.Is(err, ErrMalformedResponse) {
			t.Errorf("%s: err = %v", body, err)
		}
	}
	// A submission answered without an id is refused, not waited on forever.
	c, _ := newTestClient(t, func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 202, api.Future{State: "queued"}) })
	if _, err := (&TrainingClient{c: c, ID: "tc"}).OptimStep(context.Background()); !errors.Is(err, ErrMalformedResponse) {
		t.Errorf("future without id: err = %v", err)
	}
}

func TestFutureWaitHonoursContext(t *testing.T) {
	c, _ := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, api.Future{ID: "op_4", Kind: "sample", State: api.FutureQueued})
	})
	ctx, cancel := context.WithCancel(context.Background())
	polls := 0
	c.sleep = func(ctx context.Context, d time.Duration) error {
		if polls++; polls == 3 {
			cancel()
		}
		return ctx.Err()
	}
	_, err := FutureOf[api.SampleResult](c, "op_4").Result(ctx)
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "op_4") {
		t.Fatalf("err = %v", err)
	}
}

func TestTrainingClientRoutes(t *testing.T) {
	var rec recorder
	c, _ := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
		s := rec.add(r)
		switch {
		case s.method == "POST" && s.path == "/api/v1/training_clients":
			var cfg api.TrainingConfig
			json.Unmarshal([]byte(s.body), &cfg)
			writeJSON(w, 201, api.TrainingClient{ID: "tc_7", BaseModel: cfg.BaseModel, Config: cfg, Status: "active"})
		case s.method == "GET" && s.path == "/api/v1/training_clients/tc_7":
			writeJSON(w, 200, api.TrainingClient{ID: "tc_7", Status: "active", Step: 4})
		case s.method == "DELETE" && s.path == "/api/v1/training_clients/tc_7":
			w.WriteHeader(204)
		case s.method == "POST" && strings.HasPrefix(s.path, "/api/v1/training_clients/tc_7/"):
			writeJSON(w, 202, api.Future{ID: "op_" + s.path[len("/api/v1/training_clients/tc_7/"):], State: api.FutureQueued})
		case s.method == "GET" && s.path == "/api/v1/audit":
			if s.query == "after=2&limit=2" {
				w.Write([]byte(`{"entries":[{"seq":3,"operation":"training.optim_step","outcome":"success","details":{"step":"1"}}],"next_after":5}`))
			} else {
				w.Write([]byte(`[{"seq":1,"operation":"training.create_client"}]`))
			}
		case s.method == "GET" && s.path == "/api/v1/artifacts/ar_1/download":
			w.Write([]byte("checkpoint bytes"))
		default:
			writeErr(w, 404, api.CodeNotFound, "no route "+s.path, "")
		}
	})
	ctx := context.Background()
	cfg := api.TrainingConfig{BaseModel: "tensafe-tiny", LoRA: api.LoRAConfig{Rank: 4, Alpha: 8},
		DP: &api.DPConfig{NoiseMultiplier: 1, MaxGradNorm: 1, TargetEpsilon: 8, TargetDelta: 1e-5, DatasetSize: 1000, ExpectedBatchSize: 4}}
	tc, err := c.CreateTrainingClient(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if tc.ID != "tc_7" || tc.Info.Config.DP.DatasetSize != 1000 {
		t.Fatalf("client = %+v", tc.Info)
	}
	subs := []struct {
		op   string
		call func() (string, error)
		body string
	}{
		{"forward", func() (string, error) {
			f, err := tc.Forward(ctx, api.Batch{InputIDs: [][]int{{1}}}, nil)
			return id(f, err)
		}, `{"batch":{"input_ids":[[1]]}}`},
		{"sample", func() (string, error) {
			f, err := tc.Sample(ctx, api.SampleRequest{PromptTokens: []int{1, 2}, MaxTokens: 3})
			return id(f, err)
		}, `{"prompt_tokens":[1,2],"max_tokens":3,"temperature":0}`},
		{"save_state", func() (string, error) { f, err := tc.SaveState(ctx, "ck1"); return id(f, err) }, `{"name":"ck1"}`},
		{"load_state", func() (string, error) { f, err := tc.LoadState(ctx, "ar_1"); return id(f, err) }, `{"artifact_id":"ar_1"}`},
	}
	for _, s := range subs {
		got, err := s.call()
		if err != nil || got != "op_"+s.op {
			t.Errorf("%s: future %q, err %v", s.op, got, err)
		}
		last := rec.all()[len(rec.all())-1]
		if strings.TrimSpace(last.body) != s.body || last.idem == "" {
			t.Errorf("%s: body %q idem %q, want %s", s.op, last.body, last.idem, s.body)
		}
	}
	got, err := c.TrainingClient(ctx, "tc_7")
	if err != nil || got.Info.Step != 4 {
		t.Errorf("TrainingClient: %+v, %v", got, err)
	}
	if _, err := c.TrainingClient(ctx, "tc_../x"); !IsNotFound(err) {
		t.Errorf("escaped id: %v", err)
	}
	if p := rec.all()[len(rec.all())-1].path; p != "/api/v1/training_clients/tc_../x" {
		t.Errorf("id escaping: %q", p)
	}
	pg, err := c.AuditLogs(ctx, 2, 2)
	if err != nil || len(pg.Entries) != 1 || pg.Entries[0].Seq != 3 || pg.Entries[0].Details["step"] != "1" || pg.NextAfter != 5 {
		t.Errorf("AuditLogs(2, 2) = %+v, %v", pg, err)
	}
	pg, err = c.AuditLogs(ctx, -1, 0)
	if err != nil || len(pg.Entries) != 1 || pg.Entries[0].Operation != "training.create_client" || pg.NextAfter != 1 {
		t.Errorf("AuditLogs(-1, 0) = %+v, %v", pg, err)
	}
	if q := rec.all()[len(rec.all())-1].query; q != "" {
		t.Errorf("AuditLogs(-1, 0) sent query %q, want none", q)
	}
	rc, err := c.DownloadArtifact(ctx, "ar_1")
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(rc)
	if err != nil || string(b) != "checkpoint bytes" {
		t.Errorf("download = %q, %v", b, err)
	}
	rc.Close()
	if err := tc.Delete(ctx); err != nil {
		t.Errorf("Delete: %v", err)
	}
}

func id[T any](f *Future[T], err error) (string, error) {
	if err != nil {
		return "", err
	}
	return f.ID, nil
}
