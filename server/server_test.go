package server

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tensafe/tensafe/api"
	"github.com/tensafe/tensafe/audit"
	"github.com/tensafe/tensafe/keys"
	"github.com/tensafe/tensafe/service"
	"github.com/tensafe/tensafe/store"
)

// syncBuffer collects logs written from many goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

type fixture struct {
	srv  *Server
	http *httptest.Server
	st   *store.SQLite
	svc  *service.Service
	logs *syncBuffer
	// tokens by "<tenant letter>-<role>": A-admin, A-trainer, A-viewer,
	// B-admin, B-trainer, op (the operator admin).
	tok  map[string]string
	key  map[string]store.APIKey
	tenA string
	tenB string
}

func newFixture(t testing.TB, mod func(*Config)) *fixture {
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
	lg, err := audit.Open(ctx, as, audit.Options{Origin: "tensafe.test/audit"})
	if err != nil {
		t.Fatal(err)
	}
	m, err := keys.RawMasterKey(bytes.Repeat([]byte{7}, keys.MasterKeySize))
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
	f := &fixture{st: st, svc: svc, logs: &syncBuffer{}, tok: map[string]string{}, key: map[string]store.APIKey{}}
	tenants := map[string]string{}
	for _, name := range []string{"op", "A", "B"} {
		id, _ := store.NewID("tn")
		if _, err := st.CreateTenant(ctx, store.Tenant{ID: id, Name: "tenant " + name}); err != nil {
			t.Fatal(err)
		}
		tenants[name] = id
	}
	f.tenA, f.tenB = tenants["A"], tenants["B"]
	for _, k := range []struct {
		name, tenant string
		role         store.Role
	}{
		{"op", "op", store.RoleAdmin}, {"A-admin", "A", store.RoleAdmin}, {"A-trainer", "A", store.RoleTrainer},
		{"A-viewer", "A", store.RoleViewer}, {"B-admin", "B", store.RoleAdmin}, {"B-trainer", "B", store.RoleTrainer},
	} {
		key, tok, err := NewAPIKey(ctx, st, tenants[k.tenant], k.role)
		if err != nil {
			t.Fatal(err)
		}
		f.tok[k.name], f.key[k.name] = tok, key
	}
	cfg := Config{Service: svc, Store: st, Audit: lg, AuditStore: as, OperatorTenant: tenants["op"],
		Logger: slog.New(slog.NewJSONHandler(f.logs, nil)), RateLimit: -1}
	if mod != nil {
		mod(&cfg)
	}
	f.srv, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.http = httptest.NewServer(f.srv)
	t.Cleanup(func() {
		f.http.Close()
		if err := svc.Close(ctx); err != nil {
			t.Error(err)
		}
		lg.Close()
		kr.Close()
		st.Close()
	})
	return f
}

type resp struct {
	code int
	hdr  http.Header
	body []byte
}

func (r resp) envelope(t testing.TB) api.ErrorBody {
	t.Helper()
	var e api.ErrorResponse
	if err := json.Unmarshal(r.body, &e); err != nil || e.Error.Code == "" {
		t.Fatalf("status %d: not an error envelope: %s", r.code, r.body)
	}
	return e.Error
}

func (f *fixture) do(t testing.TB, tok, method, path string, body any, hdr ...string) resp {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, f.http.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := f.http.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp{res.StatusCode, res.Header, b}
}

// must does a request and decodes a response of status want into out.
func (f *fixture) must(t testing.TB, want int, tok, method, path string, body, out any) {
	t.Helper()
	r := f.do(t, tok, method, path, body)
	if r.code != want {
		t.Fatalf("%s %s: status %d, want %d: %s", method, path, r.code, want, r.body)
	}
	if out != nil {
		if err := json.Unmarshal(r.body, out); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, r.body)
		}
	}
}

func ptr[T any](v T) *T { return &v }

func tinyConfig(sigma, target float64, batch int, dataset int64) api.TrainingConfig {
	return api.TrainingConfig{
		BaseModel: "tensafe-tiny",
		LoRA:      api.LoRAConfig{Rank: 2, Alpha: 4},
		DP: &api.DPConfig{NoiseMultiplier: sigma, MaxGradNorm: 1, TargetEpsilon: target, TargetDelta: 1e-5,
			DatasetSize: dataset, ExpectedBatchSize: batch},
		Optimizer: api.OptimizerConfig{LearningRate: ptr(1e-2)},
		Seed:      1,
	}
}

