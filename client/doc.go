// Package client is TenSafe's Go SDK: a thin, typed client of the HTTP
// training API (docs/API.md, wire types in package api).
//
// A ServiceClient holds the server's address and a tenant's bearer API key.
// CreateTrainingClient returns a TrainingClient whose primitives
// (ForwardBackward, Forward, OptimStep, Sample, SaveState, LoadState) are
// asynchronous on the server: each returns a typed *Future at once, and
// Future.Result long-polls GET /api/v1/futures/{id}?wait=SECONDS until the
// operation has finished. One training client's operations run on the server
// in submission order, so a caller may submit several before waiting.
//
// Why the SDK retries, and when: a multi-tenant server sheds load with 429
// (Retry-After) and may answer 5xx while restarting. The client retries those
// with capped exponential backoff and full jitter, honouring Retry-After, but
// only where repeating cannot do a thing twice. Every POST carries an
// Idempotency-Key header, random per logical call and reused on each retry
// of it. GET, DELETE, the operation POSTs (forward_backward … load_state)
// and the creation of a training client or a tenant, which the server
// deduplicates by that key, returning the first submission's future, client
// or tenant, are retried on 429, 5xx and transport errors. Other POSTs that
// create something (an API key, a package) are retried only on 429, which
// the server answers before doing anything: after a 5xx or a lost answer the
// thing may exist, and the caller decides.
//
// Errors from the server are *APIError values decoded from the one error
// envelope {"error": {"code", "message", "field"}}; a future that failed
// returns a *FutureError wrapping one. Helpers such as IsBudgetExceeded and
// IsNotFound work on both. The API key never appears in an error.
package client
