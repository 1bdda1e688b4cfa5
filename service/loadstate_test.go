package service

import (
	"context"
	"errors"
	"io"
	"testing"

	"github.com/tensafe/tensafe/api"
	"github.com/tensafe/tensafe/audit"
	"github.com/tensafe/tensafe/privacy"
	"github.com/tensafe/tensafe/store"
)

// TestLoadStateNeverLowersEpsilon: loading a checkpoint never lowers the
// ε a client has spent. With a target that allows exactly 3 steps:
//   - a client at step 3 that loads its own step-2 checkpoint keeps its 3
//     steps (and so cannot take a 4th);
//   - another client with the same 2-step history (equal values, another
//     lineage) that loads it would compose 4 steps: refused with
//     privacy_budget_exceeded, and nothing changes;
//   - a client with 1 step composes 3 steps;
//   - a fresh client takes the checkpoint's 2.
//
// The audit entries say which rule applied, and after a restart the
// rollback check (docs/STORE.md §8) accepts the states the loads stored.
func TestLoadStateNeverLowersEpsilon(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	s, ten := f.svc, f.tenA
	const q, sigma, delta = 0.08, 1.0, 1e-5
	eps := func(n int64) float64 {
		t.Helper()
		r, err := privacy.Epsilon([]privacy.Run{{Q: q, Sigma: sigma, Count: n}}, delta, privacy.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return r.Epsilon
	}
	cfg := tinyConfig(sigma, eps(3)*(1+1e-9), 8, 100)
	newClient := func(steps int) string {
		t.Helper()
		tc, err := s.CreateTrainingClient(ctx, ten, cfg)
		if err != nil {
			t.Fatal(err)
		}
		for range steps {
			op, err := s.OptimStep(ctx, ten, tc.ID)
			await(t, s, ten, op, err, nil)
		}
		return tc.ID
	}
	metrics := func(id string) (api.DPMetrics, int64) {
		t.Helper()
		m, err := s.DPMetrics(ctx, ten, id)
		if err != nil {
			t.Fatal(err)
		}
		c, err := s.GetTrainingClient(ctx, ten, id)
		if err != nil {
			t.Fatal(err)
		}
		return m, c.Step
	}
	a := newClient(2)
	var ck api.SaveStateResult
	sf, err := s.SaveState(ctx, ten, a, api.SaveStateRequest{Name: "step 2"})
	await(t, s, ten, sf, err, &ck)
	op, err := s.OptimStep(ctx, ten, a)
	await(t, s, ten, op, err, nil)
	var sample api.SampleResult // an output released at step 3
	sa, err := s.Sample(ctx, ten, a, api.SampleRequest{Prompt: "he", MaxTokens: 3})
	await(t, s, ten, sa, err, &sample)
	before, _ := metrics(a)

	load := func(id string) (api.LoadStateResult, api.Future) {
		t.Helper()
		lf, err := s.LoadState(ctx, ten, id, api.LoadStateRequest{ArtifactID: ck.ArtifactID})
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.AwaitOperation(ctx, ten, lf.ID)
		if err != nil {
			t.Fatal(err)
		}
		var ls api.LoadStateResult
		if got.State == api.FutureSucceeded {
			await(t, s, ten, lf, nil, &ls)
		}
		return ls, got
	}

	// Own lineage: the history is kept.
	ls, got := load(a)
	if got.State != api.FutureSucceeded {
		t.Fatalf("own load: %+v", got.Error)
	}
	m, step := metrics(a)
	if m.Steps != 3 || m.EpsilonSpent != before.EpsilonSpent || ls.EpsilonSpent != before.EpsilonSpent || step != 2 || ls.Step != 2 {
		t.Fatalf("own older checkpoint: %d steps ε %v (result %+v, client step %d); before the load %d steps ε %v",
			m.Steps, m.EpsilonSpent, ls, step, before.Steps, before.EpsilonSpent)
	}
	if _, err := s.OptimStep(ctx, ten, a); !errors.Is(err, ErrBudgetExceeded) {
		t.Fatalf("a 4th step after rolling the weights back: %v, want budget exceeded", err)
	}

	// Another lineage with equal values: composed, over the target, refused.
	b := newClient(2)
	bBefore, bStep := metrics(b)
	bRec, err := s.st.GetClient(ctx, ten, b)
	if err != nil {
		t.Fatal(err)
	}
	_, got = load(b)
	if got.State != api.FutureFailed || got.Error.Code != api.CodePrivacyBudgetExceeded {
		t.Fatalf("load composing 4 steps: %s %+v, want privacy_budget_exceeded", got.State, got.Error)
	}
	if m, step := metrics(b); m != bBefore || step != bStep {
		t.Fatalf("refused load changed the client: %+v step %d, before %+v step %d", m, step, bBefore, bStep)
	}
	if rec, err := s.st.GetClient(ctx, ten, b); err != nil || rec.Version != bRec.Version || string(rec.BudgetState) != string(bRec.BudgetState) {
		t.Fatalf("refused load changed the stored client (%v)", err)
	}

	// One step of its own: composed 1 + 2.
	c := newClient(1)
	ls, got = load(c)
	if got.State != api.FutureSucceeded {
		t.Fatalf("composed load: %+v", got.Error)
	}
	if m, step := metrics(c); m.Steps != 3 || m.EpsilonSpent != eps(3) || ls.EpsilonSpent != eps(3) || step != 2 {
		t.Fatalf("composed load: %d steps ε %v step %d, want 3 steps ε %v step 2", m.Steps, m.EpsilonSpent, step, eps(3))
	}

	// Fresh: the checkpoint's.
	d := newClient(0)
	ls, got = load(d)
	if got.State != api.FutureSucceeded {
		t.Fatalf("fresh load: %+v", got.Error)
	}
	if m, step := metrics(d); m.Steps != 2 || m.EpsilonSpent != eps(2) || ls.EpsilonSpent != eps(2) || step != 2 {
		t.Fatalf("fresh load: %d steps ε %v step %d", m.Steps, m.EpsilonSpent, step)
	}

	want := map[string][2]string{a: {historyKept, "3"}, b: {"", ""}, c: {historyComposed, "3"}, d: {historyCheckpoint, "2"}}
	seen := map[string]bool{}
	if err := auditScan(f, func(e audit.Entry) {
		if e.Operation != "training.load_state" {
			return
		}
		w := want[e.Resource]
		seen[e.Resource] = true
		if e.Outcome == audit.OutcomeSuccess && (e.Details["accountant_history"] != w[0] || e.Details["accountant_steps"] != w[1] || e.Details["step"] != "2") {
			t.Errorf("load_state of %s audited %v, want %v", e.Resource, e.Details, w)
		}
		if e.Resource == b && (e.Outcome != audit.OutcomeDenied || e.Details["error_code"] != api.CodePrivacyBudgetExceeded) {
			t.Errorf("refused load audited %s %v", e.Outcome, e.Details)
		}
	}); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 4 {
		t.Errorf("load_state audit entries for %d clients, want 4", len(seen))
	}

	// After a restart, with the rollback check on, every state loads.
	s2 := restarted(t, f, func(c *Config) { c.Packages.AuditStore = f.as })
	for id, n := range map[string]int64{a: 3, b: 2, c: 3, d: 2} {
		m, err := s2.DPMetrics(ctx, ten, id)
		if err != nil || m.Steps != n {
			t.Errorf("%s after a restart: %+v, %v; want %d steps", id, m, err, n)
		}
	}
}

// TestLoadStateComposesUnderCheckpointConfig: a client that loads another
// client's checkpoint of another DP configuration (PRV accountant, other σ
// and q) has the composition of both histories, accounted under the
// checkpoint's configuration, and trains on under it.
func TestLoadStateComposesUnderCheckpointConfig(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	s, ten := f.svc, f.tenA
	x := newTrained(t, s, ten, 2) // rdp, σ 1, q 0.08
	pc := tinyConfig(1.2, 50, 4, 100)
	pc.DP.Accountant = "prv"
	p, err := s.CreateTrainingClient(ctx, ten, pc)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		op, err := s.OptimStep(ctx, ten, p.ID)
		await(t, s, ten, op, err, nil)
	}
	var ck api.SaveStateResult
	sf, err := s.SaveState(ctx, ten, p.ID, api.SaveStateRequest{})
	await(t, s, ten, sf, err, &ck)
	var ls api.LoadStateResult
	lf, err := s.LoadState(ctx, ten, x, api.LoadStateRequest{ArtifactID: ck.ArtifactID})
	await(t, s, ten, lf, err, &ls)
	want, err := privacy.Epsilon([]privacy.Run{{Q: 0.08, Sigma: 1, Count: 2}, {Q: 0.04, Sigma: 1.2, Count: 3}}, 1e-5,
		privacy.Options{Accountant: privacy.AccountantPRV})
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.DPMetrics(ctx, ten, x)
	if err != nil {
		t.Fatal(err)
	}
	if m.Steps != 5 || m.Accountant != "prv" || m.NoiseMultiplier != 1.2 || m.SamplingRate != 0.04 ||
		m.EpsilonSpent != want.Epsilon || ls.EpsilonSpent != want.Epsilon || ls.Step != 3 {
		t.Fatalf("after a composed load: %+v (result %+v), want 5 steps, prv, ε %v", m, ls, want.Epsilon)
	}
	var os api.OptimStepResult
	op, err := s.OptimStep(ctx, ten, x)
	await(t, s, ten, op, err, &os)
	if m, _ := s.DPMetrics(ctx, ten, x); m.Steps != 6 || os.Step != 4 || !(os.EpsilonSpent > want.Epsilon) {
		t.Fatalf("a step after the load: %+v, dp_metrics %+v", os, m)
	}
}

