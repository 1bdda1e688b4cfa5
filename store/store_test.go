package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

var ctx = context.Background()

func mustTenant(t *testing.T, s Store, id string) Tenant {
	t.Helper()
	tn, err := s.CreateTenant(ctx, Tenant{ID: id, Name: "Tenant " + id})
	if err != nil {
		t.Fatalf("CreateTenant(%s): %v", id, err)
	}
	return tn
}

func mustClient(t *testing.T, s Store, tenant, id string) TrainingClient {
	t.Helper()
	c, err := s.CreateClient(ctx, TrainingClient{ID: id, TenantID: tenant, BaseModel: "tensafe-tiny",
		Config: json.RawMessage(`{"lora":{"rank":8}}`), BudgetState: []byte{1, 2, 3}})
	if err != nil {
		t.Fatalf("CreateClient(%s): %v", id, err)
	}
	return c
}

func sha(c byte) string { return "sha256:" + strings.Repeat(string(rune('0'+c%10)), 64) }

func mustArtifact(t *testing.T, s Store, tenant, client, id string, expires *time.Time) Artifact {
	t.Helper()
	a, err := s.CreateArtifact(ctx, Artifact{ID: id, TenantID: tenant, ClientID: client, Kind: ArtifactCheckpoint,
		Name: "step-" + id, Size: 1234, ContentHash: sha(1), Location: "artifacts/" + id, KeyID: "kek-1",
		Metadata: json.RawMessage(`{"step":3}`), ExpiresAt: expires})
	if err != nil {
		t.Fatalf("CreateArtifact(%s): %v", id, err)
	}
	return a
}

func mustKey(t *testing.T, s Store, tenant, id string, role Role) (APIKey, string) {
	t.Helper()
	token, prefix, hash, err := NewAPIToken()
	if err != nil {
		t.Fatal(err)
	}
	k, err := s.CreateAPIKey(ctx, APIKey{ID: id, TenantID: tenant, Role: role, Prefix: prefix, Hash: hash})
	if err != nil {
		t.Fatalf("CreateAPIKey(%s): %v", id, err)
	}
	return k, token
}

func wantErr(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: error %v, want %v", what, err, target)
	}
}

func wantField(t *testing.T, what string, err error, field string) {
	t.Helper()
	var fe *FieldError
	if !errors.As(err, &fe) || !errors.Is(err, ErrInvalid) {
		t.Fatalf("%s: error %v, want a *FieldError for %s", what, err, field)
	}
	if fe.Field != field {
		t.Fatalf("%s: error names field %q, want %q (%v)", what, fe.Field, field, err)
	}
}

func TestTenants(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		s := mustOpen(t, b)
		t1 := mustTenant(t, s, "t1")
		if t1.CreatedAt.IsZero() || t1.CreatedAt.Location() != time.UTC || t1.CreatedAt.Nanosecond()%1000 != 0 {
			t.Fatalf("CreatedAt %v: want now, UTC, microseconds", t1.CreatedAt)
		}
		got, err := s.GetTenant(ctx, "t1")
		if err != nil || got != t1 {
			t.Fatalf("GetTenant = %+v, %v; want %+v", got, err, t1)
		}
		_, err = s.CreateTenant(ctx, Tenant{ID: "t1", Name: "again"})
		wantErr(t, "duplicate tenant", err, ErrConflict)
		_, err = s.GetTenant(ctx, "nope")
		wantErr(t, "missing tenant", err, ErrNotFound)
		mustTenant(t, s, "t2")
		list, err := s.ListTenants(ctx)
		if err != nil || len(list) != 2 || list[0].ID != "t1" || list[1].ID != "t2" {
			t.Fatalf("ListTenants = %+v, %v", list, err)
		}
		got, _ = s.GetTenant(ctx, "t1")
		if got.Name != "Tenant t1" {
			t.Fatalf("a refused duplicate changed the tenant: %+v", got)
		}
	})
}