func textBatch(texts ...string) api.Batch {
	var b api.Batch
	for _, s := range texts {
		ids := []int{256}
		for _, c := range []byte(s) {
			ids = append(ids, int(c))
		}
		b.InputIDs = append(b.InputIDs, ids)
		b.Labels = append(b.Labels, ids)
	}
	return b
}

// await long-polls a future until it is done and requires success.
func (f *fixture) await(t testing.TB, tok string, fut api.Future, out any) api.Future {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for !fut.Done() {
		if time.Now().After(deadline) {
			t.Fatalf("future %s (%s) not done", fut.ID, fut.Kind)
		}
		f.must(t, 200, tok, "GET", "/api/v1/futures/"+fut.ID+"?wait=10", nil, &fut)
	}
	if fut.State != api.FutureSucceeded {
		t.Fatalf("%s: %s %+v", fut.Kind, fut.State, fut.Error)
	}
	if out != nil {
		if err := json.Unmarshal(fut.Result, out); err != nil {
			t.Fatal(err)
		}
	}
	return fut
}

// trained sets up, as tenant A's trainer, a client with one step taken and a
// saved checkpoint; it returns the client, the last future and the artifact.
func (f *fixture) trained(t testing.TB) (api.TrainingClient, api.Future, api.SaveStateResult) {
	t.Helper()
	tok := f.tok["A-trainer"]
	var tc api.TrainingClient
	f.must(t, 201, tok, "POST", "/api/v1/training_clients", tinyConfig(1, 8, 2, 100), &tc)
	p := "/api/v1/training_clients/" + tc.ID
	var fut api.Future
	f.must(t, 202, tok, "POST", p+"/forward_backward", api.ForwardBackwardRequest{Batch: textBatch("hi", "yo")}, &fut)
	f.await(t, tok, fut, nil)
	f.must(t, 202, tok, "POST", p+"/optim_step", struct{}{}, &fut)
	f.await(t, tok, fut, nil)
	var sv api.SaveStateResult
	f.must(t, 202, tok, "POST", p+"/save_state", api.SaveStateRequest{Name: "one"}, &fut)
	fut = f.await(t, tok, fut, &sv)
	return tc, fut, sv
}