// TestLoadStateLineageFromHeader: the lineage rule reads who saved a
// checkpoint from its sealed header (saved_by), not from the artifact
// record: the same client's checkpoint keeps its history, while a
// checkpoint without saved_by (written before the field existed, or with
// the record's client id as the only claim) composes, even though the
// record names the loading client.
func TestLoadStateLineageFromHeader(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	s, ten := f.svc, f.tenA
	tc, err := s.CreateTrainingClient(ctx, ten, tinyConfig(1, 50, 8, 100))
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		op, err := s.OptimStep(ctx, ten, tc.ID)
		await(t, s, ten, op, err, nil)
	}
	var ck api.SaveStateResult
	sf, err := s.SaveState(ctx, ten, tc.ID, api.SaveStateRequest{})
	await(t, s, ten, sf, err, &ck)
	rc, _, err := s.OpenArtifact(ctx, ten, ck.ArtifactID)
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	cp, err := parseCheckpoint(data)
	if err != nil {
		t.Fatal(err)
	}
	if cp.header.SavedBy != tc.ID {
		t.Fatalf("saved_by %q, want %q", cp.header.SavedBy, tc.ID)
	}
	h := cp.header
	h.SavedBy = ""
	legacy, err := marshalCheckpoint(h, cp.budget, cp.engine)
	if err != nil {
		t.Fatal(err)
	}
	la, err := s.writeArtifact(ctx, store.Artifact{TenantID: ten, ClientID: tc.ID, Kind: store.ArtifactCheckpoint, Name: "legacy"}, legacy)
	if err != nil {
		t.Fatal(err)
	}
	op, err := s.OptimStep(ctx, ten, tc.ID)
	await(t, s, ten, op, err, nil)
	for _, c := range []struct {
		artifact string
		steps    int64
	}{{ck.ArtifactID, 3}, {la.ID, 5}} {
		var ls api.LoadStateResult
		lf, err := s.LoadState(ctx, ten, tc.ID, api.LoadStateRequest{ArtifactID: c.artifact})
		await(t, s, ten, lf, err, &ls)
		m, err := s.DPMetrics(ctx, ten, tc.ID)
		if err != nil || m.Steps != c.steps {
			t.Fatalf("load of %s: %+v, %v; want %d accountant steps", c.artifact, m, err, c.steps)
		}
	}
}
