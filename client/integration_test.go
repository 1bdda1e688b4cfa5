package client_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tensafe/tensafe/api"
	"github.com/tensafe/tensafe/client"
	"github.com/tensafe/tensafe/server"
	"github.com/tensafe/tensafe/servertest"
	"github.com/tensafe/tensafe/store"
)

// env is a real TenSafe server (servertest: SQLite store, audit log,
// keyring, service, HTTP layer on a loopback listener) with keys of two
// tenants and of the operator.
type env struct {
	url                string
	operator           string
	handler            http.Handler
	trainerA, viewerA  string
	trainerB, revokedA string
	ctx                context.Context
}

func newEnv(t testing.TB, mods ...func(*server.Config)) *env {
	t.Helper()
	opts := []servertest.Option{servertest.WithOrigin("tensafe.test/client")}
	for _, m := range mods {
		opts = append(opts, servertest.WithServerConfig(m))
	}
	s := servertest.New(t, opts...)
	a, b := s.Tenant(t, "A"), s.Tenant(t, "B")
	return &env{
		url:      s.URL,
		handler:  s.Handler,
		ctx:      context.Background(),
		operator: s.Key(t, s.OperatorTenant, store.RoleAdmin),
		trainerA: s.Key(t, a, store.RoleTrainer),
		viewerA:  s.Key(t, a, store.RoleViewer),
		trainerB: s.Key(t, b, store.RoleTrainer),
		revokedA: s.RevokedKey(t, a, store.RoleTrainer),
	}
}

