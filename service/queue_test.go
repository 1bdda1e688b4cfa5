package service

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/tensafe/tensafe/api"
	"github.com/tensafe/tensafe/audit"
	"github.com/tensafe/tensafe/store"
)

// TestOrderedQueue submits interleaved operations on two clients without
// waiting: each client's run in submission order (a forward_backward after
// an optim_step sees one pending example, never two).
func TestOrderedQueue(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	s, ten := f.svc, f.tenA
	var clients []string
	for range 2 {
		tc, err := s.CreateTrainingClient(ctx, ten, tinyConfig(1, 8, 1, 100))
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, tc.ID)
	}
	type sub struct {
		f  api.Future
		fb bool
	}
	subs := map[string][]sub{}
	for range 3 {
		for _, c := range clients {
			fu, err := s.ForwardBackward(ctx, ten, c, api.ForwardBackwardRequest{Batch: textBatch("ab")})
			if err != nil {
				t.Fatal(err)
			}
			subs[c] = append(subs[c], sub{fu, true})
			ou, err := s.OptimStep(ctx, ten, c)
			if err != nil {
				t.Fatal(err)
			}
			subs[c] = append(subs[c], sub{ou, false})
		}
	}
	for _, c := range clients {
		var prev api.Future
		for i, sb := range subs[c] {
			var fb api.ForwardBackwardResult
			var os api.OptimStepResult
			var out any = &os
			if sb.fb {
				out = &fb
			}
			got := await(t, s, ten, sb.f, nil, out)
			if sb.fb && fb.PendingExamples != 1 {
				t.Fatalf("client %s op %d: %d pending examples: operations ran out of order", c, i, fb.PendingExamples)
			}
			if !sb.fb && os.Step != int64(i/2+1) {
				t.Fatalf("client %s op %d: step %d", c, i, os.Step)
			}
			if i > 0 && got.StartedAt.Before(*prev.FinishedAt) {
				t.Fatalf("client %s op %d started before op %d finished", c, i, i-1)
			}
			prev = got
		}
	}
}

