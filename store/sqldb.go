package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

const (
	dialectSQLite   = "sqlite"
	dialectPostgres = "postgres"
)

// dialect is what differs between the two databases; the SQL itself is
// shared (written with ? placeholders, renumbered to $n for PostgreSQL).
type dialect struct {
	name string
	// isUnique reports a unique or primary key violation.
	isUnique func(error) bool
	// isForeignKey reports a foreign key violation.
	isForeignKey func(error) bool
	// lockAudit takes the cross-process writer lock of an audit log and
	// returns the connection to write it through and the lock's release;
	// nil when the backend needs none beyond the process (SQLite: Open
	// locks the database file).
	lockAudit func(ctx context.Context, db *sql.DB, name string) (conn *sql.Conn, release func() error, err error)
}

// db is the implementation both backends share.
type db struct {
	d   dialect
	w   *sql.DB // writes, and reads inside write transactions
	r   *sql.DB // reads (the same as w for PostgreSQL)
	now func() time.Time

	qmu    sync.Mutex
	qcache map[string]string // rebound queries (PostgreSQL)

	mu      sync.Mutex
	audits  map[string]bool // open AuditStores, by name
	closed  bool
	release func() error // extra cleanup at Close (the SQLite file lock)
}

func newDB(d dialect, w, r *sql.DB) *db {
	return &db{d: d, w: w, r: r, now: time.Now, qcache: map[string]string{}, audits: map[string]bool{}}
}

// q returns query with ? placeholders renumbered for the dialect.
func (s *db) q(query string) string {
	if s.d.name != dialectPostgres {
		return query
	}
	s.qmu.Lock()
	defer s.qmu.Unlock()
	if r, ok := s.qcache[query]; ok {
		return r
	}
	var b strings.Builder
	n := 0
	for i := 0; i < len(query); i++ {
		if query[i] == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(query[i])
	}
	s.qcache[query] = b.String()
	return b.String()
}

// tx runs fn in a write transaction and commits it when fn returns nil.
func (s *db) tx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

// stamp is the current time at the precision the store keeps.
func (s *db) stamp() time.Time { return normTime(s.now()) }

// Close implements Store.
func (s *db) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	n := len(s.audits)
	s.mu.Unlock()
	var errs []error
	if n > 0 {
		errs = append(errs, fmt.Errorf("store: close: %d audit store(s) still open", n))
	}
	if s.r != s.w {
		errs = append(errs, s.r.Close())
	}
	errs = append(errs, s.w.Close())
	if s.release != nil {
		errs = append(errs, s.release())
	}
	return errors.Join(errs...)
}

// Times are kept as microseconds since the Unix epoch (docs/STORE.md).

func normTime(t time.Time) time.Time { return t.Truncate(time.Microsecond).UTC() }

func normTimePtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	n := normTime(*t)
	return &n
}

func fromUS(v int64) time.Time { return time.UnixMicro(v).UTC() }

func nullUS(t *time.Time) sql.NullInt64 {
	if t == nil {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: t.UnixMicro(), Valid: true}
}

func fromNullUS(n sql.NullInt64) *time.Time {
	if !n.Valid {
		return nil
	}
	t := fromUS(n.Int64)
	return &t
}

func nullStr(s string) sql.NullString { return sql.NullString{String: s, Valid: s != ""} }

func nullJSON(b json.RawMessage) sql.NullString {
	return sql.NullString{String: string(b), Valid: len(b) > 0}
}

func fromNullJSON(n sql.NullString) json.RawMessage {
	if !n.Valid || n.String == "" {
		return nil
	}
	return json.RawMessage(n.String)
}

func nullBytes(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return b
}

func cloneBytes(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return append([]byte(nil), b...)
}

type scanner interface{ Scan(dest ...any) error }

