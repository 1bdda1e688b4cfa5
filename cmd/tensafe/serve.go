package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/tensafe/tensafe/audit"
	"github.com/tensafe/tensafe/keys"
	"github.com/tensafe/tensafe/seal"
	"github.com/tensafe/tensafe/server"
	"github.com/tensafe/tensafe/service"
	"github.com/tensafe/tensafe/store"
)

// Files of a data directory (docs/API.md, "tensafe serve").
const (
	serveDBFile         = "tensafe.db"          // SQLite metadata and audit log (embedded mode)
	serveMasterKeyFile  = "master.key"          // the keyring's master key, 0600
	serveKeyringFile    = "keyring"             // tenants' KEKs, sealed under the master key
	serveSigningKeyFile = "audit-signing.key"   // signs audit checkpoints, 0600
	servePackageKeyFile = "package-signing.key" // signs TSSP package manifests, 0600
	serveArtifactDir    = "artifacts"           // encrypted checkpoints
	serveAdminKeyFile   = "admin.key"           // the bootstrap operator admin API key, 0600
	serveOperatorFile   = "operator_tenant"     // id of the operator tenant (not secret)
	serveAuditOrigin    = "tensafe.local/audit"
)

type serveOptions struct {
	dataDir, addr, postgres string
	packageSigner           string // signing key file for packages; "" → <data-dir>/package-signing.key
	rateLimit               float64
	maxConcurrent           int
	grace                   time.Duration
	artifactTTL             time.Duration // 0: keep artifacts; else delete them this long after creation
	operationTTL            time.Duration // 0: keep finished operations; else delete them this long after they finished
	logger                  *slog.Logger  // nil: JSON lines on stderr
}