// TestInvalidInput: every malformed field is refused with a *FieldError
// naming it, and nothing is written.
func TestInvalidInput(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		s := mustOpen(t, b)
		mustTenant(t, s, "t1")
		mustClient(t, s, "t1", "c1")
		_, prefix, hash, _ := NewAPIToken()
		cases := []struct {
			name  string
			field string
			do    func() error
		}{
			{"tenant id empty", "id", func() error { _, err := s.CreateTenant(ctx, Tenant{Name: "x"}); return err }},
			{"tenant id slash", "id", func() error { _, err := s.CreateTenant(ctx, Tenant{ID: "a/b", Name: "x"}); return err }},
			{"tenant id long", "id", func() error {
				_, err := s.CreateTenant(ctx, Tenant{ID: strings.Repeat("a", MaxIDLen+1), Name: "x"})
				return err
			}},
			{"tenant name control", "name", func() error { _, err := s.CreateTenant(ctx, Tenant{ID: "t9", Name: "a\nb"}); return err }},
			{"tenant name missing", "name", func() error { _, err := s.CreateTenant(ctx, Tenant{ID: "t9"}); return err }},
			{"key role", "role", func() error {
				_, err := s.CreateAPIKey(ctx, APIKey{ID: "k9", TenantID: "t1", Role: "root", Prefix: prefix, Hash: hash})
				return err
			}},
			{"key hash", "hash", func() error {
				_, err := s.CreateAPIKey(ctx, APIKey{ID: "k9", TenantID: "t1", Role: RoleAdmin, Prefix: prefix, Hash: hash[:31]})
				return err
			}},
			{"key prefix", "prefix", func() error {
				_, err := s.CreateAPIKey(ctx, APIKey{ID: "k9", TenantID: "t1", Role: RoleAdmin, Prefix: "ABC", Hash: hash})
				return err
			}},
			{"client config", "config", func() error {
				_, err := s.CreateClient(ctx, TrainingClient{ID: "c9", TenantID: "t1", BaseModel: "m", Config: json.RawMessage(`{`)})
				return err
			}},
			{"client step", "step", func() error {
				_, err := s.CreateClient(ctx, TrainingClient{ID: "c9", TenantID: "t1", BaseModel: "m", Step: -1})
				return err
			}},
			{"client status", "status", func() error {
				_, err := s.CreateClient(ctx, TrainingClient{ID: "c9", TenantID: "t1", BaseModel: "m", Status: "paused"})
				return err
			}},
			{"client base model", "base_model", func() error {
				_, err := s.CreateClient(ctx, TrainingClient{ID: "c9", TenantID: "t1"})
				return err
			}},
			{"update step", "step", func() error {
				_, err := s.UpdateClient(ctx, TrainingClient{ID: "c1", TenantID: "t1", Status: ClientActive, Step: -5, Version: 1})
				return err
			}},
			{"op kind", "kind", func() error {
				_, err := s.CreateOperation(ctx, Operation{ID: "o9", TenantID: "t1", ClientID: "c1", Kind: "Optim-Step"})
				return err
			}},
			{"op state", "state", func() error {
				_, err := s.CreateOperation(ctx, Operation{ID: "o9", TenantID: "t1", Kind: KindSample, State: "done"})
				return err
			}},
			{"op result", "result", func() error {
				_, err := s.CreateOperation(ctx, Operation{ID: "o9", TenantID: "t1", Kind: KindSample, Result: json.RawMessage("nan")})
				return err
			}},
			{"op client id", "client_id", func() error {
				_, err := s.CreateOperation(ctx, Operation{ID: "o9", TenantID: "t1", ClientID: "../c1", Kind: KindSample})
				return err
			}},
			{"artifact size", "size", func() error {
				_, err := s.CreateArtifact(ctx, Artifact{ID: "a9", TenantID: "t1", Kind: "checkpoint", Name: "n", Size: -1, ContentHash: sha(1), Location: "x"})
				return err
			}},
			{"artifact hash", "content_hash", func() error {
				_, err := s.CreateArtifact(ctx, Artifact{ID: "a9", TenantID: "t1", Kind: "checkpoint", Name: "n", ContentHash: "md5:00", Location: "x"})
				return err
			}},
			{"artifact hash case", "content_hash", func() error {
				_, err := s.CreateArtifact(ctx, Artifact{ID: "a9", TenantID: "t1", Kind: "checkpoint", Name: "n", ContentHash: strings.ToUpper(sha(1)), Location: "x"})
				return err
			}},
			{"artifact location", "location", func() error {
				_, err := s.CreateArtifact(ctx, Artifact{ID: "a9", TenantID: "t1", Kind: "checkpoint", Name: "n", ContentHash: sha(1)})
				return err
			}},
			{"artifact expiry year", "expires_at", func() error {
				y := time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
				_, err := s.CreateArtifact(ctx, Artifact{ID: "a9", TenantID: "t1", Kind: "checkpoint", Name: "n", ContentHash: sha(1), Location: "x", ExpiresAt: &y})
				return err
			}},
			{"states", "state", func() error { _, err := s.ListOperationsByState(ctx, "paused"); return err }},
			{"fail reason", "error_message", func() error { _, err := s.FailRunningOperations(ctx, ""); return err }},
			{"audit name", "name", func() error { _, err := s.AuditStore(ctx, "../x"); return err }},
		}
		for _, c := range cases {
			wantField(t, c.name, c.do(), c.field)
		}
		// Nothing was written.
		if l, _ := s.ListTenants(ctx); len(l) != 1 {
			t.Fatalf("%d tenants after refused creates", len(l))
		}
		if l, _ := s.ListAPIKeys(ctx, "t1"); len(l) != 0 {
			t.Fatalf("%d keys after refused creates", len(l))
		}
		if l, _ := s.ListClients(ctx, "t1"); len(l) != 1 || l[0].Step != 0 || l[0].Version != 1 {
			t.Fatalf("clients after refused writes: %+v", l)
		}
		if l, _ := s.ListArtifacts(ctx, "t1"); len(l) != 0 {
			t.Fatalf("%d artifacts after refused creates", len(l))
		}
		if l, _ := s.ListOperationsByState(ctx, OpQueued, OpRunning, OpSucceeded, OpFailed); len(l) != 0 {
			t.Fatalf("%d operations after refused creates", len(l))
		}
	})
}

