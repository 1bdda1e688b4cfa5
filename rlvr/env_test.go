package rlvr_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/tensafe/tensafe/audit"
	"github.com/tensafe/tensafe/client"
	"github.com/tensafe/tensafe/keys"
	"github.com/tensafe/tensafe/server"
	"github.com/tensafe/tensafe/service"
	"github.com/tensafe/tensafe/store"
)

// newServer starts a real TenSafe server (SQLite store, audit log, keyring,
// service, HTTP layer) on a loopback httptest listener and returns an SDK
// client with a trainer key of a fresh tenant.
func newServer(t testing.TB) *client.ServiceClient {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	st, err := store.Open(ctx, filepath.Join(dir, "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	as, err := st.AuditStore(ctx, "main")
	if err != nil {
		t.Fatal(err)
	}
	lg, err := audit.Open(ctx, as, audit.Options{Origin: "tensafe.test/rlvr"})
	if err != nil {
		t.Fatal(err)
	}
	m, err := keys.RawMasterKey(bytes.Repeat([]byte{5}, keys.MasterKeySize))
	if err != nil {
		t.Fatal(err)
	}
	kr, err := keys.CreateKeyring(ctx, filepath.Join(dir, "keyring"), m, nil)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := service.New(service.Config{Store: st, Audit: lg, Keys: kr, ArtifactDir: filepath.Join(dir, "artifacts"), MaxConcurrent: 2})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	tn, _ := store.NewID("tn")
	if _, err := st.CreateTenant(ctx, store.Tenant{ID: tn, Name: "rl"}); err != nil {
		t.Fatal(err)
	}
	op, _ := store.NewID("tn")
	if _, err := st.CreateTenant(ctx, store.Tenant{ID: op, Name: "operator"}); err != nil {
		t.Fatal(err)
	}
	_, tok, err := server.NewAPIKey(ctx, st, tn, store.RoleTrainer)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Config{Service: svc, Store: st, Audit: lg, AuditStore: as, OperatorTenant: op,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), RateLimit: -1, MaxTenantOps: -1})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(func() {
		hs.Close()
		if err := svc.Close(ctx); err != nil {
			t.Error(err)
		}
		lg.Close()
		kr.Close()
		st.Close()
	})
	c, err := client.New(hs.URL, tok, client.WithPollWait(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	return c
}