func TestTrainingOverHTTP(t *testing.T) {
	f := newFixture(t, nil)
	tok := f.tok["A-trainer"]
	tc, _, sv := f.trained(t)
	p := "/api/v1/training_clients/" + tc.ID

	var m api.DPMetrics
	f.must(t, 200, f.tok["A-viewer"], "GET", p+"/dp_metrics", nil, &m)
	if m.Steps != 1 || !(m.EpsilonSpent > 0) || m.Accountant != "rdp" {
		t.Fatalf("dp_metrics %+v", m)
	}
	var got api.TrainingClient
	f.must(t, 200, f.tok["A-viewer"], "GET", p, nil, &got)
	if got.ID != tc.ID || got.Step != 1 {
		t.Fatalf("client %+v", got)
	}

	var fut api.Future
	var sr api.SampleResult
	f.must(t, 202, tok, "POST", p+"/sample", api.SampleRequest{PromptTokens: []int{256, 104}, MaxTokens: 3}, &fut)
	f.await(t, tok, fut, &sr)
	if len(sr.Sequences) != 1 || len(sr.Sequences[0].Tokens) == 0 {
		t.Fatalf("sample %+v", sr)
	}

	var arts []api.Artifact
	f.must(t, 200, f.tok["A-viewer"], "GET", "/api/v1/artifacts", nil, &arts)
	if len(arts) != 1 || arts[0].ID != sv.ArtifactID || arts[0].ContentHash != sv.ContentHash {
		t.Fatalf("artifacts %+v, saved %+v", arts, sv)
	}
	var art api.Artifact
	f.must(t, 200, f.tok["A-viewer"], "GET", "/api/v1/artifacts/"+sv.ArtifactID, nil, &art)
	dl := f.do(t, f.tok["A-viewer"], "GET", "/api/v1/artifacts/"+sv.ArtifactID+"/download", nil)
	if dl.code != 200 || len(dl.body) == 0 || dl.hdr.Get("X-Content-Hash") != sv.ContentHash {
		t.Fatalf("download: %d, %d bytes, hash %q", dl.code, len(dl.body), dl.hdr.Get("X-Content-Hash"))
	}

	// load_state into a new client carries the budget over.
	var tc2 api.TrainingClient
	f.must(t, 201, tok, "POST", "/api/v1/training_clients", tinyConfig(1, 8, 2, 100), &tc2)
	var ls api.LoadStateResult
	f.must(t, 202, tok, "POST", "/api/v1/training_clients/"+tc2.ID+"/load_state", api.LoadStateRequest{ArtifactID: sv.ArtifactID}, &fut)
	f.await(t, tok, fut, &ls)
	if ls.Step != 1 || ls.EpsilonSpent != m.EpsilonSpent {
		t.Fatalf("load_state %+v, metrics %+v", ls, m)
	}

	// A short long-poll answers the future as it stands, whatever its state.
	var fb api.Future
	f.must(t, 202, tok, "POST", p+"/forward", api.ForwardRequest{Batch: textBatch("abc")}, &fb)
	var polled api.Future
	f.must(t, 200, tok, "GET", "/api/v1/futures/"+fb.ID+"?wait=0.001", nil, &polled)
	if polled.ID != fb.ID {
		t.Fatalf("polled %+v", polled)
	}
	f.await(t, tok, polled, nil)
	// The bearer scheme is case-insensitive.
	req, _ := http.NewRequest("GET", f.http.URL+"/api/v1/artifacts", nil)
	req.Header.Set("Authorization", "bearer "+tok)
	if res, err := f.http.Client().Do(req); err != nil || res.StatusCode != 200 {
		t.Fatalf("lowercase bearer: %v %v", res, err)
	} else {
		res.Body.Close()
	}

	// Idempotency-Key: the same key returns the same future.
	r1 := f.do(t, tok, "POST", "/api/v1/training_clients/"+tc2.ID+"/forward", api.ForwardRequest{Batch: textBatch("a")}, "Idempotency-Key", "k-1")
	r2 := f.do(t, tok, "POST", "/api/v1/training_clients/"+tc2.ID+"/forward", api.ForwardRequest{Batch: textBatch("a")}, "Idempotency-Key", "k-1")
	var f1, f2 api.Future
	if json.Unmarshal(r1.body, &f1) != nil || json.Unmarshal(r2.body, &f2) != nil || f1.ID == "" || f1.ID != f2.ID {
		t.Fatalf("idempotency: %d %s / %d %s", r1.code, r1.body, r2.code, r2.body)
	}
	f.await(t, tok, f1, nil)

	// Audit: A sees its own entries only, the chain verifies.
	var page AuditPage
	f.must(t, 200, f.tok["A-viewer"], "GET", "/api/v1/audit?limit=1000", nil, &page)
	if len(page.Entries) < 5 {
		t.Fatalf("audit: %d entries", len(page.Entries))
	}
	for _, e := range page.Entries {
		if e.TenantID != f.tenA {
			t.Fatalf("tenant A sees entry of %q", e.TenantID)
		}
	}
	var page2 AuditPage
	f.must(t, 200, f.tok["A-viewer"], "GET", "/api/v1/audit?limit=2&after=0", nil, &page2)
	if len(page2.Entries) != 2 || page2.Entries[0].Seq == 0 || page2.NextAfter != int64(page2.Entries[1].Seq) {
		t.Fatalf("audit page %+v", page2)
	}
	var bpage AuditPage
	f.must(t, 200, f.tok["B-trainer"], "GET", "/api/v1/audit", nil, &bpage)
	if len(bpage.Entries) != 0 {
		t.Fatalf("tenant B sees %d entries of A", len(bpage.Entries))
	}
	var v AuditVerification
	f.must(t, 200, f.tok["A-viewer"], "GET", "/api/v1/audit/verify", nil, &v)
	if !v.Verified || v.Size < uint64(len(page.Entries)) {
		t.Fatalf("verify %+v", v)
	}

	f.must(t, 204, tok, "DELETE", p, nil, nil)
	if r := f.do(t, tok, "GET", p+"/dp_metrics", nil); r.code != 404 {
		t.Fatalf("deleted client: %d %s", r.code, r.body)
	}

	// Logs name requests, never tokens.
	logs := f.logs.String()
	for name, tk := range f.tok {
		if strings.Contains(logs, tk) {
			t.Fatalf("logs contain the token of %s", name)
		}
	}
	if !strings.Contains(logs, `"route":"POST /api/v1/training_clients/{id}/forward_backward"`) {
		t.Fatalf("no request log lines:\n%s", logs)
	}
}