// TestTenantScoping: another tenant's ids answer ErrNotFound on every
// tenant-scoped method, exactly like missing ones, and change nothing.
func TestTenantScoping(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		s := mustOpen(t, b)
		mustTenant(t, s, "alice")
		mustTenant(t, s, "bob")
		c := mustClient(t, s, "alice", "c-alice")
		k, token := mustKey(t, s, "alice", "k-alice", RoleTrainer)
		a := mustArtifact(t, s, "alice", "c-alice", "a-alice", nil)
		op, err := s.CreateOperation(ctx, Operation{ID: "o-alice", TenantID: "alice", ClientID: c.ID, Kind: KindOptimStep, IdempotencyKey: "idem-1"})
		if err != nil {
			t.Fatal(err)
		}

		for _, tenant := range []string{"bob", "nobody"} {
			_, err := s.GetClient(ctx, tenant, c.ID)
			wantErr(t, "GetClient other tenant", err, ErrNotFound)
			_, err = s.GetOperation(ctx, tenant, op.ID)
			wantErr(t, "GetOperation other tenant", err, ErrNotFound)
			_, err = s.GetArtifact(ctx, tenant, a.ID)
			wantErr(t, "GetArtifact other tenant", err, ErrNotFound)
			err = s.DeleteArtifact(ctx, tenant, a.ID)
			wantErr(t, "DeleteArtifact other tenant", err, ErrNotFound)
			_, err = s.RevokeAPIKey(ctx, tenant, k.ID)
			wantErr(t, "RevokeAPIKey other tenant", err, ErrNotFound)
			upd := c
			upd.TenantID, upd.Step = tenant, 99
			_, err = s.UpdateClient(ctx, upd)
			wantErr(t, "UpdateClient other tenant", err, ErrNotFound)
			uop := op
			uop.TenantID, uop.State = tenant, OpFailed
			_, err = s.UpdateOperation(ctx, uop)
			wantErr(t, "UpdateOperation other tenant", err, ErrNotFound)
			// Attaching an operation or artifact to another tenant's client.
			_, err = s.CreateOperation(ctx, Operation{ID: "o-x-" + tenant, TenantID: tenant, ClientID: c.ID, Kind: KindSample})
			wantErr(t, "CreateOperation on another tenant's client", err, ErrNotFound)
			_, err = s.CreateArtifact(ctx, Artifact{ID: "a-x-" + tenant, TenantID: tenant, ClientID: c.ID, Kind: "checkpoint", Name: "n", ContentHash: sha(2), Location: "x"})
			wantErr(t, "CreateArtifact on another tenant's client", err, ErrNotFound)
			// The same idempotency key in another tenant is another operation.
			if tenant == "bob" {
				bop, err := s.CreateOperation(ctx, Operation{ID: "o-bob", TenantID: "bob", Kind: KindSample, IdempotencyKey: "idem-1"})
				if err != nil || bop.ID != "o-bob" {
					t.Fatalf("bob's operation with alice's idempotency key: %+v, %v", bop, err)
				}
			}
			if l, _ := s.ListClients(ctx, tenant); len(l) != 0 {
				t.Fatalf("ListClients(%s) shows %d clients", tenant, len(l))
			}
			if l, _ := s.ListArtifacts(ctx, tenant); len(l) != 0 {
				t.Fatalf("ListArtifacts(%s) shows %d artifacts", tenant, len(l))
			}
			if l, _ := s.ListAPIKeys(ctx, tenant); len(l) != 0 {
				t.Fatalf("ListAPIKeys(%s) shows %d keys", tenant, len(l))
			}
		}
		// A missing id gives the same error as another tenant's.
		_, errMissing := s.GetClient(ctx, "bob", "missing")
		_, errOther := s.GetClient(ctx, "bob", c.ID)
		if strings.ReplaceAll(errMissing.Error(), "missing", "X") != strings.ReplaceAll(errOther.Error(), c.ID, "X") {
			t.Fatalf("missing and foreign ids differ: %q vs %q", errMissing, errOther)
		}
		// Alice's objects are untouched.
		if got, err := s.GetClient(ctx, "alice", c.ID); err != nil || got.Step != 0 || got.Version != 1 {
			t.Fatalf("alice's client after bob's writes: %+v, %v", got, err)
		}
		if got, err := s.GetOperation(ctx, "alice", op.ID); err != nil || got.State != OpQueued {
			t.Fatalf("alice's operation after bob's writes: %+v, %v", got, err)
		}
		if _, err := s.GetArtifact(ctx, "alice", a.ID); err != nil {
			t.Fatalf("alice's artifact after bob's delete: %v", err)
		}
		if _, err := Authenticate(ctx, s, token); err != nil {
			t.Fatalf("alice's key after bob's revoke: %v", err)
		}
		// Creating records for a tenant that does not exist.
		_, err = s.CreateClient(ctx, TrainingClient{ID: "c-ghost", TenantID: "ghost", BaseModel: "m"})
		wantErr(t, "CreateClient for a missing tenant", err, ErrNotFound)
		_, _, hash, _ := NewAPIToken()
		_, err = s.CreateAPIKey(ctx, APIKey{ID: "k-ghost", TenantID: "ghost", Role: RoleAdmin, Prefix: strings.Repeat("a", prefixLen), Hash: hash})
		wantErr(t, "CreateAPIKey for a missing tenant", err, ErrNotFound)
	})
}

