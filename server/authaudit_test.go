package server

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/tensafe/tensafe/api"
	"github.com/tensafe/tensafe/audit"
)

// auditFixture is a fixture that also keeps its audit log and store.
func auditFixture(t *testing.T) (*fixture, *audit.Log, audit.Store) {
	t.Helper()
	var lg *audit.Log
	var as audit.Store
	fx := newFixture(t, func(c *Config) { lg, as = c.Audit, c.AuditStore })
	return fx, lg, as
}

func auditEntries(t *testing.T, as audit.Store, op string) []audit.Entry {
	t.Helper()
	var out []audit.Entry
	err := as.Scan(context.Background(), 0, func(_ uint64, e audit.Entry) error {
		if op == "" || e.Operation == op {
			out = append(out, e)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// secretOf returns the secret part of a TenSafe API token.
func secretOf(tok string) string { return tok[strings.LastIndexByte(tok, '_')+1:] }

func TestAuthDenialsAudited(t *testing.T) {
	fx, _, as := auditFixture(t)
	// A key that is then revoked.
	var created APIKeyCreated
	fx.must(t, 201, fx.tok["A-admin"], "POST", "/api/v1/tenants/"+fx.tenA+"/api_keys", CreateAPIKeyRequest{Role: "viewer"}, &created)
	fx.must(t, 204, fx.tok["A-admin"], "DELETE", "/api/v1/api_keys/"+created.ID, nil, nil)

	good := fx.tok["A-trainer"]
	wrong := good[:len(good)-1] + map[bool]string{true: "b", false: "a"}[strings.HasSuffix(good, "a")]
	cases := []struct {
		name, tok, method, path string
		status                  int
		reason, tenant, keyID   string
		prefix                  bool
	}{
		{"missing", "", "GET", "/api/v1/artifacts", 401, "missing", "", "", false},
		{"garbage", "not-a-token", "GET", "/api/v1/artifacts", 401, "invalid", "", "", false},
		{"wrong secret", wrong, "GET", "/api/v1/artifacts", 401, "invalid", "", "", true},
		{"revoked", created.Token, "GET", "/api/v1/artifacts", 401, "revoked", fx.tenA, created.ID, true},
		{"viewer trains", fx.tok["A-viewer"], "POST", "/api/v1/training_clients", 403, "role", fx.tenA, fx.key["A-viewer"].ID, false},
	}
	for _, c := range cases {
		if r := fx.do(t, c.tok, c.method, c.path, "{}"); r.code != c.status {
			t.Fatalf("%s: status %d, want %d", c.name, r.code, c.status)
		}
	}
	es := auditEntries(t, as, OpAuthDenied)
	if len(es) != len(cases) {
		t.Fatalf("%d %s entries, want %d: %+v", len(es), OpAuthDenied, len(cases), es)
	}
	for i, c := range cases {
		e := es[i]
		if e.Outcome != audit.OutcomeDenied || e.TenantID != c.tenant || e.Details["reason"] != c.reason ||
			e.Details["status"] != fmt.Sprint(c.status) || e.Details[api.ComplianceCategoryKey] != api.CategoryAccess {
			t.Errorf("%s: entry %+v", c.name, e.Record)
		}
		if c.keyID != "" && e.Actor != c.keyID {
			t.Errorf("%s: actor %q, want %q", c.name, e.Actor, c.keyID)
		}
		if c.keyID == "" && e.Actor != "unauthenticated" {
			t.Errorf("%s: actor %q", c.name, e.Actor)
		}
		if got := e.Details["lookup_prefix"]; (got != "") != c.prefix || (c.prefix && !strings.Contains(c.tok, "_"+got+"_")) {
			t.Errorf("%s: lookup_prefix %q", c.name, got)
		}
		if e.Details["remote_addr"] == "" || e.Resource == "" {
			t.Errorf("%s: no remote address or route: %+v", c.name, e.Record)
		}
	}
	// No secret presented (or any token at all) is in the log.
	var all strings.Builder
	for _, e := range auditEntries(t, as, "") {
		fmt.Fprintf(&all, "%+v\n", e.Record)
	}
	for _, tok := range []string{good, wrong, created.Token, fx.tok["A-viewer"]} {
		if strings.Contains(all.String(), secretOf(tok)) {
			t.Fatalf("the audit log holds a token secret")
		}
	}
	if strings.Contains(all.String(), "not-a-token") {
		t.Fatal("the audit log holds a presented credential")
	}
}

func TestAdminRecordsTagged(t *testing.T) {
	fx, _, as := auditFixture(t)
	var created APIKeyCreated
	fx.must(t, 201, fx.tok["A-admin"], "POST", "/api/v1/tenants/"+fx.tenA+"/api_keys", CreateAPIKeyRequest{Role: "viewer"}, &created)
	fx.must(t, 204, fx.tok["A-admin"], "DELETE", "/api/v1/api_keys/"+created.ID, nil, nil)
	for _, op := range []string{"admin.create_api_key", "admin.revoke_api_key"} {
		es := auditEntries(t, as, op)
		if len(es) != 1 || es[0].Details[api.ComplianceCategoryKey] != api.CategoryChange {
			t.Fatalf("%s entries: %+v", op, es)
		}
	}
}

// TestAuthDenialAuditRateLimited floods denials from one address and from
// many: the log grows by the bucket sizes, the rest is counted in the
// metric and in one summary entry per interval.
func TestAuthDenialAuditRateLimited(t *testing.T) {
	_, lg, as := auditFixture(t)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a := newAuthAuditor(lg, func() time.Time { return now }, func(msg string, args ...any) { t.Errorf("%s %v", msg, args) })
	deny := func(addr string) {
		r := httptest.NewRequest("GET", "/api/v1/artifacts", nil)
		r.RemoteAddr = addr + ":4242"
		a.record(r, denial{status: http.StatusUnauthorized, code: api.CodeUnauthenticated, reason: "missing", route: "GET /api/v1/artifacts"})
	}
	// One address: its burst, then nothing.
	for range 1000 {
		deny("192.0.2.1")
	}
	if n := len(auditEntries(t, as, OpAuthDenied)); n != DefaultAuthAuditPerAddrBurst {
		t.Fatalf("one address: %d entries, want %d", n, DefaultAuthAuditPerAddrBurst)
	}
	// Many addresses: the global bucket (less what the first took).
	for i := range 1000 {
		deny(fmt.Sprintf("198.51.%d.%d", i/256, i%256))
	}
	written := len(auditEntries(t, as, OpAuthDenied))
	if written != DefaultAuthAuditGlobalBurst {
		t.Fatalf("many addresses: %d entries, want %d", written, DefaultAuthAuditGlobalBurst)
	}
	suppressed := 2000 - written
	var m dto.Metric
	if err := a.denials.WithLabelValues("401", "false").Write(&m); err != nil {
		t.Fatal(err)
	}
	if got := m.GetCounter().GetValue(); got != float64(suppressed) {
		t.Fatalf("suppressed counter %v, want %d", got, suppressed)
	}
	if n := len(auditEntries(t, as, OpAuthDeniedSummary)); n != 0 {
		t.Fatalf("%d summaries before the interval ended", n)
	}
	// The interval ends: the next denial writes the summary (and, the
	// buckets having refilled, itself).
	now = now.Add(DefaultAuthAuditSummary)
	deny("192.0.2.1")
	sums := auditEntries(t, as, OpAuthDeniedSummary)
	if len(sums) != 1 {
		t.Fatalf("%d summaries", len(sums))
	}
	d := sums[0].Details
	// The first address, and the many whose denials found the global
	// bucket empty.
	addrs := 1 + 1000 - (DefaultAuthAuditGlobalBurst - DefaultAuthAuditPerAddrBurst)
	if d["suppressed_count"] != fmt.Sprint(suppressed) || d["address_count"] != fmt.Sprint(addrs) || d[api.ComplianceCategoryKey] != api.CategoryAccess {
		t.Fatalf("summary %+v", sums[0].Record)
	}
	if n := len(auditEntries(t, as, OpAuthDenied)); n != written+1 {
		t.Fatalf("after refill: %d entries, want %d", n, written+1)
	}
	// Nothing suppressed since: no further summary.
	now = now.Add(2 * DefaultAuthAuditSummary)
	a.flush(context.Background(), true)
	if n := len(auditEntries(t, as, OpAuthDeniedSummary)); n != 1 {
		t.Fatalf("%d summaries after an interval without suppression", n)
	}
}

// TestComplianceFailuresAuditedWhenLimited: compliance metrics asked twice
// in a row from one address report failures audited both times, though the
// second probe finds the address's audit bucket spent (its 401s are then
// counted for the summary).
func TestComplianceFailuresAuditedWhenLimited(t *testing.T) {
	fx, _, as := auditFixture(t)
	fixed := time.Now()
	fx.srv.denied.now = func() time.Time { return fixed }
	for i := range 2 {
		var m api.ComplianceMetrics
		fx.must(t, 200, fx.tok["op"], "GET", "/api/v1/compliance/metrics", nil, &m)
		if !m.Authentication.FailuresAudited {
			t.Fatalf("call %d: failures not audited", i)
		}
	}
	if n := len(auditEntries(t, as, OpAuthDenied)); n != DefaultAuthAuditPerAddrBurst {
		t.Fatalf("%d denial entries, want the burst %d", n, DefaultAuthAuditPerAddrBurst)
	}
}

// TestAuthDenialSummaryOnStop: what was suppressed when the server stops is
// summarized then, not lost.
func TestAuthDenialSummaryOnStop(t *testing.T) {
	_, lg, as := auditFixture(t)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a := newAuthAuditor(lg, func() time.Time { return now }, func(msg string, args ...any) { t.Errorf("%s %v", msg, args) })
	for range DefaultAuthAuditPerAddrBurst + 5 {
		r := httptest.NewRequest("GET", "/api/v1/artifacts", nil)
		a.record(r, denial{status: http.StatusUnauthorized, code: api.CodeUnauthenticated, reason: "missing", route: "GET /api/v1/artifacts"})
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.run(ctx); close(done) }()
	cancel()
	<-done
	sums := auditEntries(t, as, OpAuthDeniedSummary)
	if len(sums) != 1 || sums[0].Details["suppressed_count"] != "5" {
		t.Fatalf("summaries at stop: %+v", sums)
	}
}