// TestRestart: a new service over the same store remembers the budget,
// reports cut-off operations failed, and continues from a checkpoint.
func TestRestart(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	s, ten := f.svc, f.tenA
	tc, err := s.CreateTrainingClient(ctx, ten, tinyConfig(1, 8, 2, 100))
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		fu, err := s.ForwardBackward(ctx, ten, tc.ID, api.ForwardBackwardRequest{Batch: textBatch("ab", "cd")})
		await(t, s, ten, fu, err, nil)
		ou, err := s.OptimStep(ctx, ten, tc.ID)
		await(t, s, ten, ou, err, nil)
	}
	var sv api.SaveStateResult
	vf, err := s.SaveState(ctx, ten, tc.ID, api.SaveStateRequest{})
	await(t, s, ten, vf, err, &sv)
	// One more step after the checkpoint: its ε must not be forgotten.
	ou, err := s.OptimStep(ctx, ten, tc.ID)
	await(t, s, ten, ou, err, nil)
	before, err := s.DPMetrics(ctx, ten, tc.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.OptimStep(ctx, ten, tc.ID); err == nil {
		t.Fatal("a closed service accepted work")
	}
	// An operation the old process left queued.
	cut, err := f.st.CreateOperation(ctx, store.Operation{ID: "op_cut", TenantID: ten, ClientID: tc.ID, Kind: store.KindOptimStep})
	if err != nil {
		t.Fatal(err)
	}

	s2, err := New(Config{Store: f.st, Audit: f.log, Keys: s.keys, ArtifactDir: s.dir})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close(ctx)
	if n, err := s2.Recover(ctx); err != nil || n != 1 {
		t.Fatalf("recover: %d, %v", n, err)
	}
	got, err := s2.AwaitOperation(ctx, ten, cut.ID)
	if err != nil || got.State != api.FutureFailed || got.Error.Code != api.CodeServerRestarted {
		t.Fatalf("cut-off operation: %+v, %v", got, err)
	}
	after, err := s2.DPMetrics(ctx, ten, tc.ID)
	if err != nil || after != before {
		t.Fatalf("dp_metrics after restart %+v (%v), before %+v", after, err, before)
	}
	// The adapter is gone with the old process: training waits for a load.
	for name, call := range map[string]func() error{
		"optim_step": func() error { _, err := s2.OptimStep(ctx, ten, tc.ID); return err },
		"forward_backward": func() error {
			_, err := s2.ForwardBackward(ctx, ten, tc.ID, api.ForwardBackwardRequest{Batch: textBatch("ab")})
			return err
		},
		"sample": func() error {
			_, err := s2.Sample(ctx, ten, tc.ID, api.SampleRequest{Prompt: "a", MaxTokens: 1})
			return err
		},
		"save_state": func() error { _, err := s2.SaveState(ctx, ten, tc.ID, api.SaveStateRequest{}); return err },
	} {
		if err := call(); !errors.Is(err, ErrFailedPrecondition) || !strings.Contains(err.Error(), "load_state") {
			t.Errorf("%s before load_state after a restart: %v", name, err)
		}
	}
	lf, err := s2.LoadState(ctx, ten, tc.ID, api.LoadStateRequest{ArtifactID: sv.ArtifactID})
	var ls api.LoadStateResult
	await(t, s2, ten, lf, err, &ls)
	if ls.Step != 2 {
		t.Fatalf("load_state: %+v", ls)
	}
	ou, err = s2.OptimStep(ctx, ten, tc.ID)
	var os api.OptimStepResult
	await(t, s2, ten, ou, err, &os)
	if os.Step != 3 {
		t.Fatalf("step after restart and load: %+v", os)
	}
	if _, err := f.log.Verify(ctx, 0, 0); err != nil {
		t.Fatal(err)
	}
}

// TestDeleteAndShutdown: a deleted client is gone; Close with an expired
// context marks the operations it cut off failed, never lost.
func TestDeleteAndShutdown(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	s, ten := f.svc, f.tenA
	tc, err := s.CreateTrainingClient(ctx, ten, tinyConfig(1, 8, 1, 100))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteTrainingClient(ctx, ten, tc.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetTrainingClient(ctx, ten, tc.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted client: %v", err)
	}
	if _, err := s.OptimStep(ctx, ten, tc.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("optim_step on a deleted client: %v", err)
	}
	if err := s.DeleteTrainingClient(ctx, ten, tc.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}

	tc, err = s.CreateTrainingClient(ctx, ten, tinyConfig(1, 8, 1, 100))
	if err != nil {
		t.Fatal(err)
	}
	var futures []api.Future
	for range 20 {
		fu, err := s.ForwardBackward(ctx, ten, tc.ID, api.ForwardBackwardRequest{Batch: textBatch("abcdefgh", "ijklmnop")})
		if err != nil {
			t.Fatal(err)
		}
		futures = append(futures, fu)
	}
	done, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.Close(done); !errors.Is(err, context.Canceled) {
		t.Fatalf("Close: %v", err)
	}
	canceled := 0
	for _, fu := range futures {
		got, err := s.GetOperation(ctx, ten, fu.ID)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case got.State == api.FutureSucceeded:
		case got.State == api.FutureFailed && got.Error.Code == api.CodeCanceled:
			canceled++
		default:
			t.Fatalf("after shutdown: %+v", got)
		}
	}
	if canceled == 0 {
		t.Fatalf("no operation was cut off by an immediate shutdown")
	}
	if _, err := s.ForwardBackward(ctx, ten, tc.ID, api.ForwardBackwardRequest{Batch: textBatch("a")}); !errors.Is(err, ErrClosed) {
		t.Fatalf("submit after Close: %v", err)
	}
}

