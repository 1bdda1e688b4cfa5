-- Idempotent creation of training clients (docs/STORE.md, migration 0003):
-- POST /api/v1/training_clients with the Idempotency-Key of an earlier
-- creation of the same tenant returns that client. request_hash is the
-- SHA-256 of the creation request, so that the same key with another body
-- is refused rather than answered with the first client.
ALTER TABLE training_clients ADD COLUMN idempotency_key TEXT;
ALTER TABLE training_clients ADD COLUMN request_hash TEXT;
CREATE UNIQUE INDEX training_clients_idempotency ON training_clients (tenant_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