// idRoutes lists every route with an id, with a valid body.
func idRoutes(tc, fut, art, key, tenant string) [][3]string {
	p := "/api/v1/training_clients/" + tc
	fb, _ := json.Marshal(api.ForwardBackwardRequest{Batch: textBatch("x")})
	ls, _ := json.Marshal(api.LoadStateRequest{ArtifactID: art})
	return [][3]string{
		{"GET", p, ""}, {"DELETE", p, ""},
		{"POST", p + "/forward_backward", string(fb)}, {"POST", p + "/forward", string(fb)},
		{"POST", p + "/optim_step", "{}"}, {"POST", p + "/sample", `{"prompt_tokens":[1],"max_tokens":1}`},
		{"POST", p + "/save_state", "{}"}, {"POST", p + "/load_state", string(ls)},
		{"GET", p + "/dp_metrics", ""}, {"GET", "/api/v1/futures/" + fut, ""}, {"GET", "/api/v1/futures/" + fut + "?wait=1", ""},
		{"GET", "/api/v1/artifacts/" + art, ""}, {"GET", "/api/v1/artifacts/" + art + "/download", ""},
		{"POST", "/api/v1/tenants/" + tenant + "/api_keys", `{"role":"viewer"}`}, {"DELETE", "/api/v1/api_keys/" + key, ""},
	}
}

