package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
)

// TestClientIdempotency: a creation replaying a tenant's Idempotency-Key
// writes nothing and returns the first client (with its request hash); keys
// are per tenant; empty keys never collide; racing creations with one key
// store exactly one client; the key survives a restart.
func TestClientIdempotency(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		s := mustOpen(t, b)
		mustTenant(t, s, "t1")
		mustTenant(t, s, "t2")
		mk := func(tenant, id, key, hash string) (TrainingClient, error) {
			return s.CreateClient(ctx, TrainingClient{ID: id, TenantID: tenant, BaseModel: "tensafe-tiny",
				Config: json.RawMessage(`{"lora":{"rank":8}}`), IdempotencyKey: key, RequestHash: hash})
		}
		first, err := mk("t1", "c1", "create-1", sha(1))
		if err != nil || first.IdempotencyKey != "create-1" || first.RequestHash != sha(1) {
			t.Fatalf("CreateClient = %+v, %v", first, err)
		}
		again, err := mk("t1", "c2", "create-1", sha(2))
		wantErr(t, "replay", err, ErrDuplicate)
		if again.ID != "c1" || again.RequestHash != sha(1) || !again.CreatedAt.Equal(first.CreatedAt) {
			t.Fatalf("replay returned %+v, want the first client", again)
		}
		if _, err := s.GetClient(ctx, "t1", "c2"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("replay stored a second client: %v", err)
		}
		// Another tenant's key space is its own.
		if c, err := mk("t2", "c3", "create-1", sha(1)); err != nil || c.ID != "c3" {
			t.Fatalf("the same key in another tenant: %+v, %v", c, err)
		}
		// Empty keys never collide.
		for _, id := range []string{"c4", "c5"} {
			if _, err := mk("t1", id, "", ""); err != nil {
				t.Fatal(err)
			}
		}
		// Bad input names the field and stores nothing.
		_, err = mk("t1", "c6", "k", "md5:00")
		wantErr(t, "bad request hash", err, ErrInvalid)
		if _, err := s.GetClient(ctx, "t1", "c6"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("an invalid creation stored a client: %v", err)
		}
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != "request_hash" {
			t.Fatalf("bad request hash: %v, want a field error naming request_hash", err)
		}

		// Concurrent creations with one key: exactly one client.
		const n = 8
		var wg sync.WaitGroup
		ids := make([]string, n)
		errs := make([]error, n)
		for i := range n {
			wg.Go(func() {
				c, err := mk("t1", fmt.Sprintf("race-%d", i), "race", sha(3))
				ids[i], errs[i] = c.ID, err
			})
		}
		wg.Wait()
		winners := 0
		for i := range n {
			if errs[i] == nil {
				winners++
			} else if !errors.Is(errs[i], ErrDuplicate) {
				t.Fatalf("racing create %d: %v", i, errs[i])
			}
			if ids[i] != ids[0] {
				t.Fatalf("racing creates returned %q and %q", ids[0], ids[i])
			}
		}
		if winners != 1 {
			t.Fatalf("%d racing creates succeeded, want 1", winners)
		}

		// After a restart the key still finds the client.
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		s2 := mustOpen(t, b)
		again, err = s2.CreateClient(ctx, TrainingClient{ID: "c7", TenantID: "t1", BaseModel: "tensafe-tiny", IdempotencyKey: "create-1"})
		wantErr(t, "replay after restart", err, ErrDuplicate)
		if again.ID != "c1" {
			t.Fatalf("replay after restart returned %q", again.ID)
		}
	})
}

// TestTenantIdempotency: a tenant creation replaying the creator's
// Idempotency-Key writes nothing and returns the first tenant; keys are per
// creator; a key without a creator is refused naming created_by.
func TestTenantIdempotency(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		s := mustOpen(t, b)
		mustTenant(t, s, "op")
		mustTenant(t, s, "op2")
		mk := func(by, id, key, hash string) (Tenant, error) {
			return s.CreateTenant(ctx, Tenant{ID: id, Name: "acme", CreatedBy: by, IdempotencyKey: key, RequestHash: hash})
		}
		first, err := mk("op", "t1", "k1", sha(1))
		if err != nil || first.CreatedBy != "op" {
			t.Fatalf("CreateTenant = %+v, %v", first, err)
		}
		again, err := mk("op", "t2", "k1", sha(2))
		wantErr(t, "replay", err, ErrDuplicate)
		if again.ID != "t1" || again.RequestHash != sha(1) || again.IdempotencyKey != "k1" {
			t.Fatalf("replay returned %+v, want the first tenant", again)
		}
		if _, err := s.GetTenant(ctx, "t2"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("replay stored a second tenant: %v", err)
		}
		if tn, err := mk("op2", "t3", "k1", sha(1)); err != nil || tn.ID != "t3" {
			t.Fatalf("the same key of another creator: %+v, %v", tn, err)
		}
		_, err = mk("", "t4", "k2", sha(1))
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != "created_by" {
			t.Fatalf("a key without a creator: %v, want a field error naming created_by", err)
		}
		if got, err := s.GetTenant(ctx, "t1"); err != nil || got.CreatedBy != "op" || got.IdempotencyKey != "k1" {
			t.Fatalf("GetTenant = %+v, %v", got, err)
		}
	})
}
