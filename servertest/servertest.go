// Package servertest runs a real TenSafe server for tests and examples, the
// way net/http/httptest runs an http.Handler: an SQLite store, a
// hash-chained audit log, a keyring, the training service and the HTTP layer,
// all in a temporary directory, served on a loopback listener.
//
// It exists so that the SDK, the RLVR loop and the command-line tests drive
// the same server the product runs, not a mock of it, without each test file
// repeating the forty lines that assemble one. It is for tests: every
// failure ends the test through testing.TB, the master key is random and
// lives only in memory, and everything is removed when the test ends.
//
// It imports the server and the packages under it, never the SDK, so that
// external test packages of client (package client_test) can use it.
package servertest

import (
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/tensafe/tensafe/audit"
	"github.com/tensafe/tensafe/keys"
	"github.com/tensafe/tensafe/seal"
	"github.com/tensafe/tensafe/server"
	"github.com/tensafe/tensafe/service"
	"github.com/tensafe/tensafe/store"
)

// DefaultOrigin names the audit log of a server started without WithOrigin.
const DefaultOrigin = "tensafe.test/servertest"

// Server is a running TenSafe server and the components behind it. Tests
// may use the components directly (to inspect the store or the audit log,
// or to call the service without HTTP); New closes them all when the test
// ends.
type Server struct {
	// URL is the base URL of the server, http://127.0.0.1:port, with no
	// trailing slash.
	URL string
	// Handler is the HTTP layer, for tests that wrap it in a handler of
	// their own (a proxy that drops responses, for instance).
	Handler *server.Server
	// Store keeps the metadata (tenants, keys, clients, artifacts).
	Store *store.SQLite
	// AuditStore keeps the audit log's entries.
	AuditStore *store.AuditStore
	// Audit is the log the service and the server append to.
	Audit *audit.Log
	// Keys is the keyring that seals the tenants' artifacts.
	Keys *keys.Keyring
	// Service is the training service behind the HTTP layer.
	Service *service.Service
	// OperatorTenant is the tenant whose admin keys are global: they create
	// tenants and manage every tenant's keys.
	OperatorTenant string
}

// An Option changes what New assembles.
type Option func(*options)

type options struct {
	origin      string
	auditSigner *seal.SigningKey
	pkgSigner   *seal.SigningKey
	artifactTTL time.Duration
	server      []func(*server.Config)
	service     []func(*service.Config)
}

// WithOrigin names the audit log (default DefaultOrigin).
func WithOrigin(origin string) Option {
	return func(o *options) { o.origin = origin }
}

// WithAuditSigner makes the audit log sign checkpoints with k. With
// WithPackageSigner, packages publish k's public half so that receivers can
// check their evidence's inclusion proofs.
func WithAuditSigner(k *seal.SigningKey) Option {
	return func(o *options) { o.auditSigner = k }
}

// WithPackageSigner makes the service sign TSSP packages with k (without
// it, packaging fails with a failed precondition). Packages name the
// software version "test".
func WithPackageSigner(k *seal.SigningKey) Option {
	return func(o *options) { o.pkgSigner = k }
}

// WithArtifactTTL sets service.Config.ArtifactTTL.
func WithArtifactTTL(d time.Duration) Option {
	return func(o *options) { o.artifactTTL = d }
}

// WithServerConfig lets f change the HTTP layer's configuration after New
// has filled it in (rate limits, MaxBodyBytes, MaxTenantOps, MaxWait…).
// New's defaults: no rate limit, the default tenant operation bound, and
// a logger that discards.
func WithServerConfig(f func(*server.Config)) Option {
	return func(o *options) { o.server = append(o.server, f) }
}

// WithServiceConfig lets f change the service's configuration after New has
// filled it in. New's defaults: two operations at once and the service's
// own defaults for the rest.
func WithServiceConfig(f func(*service.Config)) Option {
	return func(o *options) { o.service = append(o.service, f) }
}

