package service

import (
	"context"
	"errors"
	"io"
	"testing"

	"github.com/tensafe/tensafe/api"
	"github.com/tensafe/tensafe/privacy"
	"github.com/tensafe/tensafe/store"
)

// TestLoadStateFailureChangesNothing: a checkpoint whose accountant cannot
// be evaluated (a PRV history too long for its grid) fails the load before
// anything is stored: the client's record, its steps and ε are unchanged.
func TestLoadStateFailureChangesNothing(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	s, ten := f.svc, f.tenA
	src := newTrained(t, s, ten, 1)
	var ck api.SaveStateResult
	sf, err := s.SaveState(ctx, ten, src, api.SaveStateRequest{})
	await(t, s, ten, sf, err, &ck)
	art, err := s.getArtifact(ctx, ten, ck.ArtifactID)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := s.openArtifact(ctx, art)
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
	huge, err := privacy.NewBudgetWithHistory(privacy.BudgetConfig{TargetEpsilon: 1e9, Delta: 1e-5, Accountant: privacy.AccountantPRV},
		[]privacy.Run{{Q: 0.08, Sigma: 1, Count: 1 << 40}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := huge.Spent(); !errors.Is(err, privacy.ErrDomainTooLarge) {
		t.Fatalf("the crafted accountant must not evaluate: %v", err)
	}
	bs, err := huge.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	payload, err := marshalCheckpoint(cp.header, bs, cp.engine)
	if err != nil {
		t.Fatal(err)
	}
	bad, err := s.writeArtifact(ctx, store.Artifact{TenantID: ten, ClientID: src, Kind: store.ArtifactCheckpoint, Name: "prv-too-long"}, payload)
	if err != nil {
		t.Fatal(err)
	}

	dst := newTrained(t, s, ten, 1)
	recBefore, err := s.st.GetClient(ctx, ten, dst)
	if err != nil {
		t.Fatal(err)
	}
	mBefore, err := s.DPMetrics(ctx, ten, dst)
	if err != nil {
		t.Fatal(err)
	}
	lf, err := s.LoadState(ctx, ten, dst, api.LoadStateRequest{ArtifactID: bad.ID})
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.AwaitOperation(ctx, ten, lf.ID)
	if err != nil || got.State != api.FutureFailed {
		t.Fatalf("load of an accountant that cannot be evaluated: %+v, %v", got, err)
	}
	rec, err := s.st.GetClient(ctx, ten, dst)
	if err != nil || rec.Version != recBefore.Version || rec.Step != recBefore.Step || string(rec.BudgetState) != string(recBefore.BudgetState) {
		t.Fatalf("failed load changed the stored client: step %d version %d (before %d, %d), %v", rec.Step, rec.Version, recBefore.Step, recBefore.Version, err)
	}
	if m, err := s.DPMetrics(ctx, ten, dst); err != nil || m != mBefore {
		t.Fatalf("failed load changed the client: %+v, %v; before %+v", m, err, mBefore)
	}
	if got.Error.Code != api.CodeFailedPrecondition {
		t.Errorf("error %+v, want failed_precondition", got.Error)
	}
	// The client goes on training.
	op, err := s.OptimStep(ctx, ten, dst)
	await(t, s, ten, op, err, nil)
}

// newTrained creates a client of tenant and takes steps optim_steps.
func newTrained(t *testing.T, s *Service, tenant string, steps int) string {
	t.Helper()
	ctx := context.Background()
	tc, err := s.CreateTrainingClient(ctx, tenant, tinyConfig(1, 50, 8, 100))
	if err != nil {
		t.Fatal(err)
	}
	for range steps {
		op, err := s.OptimStep(ctx, tenant, tc.ID)
		await(t, s, tenant, op, err, nil)
	}
	return tc.ID
}
