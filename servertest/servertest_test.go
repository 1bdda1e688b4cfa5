package servertest_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tensafe/tensafe/seal"
	"github.com/tensafe/tensafe/server"
	"github.com/tensafe/tensafe/servertest"
	"github.com/tensafe/tensafe/service"
	"github.com/tensafe/tensafe/store"
)

func get(t *testing.T, s *servertest.Server, path, tok string) *http.Response {
	t.Helper()
	req, err := http.NewRequest("GET", s.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// TestKeys: the keys Key returns authenticate as their tenant and role; a
// revoked key, another tenant's view and no key are refused.
func TestKeys(t *testing.T) {
	s := servertest.New(t)
	if !strings.HasPrefix(s.URL, "http://127.0.0.1:") {
		t.Fatalf("URL %q, want a loopback listener", s.URL)
	}
	a := s.Tenant(t, "A")
	viewer := s.Key(t, a, store.RoleViewer)
	revoked := s.RevokedKey(t, a, store.RoleTrainer)
	for _, tc := range []struct {
		name, path, tok string
		want            int
	}{
		{"health", "/healthz", "", http.StatusOK},
		{"viewer", "/api/v1/artifacts", viewer, http.StatusOK},
		{"no key", "/api/v1/artifacts", "", http.StatusUnauthorized},
		{"revoked", "/api/v1/artifacts", revoked, http.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if r := get(t, s, tc.path, tc.tok); r.StatusCode != tc.want {
				t.Fatalf("GET %s: %d, want %d", tc.path, r.StatusCode, tc.want)
			}
		})
	}
	// A viewer cannot create a training client: the role is the one asked for.
	req, _ := http.NewRequest("POST", s.URL+"/api/v1/training_clients", strings.NewReader("{}"))
	req.Header.Set("Authorization", "Bearer "+viewer)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("viewer creates a client: %d, want 403", resp.StatusCode)
	}
}

// TestAuditVerifies: the audit log the server writes (the service's
// recovery entry, the requests' entries) verifies, and is the one Audit
// names.
func TestAuditVerifies(t *testing.T) {
	s := servertest.New(t, servertest.WithOrigin("tensafe.test/servertest-audit"))
	tok := s.Key(t, s.Tenant(t, "A"), store.RoleViewer)
	r := get(t, s, "/api/v1/audit/verify", tok)
	if r.StatusCode != http.StatusOK {
		t.Fatalf("verify: %d", r.StatusCode)
	}
	var v server.AuditVerification
	if err := json.NewDecoder(r.Body).Decode(&v); err != nil {
		t.Fatal(err)
	}
	if !v.Verified || v.Origin != "tensafe.test/servertest-audit" || v.Size < 2 {
		t.Fatalf("verify answered %+v, want a verified log of origin tensafe.test/servertest-audit", v)
	}
	res, err := s.Audit.Verify(context.Background(), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if res.Size < v.Size {
		t.Fatalf("Audit has %d entries, the server verified %d", res.Size, v.Size)
	}
}

// TestOptions: the options reach the components they name.
func TestOptions(t *testing.T) {
	auditKey, err := seal.GenerateSigningKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pkgKey, err := seal.GenerateSigningKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var gotTTL time.Duration
	s := servertest.New(t,
		servertest.WithAuditSigner(auditKey),
		servertest.WithPackageSigner(pkgKey),
		servertest.WithArtifactTTL(time.Hour),
		servertest.WithServiceConfig(func(c *service.Config) { gotTTL = c.ArtifactTTL }),
		servertest.WithServerConfig(func(c *server.Config) { c.MaxBodyBytes = 64 }))
	if gotTTL != time.Hour {
		t.Fatalf("service ArtifactTTL %v, want 1h", gotTTL)
	}
	if k, err := s.Service.PackageSigner(); err != nil || !k.Equal(pkgKey.Public()) {
		t.Fatalf("package signer %v (%v), want %v", k, err, pkgKey.Public())
	}
	if k := s.Service.AuditCheckpointKey(); k == nil || !k.Equal(auditKey.Public()) {
		t.Fatalf("audit checkpoint key %v, want %v", k, auditKey.Public())
	}
	tok := s.Key(t, s.Tenant(t, "A"), store.RoleTrainer)
	req, _ := http.NewRequest("POST", s.URL+"/api/v1/training_clients", strings.NewReader(strings.Repeat(" ", 65)+"{}"))
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("a 67-byte body over MaxBodyBytes 64: %d, want 413", resp.StatusCode)
	}
}
