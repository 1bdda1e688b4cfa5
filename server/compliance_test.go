package server

import (
	"crypto/sha256"
	"encoding/hex"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tensafe/tensafe/api"
)

// TestComplianceMetricsHTTP: admins only; an operator admin sees the
// deployment, a tenant admin its tenant; the metrics are measured (the
// anonymous routes are probed, tenant isolation is probed, the log is
// verified and the verification is itself an AUDIT_LOG event).
func TestComplianceMetricsHTTP(t *testing.T) {
	f := newFixture(t, nil)
	_, _, sv := f.trained(t)
	for _, who := range []string{"A-trainer", "A-viewer"} {
		if r := f.do(t, f.tok[who], "GET", "/api/v1/compliance/metrics", nil); r.code != 403 {
			t.Fatalf("%s: %d", who, r.code)
		}
	}
	if r := f.do(t, "", "GET", "/api/v1/compliance/metrics", nil); r.code != 401 {
		t.Fatalf("anonymous: %d", r.code)
	}
	var m api.ComplianceMetrics
	f.must(t, 200, f.tok["op"], "GET", "/api/v1/compliance/metrics", nil, &m)
	if m.Scope != "deployment" || m.Format != api.ComplianceMetricsFormat {
		t.Fatalf("scope %q format %q", m.Scope, m.Format)
	}
	for _, want := range []string{"GET /healthz", "GET /metrics", "GET /readyz"} {
		if !slices.Contains(m.Authentication.AnonymousRoutes, want) {
			t.Errorf("anonymous routes %v lack %s", m.Authentication.AnonymousRoutes, want)
		}
	}
	for _, r := range m.Authentication.AnonymousRoutes {
		for _, guarded := range []string{"training_clients", "/artifacts", "/audit", "tenants", "api_keys", "compliance", "futures"} {
			if strings.Contains(r, guarded) {
				t.Errorf("%s answers without a key", r)
			}
		}
	}
	// The anonymous and viewer refusals above were audited (auth.denied).
	if m.Authentication.ActiveKeys != 6 || !m.Authentication.FailuresAudited || m.Authorization.Tenants != 3 ||
		m.Authorization.KeysByRole["admin"] != 3 || !m.Authorization.TenantIsolation {
		t.Errorf("auth %+v %+v", m.Authentication, m.Authorization)
	}
	if !m.AuditLog.Verified || m.AuditLog.Size == 0 || len(m.AuditLog.Root) != 64 {
		t.Errorf("audit %+v", m.AuditLog)
	}
	if !m.Encryption.AllVerified || m.Encryption.ArtifactsVerified != 1 || len(m.Artifacts) != 1 || m.Artifacts[0].ContentHash != sv.ContentHash {
		t.Errorf("encryption %+v artifacts %+v", m.Encryption, m.Artifacts)
	}
	if !m.Determinism.Greedy || len(m.TrainingClients) != 1 || m.Events[api.CategoryChange] == 0 || m.Events[api.CategoryEncryption] == 0 {
		t.Errorf("determinism %+v clients %+v events %v", m.Determinism, m.TrainingClients, m.Events)
	}
	// Tenant B's admin sees its own tenant only.
	var mb api.ComplianceMetrics
	f.must(t, 200, f.tok["B-admin"], "GET", "/api/v1/compliance/metrics", nil, &mb)
	if mb.Scope != "tenant" || mb.TenantID != f.tenB || len(mb.Artifacts) != 0 || len(mb.TrainingClients) != 0 || mb.Authorization.Tenants != 1 {
		t.Errorf("tenant B metrics %+v", mb)
	}
	// The verification was recorded.
	var page api.ComplianceEventsPage
	f.must(t, 200, f.tok["op"], "GET", "/api/v1/compliance/events?category=AUDIT_LOG", nil, &page)
	if len(page.Events) != 2 || page.Events[0].Operation != "compliance.audit_verify" || page.Events[0].Outcome != "success" {
		t.Fatalf("AUDIT_LOG events %+v", page.Events)
	}
}