func TestSecurityMatrix(t *testing.T) {
	f := newFixture(t, nil)
	tc, fut, sv := f.trained(t)
	routes := idRoutes(tc.ID, fut.ID, sv.ArtifactID, f.key["A-viewer"].ID, f.tenA)
	all := append(routes, [][3]string{
		{"POST", "/api/v1/training_clients", "{}"}, {"GET", "/api/v1/artifacts", ""}, {"GET", "/api/v1/audit", ""},
		{"GET", "/api/v1/audit/verify", ""}, {"POST", "/api/v1/tenants", `{"name":"x"}`},
	}...)

	t.Run("no key 401", func(t *testing.T) {
		for _, r := range all {
			for _, tok := range []string{"", "not-a-key", "tsk_" + strings.Repeat("a", 40)} {
				res := f.do(t, tok, r[0], r[1], r[2])
				if res.code != 401 || res.envelope(t).Code != api.CodeUnauthenticated {
					t.Errorf("%s %s with %q: %d %s", r[0], r[1], tok, res.code, res.body)
				}
			}
		}
	})
	t.Run("other tenant 404", func(t *testing.T) {
		for _, tok := range []string{f.tok["B-trainer"], f.tok["B-admin"]} {
			for _, r := range routes {
				if strings.Contains(r[1], "/tenants/") || strings.Contains(r[1], "/api_keys/") {
					if tok != f.tok["B-admin"] {
						continue // 403 for a trainer: admin routes are checked by role first
					}
				}
				res := f.do(t, tok, r[0], r[1], r[2])
				if res.code != 404 || res.envelope(t).Code != api.CodeNotFound {
					t.Errorf("%s %s as B: %d %s", r[0], r[1], res.code, res.body)
				}
			}
		}
		// A missing id answers the same.
		for _, r := range idRoutes("tc_missing", "op_missing", "ar_missing", "key_missing", "tn_missing") {
			if strings.Contains(r[1], "/tenants/") || r[0] == "POST" && strings.HasSuffix(r[1], "/load_state") {
				continue
			}
			res := f.do(t, f.tok["A-admin"], r[0], r[1], r[2])
			if res.code != 404 {
				t.Errorf("%s %s missing: %d %s", r[0], r[1], res.code, res.body)
			}
		}
	})
	t.Run("viewer cannot train", func(t *testing.T) {
		for _, r := range all {
			if r[0] == "GET" {
				continue
			}
			res := f.do(t, f.tok["A-viewer"], r[0], r[1], r[2])
			if res.code != 403 || res.envelope(t).Code != api.CodePermissionDenied {
				t.Errorf("%s %s as viewer: %d %s", r[0], r[1], res.code, res.body)
			}
		}
		// and nothing changed
		var got api.TrainingClient
		f.must(t, 200, f.tok["A-viewer"], "GET", "/api/v1/training_clients/"+tc.ID, nil, &got)
		if got.Step != 1 || got.Status != "active" {
			t.Fatalf("client changed: %+v", got)
		}
	})
	t.Run("trainer cannot administer", func(t *testing.T) {
		for _, r := range [][3]string{{"POST", "/api/v1/tenants/" + f.tenA + "/api_keys", `{"role":"admin"}`},
			{"DELETE", "/api/v1/api_keys/" + f.key["A-viewer"].ID, ""}, {"POST", "/api/v1/tenants", `{"name":"x"}`}} {
			if res := f.do(t, f.tok["A-trainer"], r[0], r[1], r[2]); res.code != 403 {
				t.Errorf("%s %s as trainer: %d", r[0], r[1], res.code)
			}
		}
		if res := f.do(t, f.tok["A-admin"], "POST", "/api/v1/tenants", `{"name":"x"}`); res.code != 403 {
			t.Errorf("tenant admin created a tenant: %d", res.code)
		}
	})
	t.Run("revoked 401", func(t *testing.T) {
		var k APIKeyCreated
		f.must(t, 201, f.tok["A-admin"], "POST", "/api/v1/tenants/"+f.tenA+"/api_keys", `{"role":"trainer"}`, &k)
		if k.Token == "" || k.TenantID != f.tenA || k.Role != store.RoleTrainer {
			t.Fatalf("key %+v", k)
		}
		f.must(t, 200, k.Token, "GET", "/api/v1/artifacts", nil, nil)
		f.must(t, 204, f.tok["A-admin"], "DELETE", "/api/v1/api_keys/"+k.ID, nil, nil)
		res := f.do(t, k.Token, "GET", "/api/v1/artifacts", nil)
		if res.code != 401 || !strings.Contains(res.envelope(t).Message, "revoked") {
			t.Fatalf("revoked key: %d %s", res.code, res.body)
		}
		// The operator revokes any tenant's key; a tenant admin none of another tenant.
		f.must(t, 404, f.tok["A-admin"], "DELETE", "/api/v1/api_keys/"+f.key["B-trainer"].ID, nil, nil)
		f.must(t, 204, f.tok["op"], "DELETE", "/api/v1/api_keys/"+f.key["B-trainer"].ID, nil, nil)
		if res := f.do(t, f.tok["B-trainer"], "GET", "/api/v1/artifacts", nil); res.code != 401 {
			t.Fatalf("operator-revoked key: %d", res.code)
		}
	})
	t.Run("operator creates tenants", func(t *testing.T) {
		var tn store.Tenant
		f.must(t, 201, f.tok["op"], "POST", "/api/v1/tenants", CreateTenantRequest{Name: "new"}, &tn)
		var k APIKeyCreated
		f.must(t, 201, f.tok["op"], "POST", "/api/v1/tenants/"+tn.ID+"/api_keys", `{"role":"viewer"}`, &k)
		var arts []api.Artifact
		f.must(t, 200, k.Token, "GET", "/api/v1/artifacts", nil, &arts)
		if len(arts) != 0 {
			t.Fatalf("new tenant sees %d artifacts", len(arts))
		}
		// Administrative actions are audited, and the operator sees every tenant's entries.
		var page AuditPage
		f.must(t, 200, f.tok["op"], "GET", "/api/v1/audit?limit=1000", nil, &page)
		ops := map[string]bool{}
		tenants := map[string]bool{}
		for _, e := range page.Entries {
			ops[e.Operation+" "+e.Resource] = true
			tenants[e.TenantID] = true
		}
		if !ops["admin.create_tenant "+tn.ID] || !ops["admin.create_api_key "+k.ID] || !tenants[f.tenA] || !tenants[tn.ID] {
			t.Fatalf("operator's audit view: %v", ops)
		}
		for _, e := range page.Entries {
			for _, v := range e.Details {
				if strings.Contains(v, k.Token) {
					t.Fatal("token in the audit log")
				}
			}
		}
	})
}

