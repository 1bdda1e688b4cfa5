package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Sentinel errors. Callers distinguish cases with errors.Is.
var (
	// ErrNotFound: no such object — or an object of another tenant, which
	// is reported exactly like a missing one.
	ErrNotFound = errors.New("store: not found")
	// ErrConflict: the write collides with the stored state: an id or API
	// key prefix that exists already, a stale Version in UpdateClient, or
	// an operation that has already finished.
	ErrConflict = errors.New("store: conflict")
	// ErrDuplicate: CreateOperation found an operation with the same
	// (tenant, idempotency key); the existing operation is returned with
	// it.
	ErrDuplicate = errors.New("store: duplicate idempotency key")
	// ErrInvalid: a field of the input is malformed; the error is a
	// *FieldError naming the field. Nothing was written.
	ErrInvalid = errors.New("store: invalid input")
	// ErrSchemaTooNew: the database was migrated by a newer binary; this
	// one does not know its schema and refuses to open it.
	ErrSchemaTooNew = errors.New("store: database schema is newer than this binary knows")
	// ErrInvalidToken: an API token is malformed, unknown, or does not
	// match; the error never says which, and never contains the token.
	ErrInvalidToken = errors.New("store: invalid API token")
	// ErrRevoked: the API key was revoked. It wraps ErrInvalidToken.
	ErrRevoked = fmt.Errorf("%w: key revoked", ErrInvalidToken)
	// ErrInUse: the database or audit log is held by another writer.
	ErrInUse = errors.New("store: in use by another writer")
	// ErrClosed: the store was closed.
	ErrClosed = errors.New("store: closed")
)

// FieldError reports a malformed input field. It matches ErrInvalid.
type FieldError struct {
	Field  string // JSON name of the field, e.g. "tenant_id"
	Reason string // what is wrong with it
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("field %s: %s", e.Field, e.Reason)
}

// Is makes errors.Is(err, ErrInvalid) true.
func (e *FieldError) Is(target error) bool { return target == ErrInvalid }

// Role is what an API key may do within its tenant.
type Role string

// Roles.
const (
	RoleAdmin   Role = "admin"   // manage the tenant's keys, and train
	RoleTrainer Role = "trainer" // create clients and train
	RoleViewer  Role = "viewer"  // read only
)

// Valid reports whether r is a known role.
func (r Role) Valid() bool { return r == RoleAdmin || r == RoleTrainer || r == RoleViewer }

// ClientStatus is the life-cycle state of a training client.
type ClientStatus string

// Client statuses.
const (
	ClientActive  ClientStatus = "active"
	ClientDeleted ClientStatus = "deleted"
)

// Valid reports whether s is a known status.
func (s ClientStatus) Valid() bool { return s == ClientActive || s == ClientDeleted }

// OpState is the state of an operation (a future).
type OpState string

// Operation states. Succeeded and failed are final.
const (
	OpQueued    OpState = "queued"
	OpRunning   OpState = "running"
	OpSucceeded OpState = "succeeded"
	OpFailed    OpState = "failed"
)

// Valid reports whether s is a known state.
func (s OpState) Valid() bool {
	return s == OpQueued || s == OpRunning || s == OpSucceeded || s == OpFailed
}

// Final reports whether s is succeeded or failed.
func (s OpState) Final() bool { return s == OpSucceeded || s == OpFailed }

// Operation kinds the service uses. Kind is an open set of lowercase names;
// these are the ones the service defines.
const (
	KindForwardBackward = "forward_backward"
	KindForward         = "forward"
	KindOptimStep       = "optim_step"
	KindSample          = "sample"
	KindSaveState       = "save_state"
	KindLoadState       = "load_state"
)

// ErrorCodeServerRestarted is the ErrorCode FailRunningOperations gives to
// the operations a restart cut off.
const ErrorCodeServerRestarted = "server_restarted"

// ArtifactCheckpoint is the Kind of a saved training state.
const ArtifactCheckpoint = "checkpoint"

// Tenant is an isolated customer: every other record belongs to one.
type Tenant struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
	// CreatedBy is the tenant whose admin key created it (empty for
	// tenants made by the CLI). IdempotencyKey, when not empty, is the
	// creation request's Idempotency-Key, unique per CreatedBy (see
	// CreateTenant); RequestHash ("sha256:<64 hex>") identifies its body.
	CreatedBy      string `json:"-"`
	IdempotencyKey string `json:"-"`
	RequestHash    string `json:"-"`
}