func (e *env) client(t testing.TB, key string) *client.ServiceClient {
	t.Helper()
	c, err := client.New(e.url, key, client.WithPollWait(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func ptr[T any](v T) *T { return &v }

func tinyConfig(sigma, target float64) api.TrainingConfig {
	return api.TrainingConfig{
		BaseModel: "tensafe-tiny",
		LoRA:      api.LoRAConfig{Rank: 2, Alpha: 4},
		DP: &api.DPConfig{NoiseMultiplier: sigma, MaxGradNorm: 1, TargetEpsilon: target, TargetDelta: 1e-5,
			DatasetSize: 100, ExpectedBatchSize: 2},
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

func result[T any](t testing.TB, f *client.Future[T], err error) *T {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r, err := f.Result(ctx)
	if err != nil {
		t.Fatalf("%s %s: %v", f.Kind, f.ID, err)
	}
	return r
}

// step runs forward_backward then optim_step through the SDK and checks
// that dp_metrics only ever grows.
func step(t testing.TB, tc *client.TrainingClient, prev *api.DPMetrics) *api.DPMetrics {
	t.Helper()
	ctx := context.Background()
	f1, err := tc.ForwardBackward(ctx, textBatch("hello", "world"), nil)
	fb := result(t, f1, err)
	if len(fb.PerExampleLoss) != 2 || !(fb.Loss > 0) {
		t.Fatalf("forward_backward %+v", fb)
	}
	f2, err := tc.OptimStep(ctx)
	os := result(t, f2, err)
	m, err := tc.DPMetrics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if m.Steps != prev.Steps+1 || os.Step != m.Steps || !(m.EpsilonSpent > prev.EpsilonSpent) ||
		!(m.EpsilonRemaining < prev.EpsilonRemaining || prev.Steps == 0) || m.EpsilonSpent != os.EpsilonSpent {
		t.Fatalf("dp_metrics not monotone: %+v after %+v (optim_step %+v)", m, prev, os)
	}
	return m
}

func TestSDKAgainstServer(t *testing.T) {
	e := newEnv(t)
	ctx := e.ctx
	c := e.client(t, e.trainerA)

	tc, err := c.CreateTrainingClient(ctx, tinyConfig(1, 8))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(tc.ID, "tc") || tc.Info.BaseModel != "tensafe-tiny" {
		t.Fatalf("created %+v", tc.Info)
	}
	m0, err := tc.DPMetrics(ctx)
	if err != nil || m0.Steps != 0 || m0.EpsilonSpent != 0 {
		t.Fatalf("fresh dp_metrics %+v, %v", m0, err)
	}
	m := m0
	const steps = 20 // the whole loop
	for range steps {
		m = step(t, tc, m)
	}
	if m.SamplingRate != 0.02 || m.SamplingSource != "client-declared" || m.NoiseMultiplier != 1 {
		t.Fatalf("dp_metrics %+v", m)
	}

	f3, err := tc.Sample(ctx, api.SampleRequest{PromptTokens: []int{256, 104}, MaxTokens: 3})
	sr := result(t, f3, err)
	if len(sr.Sequences) != 1 || len(sr.Sequences[0].Tokens) == 0 {
		t.Fatalf("sample %+v", sr)
	}
	f4, err := tc.SaveState(ctx, "after-3")
	sv := result(t, f4, err)
	if sv.Step != steps || !strings.HasPrefix(sv.ContentHash, "sha256:") {
		t.Fatalf("save_state %+v", sv)
	}
	art, err := c.Artifact(ctx, sv.ArtifactID)
	if err != nil || art.ContentHash != sv.ContentHash {
		t.Fatalf("artifact %+v, %v", art, err)
	}
	rc, err := c.DownloadArtifact(ctx, sv.ArtifactID)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || int64(len(plain)) != sv.Size || !bytes.HasPrefix(plain, []byte("TSSVCKP1")) {
		t.Fatalf("download: %d bytes (want %d), %v", len(plain), sv.Size, err)
	}

	// Load into a new client: budget and step carry over, training goes on.
	tc2, err := c.CreateTrainingClient(ctx, tinyConfig(1, 8))
	if err != nil {
		t.Fatal(err)
	}
	f5, err := tc2.LoadState(ctx, sv.ArtifactID)
	ls := result(t, f5, err)
	if ls.Step != steps || ls.EpsilonSpent != m.EpsilonSpent {
		t.Fatalf("load_state %+v, metrics before %+v", ls, m)
	}
	m2, err := tc2.DPMetrics(ctx)
	if err != nil || m2.Steps != steps || m2.EpsilonSpent != m.EpsilonSpent {
		t.Fatalf("loaded dp_metrics %+v, %v", m2, err)
	}
	step(t, tc2, m2)

	// Tenancy and keys as the SDK sees them.
	other := e.client(t, e.trainerB)
	if _, err := other.TrainingClient(ctx, tc.ID); !client.IsNotFound(err) {
		t.Errorf("tenant B reading A's client: %v", err)
	}
	if _, err := e.client(t, e.revokedA).Artifacts(ctx); !client.IsUnauthenticated(err) {
		t.Errorf("revoked key: %v", err)
	}
	viewer := e.client(t, e.viewerA)
	vtc, err := viewer.TrainingClient(ctx, tc.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := vtc.OptimStep(ctx); !client.IsPermissionDenied(err) {
		t.Errorf("viewer optim_step: %v", err)
	}
	if _, err := c.CreateTrainingClient(ctx, api.TrainingConfig{BaseModel: "tensafe-tiny", LoRA: api.LoRAConfig{Rank: 2, Alpha: 4}}); !client.IsInvalidArgument(err) {
		t.Errorf("missing dp_config: %v", err)
	} else if ae := err.(*client.APIError); ae.Field == "" {
		t.Errorf("400 without a field: %v", ae)
	}

	// Audit through the SDK: paged, this tenant's only, and the chain verifies.
	var entries []client.AuditEntry
	after := int64(-1)
	for {
		page, err := viewer.AuditLogs(ctx, after, 4)
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Entries) == 0 {
			break
		}
		entries = append(entries, page.Entries...)
		after = page.NextAfter
	}
	ops := map[string]int{}
	for i, en := range entries {
		ops[en.Operation]++
		if i > 0 && en.Seq <= entries[i-1].Seq {
			t.Fatalf("audit seqs not increasing: %d after %d", en.Seq, entries[i-1].Seq)
		}
	}
	if ops["training.optim_step"] != steps+1 || ops["training.save_state"] != 1 || ops["training.load_state"] != 1 {
		t.Errorf("audit operations %v", ops)
	}
	v, err := viewer.VerifyAudit(ctx)
	if err != nil || !v.Verified || v.Size < uint64(len(entries)) {
		t.Fatalf("verify %+v, %v", v, err)
	}

	if err := tc.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := tc.DPMetrics(ctx); !client.IsNotFound(err) {
		t.Errorf("deleted client: %v", err)
	}
}

func TestSDKBudgetExceeded(t *testing.T) {
	e := newEnv(t)
	ctx := e.ctx
	c := e.client(t, e.trainerA)
	// σ = 0.6 with q = 0.02 spends ε ≈ 3.5 on the first step: a target of 4
	// allows a step or two and then refuses.
	tc, err := c.CreateTrainingClient(ctx, tinyConfig(0.6, 4))
	if err != nil {
		t.Fatal(err)
	}
	m := &api.DPMetrics{}
	refused := false
	for i := 0; i < 20 && !refused; i++ {
		fb, err := tc.ForwardBackward(ctx, textBatch("abc"), nil)
		result(t, fb, err)
		f, err := tc.OptimStep(ctx)
		if err == nil {
			_, err = f.Result(ctx)
		}
		switch {
		case client.IsBudgetExceeded(err):
			refused = true
		case err != nil:
			t.Fatal(err)
		default:
			if m, err = tc.DPMetrics(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	if !refused {
		t.Fatalf("budget never refused; metrics %+v", m)
	}
	after, err := tc.DPMetrics(ctx)
	if err != nil || after.Steps != m.Steps || after.EpsilonSpent != m.EpsilonSpent || after.EpsilonSpent > 4 || after.Steps == 0 {
		t.Fatalf("a refused step changed the budget: %+v, before %+v", after, m)
	}
}

func TestSDKAdmin(t *testing.T) {
	e := newEnv(t)
	ctx := e.ctx
	op := e.client(t, e.operator)
	if err := op.Ready(ctx); err != nil {
		t.Fatalf("Ready: %v", err)
	}
	tn, err := op.CreateTenant(ctx, "acme")
	if err != nil || tn.Name != "acme" || tn.ID == "" {
		t.Fatalf("CreateTenant = %+v, %v", tn, err)
	}
	k, err := op.CreateAPIKey(ctx, tn.ID, client.RoleTrainer)
	if err != nil || k.Token == "" || k.TenantID != tn.ID || k.Role != client.RoleTrainer {
		t.Fatalf("CreateAPIKey = %+v, %v", k, err)
	}
	if _, err := op.CreateAPIKey(ctx, tn.ID, "root"); !client.IsInvalidArgument(err) {
		t.Errorf("role root: %v", err)
	}
	acme := e.client(t, k.Token)
	if _, err := acme.CreateTrainingClient(ctx, tinyConfig(1, 8)); err != nil {
		t.Fatalf("new key cannot train: %v", err)
	}
	if _, err := acme.CreateTenant(ctx, "not mine to make"); !client.IsPermissionDenied(err) && !client.IsNotFound(err) {
		t.Errorf("trainer creating a tenant: %v", err)
	}
	if err := op.RevokeAPIKey(ctx, k.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := acme.Artifacts(ctx); !client.IsUnauthenticated(err) {
		t.Errorf("revoked key: %v", err)
	}
}

// lossy forwards requests to the real server but, for the first attempt of
// each operation POST, throws the server's answer away and says 502: the
// operation was submitted, the client never heard. The SDK's retry with the
// same Idempotency-Key must get the same future back, not run it twice.
type lossy struct {
	next http.Handler
	mu   sync.Mutex
	seen map[string]int
}

func (l *lossy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	k := r.Header.Get("Idempotency-Key")
	if r.Method != http.MethodPost || !strings.Contains(r.URL.Path, "/training_clients/") {
		l.next.ServeHTTP(w, r)
		return
	}
	l.mu.Lock()
	l.seen[k]++
	n := l.seen[k]
	l.mu.Unlock()
	if n == 1 {
		l.next.ServeHTTP(httptest.NewRecorder(), r)
		w.WriteHeader(http.StatusBadGateway)
		return
	}
	l.next.ServeHTTP(w, r)
}

func TestSDKRetryDoesNotRepeatOperations(t *testing.T) {
	e := newEnv(t)
	ctx := e.ctx
	l := &lossy{next: e.handler, seen: map[string]int{}}
	hs := httptest.NewServer(l)
	t.Cleanup(hs.Close)
	c, err := client.New(hs.URL, e.trainerA, client.WithRetryPolicy(client.RetryPolicy{MaxAttempts: 3, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond}))
	if err != nil {
		t.Fatal(err)
	}
	tc, err := c.CreateTrainingClient(ctx, tinyConfig(1, 8))
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		f1, err := tc.ForwardBackward(ctx, textBatch("hello"), nil)
		fb := result(t, f1, err)
		if fb.PendingExamples != 1 {
			t.Fatalf("forward_backward ran twice: %d examples pending", fb.PendingExamples)
		}
		f2, err := tc.OptimStep(ctx)
		result(t, f2, err)
	}
	m, err := tc.DPMetrics(ctx)
	if err != nil || m.Steps != 2 {
		t.Fatalf("after 2 retried optim_steps: %+v, %v", m, err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.seen) != 4 {
		t.Fatalf("%d distinct idempotency keys for 4 operations", len(l.seen))
	}
	for k, n := range l.seen {
		if n != 2 {
			t.Errorf("key %s sent %d times, want 2", k, n)
		}
	}
}

// TestSDKHonoursServerRateLimit drives the real server's per-tenant token
// bucket past its burst: the 429s carry Retry-After, and the SDK waits and
// gets every answer.
func TestSDKHonoursServerRateLimit(t *testing.T) {
	e := newEnv(t, func(c *server.Config) { c.RateLimit, c.RateBurst = 5, 2 })
	c := e.client(t, e.viewerA)
	for i := range 4 {
		if _, err := c.Artifacts(e.ctx); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	// Without retries the same burst is refused, with the server's advice.
	c1, err := client.New(e.url, e.viewerA, client.WithRetryPolicy(client.RetryPolicy{MaxAttempts: 1}))
	if err != nil {
		t.Fatal(err)
	}
	var last error
	for range 4 {
		if _, err := c1.Artifacts(e.ctx); err != nil {
			last = err
		}
	}
	var ae *client.APIError
	if !client.IsRateLimited(last) || !errors.As(last, &ae) || ae.RetryAfter <= 0 {
		t.Fatalf("burst without retries: %v", last)
	}
}
