package store

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"testing"
	"time"
)

// TestDeleteFinishedOperations: only final operations finished at or
// before the cutoff go, oldest first, in batches of limit; the others stay.
func TestDeleteFinishedOperations(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		s := mustOpen(t, b)
		mustTenant(t, s, "t1")
		mustTenant(t, s, "t2")
		mustClient(t, s, "t1", "c1")
		now := time.Now().UTC().Truncate(time.Microsecond)
		at := func(d time.Duration) *time.Time { v := now.Add(d); return &v }
		ops := []Operation{
			{ID: "old1", TenantID: "t1", ClientID: "c1", State: OpSucceeded, Result: json.RawMessage(`{"loss":1}`), FinishedAt: at(-3 * time.Hour)},
			{ID: "old2", TenantID: "t2", State: OpFailed, ErrorCode: "internal", FinishedAt: at(-2 * time.Hour)},
			{ID: "old3", TenantID: "t1", ClientID: "c1", State: OpSucceeded, FinishedAt: at(-time.Hour)},
			{ID: "edge", TenantID: "t1", State: OpSucceeded, FinishedAt: at(-30 * time.Minute)},
			{ID: "new", TenantID: "t1", ClientID: "c1", State: OpSucceeded, FinishedAt: at(-time.Minute)},
			{ID: "queued", TenantID: "t1", ClientID: "c1", State: OpQueued},
			{ID: "running", TenantID: "t1", ClientID: "c1", State: OpRunning, StartedAt: at(-5 * time.Hour)},
		}
		for _, op := range ops {
			op.Kind = KindForwardBackward
			op.CreatedAt = now.Add(-6 * time.Hour)
			if _, err := s.CreateOperation(ctx, op); err != nil {
				t.Fatalf("CreateOperation(%s): %v", op.ID, err)
			}
		}
		cut := now.Add(-30 * time.Minute)
		n, err := s.DeleteFinishedOperations(ctx, cut, 2)
		if err != nil || n != 2 {
			t.Fatalf("first batch = %d, %v; want 2", n, err)
		}
		if _, err := s.GetOperation(ctx, "t2", "old2"); err == nil {
			t.Fatal("old2 (second oldest) survived the first batch")
		}
		if _, err := s.GetOperation(ctx, "t1", "old3"); err != nil {
			t.Fatalf("old3 went in the first batch: %v", err)
		}
		n, err = s.DeleteFinishedOperations(ctx, cut, 0)
		if err != nil || n != 2 {
			t.Fatalf("second sweep = %d, %v; want 2 (old3 and edge: the cutoff is inclusive)", n, err)
		}
		for _, op := range ops {
			_, err := s.GetOperation(ctx, op.TenantID, op.ID)
			gone := op.FinishedAt != nil && !op.FinishedAt.After(cut)
			if gone {
				wantErr(t, op.ID, err, ErrNotFound)
			} else if err != nil {
				t.Fatalf("%s was deleted: %v", op.ID, err)
			}
		}
		if n, err := s.DeleteFinishedOperations(ctx, cut, 0); err != nil || n != 0 {
			t.Fatalf("sweep of nothing = %d, %v", n, err)
		}
	})
}

// TestListArtifactsWithoutExpiry: artifacts with no ExpiresAt created at
// or before the cutoff, of every tenant, oldest first.
func TestListArtifactsWithoutExpiry(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		s := mustOpen(t, b)
		mustTenant(t, s, "t1")
		mustTenant(t, s, "t2")
		now := time.Now().UTC().Truncate(time.Microsecond)
		exp := now.Add(-time.Hour)
		for i, a := range []struct {
			id, tenant string
			age        time.Duration
			expires    *time.Time
		}{
			{"x1", "t1", 3 * time.Hour, nil}, {"x2", "t2", 2 * time.Hour, nil}, {"x3", "t1", time.Minute, nil},
			{"x4", "t1", 5 * time.Hour, &exp},
		} {
			if _, err := s.CreateArtifact(ctx, Artifact{ID: a.id, TenantID: a.tenant, Kind: ArtifactCheckpoint, Name: a.id,
				Size: 1, ContentHash: sha(byte(i)), Location: a.id, CreatedAt: now.Add(-a.age), ExpiresAt: a.expires}); err != nil {
				t.Fatal(err)
			}
		}
		l, err := s.ListArtifactsWithoutExpiry(ctx, now.Add(-2*time.Hour))
		if err != nil || fmt.Sprint(ids(l)) != "[x1 x2]" {
			t.Fatalf("ListArtifactsWithoutExpiry = %v, %v; want [x1 x2]", ids(l), err)
		}
		if l, _ = s.ListArtifactsWithoutExpiry(ctx, now); fmt.Sprint(ids(l)) != "[x1 x2 x3]" {
			t.Fatalf("ListArtifactsWithoutExpiry(now) = %v", ids(l))
		}
	})
}

func ids(as []Artifact) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.ID
	}
	return out
}

// TestMigrationIndexes: migration 0002's indexes exist in both dialects.
func TestMigrationIndexes(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		s := mustOpen(t, b)
		var q string
		switch b.name {
		case "sqlite":
			q = "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name IN ('operations_finished', 'artifacts_no_expiry')"
		default:
			q = "SELECT count(*) FROM pg_indexes WHERE indexname IN ('operations_finished', 'artifacts_no_expiry') AND schemaname = current_schema()"
		}
		var n int
		if err := rawDB(t, s).QueryRowContext(ctx, q).Scan(&n); err != nil || n != 2 {
			t.Fatalf("%d of the two indexes, %v", n, err)
		}
		if SchemaVersion() < 2 {
			t.Fatalf("SchemaVersion = %d", SchemaVersion())
		}
	})
}

// rawDB is the store's read pool, for looking at the schema.
func rawDB(t *testing.T, s Store) *sql.DB {
	t.Helper()
	switch v := s.(type) {
	case *SQLite:
		return v.r
	case *Postgres:
		return v.r
	}
	t.Fatalf("unknown store %T", s)
	return nil
}
