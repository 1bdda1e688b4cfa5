package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"runtime"
	"sync"
	"time"

	"github.com/tensafe/tensafe/api"
	"github.com/tensafe/tensafe/audit"
	"github.com/tensafe/tensafe/engine"
	"github.com/tensafe/tensafe/keys"
	"github.com/tensafe/tensafe/privacy"
	"github.com/tensafe/tensafe/store"
	"github.com/tensafe/tensafe/tokenizer"
)

// Config configures a Service.
type Config struct {
	// Store keeps clients, operations and artifact records. Required.
	Store store.Store
	// Audit receives one entry per operation. Required.
	Audit *audit.Log
	// Keys wraps the DEKs of checkpoint artifacts under each tenant's KEK.
	// Required.
	Keys keys.Provider
	// ArtifactDir holds the encrypted checkpoint files. Required; created
	// (mode 0700) if missing.
	ArtifactDir string
	// Models maps operator-chosen names to Hugging Face model folders.
	// The built-in tensafe-tiny is always available. Tenants name models;
	// they never pass paths.
	Models map[string]string
	// MaxConcurrent bounds how many operations of all clients run at once
	// (default GOMAXPROCS).
	MaxConcurrent int
	// MaxQueued bounds the operations queued on one client (default
	// DefaultMaxQueued); beyond it submissions fail with ErrBusy.
	MaxQueued int
	// Logger receives operational logs, never data or secrets (default
	// slog.Default()).
	Logger *slog.Logger
	// Packages configures DP certificates and TenSafe Secure Packages
	// (packages.go).
	Packages PackageConfig
	// ArtifactTTL is how long artifacts are kept after their creation;
	// EnforceRetention (or RunRetention) deletes them once expired. 0: no
	// TTL (see retention.go).
	ArtifactTTL time.Duration
	// OperationTTL is how long finished operations (futures, with their
	// results) are kept after they finished; EnforceRetention deletes them
	// once expired. 0: kept for ever.
	OperationTTL time.Duration
}

// DefaultMaxQueued is the default bound on one client's queue.
const DefaultMaxQueued = 256

// Service runs training clients. Its methods are safe for concurrent use.
type Service struct {
	st     store.Store
	audit  *audit.Log
	keys   keys.Provider
	dir    string
	models *registry
	log    *slog.Logger
	sem    chan struct{}
	maxQ   int
	pkg    *packager // package signing key and caches (packages.go)
	ret    retention // artifact retention policy and sweep state (retention.go)

	heCache *heCache // ready HE evaluators (hecache.go)

	// jobCtx is the context operations run under; Close cancels it once
	// its grace period is over.
	jobCtx    context.Context
	cancelJob context.CancelFunc
	wg        sync.WaitGroup

	mu       sync.Mutex
	closed   bool
	sessions map[string]*session      // client id → loaded session
	waiters  map[string]chan struct{} // operation id → closed when final
	// integrityReported: clients whose integrity failure is audited
	// (sealed.go).
	integrityReported map[string]bool
}

