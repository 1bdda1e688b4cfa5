package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// SQLite is the embedded Store: one database file in WAL mode, written by
// one process at a time (Open locks "<path>.lock") and, within it, by one
// connection at a time, so that concurrent writers queue in Go instead of
// failing with SQLITE_BUSY. Reads use a separate pool and run concurrently
// with the writer.
type SQLite struct {
	*db
	path string
}

var _ Store = (*SQLite)(nil)

// sqliteReaders bounds the read pool.
const sqliteReaders = 4

// sqliteBusyTimeoutMS is how long a connection waits for a lock held by
// another connection (a checkpoint, a reader during recovery) before it
// fails with SQLITE_BUSY.
const sqliteBusyTimeoutMS = 10000

// Open opens (creating it, mode 0600, if needed) the SQLite database at
// path and migrates it to the newest schema. It fails with ErrInUse when
// another process has the database open, and with ErrSchemaTooNew when a
// newer binary has migrated it.
func Open(ctx context.Context, path string) (*SQLite, error) {
	if path == "" || path == ":memory:" || strings.HasPrefix(path, "file:") || strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("store: open sqlite: path %q: want a file path without '?' or '#' (no URIs, no :memory:)", path)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("store: open sqlite: %w", err)
	}
	release, err := lockPath(abs + ".lock")
	if err != nil {
		return nil, fmt.Errorf("store: open sqlite %s: %w", path, err)
	}
	s, err := openSQLite(ctx, abs)
	if err != nil {
		release()
		return nil, err
	}
	s.release = release
	return s, nil
}

func openSQLite(ctx context.Context, path string) (*SQLite, error) {
	// Create the file private before SQLite does (it would use 0644); the
	// -wal and -shm files take the database file's mode.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("store: open sqlite: %w", err)
	}
	f.Close()

	common := url.Values{}
	common.Set("_busy_timeout", fmt.Sprint(sqliteBusyTimeoutMS))
	common.Set("_foreign_keys", "1")
	wq := url.Values{}
	for k, v := range common {
		wq[k] = v
	}
	wq.Set("_journal_mode", "WAL")
	// FULL: a committed transaction survives power loss, as the audit
	// store's contract requires (NORMAL in WAL mode may lose the last
	// transactions).
	wq.Set("_synchronous", "FULL")
	wq.Set("_txlock", "immediate")
	w, err := sql.Open("sqlite", path+"?"+wq.Encode())
	if err != nil {
		return nil, fmt.Errorf("store: open sqlite: %w", err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	if err := w.PingContext(ctx); err != nil {
		w.Close()
		return nil, fmt.Errorf("store: open sqlite: %w", err)
	}
	rq := common
	rq.Set("_query_only", "1")
	r, err := sql.Open("sqlite", path+"?"+rq.Encode())
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("store: open sqlite: %w", err)
	}
	r.SetMaxOpenConns(sqliteReaders)
	r.SetMaxIdleConns(sqliteReaders)
	s := &SQLite{db: newDB(sqliteDialect, w, r), path: path}
	if err := s.migrate(ctx); err != nil {
		r.Close()
		w.Close()
		return nil, fmt.Errorf("store: open sqlite %s: %w", path, err)
	}
	var mode string
	if err := w.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil || !strings.EqualFold(mode, "wal") {
		r.Close()
		w.Close()
		return nil, fmt.Errorf("store: open sqlite %s: journal mode is %q, not WAL (%v)", path, mode, err)
	}
	return s, nil
}

// Path returns the database file.
func (s *SQLite) Path() string { return s.path }

var sqliteDialect = dialect{
	name: dialectSQLite,
	isUnique: func(err error) bool {
		var e *sqlite.Error
		return errors.As(err, &e) && (e.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || e.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY)
	},
	isForeignKey: func(err error) bool {
		var e *sqlite.Error
		return errors.As(err, &e) && e.Code() == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY
	},
}
