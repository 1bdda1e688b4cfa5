-- TenSafe metadata schema, version 1 (SQLite). See docs/STORE.md.
-- Times are INTEGER microseconds since the Unix epoch, UTC.

CREATE TABLE tenants (
    id         TEXT    NOT NULL PRIMARY KEY,
    name       TEXT    NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;

CREATE TABLE api_keys (
    id         TEXT    NOT NULL PRIMARY KEY,
    tenant_id  TEXT    NOT NULL REFERENCES tenants (id),
    role       TEXT    NOT NULL CHECK (role IN ('admin', 'trainer', 'viewer')),
    prefix     TEXT    NOT NULL UNIQUE,
    hash       BLOB    NOT NULL CHECK (length(hash) = 32),
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
) STRICT;
CREATE INDEX api_keys_tenant ON api_keys (tenant_id, created_at);

CREATE TABLE training_clients (
    id           TEXT    NOT NULL PRIMARY KEY,
    tenant_id    TEXT    NOT NULL REFERENCES tenants (id),
    base_model   TEXT    NOT NULL,
    config       TEXT,
    status       TEXT    NOT NULL CHECK (status IN ('active', 'deleted')),
    step         INTEGER NOT NULL CHECK (step >= 0),
    budget_state BLOB,
    version      INTEGER NOT NULL CHECK (version >= 1),
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    UNIQUE (tenant_id, id)
) STRICT;
CREATE INDEX training_clients_tenant ON training_clients (tenant_id, created_at);

CREATE TABLE operations (
    id              TEXT    NOT NULL PRIMARY KEY,
    tenant_id       TEXT    NOT NULL REFERENCES tenants (id),
    client_id       TEXT,
    kind            TEXT    NOT NULL,
    state           TEXT    NOT NULL CHECK (state IN ('queued', 'running', 'succeeded', 'failed')),
    result          TEXT,
    error_code      TEXT    NOT NULL DEFAULT '',
    error_message   TEXT    NOT NULL DEFAULT '',
    idempotency_key TEXT    NOT NULL DEFAULT '',
    created_at      INTEGER NOT NULL,
    started_at      INTEGER,
    finished_at     INTEGER,
    FOREIGN KEY (tenant_id, client_id) REFERENCES training_clients (tenant_id, id)
) STRICT;
CREATE UNIQUE INDEX operations_idempotency ON operations (tenant_id, idempotency_key) WHERE idempotency_key <> '';
CREATE INDEX operations_unfinished ON operations (state, created_at) WHERE state IN ('queued', 'running');
CREATE INDEX operations_client ON operations (tenant_id, client_id, created_at);

CREATE TABLE artifacts (
    id           TEXT    NOT NULL PRIMARY KEY,
    tenant_id    TEXT    NOT NULL REFERENCES tenants (id),
    client_id    TEXT,
    kind         TEXT    NOT NULL,
    name         TEXT    NOT NULL,
    size         INTEGER NOT NULL CHECK (size >= 0),
    content_hash TEXT    NOT NULL,
    location     TEXT    NOT NULL,
    key_id       TEXT    NOT NULL DEFAULT '',
    metadata     TEXT,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER,
    FOREIGN KEY (tenant_id, client_id) REFERENCES training_clients (tenant_id, id)
) STRICT;
CREATE INDEX artifacts_tenant ON artifacts (tenant_id, created_at);
CREATE INDEX artifacts_expiry ON artifacts (expires_at) WHERE expires_at IS NOT NULL;

-- The audit log (package audit): append-only, enforced by triggers as well
-- as by the API.
CREATE TABLE audit_entries (
    log   TEXT    NOT NULL,
    seq   INTEGER NOT NULL CHECK (seq >= 0),
    entry TEXT    NOT NULL,
    PRIMARY KEY (log, seq)
) STRICT, WITHOUT ROWID;

CREATE TABLE audit_checkpoints (
    log  TEXT    NOT NULL,
    idx  INTEGER NOT NULL CHECK (idx >= 0),
    note BLOB    NOT NULL,
    PRIMARY KEY (log, idx)
) STRICT, WITHOUT ROWID;

CREATE TRIGGER audit_entries_no_update BEFORE UPDATE ON audit_entries
BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
CREATE TRIGGER audit_entries_no_delete BEFORE DELETE ON audit_entries
BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