// APIKey is a bearer credential of one tenant. Only the SHA-256 of the
// token is stored; see NewAPIToken.
type APIKey struct {
	ID        string     `json:"id"`
	TenantID  string     `json:"tenant_id"`
	Role      Role       `json:"role"`
	Prefix    string     `json:"prefix"` // lookup prefix, unique, not secret
	Hash      []byte     `json:"-"`      // SHA-256 of the whole token
	CreatedAt time.Time  `json:"created_at"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
}

// TrainingClient is a tenant's training session: a LoRA adapter on a base
// model, its configuration, progress and privacy accountant state.
type TrainingClient struct {
	ID        string          `json:"id"`
	TenantID  string          `json:"tenant_id"`
	BaseModel string          `json:"base_model"`
	Config    json.RawMessage `json:"config"`
	Status    ClientStatus    `json:"status"`
	Step      int64           `json:"step"`
	// BudgetState is the privacy accountant's serialized state, restored
	// after a restart so that spent budget is never forgotten.
	BudgetState []byte    `json:"-"`
	Version     int64     `json:"version"` // incremented by every UpdateClient; see there
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
	// IdempotencyKey, when not empty, is the Idempotency-Key of the
	// creation request: unique per tenant (see CreateClient). RequestHash
	// ("sha256:<64 hex>") identifies that request's body, so that the key
	// replayed with another body can be refused. Neither changes after
	// creation.
	IdempotencyKey string `json:"-"`
	RequestHash    string `json:"-"`
}

// Operation is one submitted request on a client — a future.
type Operation struct {
	ID             string          `json:"id"`
	TenantID       string          `json:"tenant_id"`
	ClientID       string          `json:"client_id,omitempty"`
	Kind           string          `json:"kind"`
	State          OpState         `json:"state"`
	Result         json.RawMessage `json:"result,omitempty"`
	ErrorCode      string          `json:"error_code,omitempty"`
	ErrorMessage   string          `json:"error_message,omitempty"`
	IdempotencyKey string          `json:"-"`
	CreatedAt      time.Time       `json:"created_at"`
	StartedAt      *time.Time      `json:"started_at,omitempty"`
	FinishedAt     *time.Time      `json:"finished_at,omitempty"`
}

// Artifact is the metadata of a stored blob (an encrypted checkpoint, a
// package); the bytes live in the artifact store at Location.
type Artifact struct {
	ID          string          `json:"id"`
	TenantID    string          `json:"tenant_id"`
	ClientID    string          `json:"client_id,omitempty"`
	Kind        string          `json:"kind"`
	Name        string          `json:"name"`
	Size        int64           `json:"size"`
	ContentHash string          `json:"content_hash"` // "sha256:<64 hex>"
	Location    string          `json:"-"`            // storage path or key: never shown to tenants
	KeyID       string          `json:"key_id"`
	Metadata    json.RawMessage `json:"metadata,omitempty"`
	CreatedAt   time.Time       `json:"created_at"`
	ExpiresAt   *time.Time      `json:"expires_at,omitempty"`
}

// Store is TenSafe's metadata store. Both implementations (*SQLite from
// Open, *Postgres from OpenPostgres) are safe for concurrent use and give
// the guarantees of docs/STORE.md.
//
// Conventions:
//   - Ids are chosen by the caller (NewID). Create* fails with ErrConflict
//     when the id exists.
//   - Create* sets CreatedAt (and UpdatedAt) to now when zero, and returns
//     the record as stored. Times are stored with microsecond precision and
//     returned in UTC.
//   - Methods that take a tenant id return ErrNotFound for an object of
//     another tenant, exactly as for a missing one.
//   - Invalid input returns a *FieldError (errors.Is ErrInvalid) and writes
//     nothing.
type Store interface {
	// CreateTenant stores a new tenant. When IdempotencyKey is not empty
	// (CreatedBy is then required) and a tenant was created by CreatedBy
	// with that key, nothing is written and that tenant is returned
	// together with ErrDuplicate (the caller compares RequestHash).
	CreateTenant(ctx context.Context, t Tenant) (Tenant, error)
	// GetTenant returns a tenant.
	GetTenant(ctx context.Context, id string) (Tenant, error)
	// ListTenants returns every tenant, oldest first.
	ListTenants(ctx context.Context) ([]Tenant, error)

	// CreateAPIKey stores a key of an existing tenant (ErrNotFound
	// otherwise). A prefix in use is ErrConflict.
	CreateAPIKey(ctx context.Context, k APIKey) (APIKey, error)
	// GetAPIKeyByPrefix returns the key with that prefix, revoked or not.
	// Callers authenticating a token use Authenticate instead.
	GetAPIKeyByPrefix(ctx context.Context, prefix string) (APIKey, error)
	// RevokeAPIKey marks a key of the tenant revoked and returns it.
	// Revoking a revoked key keeps the first revocation time.
	RevokeAPIKey(ctx context.Context, tenantID, id string) (APIKey, error)
	// ListAPIKeys returns the tenant's keys, oldest first.
	ListAPIKeys(ctx context.Context, tenantID string) ([]APIKey, error)

	// CreateClient stores a new training client of an existing tenant,
	// with Version 1. An empty Status means active. When IdempotencyKey is
	// not empty and the tenant already has a client created with that key,
	// nothing is written and the existing client is returned together with
	// ErrDuplicate (the caller compares RequestHash).
	CreateClient(ctx context.Context, c TrainingClient) (TrainingClient, error)
	// GetClient returns a client of the tenant, whatever its status.
	GetClient(ctx context.Context, tenantID, id string) (TrainingClient, error)
	// ListClients returns the tenant's clients, oldest first.
	ListClients(ctx context.Context, tenantID string) ([]TrainingClient, error)
	// UpdateClient writes Config, Status, Step and BudgetState of the
	// client (c.TenantID, c.ID) if its stored Version is still c.Version,
	// and returns it with Version incremented and UpdatedAt set. A stale
	// Version is ErrConflict and changes nothing: re-read and retry.
	UpdateClient(ctx context.Context, c TrainingClient) (TrainingClient, error)

	// CreateOperation stores a new operation (State empty means queued).
	// When IdempotencyKey is not empty and the tenant already has an
	// operation with that key, nothing is written and the existing
	// operation is returned together with ErrDuplicate. A ClientID must
	// name a client of the same tenant.
	CreateOperation(ctx context.Context, op Operation) (Operation, error)
	// GetOperation returns an operation of the tenant.
	GetOperation(ctx context.Context, tenantID, id string) (Operation, error)
	// UpdateOperation writes State, Result, ErrorCode, ErrorMessage,
	// StartedAt and FinishedAt of the operation (op.TenantID, op.ID). The
	// state may move queued → running → succeeded|failed (or straight
	// from queued to a final state); a final state is final: updating a
	// finished operation is ErrConflict. Moving to running sets StartedAt
	// and to a final state sets FinishedAt, when the caller left them nil.
	UpdateOperation(ctx context.Context, op Operation) (Operation, error)
	// ListOperationsByState returns the operations, of all tenants, in
	// any of the states, oldest first.
	ListOperationsByState(ctx context.Context, states ...OpState) ([]Operation, error)
	// FailRunningOperations marks every queued or running operation failed
	// with ErrorCode "server_restarted" and the reason as message, and
	// returns how many it marked. A starting server calls it before
	// accepting requests.
	FailRunningOperations(ctx context.Context, reason string) (int64, error)
	// DeleteFinishedOperations deletes the operations, of all tenants,
	// that finished (succeeded or failed) at or before finishedBefore,
	// oldest first, at most limit of them (limit ≤ 0: all), and returns
	// how many it deleted. Queued and running operations are never
	// deleted. Retention sweeps call it in batches.
	DeleteFinishedOperations(ctx context.Context, finishedBefore time.Time, limit int) (int64, error)

	// CreateArtifact stores artifact metadata of an existing tenant.
	CreateArtifact(ctx context.Context, a Artifact) (Artifact, error)
	// GetArtifact returns an artifact of the tenant.
	GetArtifact(ctx context.Context, tenantID, id string) (Artifact, error)
	// ListArtifacts returns the tenant's artifacts, oldest first.
	ListArtifacts(ctx context.Context, tenantID string) ([]Artifact, error)
	// DeleteArtifact deletes the metadata of an artifact of the tenant
	// (the caller deletes the blob).
	DeleteArtifact(ctx context.Context, tenantID, id string) error
	// ListExpiredArtifacts returns the artifacts, of all tenants, whose
	// ExpiresAt is at or before now, soonest expired first.
	ListExpiredArtifacts(ctx context.Context, now time.Time) ([]Artifact, error)
	// ListArtifactsWithoutExpiry returns the artifacts, of all tenants,
	// that have no ExpiresAt and were created at or before createdBefore,
	// oldest first: a retention sweep applies its TTL to them (those
	// written before a TTL was configured).
	ListArtifactsWithoutExpiry(ctx context.Context, createdBefore time.Time) ([]Artifact, error)

	// AuditStore returns the audit log named name (e.g. "main") in this
	// database, as an audit.Store for audit.Open. One writer at a time:
	// a second AuditStore of the same name, in this process or (for
	// PostgreSQL) another, fails with ErrInUse until the first is closed.
	AuditStore(ctx context.Context, name string) (*AuditStore, error)

	// Close closes the database. Open AuditStores must be closed first.
	Close() error
}