// New returns a service. Call Recover before serving requests.
func New(cfg Config) (*Service, error) {
	switch {
	case cfg.Store == nil:
		return nil, errors.New("service: Config.Store is required")
	case cfg.Audit == nil:
		return nil, errors.New("service: Config.Audit is required")
	case cfg.Keys == nil:
		return nil, errors.New("service: Config.Keys is required")
	case cfg.ArtifactDir == "":
		return nil, errors.New("service: Config.ArtifactDir is required")
	}
	if err := os.MkdirAll(cfg.ArtifactDir, 0o700); err != nil {
		return nil, fmt.Errorf("service: artifact directory: %w", err)
	}
	reg, err := newRegistry(cfg.Models)
	if err != nil {
		return nil, err
	}
	n := cfg.MaxConcurrent
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	q := cfg.MaxQueued
	if q <= 0 {
		q = DefaultMaxQueued
	}
	lg := cfg.Logger
	if lg == nil {
		lg = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Service{
		st: &sealedStore{Store: cfg.Store, rs: newRecordSealer(cfg.Keys), ttl: max(cfg.ArtifactTTL, 0)}, audit: cfg.Audit, keys: cfg.Keys, dir: cfg.ArtifactDir, models: reg, log: lg,
		sem: make(chan struct{}, n), maxQ: q, jobCtx: ctx, cancelJob: cancel, pkg: newPackager(cfg.Packages),
		sessions: map[string]*session{}, waiters: map[string]chan struct{}{}, heCache: newHECache(), ret: retention{ttl: max(cfg.ArtifactTTL, 0), opTTL: max(cfg.OperationTTL, 0)},
	}, nil
}

// Models returns the names of the base models tenants may choose.
func (s *Service) Models() []string { return s.models.names() }

// Recover marks the operations a previous process left queued or running
// as failed with code server_restarted. Call it once at start, before
// serving requests; it returns how many operations it marked.
func (s *Service) Recover(ctx context.Context) (int64, error) {
	n, err := s.st.FailRunningOperations(ctx, "the server restarted before the operation finished")
	if err != nil {
		return 0, fmt.Errorf("service: recover: %w", err)
	}
	s.record(ctx, audit.Record{Actor: "system", Operation: "service.recover", Outcome: audit.OutcomeSuccess,
		Details: map[string]string{"failed_operations": fmt.Sprint(n)}})
	return n, nil
}

// Close stops accepting work, lets queued and running operations finish
// until ctx is done, then cancels the rest: each is marked failed (code
// canceled), never lost silently. It does not close the store or the log.
func (s *Service) Close(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		s.cancelJob()
		return nil
	case <-ctx.Done():
	}
	s.cancelJob()
	<-done
	return ctx.Err()
}

type ctxKey int

const (
	actorKey ctxKey = iota
	idempotencyKey
)

// WithActor returns a context naming who asks (an API key id), for the audit
// log. Without it the actor is "tenant".
func WithActor(ctx context.Context, actor string) context.Context {
	return context.WithValue(ctx, actorKey, actor)
}

// WithIdempotencyKey returns a context carrying the client's idempotency key:
// a second submission with the same key returns the first operation instead
// of running again.
func WithIdempotencyKey(ctx context.Context, key string) context.Context {
	return context.WithValue(ctx, idempotencyKey, key)
}

func actorOf(ctx context.Context) string {
	if a, _ := ctx.Value(actorKey).(string); a != "" {
		return a
	}
	return "tenant"
}

func idempotencyOf(ctx context.Context) string {
	k, _ := ctx.Value(idempotencyKey).(string)
	return k
}

// record appends an audit entry. The operation it describes has happened
// (or was refused); a failure to log it is reported to the operator.
func (s *Service) record(ctx context.Context, r audit.Record) {
	if _, err := s.audit.Append(context.WithoutCancel(ctx), categorize(r)); err != nil { // compliance.go
		s.log.Error("service: audit append failed", "operation", r.Operation, "resource", r.Resource, "err", err)
	}
}

// session is a loaded training client.
type session struct {
	tenant, id string
	base       *baseModel
	tok        tokenizer.Tokenizer
	eng        *engine.Engine // replaced only by load_state, on the worker

	mu           sync.Mutex // guards the fields below
	rec          store.TrainingClient
	plan         *plan
	budget       *privacy.Budget
	queue        []*job
	running      bool
	pendingSteps int // optim_steps admitted and not yet finished
	deleted      bool
	// lost: the session was reloaded after a restart and its trained
	// adapter is gone; only load_state (and reads) are allowed until a
	// checkpoint is loaded.
	lost bool
	// data: the dataset a server-sampled client draws from, cached
	// (trainstep.go).
	data *sampledData
}

// errLost refuses work on a session whose adapter a restart lost.
func (sess *session) errLost() error {
	sess.mu.Lock()
	defer sess.mu.Unlock()
	if sess.lost {
		return fmt.Errorf("%w: the server restarted after step %d and the client's adapter lived in its memory; load_state a checkpoint to continue (the privacy budget spent is kept)",
			ErrFailedPrecondition, sess.rec.Step)
	}
	return nil
}

func (s *Service) admitting() error {
	if s.closed {
		return ErrClosed
	}
	if err := s.audit.Err(); err != nil {
		return fmt.Errorf("%w: the audit log is failing", ErrClosed)
	}
	return nil
}