// wrap turns driver errors into the store's sentinels.
func (s *db) wrap(op string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("store: %s: %w", op, ErrNotFound)
	case errors.Is(err, sql.ErrConnDone) && s.isClosed():
		return fmt.Errorf("store: %s: %w", op, ErrClosed)
	case s.d.isUnique(err):
		return fmt.Errorf("store: %s: %w: %v", op, ErrConflict, err)
	}
	var fe *FieldError
	if errors.As(err, &fe) || errors.Is(err, ErrNotFound) || errors.Is(err, ErrConflict) {
		return fmt.Errorf("store: %s: %w", op, err)
	}
	if s.isClosed() {
		return fmt.Errorf("store: %s: %w: %v", op, ErrClosed, err)
	}
	return fmt.Errorf("store: %s: %w", op, err)
}

func (s *db) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// notFound is ErrNotFound naming what was looked for. Ids are not secret.
func notFound(what, id string) error {
	return fmt.Errorf("%s %q: %w", what, id, ErrNotFound)
}

// requireTenant checks, in tx, that tenant exists.
func (s *db) requireTenant(ctx context.Context, tx *sql.Tx, tenantID string) error {
	var one int
	err := tx.QueryRowContext(ctx, s.q("SELECT 1 FROM tenants WHERE id = ?"), tenantID).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return notFound("tenant", tenantID)
	}
	return err
}

// ---- tenants ----

const tenantCols = "id, name, created_at, created_by, idempotency_key, request_hash"

func scanTenant(r scanner) (Tenant, error) {
	var t Tenant
	var created int64
	var by, idem, reqHash sql.NullString
	if err := r.Scan(&t.ID, &t.Name, &created, &by, &idem, &reqHash); err != nil {
		return Tenant{}, err
	}
	t.CreatedAt = fromUS(created)
	t.CreatedBy, t.IdempotencyKey, t.RequestHash = by.String, idem.String, reqHash.String
	return t, nil
}

// CreateTenant implements Store.
func (s *db) CreateTenant(ctx context.Context, t Tenant) (Tenant, error) {
	if t.CreatedAt.IsZero() {
		t.CreatedAt = s.now()
	}
	t.CreatedAt = normTime(t.CreatedAt)
	if err := validateTenant(&t); err != nil {
		return Tenant{}, s.wrap("create tenant", err)
	}
	var existing Tenant
	byKey := func(ctx context.Context, q interface {
		QueryRowContext(context.Context, string, ...any) *sql.Row
	}) error {
		e, err := scanTenant(q.QueryRowContext(ctx, s.q("SELECT "+tenantCols+" FROM tenants WHERE created_by = ? AND idempotency_key = ?"),
			t.CreatedBy, t.IdempotencyKey))
		if err != nil {
			return err
		}
		existing = e
		return fmt.Errorf("store: create tenant: idempotency key already used by tenant %q: %w", e.ID, ErrDuplicate)
	}
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if t.IdempotencyKey != "" {
			if err := byKey(ctx, tx); !errors.Is(err, sql.ErrNoRows) {
				return err
			}
		}
		_, err := tx.ExecContext(ctx, s.q("INSERT INTO tenants ("+tenantCols+") VALUES (?, ?, ?, ?, ?, ?)"),
			t.ID, t.Name, t.CreatedAt.UnixMicro(), nullStr(t.CreatedBy), nullStr(t.IdempotencyKey), nullStr(t.RequestHash))
		return err
	})
	if err != nil && t.IdempotencyKey != "" && !errors.Is(err, ErrDuplicate) && s.d.isUnique(err) {
		// A concurrent creation with the same key won the race.
		if gerr := byKey(ctx, s.w); errors.Is(gerr, ErrDuplicate) {
			err = gerr
		}
	}
	if errors.Is(err, ErrDuplicate) {
		return existing, err
	}
	if err != nil {
		return Tenant{}, s.wrap("create tenant "+strconv.Quote(t.ID), err)
	}
	return t, nil
}

