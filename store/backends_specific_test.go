package store

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSQLiteOneProcessAtATime(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db.sqlite")
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Open(ctx, path)
	wantErr(t, "second Open of one file", err, ErrInUse)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(ctx, path)
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	defer s.Close()
}

func TestSQLiteSettings(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db.sqlite")
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	mustTenant(t, s, "t1")
	for _, f := range []string{path, path + "-wal", path + ".lock"} {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", filepath.Base(f), fi.Mode().Perm())
		}
	}
	for pragma, want := range map[string]string{"journal_mode": "wal", "foreign_keys": "1", "synchronous": "2", "busy_timeout": "10000"} {
		var got string
		if err := s.w.QueryRowContext(ctx, "PRAGMA "+pragma).Scan(&got); err != nil || got != want {
			t.Errorf("writer PRAGMA %s = %q (%v), want %q", pragma, got, err, want)
		}
	}
	// The read pool cannot write.
	if _, err := s.r.ExecContext(ctx, "INSERT INTO tenants (id, name, created_at) VALUES ('x', 'x', 0)"); err == nil {
		t.Error("a reader connection wrote")
	}
	if s.Path() != path {
		t.Errorf("Path = %q", s.Path())
	}
}

func TestSQLiteRefusesPaths(t *testing.T) {
	for _, p := range []string{"", ":memory:", "file:x.db", "a?mode=memory", "a#b"} {
		if s, err := Open(ctx, p); err == nil {
			s.Close()
			t.Errorf("Open(%q) succeeded", p)
		}
	}
	if _, err := Open(ctx, filepath.Join(t.TempDir(), "missing-dir", "db")); err == nil {
		t.Error("Open in a missing directory succeeded")
	}
}

// TestPostgresAuditLockAcrossProcesses: two stores on one database (as two
// servers would have) cannot both write one audit log.
func TestPostgresAuditLockAcrossProcesses(t *testing.T) {
	b := postgresBackend(t)
	s1 := mustOpen(t, b)
	s2 := mustOpen(t, b)
	a1, err := s1.AuditStore(ctx, "main")
	if err != nil {
		t.Fatal(err)
	}
	_, err = s2.AuditStore(ctx, "main")
	wantErr(t, "audit store held by another server", err, ErrInUse)
	other, err := s2.AuditStore(ctx, "other")
	if err != nil {
		t.Fatalf("another log name: %v", err)
	}
	other.Close()
	if err := a1.Close(); err != nil {
		t.Fatal(err)
	}
	a2, err := s2.AuditStore(ctx, "main")
	if err != nil {
		t.Fatalf("after the first writer closed: %v", err)
	}
	a2.Close()
}

// TestOpenPostgresHidesPassword: connection errors never show the password.
func TestOpenPostgresHidesPassword(t *testing.T) {
	for _, url := range []string{
		"postgres://user:hunter2secret@127.0.0.1:1/db?sslmode=disable&connect_timeout=2",
		"postgres://user:hunter2secret@[::1/db",
		"host=127.0.0.1 port=1 user=u password=hunter2secret dbname=db sslmode=disable connect_timeout=2",
		"postgres://user:hunter2secret@127.0.0.1:1/db?sslmode=bogus",
	} {
		s, err := OpenPostgres(ctx, url)
		if err == nil {
			s.Close()
			t.Fatalf("OpenPostgres(%q) succeeded", url)
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("error shows the password: %v", err)
		}
		if errors.Is(err, ErrSchemaTooNew) {
			t.Errorf("unexpected error class: %v", err)
		}
	}
}
