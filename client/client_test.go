package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tensafe/tensafe/api"
)

const testKey = "tsk_test_0123456789abcdef_SECRET"

// recorder is the part of a test server that remembers requests.
type recorder struct {
	mu   sync.Mutex
	reqs []seen
}

type seen struct {
	method, path, query, auth, idem, body string
}

func (r *recorder) add(req *http.Request) seen {
	b, _ := io.ReadAll(req.Body)
	s := seen{req.Method, req.URL.Path, req.URL.RawQuery, req.Header.Get("Authorization"), req.Header.Get("Idempotency-Key"), string(b)}
	r.mu.Lock()
	r.reqs = append(r.reqs, s)
	r.mu.Unlock()
	return s
}

func (r *recorder) all() []seen {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]seen(nil), r.reqs...)
}

// newTestClient starts h and returns a client of it whose backoff waits are
// recorded instead of slept.
func newTestClient(t *testing.T, h http.HandlerFunc, opts ...Option) (*ServiceClient, *[]time.Duration) {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	c, err := New(srv.URL+"/", testKey, opts...)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	waits := &[]time.Duration{}
	c.sleep = func(ctx context.Context, d time.Duration) error {
		mu.Lock()
		*waits = append(*waits, d)
		mu.Unlock()
		return ctx.Err()
	}
	c.rnd = func(n int64) int64 { return n - 1 } // the cap, so waits are exact
	return c, waits
}

func writeErr(w http.ResponseWriter, status int, code, msg, field string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(api.ErrorResponse{Error: api.ErrorBody{Code: code, Message: msg, Field: field}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func TestNewRejectsBadBaseURL(t *testing.T) {
	for _, u := range []string{"", "localhost:8080", "ftp://x", "http://", "http://user:pw@host", "::"} {
		if _, err := New(u, testKey); err == nil {
			t.Errorf("New(%q) accepted", u)
		} else if strings.Contains(err.Error(), "pw") {
			t.Errorf("New(%q) error quotes the password: %v", u, err)
		}
	}
}

func TestNewRejectsMalformedKey(t *testing.T) {
	for _, k := range []string{"tsk_ab\r\nX-Evil: 1", "tsk ab", "tsk_é"} {
		_, err := New("http://127.0.0.1:1", k)
		if err == nil {
			t.Errorf("key %q accepted", k)
		} else if strings.Contains(err.Error(), "tsk") {
			t.Errorf("error quotes the key: %v", err)
		}
	}
}

// A ServiceClient built as a struct literal, without New, works with the
// defaults.
func TestStructLiteralClient(t *testing.T) {
	var rec recorder
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := rec.add(r)
		if s.path == "/api/v1/futures/op_1" {
			writeJSON(w, 200, api.Future{ID: "op_1", State: api.FutureSucceeded, Result: json.RawMessage(`{"step":1}`)})
			return
		}
		writeJSON(w, 200, []api.Artifact{{ID: "ar_1"}})
	}))
	defer srv.Close()
	c := &ServiceClient{BaseURL: srv.URL, APIKey: testKey}
	as, err := c.Artifacts(context.Background())
	if err != nil || len(as) != 1 || as[0].ID != "ar_1" {
		t.Fatalf("Artifacts = %+v, %v", as, err)
	}
	r, err := FutureOf[api.OptimStepResult](c, "op_1").Result(context.Background())
	if err != nil || r.Step != 1 {
		t.Fatalf("Result = %+v, %v", r, err)
	}
	if got := rec.all(); got[0].auth != "Bearer "+testKey || got[1].query != "wait=30" {
		t.Errorf("requests %+v", got)
	}
}