func TestAPIKeys(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		s := mustOpen(t, b)
		mustTenant(t, s, "t1")
		k, token := mustKey(t, s, "t1", "k1", RoleAdmin)
		got, err := Authenticate(ctx, s, token)
		if err != nil || got.ID != "k1" || got.Role != RoleAdmin || got.TenantID != "t1" {
			t.Fatalf("Authenticate = %+v, %v", got, err)
		}
		byPrefix, err := s.GetAPIKeyByPrefix(ctx, k.Prefix)
		if err != nil || !bytes.Equal(byPrefix.Hash, k.Hash) || byPrefix.RevokedAt != nil {
			t.Fatalf("GetAPIKeyByPrefix = %+v, %v", byPrefix, err)
		}
		// Wrong secret with the right prefix; unknown prefix; malformed.
		wrong := token[:len(token)-1] + string("abcdefgh"[(strings.IndexByte("abcdefgh", token[len(token)-1])+1)%8])
		if token[len(token)-1] < 'a' || token[len(token)-1] > 'h' {
			wrong = token[:len(token)-1] + "a"
		}
		_, err = Authenticate(ctx, s, wrong)
		wantErr(t, "wrong secret", err, ErrInvalidToken)
		other, _, _, _ := NewAPIToken()
		_, err = Authenticate(ctx, s, other)
		wantErr(t, "unknown prefix", err, ErrInvalidToken)
		_, err = Authenticate(ctx, s, "Bearer "+token)
		wantErr(t, "malformed", err, ErrInvalidToken)
		for _, e := range []error{err} {
			if strings.Contains(e.Error(), token[20:]) {
				t.Fatalf("error contains the secret: %v", e)
			}
		}
		// Duplicate prefix.
		_, err = s.CreateAPIKey(ctx, APIKey{ID: "k2", TenantID: "t1", Role: RoleViewer, Prefix: k.Prefix, Hash: k.Hash})
		wantErr(t, "duplicate prefix", err, ErrConflict)
		_, err = s.CreateAPIKey(ctx, APIKey{ID: "k1", TenantID: "t1", Role: RoleViewer, Prefix: strings.Repeat("b", prefixLen), Hash: k.Hash})
		wantErr(t, "duplicate id", err, ErrConflict)

		mustKey(t, s, "t1", "k3", RoleViewer)
		keys, err := s.ListAPIKeys(ctx, "t1")
		if err != nil || len(keys) != 2 || keys[0].ID != "k1" || keys[1].ID != "k3" {
			t.Fatalf("ListAPIKeys = %+v, %v", keys, err)
		}

		// Revocation.
		r1, err := s.RevokeAPIKey(ctx, "t1", "k1")
		if err != nil || r1.RevokedAt == nil {
			t.Fatalf("RevokeAPIKey = %+v, %v", r1, err)
		}
		_, err = Authenticate(ctx, s, token)
		wantErr(t, "revoked key", err, ErrRevoked)
		wantErr(t, "revoked key", err, ErrInvalidToken)
		time.Sleep(2 * time.Millisecond)
		r2, err := s.RevokeAPIKey(ctx, "t1", "k1")
		if err != nil || r2.RevokedAt == nil || !r2.RevokedAt.Equal(*r1.RevokedAt) {
			t.Fatalf("second revoke moved the revocation time: %v -> %v (%v)", r1.RevokedAt, r2.RevokedAt, err)
		}
		_, err = s.RevokeAPIKey(ctx, "t1", "missing")
		wantErr(t, "revoke missing", err, ErrNotFound)
	})
}

