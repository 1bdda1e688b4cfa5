-- TenSafe metadata schema, version 1 (PostgreSQL). See docs/STORE.md.
-- Times are BIGINT microseconds since the Unix epoch, UTC, as in SQLite, so
-- that both backends store and compare exactly the same values.

CREATE TABLE tenants (
    id         TEXT   NOT NULL PRIMARY KEY,
    name       TEXT   NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE api_keys (
    id         TEXT   NOT NULL PRIMARY KEY,
    tenant_id  TEXT   NOT NULL REFERENCES tenants (id),
    role       TEXT   NOT NULL CHECK (role IN ('admin', 'trainer', 'viewer')),
    prefix     TEXT   NOT NULL UNIQUE,
    hash       BYTEA  NOT NULL CHECK (length(hash) = 32),
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id, created_at);

CREATE TABLE training_clients (
    id           TEXT   NOT NULL PRIMARY KEY,
    tenant_id    TEXT   NOT NULL REFERENCES tenants (id),
    base_model   TEXT   NOT NULL,
    config       TEXT,
    status       TEXT   NOT NULL CHECK (status IN ('active', 'deleted')),
    step         BIGINT NOT NULL CHECK (step >= 0),
    budget_state BYTEA,
    version      BIGINT NOT NULL CHECK (version >= 1),
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    UNIQUE (tenant_id, id)
);
CREATE INDEX training_clients_tenant ON training_clients (tenant_id, created_at);

CREATE TABLE operations (
    id              TEXT   NOT NULL PRIMARY KEY,
    tenant_id       TEXT   NOT NULL REFERENCES tenants (id),
    client_id       TEXT,
    kind            TEXT   NOT NULL,
    state           TEXT   NOT NULL CHECK (state IN ('queued', 'running', 'succeeded', 'failed')),
    result          TEXT,
    error_code      TEXT   NOT NULL DEFAULT '',
    error_message   TEXT   NOT NULL DEFAULT '',
    idempotency_key TEXT   NOT NULL DEFAULT '',
    created_at      BIGINT NOT NULL,
    started_at      BIGINT,
    finished_at     BIGINT,
    FOREIGN KEY (tenant_id, client_id) REFERENCES training_clients (tenant_id, id)
);
CREATE UNIQUE INDEX operations_idempotency ON operations (tenant_id, idempotency_key) WHERE idempotency_key <> '';
CREATE INDEX operations_unfinished ON operations (state, created_at) WHERE state IN ('queued', 'running');
CREATE INDEX operations_client ON operations (tenant_id, client_id, created_at);

CREATE TABLE artifacts (
    id           TEXT   NOT NULL PRIMARY KEY,
    tenant_id    TEXT   NOT NULL REFERENCES tenants (id),
    client_id    TEXT,
    kind         TEXT   NOT NULL,
    name         TEXT   NOT NULL,
    size         BIGINT NOT NULL CHECK (size >= 0),
    content_hash TEXT   NOT NULL,
    location     TEXT   NOT NULL,
    key_id       TEXT   NOT NULL DEFAULT '',
    metadata     TEXT,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT,
    FOREIGN KEY (tenant_id, client_id) REFERENCES training_clients (tenant_id, id)
);
CREATE INDEX artifacts_tenant ON artifacts (tenant_id, created_at);
CREATE INDEX artifacts_expiry ON artifacts (expires_at) WHERE expires_at IS NOT NULL;

-- The audit log (package audit): append-only, enforced by triggers as well
-- as by the API.
CREATE TABLE audit_entries (
    log   TEXT   NOT NULL,
    seq   BIGINT NOT NULL CHECK (seq >= 0),
    entry TEXT   NOT NULL,
    PRIMARY KEY (log, seq)
);

CREATE TABLE audit_checkpoints (
    log  TEXT   NOT NULL,
    idx  BIGINT NOT NULL CHECK (idx >= 0),
    note BYTEA  NOT NULL,
    PRIMARY KEY (log, idx)
);

CREATE FUNCTION tensafe_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit log is append-only' USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER audit_entries_append_only BEFORE UPDATE OR DELETE ON audit_entries
    FOR EACH ROW EXECUTE FUNCTION tensafe_audit_append_only();
CREATE TRIGGER audit_entries_no_truncate BEFORE TRUNCATE ON audit_entries
    FOR EACH STATEMENT EXECUTE FUNCTION tensafe_audit_append_only();
CREATE TRIGGER audit_checkpoints_append_only BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION tensafe_audit_append_only();
CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION tensafe_audit_append_only();