func TestComplianceEventsHTTP(t *testing.T) {
	f := newFixture(t, nil)
	f.trained(t)
	start := time.Now()
	// admin actions are written by the server, tagged through
	// service.TagCompliance like the service's records
	var k struct{ ID string }
	f.must(t, 201, f.tok["B-admin"], "POST", "/api/v1/tenants/"+f.tenB+"/api_keys", map[string]string{"role": "viewer"}, &k)

	var all api.ComplianceEventsPage
	f.must(t, 200, f.tok["op"], "GET", "/api/v1/compliance/events", nil, &all)
	cats := map[string]int{}
	for _, e := range all.Events {
		cats[e.Category]++
		if e.EntryHash == "" || e.Actor == "" {
			t.Errorf("event %+v", e)
		}
	}
	if cats[api.CategoryChange] < 2 || cats[api.CategoryEncryption] != 1 {
		t.Fatalf("categories %v", cats)
	}
	var derived bool
	for _, e := range all.Events {
		if e.Operation == "admin.create_api_key" {
			derived = !e.Derived && e.Category == api.CategoryChange && e.Details[api.ComplianceCategoryKey] == api.CategoryChange
		}
		if e.Operation == "training.save_state" && (e.Derived || e.Details[api.ComplianceCategoryKey] != api.CategoryEncryption) {
			t.Errorf("save_state event not tagged in the log: %+v", e)
		}
	}
	if !derived {
		t.Error("admin.create_api_key not tagged CHANGE in the log")
	}
	// Tenant scope: B's admin sees only B's events.
	var pb api.ComplianceEventsPage
	f.must(t, 200, f.tok["B-admin"], "GET", "/api/v1/compliance/events", nil, &pb)
	for _, e := range pb.Events {
		if e.TenantID != f.tenB {
			t.Errorf("tenant B sees %+v", e)
		}
	}
	if len(pb.Events) != 1 {
		t.Errorf("tenant B events %+v", pb.Events)
	}
	// Filters: category and time.
	var enc api.ComplianceEventsPage
	f.must(t, 200, f.tok["op"], "GET", "/api/v1/compliance/events?category=encryption,ACCESS", nil, &enc)
	if len(enc.Events) != 1 || enc.Events[0].Operation != "training.save_state" {
		t.Errorf("category filter %+v", enc.Events)
	}
	var since api.ComplianceEventsPage
	f.must(t, 200, f.tok["op"], "GET", "/api/v1/compliance/events?since="+url.QueryEscape(start.UTC().Format(time.RFC3339Nano)), nil, &since)
	if len(since.Events) != 1 || since.Events[0].Operation != "admin.create_api_key" {
		t.Errorf("since filter %+v", since.Events)
	}
	var until api.ComplianceEventsPage
	f.must(t, 200, f.tok["op"], "GET", "/api/v1/compliance/events?until="+url.QueryEscape(start.UTC().Format(time.RFC3339Nano)), nil, &until)
	if len(until.Events) != len(all.Events)-1 {
		t.Errorf("until filter: %d of %d", len(until.Events), len(all.Events))
	}
	// Paging.
	var p1 api.ComplianceEventsPage
	f.must(t, 200, f.tok["op"], "GET", "/api/v1/compliance/events?limit=1", nil, &p1)
	if len(p1.Events) != 1 || !p1.More {
		t.Fatalf("page 1 %+v", p1)
	}
	var p2 api.ComplianceEventsPage
	f.must(t, 200, f.tok["op"], "GET", "/api/v1/compliance/events?limit=1&after="+itoa(p1.NextAfter), nil, &p2)
	if len(p2.Events) != 1 || p2.Events[0].Seq <= p1.Events[0].Seq || p2.Events[0].Seq != all.Events[1].Seq {
		t.Fatalf("page 2 %+v after %+v", p2, p1)
	}
	for _, c := range []struct{ q, field string }{
		{"category=FOO", "category"}, {"since=yesterday", "since"}, {"until=1", "until"}, {"after=-2", "after"}, {"limit=0", "limit"},
	} {
		r := f.do(t, f.tok["op"], "GET", "/api/v1/compliance/events?"+c.q, nil)
		if r.code != 400 || r.envelope(t).Field != c.field {
			t.Errorf("%s: %d %s", c.q, r.code, r.body)
		}
	}
	if r := f.do(t, f.tok["A-trainer"], "GET", "/api/v1/compliance/events", nil); r.code != 403 {
		t.Errorf("trainer: %d", r.code)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func TestRecordScanHTTP(t *testing.T) {
	f := newFixture(t, nil)
	var res api.ScanSummaryResult
	f.must(t, 201, f.tok["A-admin"], "POST", "/api/v1/compliance/scans", api.ScanSummaryRequest{Kind: "secrets", Target: "data/train.jsonl",
		Files: 2, Bytes: 100, Findings: 3, Counts: map[string]int{"github_token": 1, "stripe_secret_key": 2},
		ReportSHA256: "sha256:" + strings.Repeat("0a", 32)}, &res)
	if res.Category != api.CategorySecretsScan || res.Seq == 0 {
		t.Fatalf("result %+v", res)
	}
	var page api.ComplianceEventsPage
	f.must(t, 200, f.tok["A-admin"], "GET", "/api/v1/compliance/events?category=SECRETS_SCAN", nil, &page)
	if len(page.Events) != 1 || page.Events[0].Details["counts"] != "github_token:1 stripe_secret_key:2" ||
		page.Events[0].Outcome != "failure" || page.Events[0].TenantID != f.tenA || page.Events[0].Derived {
		t.Fatalf("events %+v", page.Events)
	}
	// A target the audit log's checks would refuse (a temporary directory's
	// random name reads as key material) is recorded by its digest.
	tmp := "/tmp/TestEvidencePack1234567890/001/k8Jd93hFq0Zx7Lm2Np4Rs6Tu8Vw0Yb3Cd5Ef"
	var tres api.ScanSummaryResult
	f.must(t, 201, f.tok["A-admin"], "POST", "/api/v1/compliance/scans", api.ScanSummaryRequest{Kind: "pii", Target: tmp,
		Counts: map[string]int{}}, &tres)
	f.must(t, 200, f.tok["A-admin"], "GET", "/api/v1/compliance/events?category=PII_SCAN", nil, &page)
	sum := sha256.Sum256([]byte(tmp))
	if len(page.Events) != 1 || page.Events[0].Details["target"] != "sha256:"+hex.EncodeToString(sum[:]) {
		t.Fatalf("scan of a random-named path: events %+v", page.Events)
	}
	ok := api.ScanSummaryRequest{Kind: "pii", Target: "x", Counts: map[string]int{}}
	for _, c := range []struct {
		mod   func(*api.ScanSummaryRequest)
		field string
	}{
		{func(r *api.ScanSummaryRequest) { r.Kind = "both" }, "kind"},
		{func(r *api.ScanSummaryRequest) { r.Target = "" }, "target"},
		{func(r *api.ScanSummaryRequest) { r.Target = "a\nb" }, "target"},
		{func(r *api.ScanSummaryRequest) { r.Files = -1 }, "files_scanned"},
		{func(r *api.ScanSummaryRequest) { r.Counts = map[string]int{"Email!": 1}; r.Findings = 1 }, "counts"},
		{func(r *api.ScanSummaryRequest) { r.Counts = map[string]int{"email": 2}; r.Findings = 1 }, "findings"},
		{func(r *api.ScanSummaryRequest) { r.ReportSHA256 = "md5:00" }, "report_sha256"},
	} {
		req := ok
		req.Counts = map[string]int{}
		c.mod(&req)
		r := f.do(t, f.tok["A-admin"], "POST", "/api/v1/compliance/scans", req)
		if r.code != 400 || r.envelope(t).Field != c.field {
			t.Errorf("%+v: %d %s", req, r.code, r.body)
		}
	}
	if r := f.do(t, f.tok["A-admin"], "POST", "/api/v1/compliance/scans", `{"kind":"pii","target":"x","files_scanned":0,"bytes_scanned":0,"findings":0,"value":"x"}`); r.code != 400 {
		t.Errorf("unknown field: %d", r.code)
	}
	if r := f.do(t, f.tok["A-trainer"], "POST", "/api/v1/compliance/scans", ok); r.code != 403 {
		t.Errorf("trainer: %d", r.code)
	}
}