func TestClientUpdates(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		s := mustOpen(t, b)
		mustTenant(t, s, "t1")
		c := mustClient(t, s, "t1", "c1")
		if c.Version != 1 || c.Status != ClientActive || !c.UpdatedAt.Equal(c.CreatedAt) {
			t.Fatalf("created client %+v", c)
		}
		got, err := s.GetClient(ctx, "t1", "c1")
		if err != nil || string(got.Config) != `{"lora":{"rank":8}}` || !bytes.Equal(got.BudgetState, []byte{1, 2, 3}) || got.BaseModel != "tensafe-tiny" {
			t.Fatalf("GetClient = %+v, %v", got, err)
		}
		_, err = s.CreateClient(ctx, TrainingClient{ID: "c1", TenantID: "t1", BaseModel: "m"})
		wantErr(t, "duplicate client", err, ErrConflict)

		got.Step, got.BudgetState = 7, []byte("rdp-state")
		u, err := s.UpdateClient(ctx, got)
		if err != nil || u.Version != 2 || u.Step != 7 || string(u.BudgetState) != "rdp-state" || u.UpdatedAt.Before(u.CreatedAt) {
			t.Fatalf("UpdateClient = %+v, %v", u, err)
		}
		// A stale version changes nothing.
		stale := got
		stale.Step = 100
		_, err = s.UpdateClient(ctx, stale)
		wantErr(t, "stale version", err, ErrConflict)
		again, _ := s.GetClient(ctx, "t1", "c1")
		if again.Step != 7 || again.Version != 2 {
			t.Fatalf("stale update changed the client: %+v", again)
		}
		u.Status = ClientDeleted
		if u, err = s.UpdateClient(ctx, u); err != nil || u.Status != ClientDeleted || u.Version != 3 {
			t.Fatalf("delete: %+v, %v", u, err)
		}
		_, err = s.UpdateClient(ctx, TrainingClient{ID: "nope", TenantID: "t1", Status: ClientActive, Version: 1})
		wantErr(t, "update missing", err, ErrNotFound)
		mustClient(t, s, "t1", "c2")
		l, err := s.ListClients(ctx, "t1")
		if err != nil || len(l) != 2 || l[0].ID != "c1" || l[1].ID != "c2" {
			t.Fatalf("ListClients = %+v, %v", l, err)
		}
	})
}

// TestConcurrentWriters: many goroutines increment a client's step with
// read-modify-write and optimistic retries; no update is lost and no
// writer fails with a database busy error.
func TestConcurrentWriters(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		s := mustOpen(t, b)
		mustTenant(t, s, "t1")
		mustClient(t, s, "t1", "c1")
		const workers, each = 8, 15
		var wg sync.WaitGroup
		errs := make(chan error, workers)
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				for i := 0; i < each; i++ {
					for {
						c, err := s.GetClient(ctx, "t1", "c1")
						if err != nil {
							errs <- err
							return
						}
						c.Step++
						if _, err = s.UpdateClient(ctx, c); err == nil {
							break
						} else if !errors.Is(err, ErrConflict) {
							errs <- err
							return
						}
					}
					// Other writers at the same time: operations and artifacts.
					id := fmt.Sprintf("o-%d-%d", w, i)
					if _, err := s.CreateOperation(ctx, Operation{ID: id, TenantID: "t1", ClientID: "c1", Kind: KindForwardBackward}); err != nil {
						errs <- err
						return
					}
				}
			}(w)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		c, err := s.GetClient(ctx, "t1", "c1")
		if err != nil || c.Step != workers*each || c.Version != workers*each+1 {
			t.Fatalf("after %d increments: step %d version %d (%v)", workers*each, c.Step, c.Version, err)
		}
		ops, err := s.ListOperationsByState(ctx, OpQueued)
		if err != nil || len(ops) != workers*each {
			t.Fatalf("%d operations, want %d (%v)", len(ops), workers*each, err)
		}
	})
}

