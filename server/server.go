// Package server is TenSafe's HTTP layer: routing, authentication, tenant
// scoping, request validation, limits, request ids, structured logs and
// metrics, in front of package service.
//
// Why a thin layer: every rule that keeps a run private and recoverable lives
// in package service, whatever the transport. What is left here is what only
// HTTP has — who is asking (a bearer API key of one tenant, with a role), how
// much they may ask (body limits, a per-tenant token bucket), and how an answer
// is written (one error envelope, {"error": {"code", "message", "field"}}).
// Handlers never take a tenant id from the request: it comes from the key, and
// every lookup passes it down, so another tenant's ids answer 404 exactly like
// missing ones.
//
// Roles: a viewer may only read (GET); a trainer may also create and drive
// training clients; an admin may also create API keys for, and revoke keys of,
// its own tenant. The admin keys of the operator tenant (Config.OperatorTenant:
// the tenant created on first start of `tensafe serve`, whose key is written
// to <data-dir>/admin.key) are global: they alone create tenants, and they
// manage the keys of every tenant.
//
// The routes are listed in docs/API.md and api/openapi.yaml; Routes returns
// them and a test checks the two agree.
package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/tensafe/tensafe/api"
	"github.com/tensafe/tensafe/audit"
	"github.com/tensafe/tensafe/service"
	"github.com/tensafe/tensafe/store"
)

// Defaults of Config.
const (
	DefaultRateLimit     = 50.0 // requests per second per tenant
	DefaultRateBurst     = 200
	DefaultMaxWait       = 60 * time.Second
	DefaultMaxTenantOps  = 512
	DefaultAuditLimit    = 100
	MaxAuditLimit        = 1000
	maxAuditScan         = 10000 // entries scanned per audit page, whatever the filter keeps
	maxRequestIDLen      = 64
	defaultShutdownGrace = 30 * time.Second
)

// CodeMethodNotAllowed is the error code of a 405: the path exists, the
// method does not (the Allow header lists those that do). It is the one code
// of the envelope that package api does not define, because no service error
// maps to it.
const CodeMethodNotAllowed = "method_not_allowed"

// Config configures a Server.
type Config struct {
	// Service runs the training API. Required.
	Service *service.Service
	// Store authenticates API keys and keeps tenants. Required.
	Store store.Store
	// Audit is the log the service appends to; /api/v1/audit/verify
	// verifies it. Required.
	Audit *audit.Log
	// AuditStore is where Audit keeps its entries; /api/v1/audit pages
	// through it. Required.
	AuditStore audit.Store
	// OperatorTenant is the tenant whose admin keys are global (they create
	// tenants and manage every tenant's keys). Empty: no key is global.
	OperatorTenant string
	// Logger receives one line per request (never a header value, a body
	// or a token). Default slog.Default().
	Logger *slog.Logger
	// RateLimit (requests per second) and RateBurst size the token bucket
	// of each tenant. Defaults DefaultRateLimit, DefaultRateBurst; a
	// negative RateLimit disables the limit.
	RateLimit float64
	RateBurst int
	// MaxBodyBytes bounds request bodies (default api.MaxRequestBytes).
	MaxBodyBytes int64
	// MaxTenantOps bounds the operations of one tenant queued or running
	// at once, over all its clients (default DefaultMaxTenantOps; negative:
	// no bound). Beyond it submissions answer 429 with Retry-After.
	MaxTenantOps int
	// MaxWait bounds the long-poll of GET /api/v1/futures/{id}?wait=
	// (default DefaultMaxWait).
	MaxWait time.Duration
	// Registry receives the server's metrics and is served at /metrics
	// (default a new registry with the Go and process collectors).
	Registry *prometheus.Registry
}

// Server is TenSafe's HTTP handler. Its methods are safe for concurrent use.
type Server struct {
	cfg      Config
	log      *slog.Logger
	mux      *http.ServeMux
	routes   []string
	limiter  *limiter
	quota    *quota
	closing  atomic.Bool
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	inflight prometheus.Gauge
	denied   *authAuditor // audits 401s and 403s, rate-limited (authaudit.go)
}

