// Package service is TenSafe's training service layer: training clients
// (sessions) on shared base models, a per-client ordered operation queue whose
// operations are futures persisted in the store, privacy-budget enforcement,
// encrypted checkpoints and the audit trail of every operation.
//
// Why a layer between the HTTP server and the engine: the rules that make a
// run private and recoverable must hold whatever the transport. Here, and not
// in a handler, an optim_step is refused before it would exceed the target ε
// (nothing changes), the accountant's state is persisted after every step
// (a restart never forgets spent budget), a checkpoint carries the adapter
// and the accountant together under the tenant's key (restoring one without
// the other would be a lie about ε), and another tenant's ids answer
// ErrNotFound exactly like missing ones.
//
// Concurrency: each client's operations run one at a time in submission
// order, on a goroutine that exists while the client has queued work; at most
// Config.MaxConcurrent operations of all clients run at once. A base model is
// loaded once, on first use, and shared by every client that trains on it.
//
// Errors callers must tell apart: *FieldError (bad input, naming the field;
// nothing was stored), ErrNotFound, *BudgetExceededError (matches
// ErrBudgetExceeded), ErrFailedPrecondition and ErrClosed. CodeOf maps an
// error to the api error code the server sends.
package service
