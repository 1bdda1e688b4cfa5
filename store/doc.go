// Package store keeps TenSafe's metadata: tenants, API keys, training
// clients, operations (futures), artifact records and the audit log, in a
// SQL database — SQLite as the embedded default, PostgreSQL for scale-out.
//
// Why a database and not files: a restarted server must find every tenant,
// client, artifact and future it acknowledged, must know which operations
// were cut off by the restart (FailRunningOperations), and must never run an
// idempotent request twice. Those are transactional questions, and a SQL
// database answers them with the guarantees written down in docs/STORE.md.
//
// The Store interface is the one thing callers program against; Open
// (SQLite, via the pure-Go modernc.org/sqlite) and OpenPostgres (pgx)
// return its two implementations, which share their SQL and pass the same
// conformance tests. Schemas are versioned migrations embedded in the
// binary, one set per dialect, applied in a transaction when a database is
// opened; a database written by a newer binary is refused
// (ErrSchemaTooNew) rather than misread.
//
// Tenancy is enforced here and not only in the HTTP layer: every read of a
// tenant's object takes the tenant id, and another tenant's id answers
// ErrNotFound exactly as a missing one does, so that a handler cannot leak
// another tenant's object by forgetting a check.
//
// API keys are stored as a lookup prefix and the SHA-256 of the whole
// high-entropy token (NewAPIToken); the token itself is shown once to its
// owner and never stored, logged or returned. Authenticate compares hashes
// in constant time.
//
// AuditStore puts the hash-chained audit log of package audit in the same
// database, so that the embedded server and a PostgreSQL deployment keep
// their audit chain next to the metadata it describes.
package store
