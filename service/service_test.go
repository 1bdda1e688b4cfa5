package service

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/tensafe/tensafe/api"
	"github.com/tensafe/tensafe/audit"
	"github.com/tensafe/tensafe/keys"
	"github.com/tensafe/tensafe/store"
)

type fixture struct {
	svc   *Service
	st    *store.SQLite
	log   *audit.Log
	as    *store.AuditStore
	dir   string
	tenA  string
	tenB  string
	close func()
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	st, err := store.Open(ctx, filepath.Join(dir, "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	as, err := st.AuditStore(ctx, "main")
	if err != nil {
		t.Fatal(err)
	}
	lg, err := audit.Open(ctx, as, audit.Options{Origin: "tensafe.test/audit"})
	if err != nil {
		t.Fatal(err)
	}
	m, err := keys.RawMasterKey(bytes.Repeat([]byte{7}, keys.MasterKeySize))
	if err != nil {
		t.Fatal(err)
	}
	kr, err := keys.CreateKeyring(ctx, filepath.Join(dir, "keyring"), m, nil)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{st: st, log: lg, as: as, dir: dir}
	for _, p := range []*string{&f.tenA, &f.tenB} {
		id, _ := store.NewID("tn")
		if _, err := st.CreateTenant(ctx, store.Tenant{ID: id, Name: "tenant " + id}); err != nil {
			t.Fatal(err)
		}
		*p = id
	}
	svc, err := New(Config{Store: st, Audit: lg, Keys: kr, ArtifactDir: filepath.Join(dir, "artifacts"), MaxConcurrent: 2})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	f.svc = svc
	f.close = func() {
		if err := svc.Close(ctx); err != nil {
			t.Error(err)
		}
		lg.Close()
		kr.Close()
		st.Close()
	}
	t.Cleanup(f.close)
	return f
}

func ptr[T any](v T) *T { return &v }

func tinyConfig(sigma, target float64, batch int, dataset int64) api.TrainingConfig {
	return api.TrainingConfig{
		BaseModel: "tensafe-tiny",
		LoRA:      api.LoRAConfig{Rank: 4, Alpha: 8},
		DP: &api.DPConfig{NoiseMultiplier: sigma, MaxGradNorm: 1, TargetEpsilon: target, TargetDelta: 1e-5,
			DatasetSize: dataset, ExpectedBatchSize: batch},
		Optimizer: api.OptimizerConfig{LearningRate: ptr(1e-2)},
		Seed:      1,
	}
}

func textBatch(texts ...string) api.Batch {
	var b api.Batch
	for _, s := range texts {
		ids := []int{256}
		for _, c := range []byte(s) {
			ids = append(ids, int(c))
		}
		b.InputIDs = append(b.InputIDs, ids)
		b.Labels = append(b.Labels, ids)
	}
	return b
}

// await waits for f and fails the test unless it succeeded; it decodes the
// result into out.
func await(t testing.TB, s *Service, tenant string, f api.Future, err error, out any) api.Future {
	t.Helper()
	if err != nil {
		t.Fatalf("submit: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	got, err := s.AwaitOperation(ctx, tenant, f.ID)
	if err != nil {
		t.Fatalf("await %s: %v", f.Kind, err)
	}
	if got.State != api.FutureSucceeded {
		t.Fatalf("%s: state %s, error %+v", got.Kind, got.State, got.Error)
	}
	if out != nil {
		if err := json.Unmarshal(got.Result, out); err != nil {
			t.Fatalf("%s result: %v", got.Kind, err)
		}
	}
	return got
}

func TestEndToEnd(t *testing.T) {
	f := newFixture(t)
	ctx := WithActor(context.Background(), "key_test")
	s, ten := f.svc, f.tenA

	tc, err := s.CreateTrainingClient(ctx, ten, tinyConfig(1.0, 8, 2, 100))
	if err != nil {
		t.Fatal(err)
	}
	batch := textBatch("hello", "world")
	var last api.DPMetrics
	var firstLoss, lastLoss float64
	train := func(client string, steps int) {
		for i := range steps {
			var fb api.ForwardBackwardResult
			ff, err := s.ForwardBackward(ctx, ten, client, api.ForwardBackwardRequest{Batch: batch})
			await(t, s, ten, ff, err, &fb)
			if fb.PendingExamples != 2 || len(fb.PerExampleLoss) != 2 {
				t.Fatalf("forward_backward: %+v", fb)
			}
			if i == 0 && firstLoss == 0 {
				firstLoss = fb.Loss
			}
			lastLoss = fb.Loss
			var os api.OptimStepResult
			of, err := s.OptimStep(ctx, ten, client)
			await(t, s, ten, of, err, &os)
			if os.NoiseStd != 1.0 || os.Examples != 2 {
				t.Fatalf("optim_step: %+v", os)
			}
			m, err := s.DPMetrics(ctx, ten, client)
			if err != nil {
				t.Fatal(err)
			}
			if !(m.EpsilonSpent > last.EpsilonSpent) || m.Steps != last.Steps+1 || m.EpsilonRemaining >= last.EpsilonRemaining && last.Steps > 0 {
				t.Fatalf("dp_metrics not monotone: %+v after %+v", m, last)
			}
			if m.EpsilonSpent != os.EpsilonSpent {
				t.Fatalf("optim_step ε %v, dp_metrics ε %v", os.EpsilonSpent, m.EpsilonSpent)
			}
			last = m
		}
	}
	train(tc.ID, 5)
	if last.Steps != 5 || last.SamplingRate != 0.02 || last.NoiseMultiplier != 1 || last.Accountant != "rdp" || last.Delta != 1e-5 {
		t.Fatalf("dp_metrics: %+v", last)
	}
	_ = firstLoss

	var sr api.SampleResult
	sf, err := s.Sample(ctx, ten, tc.ID, api.SampleRequest{Prompt: "he", MaxTokens: 4, Temperature: 0})
	await(t, s, ten, sf, err, &sr)
	if len(sr.Sequences) != 1 || len(sr.Sequences[0].Tokens) == 0 {
		t.Fatalf("sample: %+v", sr)
	}

	var sv api.SaveStateResult
	vf, err := s.SaveState(ctx, ten, tc.ID, api.SaveStateRequest{Name: "after five"})
	await(t, s, ten, vf, err, &sv)
	if sv.Step != 5 || sv.ArtifactID == "" || len(sv.ContentHash) != len("sha256:")+64 {
		t.Fatalf("save_state: %+v", sv)
	}
	art, err := s.GetArtifact(ctx, ten, sv.ArtifactID)
	if err != nil || art.ContentHash != sv.ContentHash || art.Kind != store.ArtifactCheckpoint {
		t.Fatalf("artifact: %+v, %v", art, err)
	}

	// Load into a new client: same adapter (same greedy sample), same budget.
	tc2, err := s.CreateTrainingClient(ctx, ten, tinyConfig(1.0, 8, 2, 100))
	if err != nil {
		t.Fatal(err)
	}
	var ls api.LoadStateResult
	lf, err := s.LoadState(ctx, ten, tc2.ID, api.LoadStateRequest{ArtifactID: sv.ArtifactID})
	await(t, s, ten, lf, err, &ls)
	if ls.Step != 5 || ls.EpsilonSpent != last.EpsilonSpent {
		t.Fatalf("load_state: %+v, want step 5 ε %v", ls, last.EpsilonSpent)
	}
	m2, err := s.DPMetrics(ctx, ten, tc2.ID)
	if err != nil || m2 != last {
		t.Fatalf("dp_metrics after load: %+v (%v), want %+v", m2, err, last)
	}
	var sr2 api.SampleResult
	sf2, err := s.Sample(ctx, ten, tc2.ID, api.SampleRequest{Prompt: "he", MaxTokens: 4, Temperature: 0})
	await(t, s, ten, sf2, err, &sr2)
	if !equalInts(sr.Sequences[0].Tokens, sr2.Sequences[0].Tokens) {
		t.Fatalf("greedy sample after load %v, before %v", sr2.Sequences[0].Tokens, sr.Sequences[0].Tokens)
	}
	got, err := s.GetTrainingClient(ctx, ten, tc2.ID)
	if err != nil || got.Step != 5 {
		t.Fatalf("client after load: %+v, %v", got, err)
	}

	// Continue on the new client.
	train(tc2.ID, 2)
	if last.Steps != 7 {
		t.Fatalf("steps after continuing: %d", last.Steps)
	}
	if !(lastLoss < firstLoss) {
		t.Logf("loss %v → %v (noisy; not asserted)", firstLoss, lastLoss)
	}

	// The decrypted download is the checkpoint.
	rc, a, err := s.OpenArtifact(ctx, ten, sv.ArtifactID)
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || int64(len(data)) != a.Size {
		t.Fatalf("download: %d bytes, %v; size %d", len(data), err, a.Size)
	}
	if _, err := parseCheckpoint(data); err != nil {
		t.Fatal(err)
	}

	// The audit log verifies and holds every operation, without data.
	res, err := f.log.Verify(context.Background(), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	err = auditScan(f, func(e audit.Entry) {
		counts[e.Operation]++
		if e.TenantID == ten && e.Actor != "key_test" {
			t.Errorf("entry %d: actor %q", e.Seq, e.Actor)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"training.create_client": 2, "training.forward_backward": 7, "training.optim_step": 7,
		"training.sample": 2, "training.save_state": 1, "training.load_state": 1, "artifact.download": 1}
	for k, v := range want {
		if counts[k] != v {
			t.Errorf("audit: %d %s entries, want %d (all: %v)", counts[k], k, v, counts)
		}
	}
	if res.Size < 21 {
		t.Errorf("audit size %d", res.Size)
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func auditScan(f *fixture, fn func(audit.Entry)) error {
	return f.as.Scan(context.Background(), 0, func(_ uint64, e audit.Entry) error {
		fn(e)
		return nil
	})
}
