package client_test

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tensafe/tensafe/client"
)

// TestCreateTrainingClientIdempotent: a creation replayed with the same
// Idempotency-Key returns the first client; the same key with another
// configuration is a 409 naming Idempotency-Key; another tenant's key space
// is its own.
func TestCreateTrainingClientIdempotent(t *testing.T) {
	e := newEnv(t)
	ctx := client.WithIdempotencyKey(e.ctx, "create-run-7")
	a, b := e.client(t, e.trainerA), e.client(t, e.trainerB)
	first, err := a.CreateTrainingClient(ctx, tinyConfig(1, 5))
	if err != nil {
		t.Fatal(err)
	}
	again, err := a.CreateTrainingClient(ctx, tinyConfig(1, 5))
	if err != nil || again.ID != first.ID {
		t.Fatalf("replay: %v, %v; want client %s", again, err, first.ID)
	}
	_, err = a.CreateTrainingClient(ctx, tinyConfig(1.5, 5))
	var ae *client.APIError
	if !client.IsConflict(err) || !errors.As(err, &ae) || ae.Status != http.StatusConflict || ae.Field != "Idempotency-Key" {
		t.Fatalf("same key, other configuration: %v, want 409 naming Idempotency-Key", err)
	}
	other, err := b.CreateTrainingClient(ctx, tinyConfig(1, 5))
	if err != nil || other.ID == first.ID {
		t.Fatalf("tenant B with A's key: %v, %v", other, err)
	}
	// Deleted since: the replay is a conflict, never a second client.
	if err := first.Delete(e.ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := a.CreateTrainingClient(ctx, tinyConfig(1, 5)); !client.IsConflict(err) {
		t.Fatalf("replay after deletion: %v, want conflict", err)
	}
	if n := createdClients(t, a); n != 1 {
		t.Fatalf("tenant A created %d clients, want 1", n)
	}
}

// createdClients counts the successful creations (not replays) in the
// tenant's audit log.
func createdClients(t *testing.T, c *client.ServiceClient) int {
	t.Helper()
	page, err := c.AuditLogs(t.Context(), -1, 1000)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, en := range page.Entries {
		if en.Operation == "training.create_client" && en.Outcome == "success" && en.Details["idempotent_replay"] == "" {
			n++
		}
	}
	return n
}

// TestCreateTrainingClientRetried: a creation whose answer is lost (a 502
// from a proxy after the server created the client, then a dropped
// connection) is retried by the SDK and returns that client; exactly one
// client exists.
func TestCreateTrainingClientRetried(t *testing.T) {
	e := newEnv(t)
	target, err := url.Parse(e.url)
	if err != nil {
		t.Fatal(err)
	}
	var lost atomic.Int32
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		out, err := http.NewRequestWithContext(r.Context(), r.Method, target.String()+r.URL.RequestURI(), bytes.NewReader(body))
		if err != nil {
			t.Error(err)
			return
		}
		out.Header = r.Header.Clone()
		resp, err := http.DefaultClient.Do(out)
		if err != nil {
			t.Error(err)
			return
		}
		defer resp.Body.Close()
		if r.Method == http.MethodPost && r.URL.Path == "/api/v1/training_clients" {
			switch lost.Add(1) {
			case 1: // the server created the client; the answer is lost
				http.Error(w, "bad gateway", http.StatusBadGateway)
				return
			case 2: // and the retry's connection drops
				conn, _, err := http.NewResponseController(w).Hijack()
				if err == nil {
					conn.Close()
				}
				return
			}
		}
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, resp.Body)
	}))
	defer proxy.Close()
	c, err := client.New(proxy.URL, e.trainerA, client.WithRetryPolicy(client.RetryPolicy{MaxAttempts: 4, BaseDelay: time.Millisecond, MaxDelay: 10 * time.Millisecond}))
	if err != nil {
		t.Fatal(err)
	}
	tc, err := c.CreateTrainingClient(e.ctx, tinyConfig(1, 5))
	if err != nil {
		t.Fatal(err)
	}
	if lost.Load() != 3 {
		t.Fatalf("%d creation attempts, want 3", lost.Load())
	}
	direct := e.client(t, e.trainerA)
	if _, err := direct.TrainingClient(e.ctx, tc.ID); err != nil {
		t.Fatal(err)
	}
	if n := createdClients(t, direct); n != 1 {
		t.Fatalf("%d clients created, want 1", n)
	}
}

// TestCreateTenantIdempotent: a tenant creation replayed with the same
// Idempotency-Key returns the first tenant; another name with that key is a
// 409 naming Idempotency-Key.
func TestCreateTenantIdempotent(t *testing.T) {
	e := newEnv(t)
	op := e.client(t, e.operator)
	ctx := client.WithIdempotencyKey(e.ctx, "onboard-acme")
	first, err := op.CreateTenant(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	again, err := op.CreateTenant(ctx, "acme")
	if err != nil || again.ID != first.ID || again.Name != "acme" {
		t.Fatalf("replay: %+v, %v; want tenant %s", again, err, first.ID)
	}
	_, err = op.CreateTenant(ctx, "globex")
	var ae *client.APIError
	if !client.IsConflict(err) || !errors.As(err, &ae) || ae.Field != "Idempotency-Key" {
		t.Fatalf("same key, another name: %v, want 409 naming Idempotency-Key", err)
	}
	if other, err := op.CreateTenant(e.ctx, "acme"); err != nil || other.ID == first.ID {
		t.Fatalf("a new key: %+v, %v; want a new tenant", other, err)
	}
}