func newServeCmd() *cobra.Command {
	o := serveOptions{}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the TenSafe training API server",
		Long: `serve runs the training API (docs/API.md) on embedded defaults under --data-dir:
a SQLite database (metadata and the hash-chained audit log), a directory of encrypted
checkpoints, a local keyring sealed under a master key file generated on first start (mode
0600), and an audit checkpoint signing key. With --postgres the metadata and the audit log live
in PostgreSQL instead; the keys and artifacts stay under --data-dir.

On first start it creates the operator tenant and its admin API key, writes the key to
<data-dir>/admin.key (mode 0600) and prints that path, never the key. The operator admin key
creates tenants (POST /api/v1/tenants) and their keys. SIGINT or SIGTERM shut the server down
gracefully: requests in flight finish, queued operations finish or are marked failed.

A retention loop always runs: with --artifact-ttl it deletes expired artifacts, with
--operation-ttl finished operations (futures and their sealed results), and in every case it
re-seals accountant states left under an older KEK version after a key rotation (every 10
minutes when no TTL is set).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runServe(cmd.Context(), o, cmd.OutOrStdout(), nil)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.dataDir, "data-dir", "tensafe-data", "directory of the embedded database, keys and artifacts")
	f.StringVar(&o.addr, "addr", "127.0.0.1:8080", "address to listen on")
	f.StringVar(&o.postgres, "postgres", "", "PostgreSQL URL for metadata and the audit log (default: SQLite under --data-dir)")
	f.Float64Var(&o.rateLimit, "rate-limit", server.DefaultRateLimit, "requests per second per tenant (negative: no limit)")
	f.IntVar(&o.maxConcurrent, "max-concurrent", 0, "operations running at once over all clients (default GOMAXPROCS)")
	f.DurationVar(&o.grace, "shutdown-grace", 30*time.Second, "how long shutdown waits for requests and operations")
	f.DurationVar(&o.artifactTTL, "artifact-ttl", 0, "delete artifacts (files and records) this long after creation, e.g. 720h (0: keep)")
	f.DurationVar(&o.operationTTL, "operation-ttl", 0, "delete finished operations (futures and their sealed results) this long after they finished, e.g. 168h (0: keep)")
	f.StringVar(&o.packageSigner, "package-signer", "", "signing key file (tensafe keys signer new) for TSSP packages (default: generated once into <data-dir>/package-signing.key, mode 0600)")
	return cmd
}

// runServe serves until ctx is done. ready, when set, is called with the
// listening address once requests are accepted.
func runServe(ctx context.Context, o serveOptions, stdout io.Writer, ready func(addr string)) (err error) {
	for _, d := range []struct {
		flag string
		v    time.Duration
	}{{"--artifact-ttl", o.artifactTTL}, {"--operation-ttl", o.operationTTL}} {
		if d.v < 0 {
			return &exitError{2, fmt.Errorf("serve: %s must be 0 (keep) or positive, got %v", d.flag, d.v)}
		}
	}
	logger := o.logger
	if logger == nil {
		logger = slog.New(slog.NewJSONHandler(os.Stderr, nil))
	}
	if err := os.MkdirAll(o.dataDir, 0o700); err != nil {
		return fmt.Errorf("serve: data dir: %w", err)
	}
	closers := []func() error{}
	defer func() {
		for i := len(closers) - 1; i >= 0; i-- {
			if cerr := closers[i](); cerr != nil && err == nil {
				err = cerr
			}
		}
	}()

	// Keys: master key file (created once), keyring, audit signing key.
	masterText, err := readOrCreateSecret(filepath.Join(o.dataDir, serveMasterKeyFile), keys.GenerateMasterKey)
	if err != nil {
		return err
	}
	master, err := keys.ParseMasterKey(masterText)
	if err != nil {
		return fmt.Errorf("serve: master key %s: %w", serveMasterKeyFile, err)
	}
	krPath := filepath.Join(o.dataDir, serveKeyringFile)
	var kr *keys.Keyring
	if _, statErr := os.Stat(krPath); statErr == nil {
		kr, err = keys.OpenKeyring(ctx, krPath, master)
	} else {
		kr, err = keys.CreateKeyring(ctx, krPath, master, nil)
	}
	if err != nil {
		return fmt.Errorf("serve: keyring: %w", err)
	}
	closers = append(closers, kr.Close)
	signText, err := readOrCreateSecret(filepath.Join(o.dataDir, serveSigningKeyFile), func() (string, error) {
		k, err := seal.GenerateSigningKey(rand.Reader)
		if err != nil {
			return "", err
		}
		b, err := k.MarshalText()
		return string(b), err
	})
	if err != nil {
		return err
	}
	signer, err := seal.ParseSigningKeyText(strings.TrimSpace(signText))
	if err != nil {
		return fmt.Errorf("serve: audit signing key: %w", err)
	}
	pkgSigner, err := servePackageSigner(o)
	if err != nil {
		return err
	}

	// Metadata and the audit log.
	var st store.Store
	var as *store.AuditStore
	if o.postgres != "" {
		pg, err := store.OpenPostgres(ctx, o.postgres)
		if err != nil {
			return fmt.Errorf("serve: %w", err)
		}
		st = pg
		as, err = pg.AuditStore(ctx, "main")
		closers = append(closers, pg.Close)
		if err != nil {
			return fmt.Errorf("serve: %w", err)
		}
	} else {
		sq, err := store.Open(ctx, filepath.Join(o.dataDir, serveDBFile))
		if err != nil {
			return fmt.Errorf("serve: %w", err)
		}
		st = sq
		as, err = sq.AuditStore(ctx, "main")
		closers = append(closers, sq.Close)
		if err != nil {
			return fmt.Errorf("serve: %w", err)
		}
	}
	closers = append(closers, as.Close)
	lg, err := audit.Open(ctx, as, audit.Options{Origin: serveAuditOrigin, Signer: signer})
	if err != nil {
		return fmt.Errorf("serve: audit log: %w", err)
	}
	closers = append(closers, lg.Close)

	svc, err := service.New(service.Config{Store: st, Audit: lg, Keys: kr, ArtifactDir: filepath.Join(o.dataDir, serveArtifactDir),
		MaxConcurrent: o.maxConcurrent, Logger: logger, ArtifactTTL: o.artifactTTL, OperationTTL: o.operationTTL,
		Packages: service.PackageConfig{Signer: pkgSigner, AuditStore: as, Version: version, AuditKey: signer.Public()}})
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	// Serve closes the service on shutdown; this covers the early returns.
	closers = append(closers, func() error { return svc.Close(context.Background()) })
	if n, err := svc.Recover(ctx); err != nil {
		return fmt.Errorf("serve: recover: %w", err)
	} else if n > 0 {
		logger.Info("operations cut off by the last stop marked failed", "count", n, "code", store.ErrorCodeServerRestarted)
	}
	{ // the retention loop (service/retention.go), stopped before the store closes
		rctx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		interval := retentionInterval(o.artifactTTL, o.operationTTL)
		go func() { defer close(done); svc.RunRetention(rctx, interval) }()
		closers = append(closers, func() error { stop(); <-done; return nil })
	}
	operator, created, err := bootstrapOperator(ctx, st, o.dataDir)
	if err != nil {
		return err
	}
	if created {
		fmt.Fprintf(stdout, "bootstrap admin API key written to %s (mode 0600)\n", filepath.Join(o.dataDir, serveAdminKeyFile))
	}

	srv, err := server.New(server.Config{Service: svc, Store: st, Audit: lg, AuditStore: as, OperatorTenant: operator,
		Logger: logger, RateLimit: o.rateLimit})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	fmt.Fprintf(stdout, "tensafe serving on http://%s (data in %s)\n", ln.Addr(), o.dataDir)
	if ready != nil {
		ready(ln.Addr().String())
	}
	if err := srv.Serve(ctx, ln, o.grace); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "tensafe stopped")
	return nil
}

// serveResealInterval is how often the retention loop runs when no TTL is
// set: then it only re-seals accountant states left under an older KEK
// version after a rotation (service.ResealStaleStates), which asks the key
// provider once per tenant.
const serveResealInterval = 10 * time.Minute

// retentionInterval is the retention loop's period: a quarter of the
// shortest TTL set, between a second and a minute, so that nothing outlives
// its TTL by much; serveResealInterval when no TTL is set. The loop runs
// in every case: re-sealing stale accountant states after a KEK rotation
// rides on it.
func retentionInterval(artifactTTL, operationTTL time.Duration) time.Duration {
	shortest := time.Duration(0)
	for _, ttl := range []time.Duration{artifactTTL, operationTTL} {
		if ttl > 0 && (shortest == 0 || ttl < shortest) {
			shortest = ttl
		}
	}
	if shortest == 0 {
		return serveResealInterval
	}
	return min(max(shortest/4, time.Second), time.Minute)
}

// readOrCreateSecret returns the content of the secret file at path,
// creating it (mode 0600, never overwriting) with gen's output if missing.
// It refuses a file that others than its owner can read.
func readOrCreateSecret(path string, gen func() (string, error)) (string, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		fi, err := os.Stat(path)
		if err != nil {
			return "", fmt.Errorf("serve: %w", err)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			return "", fmt.Errorf("serve: %s is readable by others (mode %v); chmod 600 it", path, fi.Mode().Perm())
		}
		return string(b), nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("serve: %w", err)
	}
	s, err := gen()
	if err != nil {
		return "", fmt.Errorf("serve: generate %s: %w", filepath.Base(path), err)
	}
	if err := writeSecretFile(path, s+"\n"); err != nil {
		return "", err
	}
	return s, nil
}

// writeSecretFile creates path with mode 0600 and content, failing if it
// exists, and syncs it.
func writeSecretFile(path, content string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	if _, err := f.WriteString(content); err != nil {
		f.Close()
		return fmt.Errorf("serve: write %s: %w", filepath.Base(path), err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("serve: sync %s: %w", filepath.Base(path), err)
	}
	return f.Close()
}

// bootstrapOperator returns the operator tenant's id, creating the tenant and
// its admin key on first start (then created is true and the key's token is
// in <dataDir>/admin.key, mode 0600).
func bootstrapOperator(ctx context.Context, st store.Store, dataDir string) (id string, created bool, err error) {
	opPath := filepath.Join(dataDir, serveOperatorFile)
	if b, err := os.ReadFile(opPath); err == nil {
		id = strings.TrimSpace(string(b))
		if _, err := st.GetTenant(ctx, id); err != nil {
			return "", false, fmt.Errorf("serve: operator tenant %q of %s: %w", id, opPath, err)
		}
		return id, false, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", false, fmt.Errorf("serve: %w", err)
	}
	keyPath := filepath.Join(dataDir, serveAdminKeyFile)
	if _, err := os.Stat(keyPath); err == nil {
		return "", false, fmt.Errorf("serve: %s exists but %s does not; move the old key away to bootstrap a new operator", keyPath, opPath)
	}
	if id, err = store.NewID("tn"); err != nil {
		return "", false, err
	}
	if _, err := st.CreateTenant(ctx, store.Tenant{ID: id, Name: "operator"}); err != nil {
		return "", false, fmt.Errorf("serve: create operator tenant: %w", err)
	}
	_, tok, err := server.NewAPIKey(ctx, st, id, store.RoleAdmin)
	if err != nil {
		return "", false, err
	}
	if err := writeSecretFile(keyPath, tok+"\n"); err != nil {
		return "", false, err
	}
	if err := writeSecretFile(opPath, id+"\n"); err != nil {
		return "", false, err
	}
	return id, true, nil
}

// servePackageSigner reads the package signing key: --package-signer, or
// <data-dir>/package-signing.key, generated once (mode 0600). Clients pin its
// public half (GET /api/v1/signer, tensafe package signer).
func servePackageSigner(o serveOptions) (*seal.SigningKey, error) {
	gen := func() (string, error) {
		k, err := seal.GenerateSigningKey(rand.Reader)
		if err != nil {
			return "", err
		}
		b, err := k.MarshalText()
		return string(b), err
	}
	path := o.packageSigner
	if path == "" {
		path = filepath.Join(o.dataDir, servePackageKeyFile)
	} else if _, err := os.Stat(path); err != nil {
		// A named key file must exist: generating one in its place would
		// silently change the identity clients pinned.
		return nil, fmt.Errorf("serve: --package-signer: %w", err)
	}
	text, err := readOrCreateSecret(path, gen)
	if err != nil {
		return nil, err
	}
	k, err := seal.ParseSigningKeyText(strings.TrimSpace(text))
	if err != nil {
		return nil, fmt.Errorf("serve: package signing key %s: %w", path, err)
	}
	return k, nil
}