func TestErrorDecoding(t *testing.T) {
	tests := []struct {
		name    string
		status  int
		header  map[string]string
		body    string
		code    string
		field   string
		msgPart string
		is      func(error) bool
	}{
		{"envelope 400", 400, nil, `{"error":{"code":"invalid_argument","message":"must be in (0, 1000000], got 0","field":"dp_config.noise_multiplier"}}`,
			api.CodeInvalidArgument, "dp_config.noise_multiplier", "got 0", IsInvalidArgument},
		{"budget", 409, nil, `{"error":{"code":"privacy_budget_exceeded","message":"epsilon 8.1 > 8"}}`,
			api.CodePrivacyBudgetExceeded, "", "8.1", IsBudgetExceeded},
		{"not found", 404, map[string]string{"X-Request-Id": "req-7"}, `{"error":{"code":"not_found","message":"no such training client"}}`,
			api.CodeNotFound, "", "[request req-7]", IsNotFound},
		{"401 plain text", 401, nil, "go away\n", api.CodeUnauthenticated, "", "go away", IsUnauthenticated},
		{"403 empty", 403, nil, "", api.CodePermissionDenied, "", "Forbidden", IsPermissionDenied},
		{"precondition", 409, nil, `{"error":{"code":"failed_precondition","message":"gradients pending"}}`,
			api.CodeFailedPrecondition, "", "pending", IsFailedPrecondition},
		{"html 418", 418, nil, "<html>\x00\x1b[31m teapot</html>", api.CodeInternal, "", "?[31m teapot", func(error) bool { return true }},
		{"envelope without code", 413, nil, `{"error":{}}`, api.CodeTooLarge, "", "{", func(error) bool { return true }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var rec recorder
			c, waits := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
				rec.add(r)
				for k, v := range tt.header {
					w.Header().Set(k, v)
				}
				w.WriteHeader(tt.status)
				io.WriteString(w, tt.body)
			})
			_, err := c.Artifacts(context.Background())
			var ae *APIError
			if !errors.As(err, &ae) {
				t.Fatalf("err = %v (%T), want *APIError", err, err)
			}
			if ae.Status != tt.status || ae.Code != tt.code || ae.Field != tt.field {
				t.Errorf("got status %d code %q field %q, want %d %q %q", ae.Status, ae.Code, ae.Field, tt.status, tt.code, tt.field)
			}
			if !strings.Contains(err.Error(), tt.msgPart) {
				t.Errorf("error %q lacks %q", err, tt.msgPart)
			}
			if strings.ContainsAny(ae.Message, "\x00\x1b") {
				t.Errorf("message keeps control characters: %q", ae.Message)
			}
			if !tt.is(err) {
				t.Errorf("helper does not match %v", err)
			}
			if strings.Contains(err.Error(), testKey) {
				t.Errorf("error quotes the API key")
			}
			if n := len(rec.all()); n != 1 || len(*waits) != 0 {
				t.Errorf("a %d was sent %d times with waits %v; it must not be retried", tt.status, n, *waits)
			}
		})
	}
}

func TestRetryHonoursRetryAfterAndBacksOff(t *testing.T) {
	var rec recorder
	c, waits := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
		n := len(rec.all())
		rec.add(r)
		switch n {
		case 0:
			w.Header().Set("Retry-After", "3")
			writeErr(w, 429, api.CodeRateLimited, "slow down", "")
		case 1:
			writeErr(w, 503, api.CodeUnavailable, "restarting", "")
		case 2:
			w.WriteHeader(502)
		default:
			writeJSON(w, 200, api.DPMetrics{EpsilonSpent: 1.5, Steps: 3})
		}
	}, WithRetryPolicy(RetryPolicy{MaxAttempts: 5, BaseDelay: 100 * time.Millisecond, MaxDelay: 250 * time.Millisecond}))
	tc := &TrainingClient{c: c, ID: "tc_1"}
	m, err := tc.DPMetrics(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if m.EpsilonSpent != 1.5 || m.Steps != 3 {
		t.Errorf("metrics = %+v", m)
	}
	// Retry-After 3 s beats the 100 ms cap; then the cap doubles to 200 ms
	// and is bounded by MaxDelay 250 ms.
	want := []time.Duration{3 * time.Second, 200 * time.Millisecond, 250 * time.Millisecond}
	if fmt.Sprint(*waits) != fmt.Sprint(want) {
		t.Errorf("waits = %v, want %v", *waits, want)
	}
	for _, s := range rec.all() {
		if s.auth != "Bearer "+testKey || s.path != "/api/v1/training_clients/tc_1/dp_metrics" || s.idem != "" {
			t.Errorf("request %+v", s)
		}
	}
}

func TestRetryGivesUp(t *testing.T) {
	var rec recorder
	c, waits := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
		rec.add(r)
		w.Header().Set("Retry-After", "1")
		writeErr(w, 429, api.CodeRateLimited, "too many operations", "")
	}, WithRetryPolicy(RetryPolicy{MaxAttempts: 3, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond}))
	_, err := c.Artifacts(context.Background())
	if !IsRateLimited(err) {
		t.Fatalf("err = %v, want rate_limited", err)
	}
	var ae *APIError
	if errors.As(err, &ae); ae.RetryAfter != time.Second {
		t.Errorf("RetryAfter = %v", ae.RetryAfter)
	}
	if n := len(rec.all()); n != 3 || len(*waits) != 2 {
		t.Errorf("%d attempts, %d waits; want 3 and 2", n, len(*waits))
	}
}