// New returns a server for cfg.
func New(cfg Config) (*Server, error) {
	switch {
	case cfg.Service == nil:
		return nil, errors.New("server: Config.Service is required")
	case cfg.Store == nil:
		return nil, errors.New("server: Config.Store is required")
	case cfg.Audit == nil:
		return nil, errors.New("server: Config.Audit is required")
	case cfg.AuditStore == nil:
		return nil, errors.New("server: Config.AuditStore is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.RateLimit == 0 {
		cfg.RateLimit = DefaultRateLimit
	}
	if cfg.RateBurst <= 0 {
		cfg.RateBurst = DefaultRateBurst
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = api.MaxRequestBytes
	}
	if cfg.MaxTenantOps == 0 {
		cfg.MaxTenantOps = DefaultMaxTenantOps
	}
	if cfg.MaxWait <= 0 {
		cfg.MaxWait = DefaultMaxWait
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
		cfg.Registry.MustRegister(prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	}
	s := &Server{cfg: cfg, log: cfg.Logger, mux: http.NewServeMux()}
	if cfg.MaxTenantOps > 0 {
		s.quota = &quota{max: cfg.MaxTenantOps, n: map[string]int{}}
	}
	if cfg.RateLimit > 0 {
		s.limiter = newLimiter(cfg.RateLimit, float64(cfg.RateBurst), time.Now)
	}
	s.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tensafe_http_requests_total", Help: "HTTP requests by route pattern and status code.",
	}, []string{"route", "code"})
	s.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "tensafe_http_request_duration_seconds", Help: "HTTP request latency by route pattern.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
	}, []string{"route"})
	s.inflight = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "tensafe_http_requests_in_flight", Help: "HTTP requests being served.",
	})
	s.denied = newAuthAuditor(cfg.Audit, time.Now, func(msg string, args ...any) { s.log.Error(msg, args...) })
	for _, c := range []prometheus.Collector{s.requests, s.latency, s.inflight, s.denied.denials} {
		if err := cfg.Registry.Register(c); err != nil {
			return nil, fmt.Errorf("server: register metrics: %w", err)
		}
	}
	s.register()
	return s, nil
}

// access is what a request's API key may do.
type access int

const (
	public   access = iota // no key
	read                   // any role
	train                  // trainer or admin
	admin                  // admin (of the tenant; operator admins of any)
	operator               // admin of the operator tenant
)

// principal is the authenticated caller.
type principal struct {
	Tenant   string
	KeyID    string
	Role     store.Role
	Operator bool // an admin key of the operator tenant
}

type ctxKey struct{}