// CreateTrainingClient validates cfg and creates a training client of
// tenant. Bad fields are *FieldError; an unknown tenant is ErrNotFound.
func (s *Service) CreateTrainingClient(ctx context.Context, tenant string, cfg api.TrainingConfig) (api.TrainingClient, error) {
	s.mu.Lock()
	err := s.admitting()
	s.mu.Unlock()
	if err != nil {
		return api.TrainingClient{}, err
	}
	sess, rec, err := s.createClient(ctx, tenant, cfg)
	if errors.Is(err, store.ErrDuplicate) {
		return s.replayCreateClient(ctx, tenant, rec, cfg)
	}
	rcd := audit.Record{TenantID: tenant, Actor: actorOf(ctx), Operation: "training.create_client", Outcome: audit.OutcomeSuccess,
		Details: map[string]string{}}
	if err != nil {
		code, field := CodeOf(err)
		rcd.Outcome, rcd.Details["error_code"] = audit.OutcomeFailure, code
		if field != "" {
			rcd.Details["field"] = field
		}
		if code == api.CodeNotFound {
			rcd.TenantID = "" // not a tenant of ours; don't log a made-up id as one
		}
		if keys.CheckTenantID(tenant) == nil {
			s.record(ctx, rcd)
		}
		return api.TrainingClient{}, err
	}
	rcd.Resource = rec.ID
	rcd.Details["base_model"] = rec.BaseModel
	rcd.Details["noise_multiplier"] = fmt.Sprint(sess.plan.sigma)
	rcd.Details["sampling_rate"] = fmt.Sprint(sess.plan.q)
	rcd.Details["target_epsilon"] = fmt.Sprint(sess.plan.budget.TargetEpsilon)
	s.record(ctx, rcd)
	return toClient(rec, sess.plan.cfg), nil
}

func (s *Service) createClient(ctx context.Context, tenant string, cfg api.TrainingConfig) (*session, store.TrainingClient, error) {
	var none store.TrainingClient
	base, ok := s.models.get(cfg.BaseModel)
	if !ok {
		if cfg.BaseModel == "" {
			return nil, none, fieldErr("base_model", "is required (available: %v)", s.models.names())
		}
		return nil, none, fieldErr("base_model", "unknown model %q (available: %v)", cfg.BaseModel, s.models.names())
	}
	p, err := validateConfig(cfg)
	if err != nil {
		return nil, none, err
	}
	p.cfg.BaseModel = base.name
	m, tok, err := base.load()
	if err != nil {
		return nil, none, err
	}
	data, err := s.resolveDataset(ctx, tenant, cfg, p, m.Config) // trainstep.go: server-sampled clients
	if err != nil {
		return nil, none, err
	}
	eng, err := engine.New(m, p.engine)
	if err != nil {
		return nil, none, fieldErr("lora_config", "%v", err)
	}
	budget, err := privacy.NewBudget(p.budget)
	if err != nil {
		return nil, none, fieldErr("dp_config", "%v", err)
	}
	d, err := budget.CanStep(p.q, p.sigma)
	if err != nil {
		return nil, none, fieldErr("dp_config", "%v", err)
	}
	if !d.Allowed {
		return nil, none, fieldErr("dp_config.target_epsilon", "%g allows no step: one step at noise_multiplier %g and sampling rate %g already spends ε = %.4g",
			p.budget.TargetEpsilon, p.sigma, p.q, d.Epsilon)
	}
	state, err := budget.MarshalBinary()
	if err != nil {
		return nil, none, fmt.Errorf("service: budget state: %w", err)
	}
	cj, err := json.Marshal(p.cfg)
	if err != nil {
		return nil, none, fmt.Errorf("service: config: %w", err)
	}
	id, err := store.NewID("tc")
	if err != nil {
		return nil, none, err
	}
	rec, err := s.st.CreateClient(ctx, store.TrainingClient{ID: id, TenantID: tenant, BaseModel: base.name,
		Config: cj, Status: store.ClientActive, BudgetState: state,
		IdempotencyKey: idempotencyOf(ctx), RequestHash: creationHash(ctx, cfg)})
	if errors.Is(err, store.ErrDuplicate) {
		return nil, rec, err // the client created with this Idempotency-Key
	}
	if err != nil {
		if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrInvalid) {
			return nil, none, fmt.Errorf("%w: tenant", ErrNotFound)
		}
		return nil, none, fmt.Errorf("service: create client: %w", err)
	}
	sess := &session{tenant: tenant, id: id, base: base, tok: tok, eng: eng, rec: rec, plan: p, budget: budget, data: data}
	s.mu.Lock()
	s.sessions[id] = sess
	s.mu.Unlock()
	return sess, rec, nil
}