func TestOperationIdempotency(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		s := mustOpen(t, b)
		mustTenant(t, s, "t1")
		mustClient(t, s, "t1", "c1")
		first, err := s.CreateOperation(ctx, Operation{ID: "o1", TenantID: "t1", ClientID: "c1", Kind: KindOptimStep, IdempotencyKey: "req-42"})
		if err != nil || first.State != OpQueued || first.CreatedAt.IsZero() {
			t.Fatalf("CreateOperation = %+v, %v", first, err)
		}
		again, err := s.CreateOperation(ctx, Operation{ID: "o2", TenantID: "t1", ClientID: "c1", Kind: KindOptimStep, IdempotencyKey: "req-42"})
		wantErr(t, "replay", err, ErrDuplicate)
		if again.ID != "o1" || !again.CreatedAt.Equal(first.CreatedAt) {
			t.Fatalf("replay returned %+v, want the first operation", again)
		}
		if _, err := s.GetOperation(ctx, "t1", "o2"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("replay stored a second operation: %v", err)
		}
		// A replay after the operation finished returns it finished.
		first.State, first.Result = OpSucceeded, json.RawMessage(`{"loss":1.5}`)
		if _, err := s.UpdateOperation(ctx, first); err != nil {
			t.Fatal(err)
		}
		again, err = s.CreateOperation(ctx, Operation{ID: "o3", TenantID: "t1", Kind: KindOptimStep, IdempotencyKey: "req-42"})
		wantErr(t, "replay after finish", err, ErrDuplicate)
		if again.State != OpSucceeded || string(again.Result) != `{"loss":1.5}` {
			t.Fatalf("replay after finish returned %+v", again)
		}
		// Empty keys never collide; an existing id is a conflict.
		for _, id := range []string{"o4", "o5"} {
			if _, err := s.CreateOperation(ctx, Operation{ID: id, TenantID: "t1", Kind: KindSample}); err != nil {
				t.Fatal(err)
			}
		}
		_, err = s.CreateOperation(ctx, Operation{ID: "o4", TenantID: "t1", Kind: KindSample})
		wantErr(t, "duplicate id", err, ErrConflict)

		// Concurrent creates with one key: exactly one operation.
		const n = 8
		var wg sync.WaitGroup
		ids := make([]string, n)
		errs := make([]error, n)
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				op, err := s.CreateOperation(ctx, Operation{ID: fmt.Sprintf("race-%d", i), TenantID: "t1", ClientID: "c1", Kind: KindSample, IdempotencyKey: "race"})
				ids[i], errs[i] = op.ID, err
			}(i)
		}
		wg.Wait()
		winners := 0
		for i := 0; i < n; i++ {
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
	})
}

func TestOperationLifecycle(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		s := mustOpen(t, b)
		mustTenant(t, s, "t1")
		mustClient(t, s, "t1", "c1")
		op, err := s.CreateOperation(ctx, Operation{ID: "o1", TenantID: "t1", ClientID: "c1", Kind: KindForwardBackward})
		if err != nil {
			t.Fatal(err)
		}
		op.State = OpRunning
		op, err = s.UpdateOperation(ctx, op)
		if err != nil || op.StartedAt == nil || op.FinishedAt != nil {
			t.Fatalf("to running: %+v, %v", op, err)
		}
		op.State, op.Result = OpSucceeded, json.RawMessage(`{"loss":[1,2]}`)
		op, err = s.UpdateOperation(ctx, op)
		if err != nil || op.FinishedAt == nil || op.FinishedAt.Before(*op.StartedAt) {
			t.Fatalf("to succeeded: %+v, %v", op, err)
		}
		got, err := s.GetOperation(ctx, "t1", "o1")
		if err != nil || got.State != OpSucceeded || string(got.Result) != `{"loss":[1,2]}` || got.ClientID != "c1" ||
			!got.StartedAt.Equal(*op.StartedAt) || !got.FinishedAt.Equal(*op.FinishedAt) {
			t.Fatalf("GetOperation = %+v, %v", got, err)
		}
		// Final is final.
		for _, st := range []OpState{OpRunning, OpFailed, OpQueued, OpSucceeded} {
			bad := got
			bad.State = st
			_, err = s.UpdateOperation(ctx, bad)
			wantErr(t, "update finished to "+string(st), err, ErrConflict)
		}
		// running -> queued is refused too.
		op2, _ := s.CreateOperation(ctx, Operation{ID: "o2", TenantID: "t1", ClientID: "c1", Kind: KindSample, State: OpRunning})
		op2.State = OpQueued
		_, err = s.UpdateOperation(ctx, op2)
		wantErr(t, "running to queued", err, ErrConflict)
		// queued -> failed directly, with an error code.
		op3, _ := s.CreateOperation(ctx, Operation{ID: "o3", TenantID: "t1", ClientID: "c1", Kind: KindOptimStep})
		op3.State, op3.ErrorCode, op3.ErrorMessage = OpFailed, "privacy_budget_exceeded", "the next step would spend ε 8.1 > 8"
		if op3, err = s.UpdateOperation(ctx, op3); err != nil || op3.FinishedAt == nil {
			t.Fatalf("queued to failed: %+v, %v", op3, err)
		}
		byState, err := s.ListOperationsByState(ctx, OpRunning, OpFailed)
		if err != nil || len(byState) != 2 || byState[0].ID != "o2" || byState[1].ID != "o3" {
			t.Fatalf("ListOperationsByState(running, failed) = %+v, %v", byState, err)
		}
		_, err = s.UpdateOperation(ctx, Operation{ID: "missing", TenantID: "t1", State: OpFailed})
		wantErr(t, "update missing", err, ErrNotFound)
		// An update carries only what it writes.
		op4, _ := s.CreateOperation(ctx, Operation{ID: "o4", TenantID: "t1", ClientID: "c1", Kind: KindSaveState})
		upd, err := s.UpdateOperation(ctx, Operation{ID: "o4", TenantID: "t1", State: OpRunning})
		if err != nil || upd.Kind != KindSaveState || upd.ClientID != "c1" || !upd.CreatedAt.Equal(op4.CreatedAt) || upd.StartedAt == nil {
			t.Fatalf("partial update: %+v, %v", upd, err)
		}
	})
}

