package service

// Idempotent creation of training clients. A POST that creates something
// cannot be retried blindly: a lost response would make the retry create a
// second client. With an Idempotency-Key (the same header the operation
// POSTs use), the store keeps the key and a hash of the request with the
// client it created; a replay by the same tenant returns that client
// instead of creating another, and the key replayed with another request is
// a conflict. Keys are per tenant: another tenant's key never matches.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/tensafe/tensafe/api"
	"github.com/tensafe/tensafe/audit"
	"github.com/tensafe/tensafe/store"
)

// ErrIdempotencyKeyReused reports a creation whose Idempotency-Key the
// tenant already used for another request (another body, or a client since
// deleted). It matches store.ErrConflict too (HTTP 409).
var ErrIdempotencyKeyReused = errors.New("the Idempotency-Key was used for another request")

// CreationHash identifies a creation request by its decoded body v: the
// same request hashes the same whatever the JSON's key order or spacing
// ("sha256:" and 64 hex digits; empty if v does not marshal, which request
// types always do).
func CreationHash(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	h := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(h[:])
}

// creationHash is CreationHash of v when ctx carries an idempotency key,
// empty otherwise.
func creationHash(ctx context.Context, v any) string {
	if idempotencyOf(ctx) == "" {
		return ""
	}
	return CreationHash(v)
}

// replayCreateClient answers a creation whose Idempotency-Key created rec:
// the client as it is now when the request is the same, a conflict when it
// is not or when the client was deleted since. The replay is audited.
func (s *Service) replayCreateClient(ctx context.Context, tenant string, rec store.TrainingClient, cfg api.TrainingConfig) (api.TrainingClient, error) {
	rcd := audit.Record{TenantID: tenant, Actor: actorOf(ctx), Operation: "training.create_client", Resource: rec.ID,
		Outcome: audit.OutcomeSuccess, Details: map[string]string{"idempotent_replay": "true"}}
	var (
		c   api.TrainingClient
		err error
	)
	if h := creationHash(ctx, cfg); rec.RequestHash == "" || h != rec.RequestHash {
		err = fmt.Errorf("%w: %w: it created training client %s with another configuration; use a new key for a new client",
			store.ErrConflict, ErrIdempotencyKeyReused, rec.ID)
	} else if c, err = s.GetTrainingClient(ctx, tenant, rec.ID); errors.Is(err, ErrNotFound) {
		err = fmt.Errorf("%w: %w: it created training client %s, since deleted", store.ErrConflict, ErrIdempotencyKeyReused, rec.ID)
	}
	if err != nil {
		code, _ := CodeOf(err)
		rcd.Outcome, rcd.Details["error_code"] = audit.OutcomeFailure, code
		if errors.Is(err, ErrIdempotencyKeyReused) {
			rcd.Details["field"] = "Idempotency-Key"
		}
		s.record(ctx, rcd)
		return api.TrainingClient{}, err
	}
	s.record(ctx, rcd)
	return c, nil
}