func TestBudgetExceeded409(t *testing.T) {
	f := newFixture(t, nil)
	tok := f.tok["A-trainer"]
	var tc api.TrainingClient
	// q = 1, σ = 1: a few steps exhaust ε = 12.
	f.must(t, 201, tok, "POST", "/api/v1/training_clients", tinyConfig(1, 12, 2, 2), &tc)
	p := "/api/v1/training_clients/" + tc.ID
	var before api.DPMetrics
	var res resp
	for i := 0; ; i++ {
		if i == 20 {
			t.Fatal("budget never exhausted")
		}
		var fut api.Future
		f.must(t, 202, tok, "POST", p+"/forward_backward", api.ForwardBackwardRequest{Batch: textBatch("a", "b")}, &fut)
		f.await(t, tok, fut, nil)
		f.must(t, 200, tok, "GET", p+"/dp_metrics", nil, &before)
		if res = f.do(t, tok, "POST", p+"/optim_step", "{}"); res.code != 202 {
			break
		}
		json.Unmarshal(res.body, &fut)
		f.await(t, tok, fut, nil)
	}
	if res.code != 409 || res.envelope(t).Code != api.CodePrivacyBudgetExceeded {
		t.Fatalf("optim_step over budget: %d %s", res.code, res.body)
	}
	if before.Steps == 0 {
		t.Fatal("no step fitted the budget")
	}
	var after api.DPMetrics
	f.must(t, 200, tok, "GET", p+"/dp_metrics", nil, &after)
	if after != before {
		t.Fatalf("dp_metrics changed: %+v → %+v", before, after)
	}
	var got api.TrainingClient
	f.must(t, 200, tok, "GET", p, nil, &got)
	if got.Step != before.Steps {
		t.Fatalf("step %d, dp_metrics steps %d", got.Step, before.Steps)
	}
}

func TestBadInput400(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.MaxBodyBytes = 64 << 10 })
	tok := f.tok["A-trainer"]
	var tc api.TrainingClient
	f.must(t, 201, tok, "POST", "/api/v1/training_clients", tinyConfig(1, 8, 2, 100), &tc)
	p := "/api/v1/training_clients/" + tc.ID
	good, _ := json.Marshal(tinyConfig(1, 8, 2, 100))
	neg := strings.Replace(string(good), `"rank":2`, `"rank":-2`, 1)
	negDS := strings.Replace(string(good), `"dataset_size":100`, `"dataset_size":-1`, 1)
	for _, c := range []struct {
		name, method, path, body string
		status                   int
		field                    string
		hdr                      []string
	}{
		{"malformed", "POST", "/api/v1/training_clients", `{"base_model":`, 400, "body", nil},
		{"not an object", "POST", "/api/v1/training_clients", `[1]`, 400, "body", nil},
		{"empty", "POST", p + "/optim_step", ``, 400, "body", nil},
		{"trailing", "POST", p + "/optim_step", `{} {}`, 400, "body", nil},
		{"unknown field", "POST", "/api/v1/training_clients", `{"base_model":"tensafe-tiny","evil":1}`, 400, "evil", nil},
		{"unknown nested", "POST", p + "/forward_backward", `{"batch":{"input_ids":[[1]],"x":1}}`, 400, "x", nil},
		{"wrong type", "POST", "/api/v1/training_clients", `{"lora_config":{"rank":"big"}}`, 400, "lora_config.rank", nil},
		{"negative rank", "POST", "/api/v1/training_clients", neg, 400, "lora_config.rank", nil},
		{"negative dataset", "POST", "/api/v1/training_clients", negDS, 400, "dp_config.dataset_size", nil},
		{"model path", "POST", "/api/v1/training_clients", strings.Replace(string(good), "tensafe-tiny", "/etc/passwd", 1), 400, "base_model", nil},
		{"id outside vocabulary", "POST", p + "/forward_backward", `{"batch":{"input_ids":[[1,99999999]],"labels":[[1,1]]}}`, 400, "batch.input_ids[0][1]", nil},
		{"negative token", "POST", p + "/forward", `{"batch":{"input_ids":[[-1]],"labels":[[1]]}}`, 400, "batch.input_ids[0][0]", nil},
		{"negative max_tokens", "POST", p + "/sample", `{"prompt_tokens":[1],"max_tokens":-1}`, 400, "max_tokens", nil},
		{"oversized", "POST", p + "/forward_backward", `{"batch":{"input_ids":[[` + strings.Repeat("1,", 40<<10) + `1]]}}`, 413, "body", nil},
		{"wait", "GET", "/api/v1/futures/x?wait=-1", "", 400, "wait", nil},
		{"wait NaN", "GET", "/api/v1/futures/x?wait=NaN", "", 400, "wait", nil},
		{"limit", "GET", "/api/v1/audit?limit=0", "", 400, "limit", nil},
		{"after", "GET", "/api/v1/audit?after=-5", "", 400, "after", nil},
		{"idempotency key", "POST", p + "/optim_step", `{}`, 400, "Idempotency-Key", []string{"Idempotency-Key", strings.Repeat("k", 300)}},
	} {
		t.Run(c.name, func(t *testing.T) {
			res := f.do(t, tok, c.method, c.path, c.body, c.hdr...)
			e := res.envelope(t)
			if res.code != c.status || e.Field != c.field {
				t.Fatalf("status %d field %q, want %d %q: %s", res.code, e.Field, c.status, c.field, res.body)
			}
		})
	}
	// Nothing was created or changed by the refused requests.
	var got api.TrainingClient
	f.must(t, 200, tok, "GET", p, nil, &got)
	if got.Step != 0 {
		t.Fatalf("step %d", got.Step)
	}
	var m api.DPMetrics
	f.must(t, 200, tok, "GET", p+"/dp_metrics", nil, &m)
	if m.Steps != 0 {
		t.Fatalf("dp steps %d", m.Steps)
	}
}