// GetTenant implements Store.
func (s *db) GetTenant(ctx context.Context, id string) (Tenant, error) {
	t, err := scanTenant(s.r.QueryRowContext(ctx, s.q("SELECT "+tenantCols+" FROM tenants WHERE id = ?"), id))
	if errors.Is(err, sql.ErrNoRows) {
		err = notFound("tenant", id)
	}
	return t, s.wrap("get tenant", err)
}

// ListTenants implements Store.
func (s *db) ListTenants(ctx context.Context) ([]Tenant, error) {
	return list(ctx, s, "list tenants", scanTenant, "SELECT "+tenantCols+" FROM tenants ORDER BY created_at, id")
}

// list runs a query on the read pool and scans every row.
func list[T any](ctx context.Context, s *db, op string, scan func(scanner) (T, error), query string, args ...any) ([]T, error) {
	rows, err := s.r.QueryContext(ctx, s.q(query), args...)
	if err != nil {
		return nil, s.wrap(op, err)
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, s.wrap(op, err)
		}
		out = append(out, v)
	}
	return out, s.wrap(op, rows.Err())
}

// ---- API keys ----

const apiKeyCols = "id, tenant_id, role, prefix, hash, created_at, revoked_at"

func scanAPIKey(r scanner) (APIKey, error) {
	var k APIKey
	var created int64
	var revoked sql.NullInt64
	var role string
	if err := r.Scan(&k.ID, &k.TenantID, &role, &k.Prefix, &k.Hash, &created, &revoked); err != nil {
		return APIKey{}, err
	}
	k.Role = Role(role)
	k.Hash = cloneBytes(k.Hash)
	k.CreatedAt = fromUS(created)
	k.RevokedAt = fromNullUS(revoked)
	return k, nil
}

// CreateAPIKey implements Store.
func (s *db) CreateAPIKey(ctx context.Context, k APIKey) (APIKey, error) {
	if k.CreatedAt.IsZero() {
		k.CreatedAt = s.now()
	}
	k.CreatedAt = normTime(k.CreatedAt)
	k.RevokedAt = normTimePtr(k.RevokedAt)
	k.Hash = cloneBytes(k.Hash)
	if err := validateAPIKey(&k); err != nil {
		return APIKey{}, s.wrap("create API key", err)
	}
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if err := s.requireTenant(ctx, tx, k.TenantID); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, s.q("INSERT INTO api_keys ("+apiKeyCols+") VALUES (?, ?, ?, ?, ?, ?, ?)"),
			k.ID, k.TenantID, string(k.Role), k.Prefix, k.Hash, k.CreatedAt.UnixMicro(), nullUS(k.RevokedAt))
		return err
	})
	if err != nil {
		return APIKey{}, s.wrap("create API key "+strconv.Quote(k.ID), err)
	}
	return k, nil
}

// GetAPIKeyByPrefix implements Store.
func (s *db) GetAPIKeyByPrefix(ctx context.Context, prefix string) (APIKey, error) {
	k, err := scanAPIKey(s.r.QueryRowContext(ctx, s.q("SELECT "+apiKeyCols+" FROM api_keys WHERE prefix = ?"), prefix))
	if errors.Is(err, sql.ErrNoRows) {
		err = fmt.Errorf("API key with prefix %q: %w", prefix, ErrNotFound)
	}
	return k, s.wrap("get API key", err)
}

// RevokeAPIKey implements Store.
func (s *db) RevokeAPIKey(ctx context.Context, tenantID, id string) (APIKey, error) {
	var k APIKey
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, s.q("UPDATE api_keys SET revoked_at = ? WHERE tenant_id = ? AND id = ? AND revoked_at IS NULL"),
			s.stamp().UnixMicro(), tenantID, id); err != nil {
			return err
		}
		var err error
		k, err = scanAPIKey(tx.QueryRowContext(ctx, s.q("SELECT "+apiKeyCols+" FROM api_keys WHERE tenant_id = ? AND id = ?"), tenantID, id))
		if errors.Is(err, sql.ErrNoRows) {
			return notFound("API key", id)
		}
		return err
	})
	if err != nil {
		return APIKey{}, s.wrap("revoke API key", err)
	}
	return k, nil
}

