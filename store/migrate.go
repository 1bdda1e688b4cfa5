package store

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
)

//go:embed migrations
var migrationFiles embed.FS

// migration is one numbered SQL file, migrations/<dialect>/NNNN_name.sql.
type migration struct {
	version int
	name    string
	sql     string
}

// loadMigrations returns the migrations of a dialect in version order,
// checking that versions run 1, 2, 3… without gaps or repeats.
func loadMigrations(fsys fs.FS, dir string) ([]migration, error) {
	ents, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("store: migrations: %w", err)
	}
	var ms []migration
	for _, e := range ents {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".sql") {
			continue
		}
		base := strings.TrimSuffix(e.Name(), ".sql")
		num, name, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 || name == "" {
			return nil, fmt.Errorf("store: migrations: %s: name is not NNNN_name.sql", e.Name())
		}
		b, err := fs.ReadFile(fsys, path.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("store: migrations: %w", err)
		}
		ms = append(ms, migration{version: v, name: name, sql: string(b)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	for i, m := range ms {
		if m.version != i+1 {
			return nil, fmt.Errorf("store: migrations in %s: version %d where %d was expected", dir, m.version, i+1)
		}
	}
	return ms, nil
}

// SchemaVersionError reports a database whose schema this binary cannot
// use. It matches ErrSchemaTooNew when the database is newer.
type SchemaVersionError struct {
	Database int    // highest version applied to the database
	Known    int    // highest version this binary has
	Detail   string // for a mismatch other than "too new"
}

func (e *SchemaVersionError) Error() string {
	if e.Detail != "" {
		return fmt.Sprintf("store: database schema version %d: %s", e.Database, e.Detail)
	}
	return fmt.Sprintf("store: database schema version %d is newer than %d, the newest this binary knows: upgrade the binary", e.Database, e.Known)
}

// Is makes a too-new error match ErrSchemaTooNew.
func (e *SchemaVersionError) Is(target error) bool {
	return target == ErrSchemaTooNew && e.Detail == ""
}

// migrate brings the database to the newest schema in one transaction:
// all pending migrations apply, or none. It refuses a database that has a
// version this binary does not know, or whose applied migrations have other
// names than ours (a schema from another program).
func (s *db) migrate(ctx context.Context) error {
	ms, err := loadMigrations(migrationFiles, "migrations/"+s.d.name)
	if err != nil {
		return err
	}
	return s.tx(ctx, func(tx *sql.Tx) error {
		if s.d.name == dialectPostgres {
			// Serialize migrations of concurrently starting servers.
			if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock(7630243, 1)"); err != nil {
				return fmt.Errorf("store: migrate: lock: %w", err)
			}
		}
		if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
    version    BIGINT NOT NULL PRIMARY KEY,
    name       TEXT   NOT NULL,
    applied_at BIGINT NOT NULL
)`); err != nil {
			return fmt.Errorf("store: migrate: %w", err)
		}
		rows, err := tx.QueryContext(ctx, "SELECT version, name FROM schema_migrations ORDER BY version")
		if err != nil {
			return fmt.Errorf("store: migrate: %w", err)
		}
		applied := map[int]string{}
		maxV := 0
		for rows.Next() {
			var v int
			var name string
			if err := rows.Scan(&v, &name); err != nil {
				rows.Close()
				return fmt.Errorf("store: migrate: %w", err)
			}
			applied[v] = name
			maxV = max(maxV, v)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("store: migrate: %w", err)
		}
		if maxV > len(ms) {
			return &SchemaVersionError{Database: maxV, Known: len(ms)}
		}
		for _, m := range ms {
			name, ok := applied[m.version]
			if ok && name != m.name {
				return &SchemaVersionError{Database: maxV, Known: len(ms),
					Detail: fmt.Sprintf("migration %d is %q in the database but %q in this binary: not a TenSafe database of this lineage", m.version, name, m.name)}
			}
			if ok {
				continue
			}
			if m.version <= maxV {
				return &SchemaVersionError{Database: maxV, Known: len(ms),
					Detail: fmt.Sprintf("migration %d is missing below applied version %d", m.version, maxV)}
			}
			if _, err := tx.ExecContext(ctx, m.sql); err != nil {
				return fmt.Errorf("store: migrate: apply %04d_%s: %w", m.version, m.name, err)
			}
			if _, err := tx.ExecContext(ctx, s.q("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)"),
				m.version, m.name, s.now().UnixMicro()); err != nil {
				return fmt.Errorf("store: migrate: record %04d_%s: %w", m.version, m.name, err)
			}
		}
		return nil
	})
}

// SchemaVersion is the newest schema version this binary knows (the same
// for both dialects).
func SchemaVersion() int {
	ms, err := loadMigrations(migrationFiles, "migrations/"+dialectSQLite)
	if err != nil {
		return 0
	}
	return len(ms)
}