func TestFailRunningOperations(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		s := mustOpen(t, b)
		mustTenant(t, s, "t1")
		mustTenant(t, s, "t2")
		mustClient(t, s, "t1", "c1")
		states := map[string]OpState{"q1": OpQueued, "r1": OpRunning, "r2": OpRunning, "s1": OpSucceeded, "f1": OpFailed}
		for id, st := range states {
			tenant := "t1"
			if id == "r2" {
				tenant = "t2"
			}
			if _, err := s.CreateOperation(ctx, Operation{ID: id, TenantID: tenant, Kind: KindSample, State: st, ErrorCode: map[bool]string{true: "boom"}[st == OpFailed]}); err != nil {
				t.Fatal(err)
			}
		}
		n, err := s.FailRunningOperations(ctx, "the server restarted while the operation was in flight")
		if err != nil || n != 3 {
			t.Fatalf("FailRunningOperations = %d, %v; want 3", n, err)
		}
		for id, was := range states {
			tenant := "t1"
			if id == "r2" {
				tenant = "t2"
			}
			op, err := s.GetOperation(ctx, tenant, id)
			if err != nil {
				t.Fatal(err)
			}
			switch was {
			case OpQueued, OpRunning:
				if op.State != OpFailed || op.ErrorCode != ErrorCodeServerRestarted || op.FinishedAt == nil ||
					!strings.Contains(op.ErrorMessage, "restarted") {
					t.Fatalf("%s after restart: %+v", id, op)
				}
			default:
				if op.State != was || op.ErrorCode == ErrorCodeServerRestarted {
					t.Fatalf("%s (%s) changed: %+v", id, was, op)
				}
			}
		}
		if n, err := s.FailRunningOperations(ctx, "again"); err != nil || n != 0 {
			t.Fatalf("second FailRunningOperations = %d, %v", n, err)
		}
		if l, _ := s.ListOperationsByState(ctx, OpQueued, OpRunning); len(l) != 0 {
			t.Fatalf("%d unfinished operations remain", len(l))
		}
	})
}

func TestArtifacts(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		s := mustOpen(t, b)
		mustTenant(t, s, "t1")
		mustTenant(t, s, "t2")
		mustClient(t, s, "t1", "c1")
		now := time.Now().UTC()
		past1, past2, future := now.Add(-2*time.Hour), now.Add(-time.Hour), now.Add(time.Hour)
		a1 := mustArtifact(t, s, "t1", "c1", "a1", &past2)
		mustArtifact(t, s, "t1", "", "a2", &future)
		mustArtifact(t, s, "t1", "c1", "a3", nil)
		mustArtifact(t, s, "t2", "", "a4", &past1)
		got, err := s.GetArtifact(ctx, "t1", "a1")
		if err != nil || got.Size != 1234 || got.ContentHash != sha(1) || got.Location != "artifacts/a1" || got.KeyID != "kek-1" ||
			string(got.Metadata) != `{"step":3}` || got.ClientID != "c1" || !got.ExpiresAt.Equal(*a1.ExpiresAt) || !got.CreatedAt.Equal(a1.CreatedAt) {
			t.Fatalf("GetArtifact = %+v, %v (want %+v)", got, err, a1)
		}
		_, err = s.CreateArtifact(ctx, a1)
		wantErr(t, "duplicate artifact", err, ErrConflict)
		l, err := s.ListArtifacts(ctx, "t1")
		if err != nil || len(l) != 3 {
			t.Fatalf("ListArtifacts = %d, %v", len(l), err)
		}
		exp, err := s.ListExpiredArtifacts(ctx, now)
		if err != nil || len(exp) != 2 || exp[0].ID != "a4" || exp[1].ID != "a1" {
			t.Fatalf("ListExpiredArtifacts = %+v, %v; want a4, a1", exp, err)
		}
		// Expiry is inclusive.
		exp, _ = s.ListExpiredArtifacts(ctx, *a1.ExpiresAt)
		if len(exp) != 2 {
			t.Fatalf("ListExpiredArtifacts at a1's expiry: %d", len(exp))
		}
		if exp, _ = s.ListExpiredArtifacts(ctx, a1.ExpiresAt.Add(-time.Microsecond)); len(exp) != 1 {
			t.Fatalf("ListExpiredArtifacts just before a1's expiry: %d", len(exp))
		}
		if err := s.DeleteArtifact(ctx, "t1", "a1"); err != nil {
			t.Fatal(err)
		}
		_, err = s.GetArtifact(ctx, "t1", "a1")
		wantErr(t, "deleted artifact", err, ErrNotFound)
		wantErr(t, "delete twice", s.DeleteArtifact(ctx, "t1", "a1"), ErrNotFound)
		if exp, _ = s.ListExpiredArtifacts(ctx, now); len(exp) != 1 || exp[0].ID != "a4" {
			t.Fatalf("ListExpiredArtifacts after delete = %+v", exp)
		}
	})
}