// New starts a server in a temporary directory of t and closes it, and all
// it opened, when t ends. It has an operator tenant (OperatorTenant) and no
// other; Tenant and Key add more. Any failure ends the test.
func New(t testing.TB, opts ...Option) *Server {
	t.Helper()
	o := options{origin: DefaultOrigin}
	for _, opt := range opts {
		opt(&o)
	}
	ctx := context.Background()
	dir := t.TempDir()
	st, err := store.Open(ctx, filepath.Join(dir, "meta.db"))
	if err != nil {
		t.Fatalf("servertest: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	as, err := st.AuditStore(ctx, "main")
	if err != nil {
		t.Fatalf("servertest: %v", err)
	}
	t.Cleanup(func() { as.Close() })
	mk := make([]byte, keys.MasterKeySize)
	rand.Read(mk)
	m, err := keys.RawMasterKey(mk)
	if err != nil {
		t.Fatalf("servertest: %v", err)
	}
	kr, err := keys.CreateKeyring(ctx, filepath.Join(dir, "keyring"), m, nil)
	if err != nil {
		t.Fatalf("servertest: %v", err)
	}
	t.Cleanup(func() { kr.Close() })
	lg, err := audit.Open(ctx, as, audit.Options{Origin: o.origin, Signer: o.auditSigner})
	if err != nil {
		t.Fatalf("servertest: %v", err)
	}
	t.Cleanup(func() { lg.Close() })
	scfg := service.Config{Store: st, Audit: lg, Keys: kr, ArtifactDir: filepath.Join(dir, "artifacts"),
		MaxConcurrent: 2, ArtifactTTL: o.artifactTTL}
	if o.pkgSigner != nil {
		scfg.Packages = service.PackageConfig{Signer: o.pkgSigner, AuditStore: as, Version: "test"}
		if o.auditSigner != nil {
			scfg.Packages.AuditKey = o.auditSigner.Public()
		}
	}
	for _, f := range o.service {
		f(&scfg)
	}
	svc, err := service.New(scfg)
	if err != nil {
		t.Fatalf("servertest: %v", err)
	}
	t.Cleanup(func() {
		if err := svc.Close(ctx); err != nil {
			t.Errorf("servertest: close service: %v", err)
		}
	})
	if _, err := svc.Recover(ctx); err != nil {
		t.Fatalf("servertest: %v", err)
	}
	s := &Server{Store: st, AuditStore: as, Audit: lg, Keys: kr, Service: svc}
	s.OperatorTenant = s.Tenant(t, "operator")
	cfg := server.Config{Service: svc, Store: st, Audit: lg, AuditStore: as, OperatorTenant: s.OperatorTenant,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), RateLimit: -1}
	for _, f := range o.server {
		f(&cfg)
	}
	srv, err := server.New(cfg)
	if err != nil {
		t.Fatalf("servertest: %v", err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	s.URL, s.Handler = hs.URL, srv
	return s
}

// Tenant creates a tenant named name and returns its id.
func (s *Server) Tenant(t testing.TB, name string) string {
	t.Helper()
	id, err := store.NewID("tn")
	if err != nil {
		t.Fatalf("servertest: %v", err)
	}
	if _, err := s.Store.CreateTenant(context.Background(), store.Tenant{ID: id, Name: name}); err != nil {
		t.Fatalf("servertest: create tenant %q: %v", name, err)
	}
	return id
}

// Key creates an API key of tenant with role and returns its token (the
// bearer credential; shown once, as the admin API does).
func (s *Server) Key(t testing.TB, tenant string, role store.Role) string {
	t.Helper()
	_, tok, err := server.NewAPIKey(context.Background(), s.Store, tenant, role)
	if err != nil {
		t.Fatalf("servertest: create %s key: %v", role, err)
	}
	return tok
}

// RevokedKey creates an API key of tenant with role, revokes it and returns
// its token: one the server must refuse.
func (s *Server) RevokedKey(t testing.TB, tenant string, role store.Role) string {
	t.Helper()
	ctx := context.Background()
	k, tok, err := server.NewAPIKey(ctx, s.Store, tenant, role)
	if err != nil {
		t.Fatalf("servertest: create %s key: %v", role, err)
	}
	if _, err := s.Store.RevokeAPIKey(ctx, tenant, k.ID); err != nil {
		t.Fatalf("servertest: revoke key: %v", err)
	}
	return tok
}