func TestRateLimit429(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.RateLimit, c.RateBurst = 0.01, 3 })
	for i := range 3 {
		f.must(t, 200, f.tok["A-viewer"], "GET", "/api/v1/artifacts", nil, nil)
		_ = i
	}
	res := f.do(t, f.tok["A-trainer"], "GET", "/api/v1/artifacts", nil)
	if res.code != 429 || res.envelope(t).Code != api.CodeRateLimited || res.hdr.Get("Retry-After") == "" {
		t.Fatalf("4th request: %d %q %s", res.code, res.hdr.Get("Retry-After"), res.body)
	}
	// Another tenant has its own bucket.
	f.must(t, 200, f.tok["B-trainer"], "GET", "/api/v1/artifacts", nil, nil)
}

func TestTenantOpQuota429(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.MaxTenantOps = 1 })
	tok := f.tok["A-trainer"]
	var tc api.TrainingClient
	f.must(t, 201, tok, "POST", "/api/v1/training_clients", tinyConfig(1, 8, 2, 100), &tc)
	p := "/api/v1/training_clients/" + tc.ID + "/forward"
	body := api.ForwardRequest{Batch: textBatch("hi")}
	// Hold A's only slot as an operation in flight would.
	if !f.srv.quota.acquire(f.tenA) {
		t.Fatal("slot taken")
	}
	res := f.do(t, tok, "POST", p, body)
	if res.code != 429 || res.envelope(t).Code != api.CodeRateLimited || res.hdr.Get("Retry-After") != "1" {
		t.Fatalf("over quota: %d %s", res.code, res.body)
	}
	// B is not affected.
	var tcB api.TrainingClient
	f.must(t, 201, f.tok["B-trainer"], "POST", "/api/v1/training_clients", tinyConfig(1, 8, 2, 100), &tcB)
	var fb api.Future
	f.must(t, 202, f.tok["B-trainer"], "POST", "/api/v1/training_clients/"+tcB.ID+"/forward", body, &fb)
	f.await(t, f.tok["B-trainer"], fb, nil)
	f.srv.quota.release(f.tenA)
	var fut api.Future
	f.must(t, 202, tok, "POST", p, body, &fut)
	f.await(t, tok, fut, nil)
	// The slot is given back once the operation has finished (the server
	// notices a moment after the future is done).
	waitFree := func() {
		t.Helper()
		for deadline := time.Now().Add(time.Minute); ; {
			f.srv.quota.mu.Lock()
			n := f.srv.quota.n[f.tenA]
			f.srv.quota.mu.Unlock()
			if n == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("tenant A still holds %d slots", n)
			}
			time.Sleep(time.Millisecond)
		}
	}
	waitFree()
	// A refused submission does not keep its slot.
	if r := f.do(t, tok, "POST", "/api/v1/training_clients/"+tc.ID+"/sample", `{"max_tokens":-1}`); r.code != 400 {
		t.Fatalf("bad sample: %d", r.code)
	}
	f.srv.quota.mu.Lock()
	n := f.srv.quota.n[f.tenA]
	f.srv.quota.mu.Unlock()
	if n != 0 {
		t.Fatalf("a refused submission kept a slot: %d", n)
	}
}

