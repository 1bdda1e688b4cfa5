package service

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tensafe/tensafe/api"
	"github.com/tensafe/tensafe/audit"
	"github.com/tensafe/tensafe/store"
)

// savedArtifact trains one (noise-only) step on a new client of tenant and
// saves it; it returns the artifact.
func savedArtifact(t *testing.T, s *Service, tenant string) api.SaveStateResult {
	t.Helper()
	ctx := context.Background()
	tc, err := s.CreateTrainingClient(ctx, tenant, tinyConfig(1, 8, 2, 100))
	if err != nil {
		t.Fatal(err)
	}
	ou, err := s.OptimStep(ctx, tenant, tc.ID)
	await(t, s, tenant, ou, err, nil)
	var sv api.SaveStateResult
	vf, err := s.SaveState(ctx, tenant, tc.ID, api.SaveStateRequest{})
	await(t, s, tenant, vf, err, &sv)
	return sv
}

// TestRetentionDeletes: an artifact past its TTL is deleted by a sweep —
// the file is gone, the record is gone (a download is not found), and a
// RETENTION event with its content hash is in the audit log. An artifact
// within its TTL is kept.
func TestRetentionDeletes(t *testing.T) {
	f := newFixture(t)
	s, ten := f.svc, f.tenA
	s.ret.ttl = time.Hour
	ctx := context.Background()
	sv := savedArtifact(t, s, ten)
	path := filepath.Join(s.dir, sv.ArtifactID+".tsenv")
	if _, err := os.Stat(path); err != nil {
		t.Fatal(err)
	}
	a, err := s.GetArtifact(ctx, ten, sv.ArtifactID)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := s.EnforceRetention(ctx, a.CreatedAt.Add(59*time.Minute)); err != nil || n != 0 {
		t.Fatalf("sweep before expiry: %d, %v", n, err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("artifact within its TTL was deleted: %v", err)
	}
	keep := savedArtifact(t, s, f.tenB) // created later: survives the next sweep
	kb, _ := s.GetArtifact(ctx, f.tenB, keep.ArtifactID)
	now := a.CreatedAt.Add(time.Hour)
	if !kb.CreatedAt.Add(time.Hour).After(now) {
		now = kb.CreatedAt.Add(time.Hour - time.Microsecond)
	}
	if n, err := s.EnforceRetention(ctx, now); err != nil || n != 1 {
		t.Fatalf("sweep at expiry: %d, %v", n, err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("expired artifact file still there: %v", err)
	}
	if _, _, err := s.OpenArtifact(ctx, ten, sv.ArtifactID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("download of a deleted artifact: %v", err)
	}
	if _, err := s.GetArtifact(ctx, f.tenB, keep.ArtifactID); err != nil {
		t.Fatalf("unexpired artifact: %v", err)
	}
	var del, sweep int
	err = auditScan(f, func(e audit.Entry) {
		switch e.Operation {
		case OpRetentionDelete:
			del++
			if e.Resource != sv.ArtifactID || e.TenantID != ten || e.Details["content_hash"] != sv.ContentHash ||
				e.Details[api.ComplianceCategoryKey] != api.CategoryRetention {
				t.Errorf("retention entry %+v", e)
			}
		case OpRetentionSweep:
			sweep++
		}
	})
	if err != nil || del != 1 || sweep != 1 {
		t.Fatalf("retention entries: %d deletions, %d sweeps, %v", del, sweep, err)
	}
	m := s.retentionMetric(nil, now)
	if m.ArtifactTTLSeconds != 3600 || m.Deleted != 1 || m.LastSweep == nil || m.LastSweepError != "" {
		t.Fatalf("retention metric %+v", m)
	}
}

// TestRetentionKeepsHE: the artifact TTL does not expire HE evaluation
// keys, adapters or models (registered configuration with its own
// lifecycle), whether written under the TTL or before it was set.
func TestRetentionKeepsHE(t *testing.T) {
	f := newFixture(t)
	s, ten := f.svc, f.tenA
	ctx := context.Background()
	var ids []string
	for i, kind := range []string{ArtifactHEKeys, ArtifactHEAdapter, ArtifactHEModel} {
		if i == 1 {
			s.ret.ttl = time.Hour // the first was written before a TTL was set
			s.st.(*sealedStore).ttl = time.Hour
		}
		a, err := s.writeArtifact(ctx, store.Artifact{TenantID: ten, Kind: kind, Name: kind}, []byte("{}"))
		if err != nil {
			t.Fatal(err)
		}
		if a.ExpiresAt != nil {
			t.Fatalf("%s artifact got an expiry %v", kind, a.ExpiresAt)
		}
		ids = append(ids, a.ID)
	}
	sv := savedArtifact(t, s, ten) // a checkpoint: the TTL applies
	if n, err := s.EnforceRetention(ctx, time.Now().Add(2*time.Hour)); err != nil || n != 1 {
		t.Fatalf("sweep: %d deleted, %v; want only the checkpoint", n, err)
	}
	if _, err := s.GetArtifact(ctx, ten, sv.ArtifactID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("expired checkpoint: %v", err)
	}
	for _, id := range ids {
		if _, err := s.GetArtifact(ctx, ten, id); err != nil {
			t.Fatalf("HE artifact %s: %v", id, err)
		}
	}
}

// TestRetentionNoTTL: without a TTL nothing expires, and the
// sweeper loop stops with its context.
func TestRetentionNoTTL(t *testing.T) {
	f := newFixture(t)
	s := f.svc
	sv := savedArtifact(t, s, f.tenA)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.RunRetention(ctx, time.Millisecond) }()
	for {
		s.ret.mu.Lock()
		swept := !s.ret.last.IsZero()
		s.ret.mu.Unlock()
		if swept {
			break
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	<-done
	if n, err := s.EnforceRetention(context.Background(), time.Now().Add(1000*time.Hour)); err != nil || n != 0 {
		t.Fatalf("sweep without TTL: %d, %v", n, err)
	}
	if _, err := s.GetArtifact(context.Background(), f.tenA, sv.ArtifactID); err != nil {
		t.Fatal(err)
	}
	if m := s.retentionMetric(nil, time.Now()); m.SweeperRunning || m.ArtifactTTLSeconds != 0 || m.LastSweep == nil {
		t.Fatalf("metric after the sweeper stopped: %+v", m)
	}
}
