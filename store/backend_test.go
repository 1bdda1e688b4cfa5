package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib"
)

// postgresURLEnv names the PostgreSQL server the conformance tests also run
// against (scripts/ci-postgres.sh starts one and prints it).
const postgresURLEnv = "TENSAFE_TEST_POSTGRES_URL"

// backend is one database for one test: tryOpen opens it as a Store, exec
// gives SQL access behind the store's back.
type backend struct {
	name string
	// tryOpen opens the database (again, after a close).
	tryOpen func() (Store, error)
	// tryExec runs SQL on the database directly, behind the store's back
	// (tests that tamper or that plant a future schema version).
	tryExec func(query string, args ...any) error
}

// exec is tryExec that must succeed.
func (b *backend) exec(t *testing.T, query string, args ...any) {
	t.Helper()
	if err := b.tryExec(query, args...); err != nil {
		t.Fatalf("exec %q: %v", query, err)
	}
}

// forEachBackend runs fn against a fresh SQLite database and, when
// TENSAFE_TEST_POSTGRES_URL is set, a fresh PostgreSQL schema.
func forEachBackend(t *testing.T, fn func(t *testing.T, b *backend)) {
	t.Run("sqlite", func(t *testing.T) {
		fn(t, sqliteBackend(t))
	})
	t.Run("postgres", func(t *testing.T) {
		b := postgresBackend(t)
		fn(t, b)
	})
}

func sqliteBackend(t *testing.T) *backend {
	path := filepath.Join(t.TempDir(), "tensafe.db")
	b := &backend{name: "sqlite"}
	b.tryOpen = func() (Store, error) { return Open(context.Background(), path) }
	b.tryExec = func(query string, args ...any) error {
		d, err := sql.Open("sqlite", path+"?_busy_timeout=10000")
		if err != nil {
			return err
		}
		defer d.Close()
		_, err = d.Exec(query, args...)
		return err
	}
	return b
}

// postgresBackend creates a schema of its own on the test server, dropped
// at the end of the test, and points the store at it with search_path.
func postgresBackend(t testing.TB) *backend {
	base := os.Getenv(postgresURLEnv)
	if base == "" {
		t.Skip(postgresURLEnv + " is unset: PostgreSQL store tests skipped (run scripts/ci-postgres.sh and export the URL it prints)")
	}
	var rnd [6]byte
	rand.Read(rnd[:])
	schema := "tensafe_test_" + hex.EncodeToString(rnd[:])
	admin, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close() })
	if _, err := admin.Exec("CREATE SCHEMA " + schema); err != nil {
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		if _, err := admin.Exec("DROP SCHEMA " + schema + " CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	url := withSearchPath(base, schema)
	b := &backend{name: "postgres"}
	b.tryOpen = func() (Store, error) { return OpenPostgres(context.Background(), url) }
	b.tryExec = func(query string, args ...any) error {
		d, err := sql.Open("pgx", url)
		if err != nil {
			return err
		}
		defer d.Close()
		_, err = d.Exec(rebindForTest(query), args...)
		return err
	}
	return b
}

// withSearchPath adds search_path to a URL or key=value connection string.
func withSearchPath(base, schema string) string {
	if strings.Contains(base, "://") {
		sep := "?"
		if strings.Contains(base, "?") {
			sep = "&"
		}
		return base + sep + "search_path=" + schema
	}
	return base + " search_path=" + schema
}

func rebindForTest(q string) string {
	d := &db{d: postgresDialect, qcache: map[string]string{}}
	return d.q(q)
}

// open opens b.
func (b *backend) open(t *testing.T) Store {
	t.Helper()
	s, err := b.tryOpen()
	if err != nil {
		t.Fatalf("open %s: %v", b.name, err)
	}
	return s
}

// mustOpen opens b and closes it at the end of the test.
func mustOpen(t *testing.T, b *backend) Store {
	t.Helper()
	s := b.open(t)
	t.Cleanup(func() { s.Close() })
	return s
}