func TestLimiter(t *testing.T) {
	now := time.Unix(0, 0)
	l := newLimiter(2, 2, func() time.Time { return now })
	for range 2 {
		if _, ok := l.take("t"); !ok {
			t.Fatal("burst refused")
		}
	}
	wait, ok := l.take("t")
	if ok || wait != 500*time.Millisecond {
		t.Fatalf("empty bucket: %v %v", wait, ok)
	}
	now = now.Add(500 * time.Millisecond)
	if _, ok := l.take("t"); !ok {
		t.Fatal("refilled token refused")
	}
}

func TestRequestIDHealthMetrics(t *testing.T) {
	f := newFixture(t, nil)
	res := f.do(t, "", "GET", "/healthz", nil, "X-Request-Id", "abc-123")
	if res.code != 200 || res.hdr.Get("X-Request-Id") != "abc-123" {
		t.Fatalf("healthz %d id %q", res.code, res.hdr.Get("X-Request-Id"))
	}
	res = f.do(t, "", "GET", "/readyz", nil, "X-Request-Id", "bad id with spaces")
	if res.code != 200 || len(res.hdr.Get("X-Request-Id")) != 24 {
		t.Fatalf("readyz %d id %q", res.code, res.hdr.Get("X-Request-Id"))
	}
	res = f.do(t, "", "GET", "/metrics", nil)
	if res.code != 200 || !strings.Contains(string(res.body), `tensafe_http_requests_total{code="200",route="GET /healthz"} 1`) {
		t.Fatalf("metrics %d:\n%s", res.code, res.body)
	}
	if res := f.do(t, "", "GET", "/nope", nil); res.code != 404 || res.envelope(t).Code != api.CodeNotFound {
		t.Fatalf("unknown route %d", res.code)
	}
	if res := f.do(t, "", "PUT", "/api/v1/training_clients", nil); res.code != 405 || res.hdr.Get("Allow") != "POST" {
		t.Fatalf("wrong method: %d %q %s", res.code, res.hdr.Get("Allow"), res.body)
	}
}

func TestGracefulShutdown(t *testing.T) {
	f := newFixture(t, nil)
	ln, err := newLocalListener()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.srv.Serve(ctx, ln, 5*time.Second) }()
	res, err := http.Get("http://" + ln.Addr().String() + "/healthz")
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("serve: %v", err)
	}
	res.Body.Close()
	// Operations in flight at shutdown finish or are marked failed, never lost.
	var tc api.TrainingClient
	f.must(t, 201, f.tok["A-trainer"], "POST", "/api/v1/training_clients", tinyConfig(1, 8, 2, 100), &tc)
	var futs []api.Future
	for range 4 {
		var fut api.Future
		f.must(t, 202, f.tok["A-trainer"], "POST", "/api/v1/training_clients/"+tc.ID+"/forward_backward",
			api.ForwardBackwardRequest{Batch: textBatch("abc", "de")}, &fut)
		futs = append(futs, fut)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for _, fut := range futs {
		got, err := f.svc.GetOperation(context.Background(), f.tenA, fut.ID)
		if err != nil || !got.Done() || got.State == api.FutureFailed && got.Error.Code != api.CodeCanceled {
			t.Fatalf("future %s after shutdown: %+v %v", fut.ID, got, err)
		}
	}
	// The service is closed: new work is refused as unavailable.
	r := f.do(t, f.tok["A-trainer"], "POST", "/api/v1/training_clients", tinyConfig(1, 8, 2, 100))
	if r.code != 503 {
		t.Fatalf("after shutdown: %d %s", r.code, r.body)
	}
	if r := f.do(t, "", "GET", "/readyz", nil); r.code != 503 {
		t.Fatalf("readyz after shutdown: %d", r.code)
	}
}
