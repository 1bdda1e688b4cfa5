-- Idempotent creation of tenants (migration 0004): POST /api/v1/tenants with
-- the Idempotency-Key of an earlier creation by the same (operator) tenant
-- returns that tenant. created_by is the tenant whose admin key created it;
-- request_hash the SHA-256 of the creation request, so that the same key
-- with another body is refused.
ALTER TABLE tenants ADD COLUMN created_by TEXT;
ALTER TABLE tenants ADD COLUMN idempotency_key TEXT;
ALTER TABLE tenants ADD COLUMN request_hash TEXT;
CREATE UNIQUE INDEX tenants_idempotency ON tenants (created_by, idempotency_key) WHERE idempotency_key IS NOT NULL;