// ListAPIKeys implements Store.
func (s *db) ListAPIKeys(ctx context.Context, tenantID string) ([]APIKey, error) {
	return list(ctx, s, "list API keys", scanAPIKey,
		"SELECT "+apiKeyCols+" FROM api_keys WHERE tenant_id = ? ORDER BY created_at, id", tenantID)
}

// ---- training clients ----

const clientCols = "id, tenant_id, base_model, config, status, step, budget_state, version, created_at, updated_at, idempotency_key, request_hash"

func scanClient(r scanner) (TrainingClient, error) {
	var c TrainingClient
	var config, idem, reqHash sql.NullString
	var status string
	var created, updated int64
	if err := r.Scan(&c.ID, &c.TenantID, &c.BaseModel, &config, &status, &c.Step, &c.BudgetState, &c.Version, &created, &updated, &idem, &reqHash); err != nil {
		return TrainingClient{}, err
	}
	c.IdempotencyKey, c.RequestHash = idem.String, reqHash.String
	c.Config = fromNullJSON(config)
	c.Status = ClientStatus(status)
	c.BudgetState = cloneBytes(c.BudgetState)
	c.CreatedAt = fromUS(created)
	c.UpdatedAt = fromUS(updated)
	return c, nil
}

// CreateClient implements Store.
func (s *db) CreateClient(ctx context.Context, c TrainingClient) (TrainingClient, error) {
	if c.Status == "" {
		c.Status = ClientActive
	}
	if c.CreatedAt.IsZero() {
		c.CreatedAt = s.now()
	}
	c.CreatedAt = normTime(c.CreatedAt)
	if c.UpdatedAt.IsZero() {
		c.UpdatedAt = c.CreatedAt
	}
	c.UpdatedAt = normTime(c.UpdatedAt)
	c.Version = 1
	c.Config = cloneBytes(c.Config)
	c.BudgetState = cloneBytes(c.BudgetState)
	if err := validateClient(&c); err != nil {
		return TrainingClient{}, s.wrap("create client", err)
	}
	var existing TrainingClient
	byKey := func(ctx context.Context, q interface {
		QueryRowContext(context.Context, string, ...any) *sql.Row
	}) error {
		e, err := scanClient(q.QueryRowContext(ctx, s.q("SELECT "+clientCols+" FROM training_clients WHERE tenant_id = ? AND idempotency_key = ?"),
			c.TenantID, c.IdempotencyKey))
		if err != nil {
			return err
		}
		existing = e
		return fmt.Errorf("store: create client: idempotency key already used by client %q: %w", e.ID, ErrDuplicate)
	}
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if err := s.requireTenant(ctx, tx, c.TenantID); err != nil {
			return err
		}
		if c.IdempotencyKey != "" {
			if err := byKey(ctx, tx); !errors.Is(err, sql.ErrNoRows) {
				return err
			}
		}
		_, err := tx.ExecContext(ctx, s.q("INSERT INTO training_clients ("+clientCols+") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"),
			c.ID, c.TenantID, c.BaseModel, nullJSON(c.Config), string(c.Status), c.Step, nullBytes(c.BudgetState),
			c.Version, c.CreatedAt.UnixMicro(), c.UpdatedAt.UnixMicro(), nullStr(c.IdempotencyKey), nullStr(c.RequestHash))
		return err
	})
	if err != nil && c.IdempotencyKey != "" && !errors.Is(err, ErrDuplicate) && s.d.isUnique(err) {
		// A concurrent creation with the same key won the race.
		if gerr := byKey(ctx, s.w); errors.Is(gerr, ErrDuplicate) {
			err = gerr
		}
	}
	if errors.Is(err, ErrDuplicate) {
		return existing, err
	}
	if err != nil {
		return TrainingClient{}, s.wrap("create client "+strconv.Quote(c.ID), err)
	}
	return c, nil
}