func (s *Server) register() {
	type route struct {
		pattern string
		need    access
		h       func(http.ResponseWriter, *http.Request, principal)
	}
	const tc = "/api/v1/training_clients/{id}"
	routes := []route{
		{"GET /healthz", public, s.healthz},
		{"GET /readyz", public, s.readyz},
		{"POST /api/v1/training_clients", train, s.createClient},
		{"GET " + tc, read, s.getClient},
		{"DELETE " + tc, train, s.deleteClient},
		{"POST " + tc + "/forward_backward", train, s.forwardBackward},
		{"POST " + tc + "/forward_backward_custom", train, s.forwardBackwardCustom},
		{"POST " + tc + "/forward", train, s.forward},
		{"POST " + tc + "/optim_step", train, s.optimStep},
		{"POST " + tc + "/sample", train, s.sample},
		{"POST " + tc + "/save_state", train, s.saveState},
		{"POST " + tc + "/load_state", train, s.loadState},
		{"GET " + tc + "/dp_metrics", read, s.dpMetrics},
		{"GET " + tc + "/dp_certificate", read, s.dpCertificate},
		{"POST " + tc + "/train_step", train, s.trainStep},
		{"POST /api/v1/datasets", train, s.createDataset},
		{"GET /api/v1/datasets/{id}", read, s.getDataset},
		{"DELETE /api/v1/datasets/{id}", train, s.deleteDataset},
		{"GET /api/v1/futures/{id}", read, s.getFuture},
		{"POST /api/v1/tokenize", read, s.tokenize},
		{"POST /api/v1/detokenize", read, s.detokenize},
		{"GET /api/v1/artifacts", read, s.listArtifacts},
		{"GET /api/v1/artifacts/{id}", read, s.getArtifact},
		{"GET /api/v1/artifacts/{id}/download", read, s.downloadArtifact},
		{"POST /api/v1/artifacts/{id}/package", train, s.packageArtifact},
		{"GET /api/v1/signer", public, s.signer},
		{"GET /api/v1/audit", read, s.listAudit},
		{"GET /api/v1/audit/verify", read, s.verifyAudit},
		{"POST /api/v1/tenants", operator, s.createTenant},
		{"POST /api/v1/tenants/{id}/api_keys", admin, s.createAPIKey},
		{"DELETE /api/v1/api_keys/{id}", admin, s.revokeAPIKey},
		{"GET /api/v1/compliance/metrics", admin, s.complianceMetrics},
		{"GET /api/v1/compliance/events", admin, s.complianceEvents},
		{"POST /api/v1/compliance/scans", admin, s.recordScan},
		{"POST /api/v1/he/keys", train, s.heRegisterKeys},
		{"GET /api/v1/he/keys", read, s.heListKeys},
		{"GET /api/v1/he/keys/{id}", read, s.heGetKey},
		{"POST /api/v1/he/adapters", train, s.heRegisterAdapter},
		{"POST /api/v1/he/deltas", train, s.heDeltas},
		{"POST /api/v1/he/models", train, s.heRegisterModel},
		{"POST /api/v1/he/inference", train, s.heInference},
		{"DELETE /api/v1/he/keys/{id}", train, s.heDeleteKey},
		{"GET /api/v1/he/adapters", read, s.heListAdapters},
		{"DELETE /api/v1/he/adapters/{module}", train, s.heDeleteAdapter},
		{"GET /api/v1/he/models", read, s.heListModels},
		{"DELETE /api/v1/he/models/{name}", train, s.heDeleteModel},
	}
	for _, r := range routes {
		s.routes = append(s.routes, r.pattern)
		s.mux.Handle(r.pattern, s.wrap(r.pattern, r.need, r.h))
	}
	metrics := promhttp.HandlerFor(s.cfg.Registry, promhttp.HandlerOpts{})
	s.routes = append(s.routes, "GET /metrics")
	s.mux.Handle("GET /metrics", s.wrap("GET /metrics", public, func(w http.ResponseWriter, r *http.Request, _ principal) {
		metrics.ServeHTTP(w, r)
	}))
	// Anything else answers in the envelope too.
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		var allow []string
		for _, m := range []string{"GET", "POST", "DELETE"} {
			probe := r.Clone(r.Context())
			probe.Method = m
			if _, pat := s.mux.Handler(probe); pat != "/" && pat != "" {
				allow = append(allow, m)
			}
		}
		if len(allow) > 0 {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			s.writeError(w, r, http.StatusMethodNotAllowed, CodeMethodNotAllowed, r.Method+" is not allowed here; use "+strings.Join(allow, " or "), "")
			return
		}
		s.writeError(w, r, http.StatusNotFound, api.CodeNotFound, "no such route", "")
	})
}

// Routes returns the registered route patterns ("METHOD /path/{id}").
func (s *Server) Routes() []string { return append([]string(nil), s.routes...) }

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rid := r.Header.Get("X-Request-Id")
	if !validRequestID(rid) {
		rid = newRequestID()
	}
	w.Header().Set("X-Request-Id", rid)
	r = r.WithContext(context.WithValue(r.Context(), ridKey{}, rid))
	s.mux.ServeHTTP(w, r)
}

type ridKey struct{}

var requestIDRE = regexp.MustCompile(`^[A-Za-z0-9._\-]{1,64}$`)

func validRequestID(s string) bool { return len(s) <= maxRequestIDLen && requestIDRE.MatchString(s) }

func newRequestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func requestID(r *http.Request) string { v, _ := r.Context().Value(ridKey{}).(string); return v }