// session returns the loaded session of client id of tenant, loading it from
// the store if needed. Another tenant's client is ErrNotFound.
//
// A session loaded after a restart has the accountant state the store kept
// (spent budget is never forgotten) but not its trained adapter, which lived
// in the old process's memory: until the tenant loads a checkpoint with
// load_state, training, sampling and saving are refused (see errLost).
func (s *Service) session(ctx context.Context, tenant, id string) (*session, error) {
	s.mu.Lock()
	sess := s.sessions[id]
	s.mu.Unlock()
	if sess == nil {
		// Load without holding s.mu: it reads the store and builds an
		// engine. Two loads of one client may race; the first stored wins
		// and the other, never used, is dropped.
		loaded, err := s.loadSession(ctx, tenant, id)
		if err != nil {
			return nil, err
		}
		s.mu.Lock()
		if sess = s.sessions[id]; sess == nil {
			sess = loaded
			s.sessions[id] = sess
		}
		s.mu.Unlock()
	}
	if sess.tenant != tenant {
		return nil, fmt.Errorf("%w: training client", ErrNotFound)
	}
	sess.mu.Lock()
	deleted := sess.deleted
	sess.mu.Unlock()
	if deleted {
		return nil, fmt.Errorf("%w: training client", ErrNotFound)
	}
	return sess, nil
}

func (s *Service) loadSession(ctx context.Context, tenant, id string) (*session, error) {
	rec, err := s.st.GetClient(ctx, tenant, id)
	if err != nil {
		if errors.Is(err, ErrIntegrity) { // the sealed accountant state (sealed.go): fail closed
			return nil, s.integrityFailure(ctx, tenant, id, "authentication", err)
		}
		if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrInvalid) {
			return nil, fmt.Errorf("%w: training client", ErrNotFound)
		}
		return nil, fmt.Errorf("service: get client: %w", err)
	}
	if rec.Status != store.ClientActive {
		return nil, fmt.Errorf("%w: training client", ErrNotFound)
	}
	var cfg api.TrainingConfig
	if err := json.Unmarshal(rec.Config, &cfg); err != nil {
		return nil, fmt.Errorf("service: client %s: stored config: %w", id, err)
	}
	base, ok := s.models.get(rec.BaseModel)
	if !ok {
		return nil, fmt.Errorf("%w: client %s: base model %q is no longer registered", ErrFailedPrecondition, id, rec.BaseModel)
	}
	p, err := validateConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("service: client %s: stored config: %w", id, err)
	}
	p.cfg.BaseModel = base.name
	m, tok, err := base.load()
	if err != nil {
		return nil, err
	}
	eng, err := engine.New(m, p.engine)
	if err != nil {
		return nil, fmt.Errorf("service: client %s: %w", id, err)
	}
	budget, err := privacy.ParseBudget(rec.BudgetState)
	if err != nil {
		return nil, fmt.Errorf("service: client %s: stored budget: %w", id, err)
	}
	if err := s.checkRollback(ctx, tenant, id, budget.Steps()); err != nil {
		return nil, err
	}
	// The adapter lived in the memory of a process that is gone: unless the
	// client had not trained yet, it must load a checkpoint before going on.
	lost := rec.Step > 0 || budget.Steps() > 0
	return &session{tenant: tenant, id: id, base: base, tok: tok, eng: eng, rec: rec, plan: p, budget: budget, lost: lost}, nil
}

// GetTrainingClient returns client id of tenant.
func (s *Service) GetTrainingClient(ctx context.Context, tenant, id string) (api.TrainingClient, error) {
	s.mu.Lock()
	sess := s.sessions[id]
	s.mu.Unlock()
	if sess != nil && sess.tenant == tenant {
		sess.mu.Lock()
		c, deleted := toClient(sess.rec, sess.plan.cfg), sess.deleted
		sess.mu.Unlock()
		if !deleted {
			return c, nil
		}
	}
	rec, err := s.st.GetClient(ctx, tenant, id)
	if err != nil {
		if errors.Is(err, ErrIntegrity) {
			return api.TrainingClient{}, s.integrityFailure(ctx, tenant, id, "authentication", err)
		}
		if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrInvalid) {
			return api.TrainingClient{}, fmt.Errorf("%w: training client", ErrNotFound)
		}
		return api.TrainingClient{}, fmt.Errorf("service: get client: %w", err)
	}
	if rec.Status != store.ClientActive {
		return api.TrainingClient{}, fmt.Errorf("%w: training client", ErrNotFound)
	}
	var cfg api.TrainingConfig
	if err := json.Unmarshal(rec.Config, &cfg); err != nil {
		return api.TrainingClient{}, fmt.Errorf("service: client %s: stored config: %w", id, err)
	}
	return toClient(rec, cfg), nil
}