// TestIdempotency: a repeated submission with the same key returns the
// first future and runs nothing again; a key reused for another kind is
// refused.
func TestIdempotency(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	s, ten := f.svc, f.tenA
	tc, err := s.CreateTrainingClient(ctx, ten, tinyConfig(1, 8, 1, 100))
	if err != nil {
		t.Fatal(err)
	}
	kctx := WithIdempotencyKey(ctx, "step-1")
	a, err := s.OptimStep(kctx, ten, tc.ID)
	await(t, s, ten, a, err, nil)
	b, err := s.OptimStep(kctx, ten, tc.ID)
	if err != nil || b.ID != a.ID {
		t.Fatalf("repeat: %+v, %v; first %s", b, err, a.ID)
	}
	if m, _ := s.DPMetrics(ctx, ten, tc.ID); m.Steps != 1 {
		t.Fatalf("a repeated optim_step ran again: %d steps", m.Steps)
	}
	if _, err := s.Sample(kctx, ten, tc.ID, api.SampleRequest{Prompt: "x", MaxTokens: 1}); !isField(err, "idempotency_key") {
		t.Fatalf("key reused for a sample: %v", err)
	}
	// Another tenant's key space is its own.
	other, err := s.CreateTrainingClient(ctx, f.tenB, tinyConfig(1, 8, 1, 100))
	if err != nil {
		t.Fatal(err)
	}
	c, err := s.OptimStep(kctx, f.tenB, other.ID)
	await(t, s, f.tenB, c, err, nil)
	if c.ID == a.ID {
		t.Fatal("tenants share idempotency keys")
	}
}

// TestAuditHoldsNoData: prompts and batches never reach the audit log.
func TestAuditHoldsNoData(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	s, ten := f.svc, f.tenA
	tc, err := s.CreateTrainingClient(ctx, ten, tinyConfig(1, 8, 1, 100))
	if err != nil {
		t.Fatal(err)
	}
	const secret = "patient-record-7731"
	fu, err := s.ForwardBackward(ctx, ten, tc.ID, api.ForwardBackwardRequest{Batch: textBatch(secret)})
	await(t, s, ten, fu, err, nil)
	su, err := s.Sample(ctx, ten, tc.ID, api.SampleRequest{Prompt: secret, MaxTokens: 3})
	await(t, s, ten, su, err, nil)
	n := 0
	if err := auditScan(f, func(e audit.Entry) {
		n++
		b, _ := json.Marshal(e)
		if strings.Contains(string(b), secret) || strings.Contains(string(b), "112,97,116") {
			t.Errorf("audit entry %d holds training data: %s", e.Seq, b)
		}
	}); err != nil {
		t.Fatal(err)
	}
	if n < 4 {
		t.Fatalf("%d audit entries", n)
	}
}

// TestQueueBound: a client's queue is bounded; the refusal is rate_limited.
func TestQueueBound(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	s, err := New(Config{Store: f.st, Audit: f.log, Keys: f.svc.keys, ArtifactDir: t.TempDir(), MaxConcurrent: 1, MaxQueued: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	tc, err := s.CreateTrainingClient(ctx, f.tenA, tinyConfig(1, 8, 1, 100))
	if err != nil {
		t.Fatal(err)
	}
	var busy error
	var futures []api.Future
	for range 50 {
		fu, err := s.ForwardBackward(ctx, f.tenA, tc.ID, api.ForwardBackwardRequest{Batch: textBatch("abcdefghijklmnop", "abcdefghijklmnop")})
		if err != nil {
			busy = err
			break
		}
		futures = append(futures, fu)
	}
	if !errors.Is(busy, ErrBusy) {
		t.Fatalf("after %d submissions: %v", len(futures), busy)
	}
	if code, _ := CodeOf(busy); code != api.CodeRateLimited {
		t.Fatalf("code %q", code)
	}
	for _, fu := range futures {
		await(t, s, f.tenA, fu, nil, nil)
	}
}