// GetClient implements Store.
func (s *db) GetClient(ctx context.Context, tenantID, id string) (TrainingClient, error) {
	c, err := scanClient(s.r.QueryRowContext(ctx, s.q("SELECT "+clientCols+" FROM training_clients WHERE tenant_id = ? AND id = ?"), tenantID, id))
	if errors.Is(err, sql.ErrNoRows) {
		err = notFound("training client", id)
	}
	return c, s.wrap("get client", err)
}

// ListClients implements Store.
func (s *db) ListClients(ctx context.Context, tenantID string) ([]TrainingClient, error) {
	return list(ctx, s, "list clients", scanClient,
		"SELECT "+clientCols+" FROM training_clients WHERE tenant_id = ? ORDER BY created_at, id", tenantID)
}

// UpdateClient implements Store.
func (s *db) UpdateClient(ctx context.Context, c TrainingClient) (TrainingClient, error) {
	c.Config = cloneBytes(c.Config)
	c.BudgetState = cloneBytes(c.BudgetState)
	c.CreatedAt = normTime(c.CreatedAt)
	c.UpdatedAt = s.stamp()
	if err := validateClientUpdate(&c); err != nil {
		return TrainingClient{}, s.wrap("update client", err)
	}
	var out TrainingClient
	err := s.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, s.q(`UPDATE training_clients
SET config = ?, status = ?, step = ?, budget_state = ?, version = version + 1, updated_at = ?
WHERE tenant_id = ? AND id = ? AND version = ?`),
			nullJSON(c.Config), string(c.Status), c.Step, nullBytes(c.BudgetState), c.UpdatedAt.UnixMicro(),
			c.TenantID, c.ID, c.Version)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		out, err = scanClient(tx.QueryRowContext(ctx, s.q("SELECT "+clientCols+" FROM training_clients WHERE tenant_id = ? AND id = ?"), c.TenantID, c.ID))
		if errors.Is(err, sql.ErrNoRows) {
			return notFound("training client", c.ID)
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("training client %q: version %d is stale, the stored version is %d: %w", c.ID, c.Version, out.Version, ErrConflict)
		}
		return nil
	})
	if err != nil {
		return TrainingClient{}, s.wrap("update client", err)
	}
	return out, nil
}

// ---- operations ----

const opCols = "id, tenant_id, client_id, kind, state, result, error_code, error_message, idempotency_key, created_at, started_at, finished_at"

func scanOp(r scanner) (Operation, error) {
	var op Operation
	var client, result sql.NullString
	var state string
	var created int64
	var started, finished sql.NullInt64
	if err := r.Scan(&op.ID, &op.TenantID, &client, &op.Kind, &state, &result, &op.ErrorCode, &op.ErrorMessage,
		&op.IdempotencyKey, &created, &started, &finished); err != nil {
		return Operation{}, err
	}
	op.ClientID = client.String
	op.State = OpState(state)
	op.Result = fromNullJSON(result)
	op.CreatedAt = fromUS(created)
	op.StartedAt = fromNullUS(started)
	op.FinishedAt = fromNullUS(finished)
	return op, nil
}

func (s *db) normOp(op *Operation) {
	if op.CreatedAt.IsZero() {
		op.CreatedAt = s.now()
	}
	op.CreatedAt = normTime(op.CreatedAt)
	op.StartedAt = normTimePtr(op.StartedAt)
	op.FinishedAt = normTimePtr(op.FinishedAt)
	op.Result = cloneBytes(op.Result)
}