// statusWriter remembers the status code for logs and metrics.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// wrap authenticates, authorizes, rate-limits, logs and measures a handler.
func (s *Server) wrap(pattern string, need access, h func(http.ResponseWriter, *http.Request, principal)) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		start := time.Now()
		w := &statusWriter{ResponseWriter: rw}
		s.inflight.Inc()
		var p principal
		defer func() {
			s.inflight.Dec()
			code := w.code
			if code == 0 {
				code = http.StatusOK
			}
			d := time.Since(start)
			s.requests.WithLabelValues(pattern, strconv.Itoa(code)).Inc()
			s.latency.WithLabelValues(pattern).Observe(d.Seconds())
			attrs := []any{"request_id", requestID(r), "route", pattern, "status", code, "duration_ms", float64(d.Microseconds()) / 1000}
			if p.KeyID != "" {
				attrs = append(attrs, "tenant", p.Tenant, "key_id", p.KeyID)
			}
			s.log.LogAttrs(r.Context(), slog.LevelInfo, "http request", slogAttrs(attrs)...)
		}()
		if need != public {
			var ok bool
			if p, ok = s.authenticate(w, r, pattern); !ok {
				return
			}
			if !allowed(p, need) {
				s.writeError(w, r, http.StatusForbidden, api.CodePermissionDenied,
					fmt.Sprintf("role %s may not do this", p.Role), "")
				s.denied.record(r, denial{status: http.StatusForbidden, code: api.CodePermissionDenied, reason: "role",
					tenant: p.Tenant, keyID: p.KeyID, role: string(p.Role), route: pattern})
				return
			}
			if s.limiter != nil {
				if wait, ok := s.limiter.take(p.Tenant); !ok {
					w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
					s.writeError(w, r, http.StatusTooManyRequests, api.CodeRateLimited, "rate limit of the tenant exceeded; retry later", "")
					return
				}
			}
			ctx := service.WithActor(r.Context(), p.KeyID)
			if k := r.Header.Get("Idempotency-Key"); k != "" {
				if len(k) > store.MaxIdempotencyKeyLen {
					s.writeError(w, r, http.StatusBadRequest, api.CodeInvalidArgument,
						fmt.Sprintf("at most %d bytes", store.MaxIdempotencyKeyLen), "Idempotency-Key")
					return
				}
				ctx = service.WithIdempotencyKey(ctx, k)
			}
			r = r.WithContext(context.WithValue(ctx, ctxKey{}, p))
		}
		h(w, r, p)
	})
}

func slogAttrs(kv []any) []slog.Attr {
	out := make([]slog.Attr, 0, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, slog.Any(kv[i].(string), kv[i+1]))
	}
	return out
}

func allowed(p principal, need access) bool {
	switch need {
	case read:
		return true
	case train:
		return p.Role == store.RoleTrainer || p.Role == store.RoleAdmin
	case admin:
		return p.Role == store.RoleAdmin
	case operator:
		return p.Operator
	}
	return false
}

// authenticate checks the bearer token; on failure it writes 401 and
// audits the refusal (rate-limited; never the token's secret).
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request, route string) (principal, bool) {
	// The scheme is case-insensitive (RFC 9110 §11.1).
	h := r.Header.Get("Authorization")
	tok, ok := "", len(h) > 7 && strings.EqualFold(h[:7], "bearer ")
	if ok {
		tok = h[7:]
	}
	if !ok || strings.TrimSpace(tok) == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="tensafe"`)
		s.writeError(w, r, http.StatusUnauthorized, api.CodeUnauthenticated, "missing bearer API key (Authorization: Bearer <key>)", "")
		s.denied.record(r, denial{status: http.StatusUnauthorized, code: api.CodeUnauthenticated, reason: "missing", route: route})
		return principal{}, false
	}
	k, err := store.Authenticate(r.Context(), s.cfg.Store, strings.TrimSpace(tok))
	if err != nil {
		if errors.Is(err, store.ErrInvalidToken) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="tensafe", error="invalid_token"`)
			msg := "invalid API key"
			if errors.Is(err, store.ErrRevoked) {
				msg = "API key revoked"
			}
			s.writeError(w, r, http.StatusUnauthorized, api.CodeUnauthenticated, msg, "")
			s.denied.record(r, s.tokenDenial(r.Context(), strings.TrimSpace(tok), err, route))
			return principal{}, false
		}
		s.writeErr(w, r, fmt.Errorf("server: authenticate: %w", err))
		return principal{}, false
	}
	return principal{
		Tenant: k.TenantID, KeyID: k.ID, Role: k.Role,
		Operator: s.cfg.OperatorTenant != "" && k.TenantID == s.cfg.OperatorTenant && k.Role == store.RoleAdmin,
	}, true
}

