package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
)

// Postgres is the scale-out Store, over pgx. Several servers may share one
// database: every invariant (tenant scoping, idempotency keys, client
// versions, operation state transitions) is enforced by the database in
// one transaction, and an audit log has one writer at a time across all of
// them (a session advisory lock).
type Postgres struct {
	*db
}

var _ Store = (*Postgres)(nil)

// postgresMaxConns bounds the connection pool.
const postgresMaxConns = 16

// OpenPostgres connects to the PostgreSQL database at url (a libpq URL or
// key=value string, e.g. "postgres://user@host/db?sslmode=disable") and
// migrates it to the newest schema, creating the tables in the first
// schema of the search path. It fails with ErrSchemaTooNew when a newer
// binary has migrated the database.
func OpenPostgres(ctx context.Context, url string) (*Postgres, error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		// pgx's parse errors may quote the URL, password included.
		return nil, errors.New("store: open postgres: cannot parse the connection URL")
	}
	d := stdlib.OpenDB(*cfg)
	d.SetMaxOpenConns(postgresMaxConns)
	d.SetMaxIdleConns(postgresMaxConns)
	if err := d.PingContext(ctx); err != nil {
		d.Close()
		return nil, fmt.Errorf("store: open postgres %s: %w", describePG(cfg), err)
	}
	s := &Postgres{db: newDB(postgresDialect, d, d)}
	if err := s.migrate(ctx); err != nil {
		d.Close()
		return nil, fmt.Errorf("store: open postgres %s: %w", describePG(cfg), err)
	}
	return s, nil
}

// describePG names a database without its password.
func describePG(cfg *pgx.ConnConfig) string {
	return fmt.Sprintf("%s@%s:%d/%s", cfg.User, cfg.Host, cfg.Port, cfg.Database)
}

func pgCode(err error) string {
	var e *pgconn.PgError
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

var postgresDialect = dialect{
	name:         dialectPostgres,
	isUnique:     func(err error) bool { return pgCode(err) == "23505" },
	isForeignKey: func(err error) bool { return pgCode(err) == "23503" },
	lockAudit:    pgLockAudit,
}

// auditLockClass is the first key of the advisory locks of audit logs.
const auditLockClass = 7630244

// pgLockAudit takes a session advisory lock for the audit log on a
// connection of its own, held until release. The audit store writes
// through that connection only, so that it never writes without the lock:
// if the session dies, the lock and the writes go with it.
func pgLockAudit(ctx context.Context, d *sql.DB, name string) (*sql.Conn, func() error, error) {
	conn, err := d.Conn(ctx)
	if err != nil {
		return nil, nil, err
	}
	var ok bool
	if err := conn.QueryRowContext(ctx, "SELECT pg_try_advisory_lock($1, hashtext($2))", auditLockClass, name).Scan(&ok); err != nil {
		conn.Close()
		return nil, nil, err
	}
	if !ok {
		conn.Close()
		return nil, nil, fmt.Errorf("%w: audit log %q is held by another process", ErrInUse, name)
	}
	return conn, func() error {
		_, err := conn.ExecContext(context.Background(), "SELECT pg_advisory_unlock($1, hashtext($2))", auditLockClass, name)
		return errors.Join(err, conn.Close())
	}, nil
}
