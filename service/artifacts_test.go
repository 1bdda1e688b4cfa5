package service

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/tensafe/tensafe/api"
)

// TestTamperedCheckpoint: a checkpoint whose bytes were altered does not
// load, and the client is unchanged.
func TestTamperedCheckpoint(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	s, ten := f.svc, f.tenA
	tc, err := s.CreateTrainingClient(ctx, ten, tinyConfig(1, 8, 2, 100))
	if err != nil {
		t.Fatal(err)
	}
	ou, err := s.OptimStep(ctx, ten, tc.ID)
	await(t, s, ten, ou, err, nil)
	var sv api.SaveStateResult
	vf, err := s.SaveState(ctx, ten, tc.ID, api.SaveStateRequest{})
	await(t, s, ten, vf, err, &sv)
	files, _ := filepath.Glob(filepath.Join(s.dir, sv.ArtifactID+".tsenv"))
	if len(files) != 1 {
		t.Fatalf("artifact files %v", files)
	}
	orig, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	fresh, err := s.CreateTrainingClient(ctx, ten, tinyConfig(1, 8, 2, 100))
	if err != nil {
		t.Fatal(err)
	}
	for _, off := range []int{10, len(orig) / 2, len(orig) - 1} {
		bad := append([]byte{}, orig...)
		bad[off] ^= 1
		if err := os.WriteFile(files[0], bad, 0o600); err != nil {
			t.Fatal(err)
		}
		lf, err := s.LoadState(ctx, ten, fresh.ID, api.LoadStateRequest{ArtifactID: sv.ArtifactID})
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.AwaitOperation(ctx, ten, lf.ID)
		if err != nil || got.State != api.FutureFailed || got.Error.Code != api.CodeFailedPrecondition {
			t.Fatalf("offset %d: load of a tampered checkpoint: %+v, %v", off, got, err)
		}
		m, _ := s.DPMetrics(ctx, ten, fresh.ID)
		c, _ := s.GetTrainingClient(ctx, ten, fresh.ID)
		if m.Steps != 0 || c.Step != 0 {
			t.Fatalf("offset %d: client changed: %+v %+v", off, m, c)
		}
	}
	if err := os.WriteFile(files[0], orig, 0o600); err != nil {
		t.Fatal(err)
	}
	lf, err := s.LoadState(ctx, ten, fresh.ID, api.LoadStateRequest{ArtifactID: sv.ArtifactID})
	await(t, s, ten, lf, err, nil)
	if m, _ := s.DPMetrics(ctx, ten, fresh.ID); m.Steps != 1 {
		t.Fatalf("after the restored file loads: %+v", m)
	}
}