// CreateOperation implements Store.
func (s *db) CreateOperation(ctx context.Context, op Operation) (Operation, error) {
	if op.State == "" {
		op.State = OpQueued
	}
	s.normOp(&op)
	if err := validateOperation(&op); err != nil {
		return Operation{}, s.wrap("create operation", err)
	}
	var existing Operation
	dup := false
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if op.IdempotencyKey != "" {
			e, err := scanOp(tx.QueryRowContext(ctx, s.q("SELECT "+opCols+" FROM operations WHERE tenant_id = ? AND idempotency_key = ?"),
				op.TenantID, op.IdempotencyKey))
			if err == nil {
				existing, dup = e, true
				return nil
			}
			if !errors.Is(err, sql.ErrNoRows) {
				return err
			}
		}
		if err := s.requireTenant(ctx, tx, op.TenantID); err != nil {
			return err
		}
		if op.ClientID != "" {
			var one int
			err := tx.QueryRowContext(ctx, s.q("SELECT 1 FROM training_clients WHERE tenant_id = ? AND id = ?"), op.TenantID, op.ClientID).Scan(&one)
			if errors.Is(err, sql.ErrNoRows) {
				return notFound("training client", op.ClientID)
			}
			if err != nil {
				return err
			}
		}
		_, err := tx.ExecContext(ctx, s.q("INSERT INTO operations ("+opCols+") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"),
			op.ID, op.TenantID, nullStr(op.ClientID), op.Kind, string(op.State), nullJSON(op.Result), op.ErrorCode,
			op.ErrorMessage, op.IdempotencyKey, op.CreatedAt.UnixMicro(), nullUS(op.StartedAt), nullUS(op.FinishedAt))
		return err
	})
	if err != nil && op.IdempotencyKey != "" && s.d.isUnique(err) {
		// A concurrent create with the same key won the race (PostgreSQL,
		// read committed): return its operation.
		e, gerr := scanOp(s.w.QueryRowContext(ctx, s.q("SELECT "+opCols+" FROM operations WHERE tenant_id = ? AND idempotency_key = ?"),
			op.TenantID, op.IdempotencyKey))
		if gerr == nil {
			existing, dup, err = e, true, nil
		}
	}
	if err != nil {
		return Operation{}, s.wrap("create operation "+strconv.Quote(op.ID), err)
	}
	if dup {
		return existing, fmt.Errorf("store: create operation: idempotency key already used by operation %q: %w", existing.ID, ErrDuplicate)
	}
	return op, nil
}

// GetOperation implements Store.
func (s *db) GetOperation(ctx context.Context, tenantID, id string) (Operation, error) {
	op, err := scanOp(s.r.QueryRowContext(ctx, s.q("SELECT "+opCols+" FROM operations WHERE tenant_id = ? AND id = ?"), tenantID, id))
	if errors.Is(err, sql.ErrNoRows) {
		err = notFound("operation", id)
	}
	return op, s.wrap("get operation", err)
}

// validTransition reports whether an operation may move from one state to
// another.
func validTransition(from, to OpState) bool {
	switch from {
	case OpQueued:
		return to == OpQueued || to == OpRunning || to.Final()
	case OpRunning:
		return to == OpRunning || to.Final()
	}
	return false
}

// UpdateOperation implements Store.
func (s *db) UpdateOperation(ctx context.Context, op Operation) (Operation, error) {
	s.normOp(&op)
	now := s.stamp()
	if op.State == OpRunning && op.StartedAt == nil {
		op.StartedAt = &now
	}
	if op.State.Final() && op.FinishedAt == nil {
		op.FinishedAt = &now
	}
	if err := validateOpUpdate(&op); err != nil {
		return Operation{}, s.wrap("update operation", err)
	}
	var out Operation
	err := s.tx(ctx, func(tx *sql.Tx) error {
		cur, err := scanOp(tx.QueryRowContext(ctx, s.q("SELECT "+opCols+" FROM operations WHERE tenant_id = ? AND id = ?"), op.TenantID, op.ID))
		if errors.Is(err, sql.ErrNoRows) {
			return notFound("operation", op.ID)
		}
		if err != nil {
			return err
		}
		if !validTransition(cur.State, op.State) {
			return fmt.Errorf("operation %q is %s and cannot become %s: %w", op.ID, cur.State, op.State, ErrConflict)
		}
		// The guard on state makes the check above hold at write time too
		// (PostgreSQL read committed).
		res, err := tx.ExecContext(ctx, s.q(`UPDATE operations
SET state = ?, result = ?, error_code = ?, error_message = ?, started_at = ?, finished_at = ?
WHERE tenant_id = ? AND id = ? AND state = ?`),
			string(op.State), nullJSON(op.Result), op.ErrorCode, op.ErrorMessage, nullUS(op.StartedAt), nullUS(op.FinishedAt),
			op.TenantID, op.ID, string(cur.State))
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return fmt.Errorf("operation %q changed state concurrently: %w", op.ID, ErrConflict)
		}
		out = cur
		out.State, out.Result, out.ErrorCode, out.ErrorMessage = op.State, op.Result, op.ErrorCode, op.ErrorMessage
		out.StartedAt, out.FinishedAt = op.StartedAt, op.FinishedAt
		return nil
	})
	if err != nil {
		return Operation{}, s.wrap("update operation", err)
	}
	return out, nil
}