// DeleteTrainingClient deletes client id of tenant. Its queued operations
// fail with code not_found; its artifacts stay.
func (s *Service) DeleteTrainingClient(ctx context.Context, tenant, id string) error {
	sess, err := s.session(ctx, tenant, id)
	if err != nil {
		return err
	}
	sess.mu.Lock()
	defer sess.mu.Unlock()
	if sess.deleted {
		return fmt.Errorf("%w: training client", ErrNotFound)
	}
	rec := sess.rec
	rec.Status = store.ClientDeleted
	if err := s.updateClient(ctx, sess, rec); err != nil {
		return err
	}
	// The session stays in the map, marked deleted, so that a concurrent
	// load of the old record cannot bring the client back.
	sess.deleted = true
	s.record(ctx, audit.Record{TenantID: tenant, Actor: actorOf(ctx), Operation: "training.delete_client",
		Resource: id, Outcome: audit.OutcomeSuccess})
	return nil
}

// updateClient writes rec (with sess.mu held), retrying once on a stale
// version, and keeps the stored row in sess.rec.
func (s *Service) updateClient(ctx context.Context, sess *session, rec store.TrainingClient) error {
	ctx = context.WithoutCancel(ctx)
	out, err := s.st.UpdateClient(ctx, rec)
	if errors.Is(err, store.ErrConflict) {
		cur, gerr := s.st.GetClient(ctx, sess.tenant, sess.id)
		if gerr != nil {
			return fmt.Errorf("service: update client: %w", gerr)
		}
		rec.Version = cur.Version
		out, err = s.st.UpdateClient(ctx, rec)
	}
	if err != nil {
		return fmt.Errorf("service: update client: %w", err)
	}
	sess.rec = out
	return nil
}

// DPMetrics reports what client id's privacy budget has spent.
func (s *Service) DPMetrics(ctx context.Context, tenant, id string) (api.DPMetrics, error) {
	sess, err := s.session(ctx, tenant, id)
	if err != nil {
		return api.DPMetrics{}, err
	}
	sess.mu.Lock()
	b, p := sess.budget, sess.plan
	sess.mu.Unlock()
	sp, err := b.Spent()
	if err != nil {
		return api.DPMetrics{}, fmt.Errorf("service: dp metrics: %w", err)
	}
	return api.DPMetrics{
		EpsilonSpent: sp.Epsilon, EpsilonRemaining: math.Max(0, p.budget.TargetEpsilon-sp.Epsilon),
		TargetEpsilon: p.budget.TargetEpsilon, Delta: sp.Delta, Steps: b.Steps(),
		NoiseMultiplier: p.sigma, SamplingRate: p.q, SamplingSource: p.samplingSource(),
		Accountant: string(sp.Accountant), Conversion: string(sp.Conversion),
	}, nil
}

func toClient(rec store.TrainingClient, cfg api.TrainingConfig) api.TrainingClient {
	return api.TrainingClient{ID: rec.ID, BaseModel: rec.BaseModel, Config: cfg, Status: string(rec.Status),
		Step: rec.Step, CreatedAt: rec.CreatedAt, UpdatedAt: rec.UpdatedAt}
}

// auditRecordFor is the audit record of a synchronous operation.
func auditRecordFor(ctx context.Context, tenant, op, resource string, err error) audit.Record {
	r := audit.Record{TenantID: tenant, Actor: actorOf(ctx), Operation: op, Resource: resource, Outcome: audit.OutcomeSuccess}
	if err != nil {
		code, _ := CodeOf(err)
		r.Outcome, r.Details = audit.OutcomeFailure, map[string]string{"error_code": code}
	}
	return r
}