// TestRestart: close and reopen; everything acknowledged is there.
func TestRestart(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		s := b.open(t)
		mustTenant(t, s, "t1")
		_, token := mustKey(t, s, "t1", "k1", RoleTrainer)
		c := mustClient(t, s, "t1", "c1")
		c.Step, c.BudgetState = 20, bytes.Repeat([]byte{0xab}, 4096)
		c, err := s.UpdateClient(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		running, _ := s.CreateOperation(ctx, Operation{ID: "o1", TenantID: "t1", ClientID: "c1", Kind: KindOptimStep, State: OpRunning, IdempotencyKey: "k"})
		exp := time.Now().Add(time.Hour)
		a := mustArtifact(t, s, "t1", "c1", "a1", &exp)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := s.GetTenant(ctx, "t1"); err == nil {
			t.Fatal("GetTenant after Close succeeded")
		}

		s = mustOpen(t, b)
		if _, err := Authenticate(ctx, s, token); err != nil {
			t.Fatalf("key after restart: %v", err)
		}
		got, err := s.GetClient(ctx, "t1", "c1")
		if err != nil || got.Step != 20 || got.Version != c.Version || !bytes.Equal(got.BudgetState, c.BudgetState) || !got.UpdatedAt.Equal(c.UpdatedAt) {
			t.Fatalf("client after restart: %+v, %v", got, err)
		}
		ga, err := s.GetArtifact(ctx, "t1", "a1")
		if err != nil || ga.ContentHash != a.ContentHash || !ga.ExpiresAt.Equal(*a.ExpiresAt) {
			t.Fatalf("artifact after restart: %+v, %v", ga, err)
		}
		if n, err := s.FailRunningOperations(ctx, "restart"); err != nil || n != 1 {
			t.Fatalf("FailRunningOperations after restart = %d, %v", n, err)
		}
		op, err := s.CreateOperation(ctx, Operation{ID: "o2", TenantID: "t1", Kind: KindOptimStep, IdempotencyKey: "k"})
		wantErr(t, "idempotency key after restart", err, ErrDuplicate)
		if op.ID != running.ID || op.State != OpFailed || op.ErrorCode != ErrorCodeServerRestarted {
			t.Fatalf("replay after restart: %+v", op)
		}
	})
}

// TestMigrationRefusesNewerSchema: a database migrated by a newer binary
// is refused, and left as it was.
func TestMigrationRefusesNewerSchema(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		s := b.open(t)
		mustTenant(t, s, "t1")
		s.Close()
		b.exec(t, "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)", SchemaVersion()+1, "from_the_future", 0)
		st, err := b.tryOpen()
		if err == nil {
			st.Close()
			t.Fatal("a database with a newer schema opened")
		}
		wantErr(t, "newer schema", err, ErrSchemaTooNew)
		var sve *SchemaVersionError
		if !errors.As(err, &sve) || sve.Database != SchemaVersion()+1 || sve.Known != SchemaVersion() {
			t.Fatalf("error %v: want a SchemaVersionError naming both versions", err)
		}
		// A renamed migration is another lineage.
		b.exec(t, "DELETE FROM schema_migrations WHERE version = ?", SchemaVersion()+1)
		b.exec(t, "UPDATE schema_migrations SET name = ? WHERE version = 1", "other")
		if st, err = b.tryOpen(); err == nil {
			st.Close()
		}
		if err == nil || errors.Is(err, ErrSchemaTooNew) || !strings.Contains(err.Error(), "lineage") {
			t.Fatalf("renamed migration: %v", err)
		}
		b.exec(t, "UPDATE schema_migrations SET name = ? WHERE version = 1", "init")
		s = mustOpen(t, b)
		if _, err := s.GetTenant(ctx, "t1"); err != nil {
			t.Fatalf("data after refused opens: %v", err)
		}
	})
}