// tokenDenial describes a refused token for the audit log: its public
// lookup prefix when it has the token form, and, for a revoked key (whose
// secret matched), the key id and tenant. Never the token's secret.
func (s *Server) tokenDenial(ctx context.Context, tok string, err error, route string) denial {
	d := denial{status: http.StatusUnauthorized, code: api.CodeUnauthenticated, reason: "invalid", route: route}
	prefix, _, perr := store.ParseAPIToken(tok)
	if perr != nil {
		return d
	}
	d.prefix = prefix
	if errors.Is(err, store.ErrRevoked) {
		d.reason = "revoked"
		if k, kerr := s.cfg.Store.GetAPIKeyByPrefix(ctx, prefix); kerr == nil {
			d.tenant, d.keyID = k.TenantID, k.ID
		}
	}
	return d
}

// writeErr writes err in the envelope. Internal errors get a generic message;
// their detail goes to the log with the request id.
func (s *Server) writeErr(w http.ResponseWriter, r *http.Request, err error) {
	code, field := service.CodeOf(err)
	status := api.HTTPStatus(code)
	msg := err.Error()
	var de *api.DecodeError
	if errors.As(err, &de) {
		msg = de.Reason
		if field == "" {
			field = "body"
		}
	}
	switch code {
	case api.CodeInternal:
		s.log.LogAttrs(r.Context(), slog.LevelError, "internal error", slog.String("request_id", requestID(r)), slog.String("error", err.Error()))
		msg = "internal error (request id " + requestID(r) + ")"
	case api.CodeRateLimited:
		w.Header().Set("Retry-After", "1")
	}
	s.writeError(w, r, status, code, msg, field)
}

func (s *Server) writeError(w http.ResponseWriter, _ *http.Request, status int, code, msg, field string) {
	writeJSON(w, status, api.ErrorResponse{Error: api.ErrorBody{Code: code, Message: msg, Field: field}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"error":{"code":"internal","message":"encoding the response failed"}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// decode reads the body into v with the strict decoder; on failure it writes
// the error and returns false.
func (s *Server) decode(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := api.Decode(r.Body, s.cfg.MaxBodyBytes, v); err != nil {
		s.writeErr(w, r, err)
		return false
	}
	return true
}

// Serve serves HTTP on ln until ctx is done, then shuts down gracefully:
// it stops accepting connections and lets requests in flight finish (up to
// grace, default 30 s), then closes the service, whose queued and running
// operations finish or are marked failed (code canceled), never lost. The
// store and the audit log stay open; the caller closes them.
func (s *Server) Serve(ctx context.Context, ln net.Listener, grace time.Duration) error {
	if grace <= 0 {
		grace = defaultShutdownGrace
	}
	hs := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	actx, stopAudit := context.WithCancel(ctx)
	auditDone := make(chan struct{})
	go func() { s.denied.run(actx); close(auditDone) }()
	defer func() { stopAudit(); <-auditDone }()
	select {
	case err := <-errc:
		return fmt.Errorf("server: serve: %w", err)
	case <-ctx.Done():
	}
	s.closing.Store(true)
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	herr := hs.Shutdown(sctx)
	serr := s.cfg.Service.Close(sctx)
	if herr != nil {
		return fmt.Errorf("server: shutdown: %w", herr)
	}
	if serr != nil {
		return fmt.Errorf("server: close service: %w", serr)
	}
	return nil
}

// limiter is a token bucket per tenant.
type limiter struct {
	mu      sync.Mutex
	rate    float64
	burst   float64
	now     func() time.Time
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newLimiter(rate, burst float64, now func() time.Time) *limiter {
	return &limiter{rate: rate, burst: burst, now: now, buckets: map[string]*bucket{}}
}

// take takes one token of tenant's bucket; when there is none it returns how
// long until there is.
func (l *limiter) take(tenant string) (time.Duration, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	b := l.buckets[tenant]
	if b == nil {
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[tenant] = b
	}
	b.tokens = math.Min(l.burst, b.tokens+now.Sub(b.last).Seconds()*l.rate)
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return 0, true
	}
	return time.Duration((1 - b.tokens) / l.rate * float64(time.Second)), false
}

// quota counts each tenant's operations queued or running.
type quota struct {
	mu  sync.Mutex
	max int
	n   map[string]int
}

func (q *quota) acquire(tenant string) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.n[tenant] >= q.max {
		return false
	}
	q.n[tenant]++
	return true
}

func (q *quota) release(tenant string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.n[tenant]--; q.n[tenant] <= 0 {
		delete(q.n, tenant)
	}
}