func TestRetryStopsWhenContextEnds(t *testing.T) {
	var rec recorder
	c, _ := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
		rec.add(r)
		writeErr(w, 500, api.CodeInternal, "internal error", "")
	})
	ctx, cancel := context.WithCancel(context.Background())
	c.sleep = func(context.Context, time.Duration) error { cancel(); return context.Canceled }
	_, err := c.Artifacts(ctx)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if n := len(rec.all()); n != 1 {
		t.Errorf("%d attempts after cancel", n)
	}
}

func TestIdempotencyKeyReusedOnRetryFreshPerCall(t *testing.T) {
	var rec recorder
	var mu sync.Mutex
	fails := map[string]int{}
	c, _ := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
		s := rec.add(r)
		mu.Lock()
		fails[s.idem]++
		n := fails[s.idem]
		mu.Unlock()
		if n <= 2 {
			writeErr(w, 503, api.CodeUnavailable, "busy", "")
			return
		}
		writeJSON(w, 202, api.Future{ID: "op_" + s.idem[:8], Kind: "optim_step", State: api.FutureQueued})
	})
	tc := &TrainingClient{c: c, ID: "tc_9"}
	f1, err := tc.OptimStep(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	f2, err := tc.OptimStep(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	reqs := rec.all()
	if len(reqs) != 6 {
		t.Fatalf("%d requests, want 6", len(reqs))
	}
	k1, k2 := reqs[0].idem, reqs[3].idem
	if len(k1) != 32 || k1 == k2 {
		t.Errorf("keys %q and %q: want two distinct 128-bit keys", k1, k2)
	}
	for i, s := range reqs {
		want := k1
		if i >= 3 {
			want = k2
		}
		if s.idem != want || s.method != "POST" || s.path != "/api/v1/training_clients/tc_9/optim_step" || s.body != "{}\n" && s.body != "{}" {
			t.Errorf("request %d = %+v", i, s)
		}
	}
	if f1.ID == f2.ID || f1.Kind != "optim_step" {
		t.Errorf("futures %+v %+v", f1, f2)
	}

	// A caller-supplied key is used as is.
	ctx := WithIdempotencyKey(context.Background(), "caller-key-0000000000000000000000")
	if _, err := tc.OptimStep(ctx); err != nil {
		t.Fatal(err)
	}
	if got := rec.all()[6].idem; got != "caller-key-0000000000000000000000" {
		t.Errorf("caller key not used: %q", got)
	}
}

func TestBackoffBounds(t *testing.T) {
	p := RetryPolicy{MaxAttempts: 10, BaseDelay: 100 * time.Millisecond, MaxDelay: time.Second}
	caps := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for i, cp := range caps {
		cp *= time.Millisecond
		hi := p.backoff(i+1, 0, func(n int64) int64 { return n - 1 })
		lo := p.backoff(i+1, 0, func(n int64) int64 { return 0 })
		if hi != cp || lo != 0 {
			t.Errorf("retry %d: range [%v, %v], want [0, %v]", i+1, lo, hi, cp)
		}
		if ra := p.backoff(i+1, 5*time.Second, func(n int64) int64 { return n - 1 }); ra != 5*time.Second {
			t.Errorf("retry %d: Retry-After 5s gave %v", i+1, ra)
		}
	}
	// The real jitter stays inside the cap.
	var c ServiceClient
	for range 1000 {
		if d := p.backoff(3, 0, c.randN); d < 0 || d > 400*time.Millisecond {
			t.Fatalf("jittered wait %v outside [0, 400ms]", d)
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 27, 7, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"", 0, false},
		{"0", 0, true},
		{"120", 2 * time.Minute, true},
		{" 7 ", 7 * time.Second, true},
		{"-1", 0, false},
		{"1.5", 0, false},
		{"99999999999999999999", 0, false},
		{"86400", maxRetryAfter, true},
		{"Fri, 27 Nov 2026 07:00:30 GMT", 30 * time.Second, true},
		{"Fri, 27 Nov 2026 06:00:00 GMT", 0, true},
		{"Sat, 28 Nov 2026 07:00:00 GMT", maxRetryAfter, true},
		{"tomorrow", 0, false},
	}
	for _, tt := range tests {
		got, ok := parseRetryAfter(tt.in, now)
		if got != tt.want || ok != tt.ok {
			t.Errorf("parseRetryAfter(%q) = %v, %v; want %v, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func TestTransportErrorRetriedWithoutLeakingKey(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // nothing listens there any more
	c, err := New(url, testKey, WithRetryPolicy(RetryPolicy{MaxAttempts: 2}))
	if err != nil {
		t.Fatal(err)
	}
	var waits int
	c.sleep = func(context.Context, time.Duration) error { waits++; return nil }
	_, err = c.Artifacts(context.Background())
	if err == nil || waits != 1 {
		t.Fatalf("err = %v after %d waits", err, waits)
	}
	if strings.Contains(err.Error(), testKey) {
		t.Errorf("error quotes the key: %v", err)
	}
}

func TestMalformedSuccessBody(t *testing.T) {
	c, _ := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"epsilon_spent": "lots"}`)
	})
	_, err := (&TrainingClient{c: c, ID: "tc_1"}).DPMetrics(context.Background())
	if !errors.Is(err, ErrMalformedResponse) {
		t.Fatalf("err = %v, want ErrMalformedResponse", err)
	}
}

// TestCreationRetries: training client and tenant creations, which the
// server deduplicates by Idempotency-Key, are retried on 429 and 5xx with
// the same key; an API key creation, which it cannot, only on 429.
func TestCreationRetries(t *testing.T) {
	createClient := func(c *ServiceClient) error {
		_, err := c.CreateTrainingClient(context.Background(), api.TrainingConfig{BaseModel: "tensafe-tiny"})
		return err
	}
	createTenant := func(c *ServiceClient) error {
		_, err := c.CreateTenant(context.Background(), "acme")
		return err
	}
	createKey := func(c *ServiceClient) error {
		_, err := c.CreateAPIKey(context.Background(), "tn_1", "trainer")
		return err
	}
	tests := []struct {
		name     string
		create   func(*ServiceClient) error
		statuses []int
		attempts int
		ok       bool
	}{
		{"client: 429 then created", createClient, []int{429, 429, 201}, 3, true},
		{"client: 503 retried with the same key", createClient, []int{503, 201}, 2, true},
		{"client: 500 retried with the same key", createClient, []int{500, 502, 201}, 3, true},
		{"client: 501 not retried", createClient, []int{501, 201}, 1, false},
		{"tenant: 429 then created", createTenant, []int{429, 201}, 2, true},
		{"tenant: 503 retried with the same key", createTenant, []int{503, 201}, 2, true},
		{"api key: 429 then created", createKey, []int{429, 201}, 2, true},
		{"api key: 503 may have created: not retried", createKey, []int{503, 201}, 1, false},
		{"api key: 500 not retried", createKey, []int{500, 201}, 1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var rec recorder
			c, _ := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
				n := len(rec.all())
				rec.add(r)
				if st := tt.statuses[n]; st != 201 {
					writeErr(w, st, codeForStatus(st), "no", "")
					return
				}
				switch {
				case strings.HasSuffix(r.URL.Path, "/tenants"):
					writeJSON(w, 201, map[string]string{"id": "tn_1", "name": "acme"})
					return
				case strings.HasSuffix(r.URL.Path, "/api_keys"):
					writeJSON(w, 201, map[string]string{"id": "key_1", "tenant_id": "tn_1", "token": "ts_x_y"})
					return
				}
				writeJSON(w, 201, api.TrainingClient{ID: "tc_1"})
			})
			err := tt.create(c)
			if (err == nil) != tt.ok {
				t.Errorf("err = %v", err)
			}
			reqs := rec.all()
			if len(reqs) != tt.attempts {
				t.Fatalf("%d attempts, want %d", len(reqs), tt.attempts)
			}
			for _, s := range reqs {
				if s.idem == "" || s.idem != reqs[0].idem {
					t.Errorf("idempotency keys %q vs %q", s.idem, reqs[0].idem)
				}
			}
		})
	}
}

func TestReadyTriesOnce(t *testing.T) {
	var rec recorder
	c, waits := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
		rec.add(r)
		writeErr(w, 503, api.CodeUnavailable, "shutting down", "")
	})
	err := c.Ready(context.Background())
	var ae *APIError
	if !errors.As(err, &ae) || ae.Code != api.CodeUnavailable {
		t.Fatalf("err = %v", err)
	}
	if got := rec.all(); len(got) != 1 || got[0].path != "/readyz" || len(*waits) != 0 {
		t.Errorf("requests %+v, waits %v", got, *waits)
	}
}
