package server

// Idempotent creation of tenants: POST /api/v1/tenants with the
// Idempotency-Key of an earlier creation by the same (operator) tenant
// returns that tenant instead of creating another, so the SDKs may retry the
// creation after a 5xx or a lost answer. The same key with another body is
// 409 naming Idempotency-Key. API keys are not deduplicated: their token is
// shown once and only its hash is stored, so a replay could not return it.

import (
	"net/http"

	"github.com/tensafe/tensafe/api"
	"github.com/tensafe/tensafe/audit"
	"github.com/tensafe/tensafe/service"
	"github.com/tensafe/tensafe/store"
)

// tenantRecord is the tenant a creation request stores: created by the
// caller's tenant, with the request's Idempotency-Key and body hash.
func tenantRecord(r *http.Request, p principal, id string, req CreateTenantRequest) store.Tenant {
	t := store.Tenant{ID: id, Name: req.Name, CreatedBy: p.Tenant}
	if k := r.Header.Get("Idempotency-Key"); k != "" {
		t.IdempotencyKey, t.RequestHash = k, service.CreationHash(req)
	}
	return t
}

// replayCreateTenant answers a creation whose Idempotency-Key created t:
// t when the request is the same (audited as a replay), 409 otherwise.
func (s *Server) replayCreateTenant(w http.ResponseWriter, r *http.Request, p principal, t store.Tenant, req CreateTenantRequest) {
	outcome, details := audit.OutcomeSuccess, map[string]string{"request_id": requestID(r), "idempotent_replay": "true"}
	same := t.RequestHash != "" && t.RequestHash == service.CreationHash(req)
	if !same {
		outcome, details["error_code"], details["field"] = audit.OutcomeFailure, api.CodeConflict, "Idempotency-Key"
	}
	if _, err := s.cfg.Audit.Append(r.Context(), service.TagCompliance(audit.Record{TenantID: t.ID, Actor: p.KeyID,
		Operation: "admin.create_tenant", Resource: t.ID, Outcome: outcome, Details: details})); err != nil {
		s.log.ErrorContext(r.Context(), "audit append failed", "request_id", requestID(r), "operation", "admin.create_tenant", "error", err.Error())
	}
	if !same {
		s.writeError(w, r, http.StatusConflict, api.CodeConflict,
			"the Idempotency-Key was used for another request: it created tenant "+t.ID+" with another body; use a new key for a new tenant", "Idempotency-Key")
		return
	}
	writeJSON(w, http.StatusCreated, t)
}