// ListOperationsByState implements Store.
func (s *db) ListOperationsByState(ctx context.Context, states ...OpState) ([]Operation, error) {
	if len(states) == 0 {
		return nil, s.wrap("list operations", fieldErr("state", "at least one state required"))
	}
	args := make([]any, len(states))
	for i, st := range states {
		if !st.Valid() {
			return nil, s.wrap("list operations", fieldErr("state", "%q is not one of queued, running, succeeded, failed", string(st)))
		}
		args[i] = string(st)
	}
	marks := strings.TrimSuffix(strings.Repeat("?, ", len(states)), ", ")
	return list(ctx, s, "list operations", scanOp,
		"SELECT "+opCols+" FROM operations WHERE state IN ("+marks+") ORDER BY created_at, id", args...)
}

// FailRunningOperations implements Store.
func (s *db) FailRunningOperations(ctx context.Context, reason string) (int64, error) {
	if err := checkText("error_message", reason, MaxErrorMessageLen, true); err != nil {
		return 0, s.wrap("fail running operations", err)
	}
	res, err := s.w.ExecContext(ctx, s.q(`UPDATE operations
SET state = 'failed', error_code = ?, error_message = ?, finished_at = ?
WHERE state IN ('queued', 'running')`), ErrorCodeServerRestarted, reason, s.stamp().UnixMicro())
	if err != nil {
		return 0, s.wrap("fail running operations", err)
	}
	n, err := res.RowsAffected()
	return n, s.wrap("fail running operations", err)
}

// ---- artifacts ----

const artifactCols = "id, tenant_id, client_id, kind, name, size, content_hash, location, key_id, metadata, created_at, expires_at"

func scanArtifact(r scanner) (Artifact, error) {
	var a Artifact
	var client, meta sql.NullString
	var created int64
	var expires sql.NullInt64
	if err := r.Scan(&a.ID, &a.TenantID, &client, &a.Kind, &a.Name, &a.Size, &a.ContentHash, &a.Location, &a.KeyID,
		&meta, &created, &expires); err != nil {
		return Artifact{}, err
	}
	a.ClientID = client.String
	a.Metadata = fromNullJSON(meta)
	a.CreatedAt = fromUS(created)
	a.ExpiresAt = fromNullUS(expires)
	return a, nil
}

