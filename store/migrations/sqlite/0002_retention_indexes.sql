-- Retention sweeps (docs/STORE.md §3, migration 0002): finished operations
-- by finish time, and artifacts without a recorded expiry by creation time
-- (those expire by the configured TTL), so that neither sweep lists every row.
CREATE INDEX operations_finished ON operations (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX artifacts_no_expiry ON artifacts (created_at) WHERE expires_at IS NULL;