// CreateArtifact implements Store.
func (s *db) CreateArtifact(ctx context.Context, a Artifact) (Artifact, error) {
	if a.CreatedAt.IsZero() {
		a.CreatedAt = s.now()
	}
	a.CreatedAt = normTime(a.CreatedAt)
	a.ExpiresAt = normTimePtr(a.ExpiresAt)
	a.Metadata = cloneBytes(a.Metadata)
	if err := validateArtifact(&a); err != nil {
		return Artifact{}, s.wrap("create artifact", err)
	}
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if err := s.requireTenant(ctx, tx, a.TenantID); err != nil {
			return err
		}
		if a.ClientID != "" {
			var one int
			err := tx.QueryRowContext(ctx, s.q("SELECT 1 FROM training_clients WHERE tenant_id = ? AND id = ?"), a.TenantID, a.ClientID).Scan(&one)
			if errors.Is(err, sql.ErrNoRows) {
				return notFound("training client", a.ClientID)
			}
			if err != nil {
				return err
			}
		}
		_, err := tx.ExecContext(ctx, s.q("INSERT INTO artifacts ("+artifactCols+") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"),
			a.ID, a.TenantID, nullStr(a.ClientID), a.Kind, a.Name, a.Size, a.ContentHash, a.Location, a.KeyID,
			nullJSON(a.Metadata), a.CreatedAt.UnixMicro(), nullUS(a.ExpiresAt))
		return err
	})
	if err != nil {
		return Artifact{}, s.wrap("create artifact "+strconv.Quote(a.ID), err)
	}
	return a, nil
}

// GetArtifact implements Store.
func (s *db) GetArtifact(ctx context.Context, tenantID, id string) (Artifact, error) {
	a, err := scanArtifact(s.r.QueryRowContext(ctx, s.q("SELECT "+artifactCols+" FROM artifacts WHERE tenant_id = ? AND id = ?"), tenantID, id))
	if errors.Is(err, sql.ErrNoRows) {
		err = notFound("artifact", id)
	}
	return a, s.wrap("get artifact", err)
}

// ListArtifacts implements Store.
func (s *db) ListArtifacts(ctx context.Context, tenantID string) ([]Artifact, error) {
	return list(ctx, s, "list artifacts", scanArtifact,
		"SELECT "+artifactCols+" FROM artifacts WHERE tenant_id = ? ORDER BY created_at, id", tenantID)
}

// DeleteArtifact implements Store.
func (s *db) DeleteArtifact(ctx context.Context, tenantID, id string) error {
	res, err := s.w.ExecContext(ctx, s.q("DELETE FROM artifacts WHERE tenant_id = ? AND id = ?"), tenantID, id)
	if err != nil {
		return s.wrap("delete artifact", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return s.wrap("delete artifact", err)
	}
	if n == 0 {
		return s.wrap("delete artifact", notFound("artifact", id))
	}
	return nil
}

// ListArtifactsWithoutExpiry implements Store.
func (s *db) ListArtifactsWithoutExpiry(ctx context.Context, createdBefore time.Time) ([]Artifact, error) {
	return list(ctx, s, "list artifacts without expiry", scanArtifact,
		"SELECT "+artifactCols+" FROM artifacts WHERE expires_at IS NULL AND created_at <= ? ORDER BY created_at, id",
		normTime(createdBefore).UnixMicro())
}

// DeleteFinishedOperations implements Store.
func (s *db) DeleteFinishedOperations(ctx context.Context, finishedBefore time.Time, limit int) (int64, error) {
	q := "DELETE FROM operations WHERE finished_at IS NOT NULL AND finished_at <= ? AND state IN ('succeeded', 'failed')"
	args := []any{normTime(finishedBefore).UnixMicro()}
	if limit > 0 {
		q = "DELETE FROM operations WHERE id IN (SELECT id FROM operations WHERE finished_at IS NOT NULL AND finished_at <= ?" +
			" AND state IN ('succeeded', 'failed') ORDER BY finished_at, id LIMIT ?)"
		args = append(args, limit)
	}
	res, err := s.w.ExecContext(ctx, s.q(q), args...)
	if err != nil {
		return 0, s.wrap("delete finished operations", err)
	}
	n, err := res.RowsAffected()
	return n, s.wrap("delete finished operations", err)
}

// ListExpiredArtifacts implements Store.
func (s *db) ListExpiredArtifacts(ctx context.Context, now time.Time) ([]Artifact, error) {
	return list(ctx, s, "list expired artifacts", scanArtifact,
		"SELECT "+artifactCols+" FROM artifacts WHERE expires_at IS NOT NULL AND expires_at <= ? ORDER BY expires_at, id",
		normTime(now).UnixMicro())
}
