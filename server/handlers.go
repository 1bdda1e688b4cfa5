package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/tensafe/tensafe/api"
	"github.com/tensafe/tensafe/audit"
	"github.com/tensafe/tensafe/service"
	"github.com/tensafe/tensafe/store"
)

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request, _ principal) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request, _ principal) {
	if s.closing.Load() {
		s.writeError(w, r, http.StatusServiceUnavailable, api.CodeUnavailable, "shutting down", "")
		return
	}
	if err := s.cfg.Audit.Err(); err != nil {
		s.writeError(w, r, http.StatusServiceUnavailable, api.CodeUnavailable, "audit log is failing", "")
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

func (s *Server) createClient(w http.ResponseWriter, r *http.Request, p principal) {
	var cfg api.TrainingConfig
	if !s.decode(w, r, &cfg) {
		return
	}
	c, err := s.cfg.Service.CreateTrainingClient(r.Context(), p.Tenant, cfg)
	if errors.Is(err, service.ErrIdempotencyKeyReused) {
		s.writeError(w, r, http.StatusConflict, api.CodeConflict, err.Error(), "Idempotency-Key")
		return
	}
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, c)
}

func (s *Server) getClient(w http.ResponseWriter, r *http.Request, p principal) {
	c, err := s.cfg.Service.GetTrainingClient(r.Context(), p.Tenant, r.PathValue("id"))
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, c)
}

func (s *Server) deleteClient(w http.ResponseWriter, r *http.Request, p principal) {
	if err := s.cfg.Service.DeleteTrainingClient(r.Context(), p.Tenant, r.PathValue("id")); err != nil {
		s.writeErr(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// submit decodes a request of type T and submits it with fn, answering 202
// with the future.
func submit[T any](s *Server, w http.ResponseWriter, r *http.Request, p principal,
	fn func(ctx context.Context, tenant, id string, req T) (api.Future, error)) {
	var req T
	if !s.decode(w, r, &req) {
		return
	}
	if s.quota != nil && !s.quota.acquire(p.Tenant) {
		w.Header().Set("Retry-After", "1")
		s.writeError(w, r, http.StatusTooManyRequests, api.CodeRateLimited,
			fmt.Sprintf("the tenant has %d operations queued or running; retry once some have finished", s.cfg.MaxTenantOps), "")
		return
	}
	f, err := fn(r.Context(), p.Tenant, r.PathValue("id"), req)
	if err != nil {
		if s.quota != nil {
			s.quota.release(p.Tenant)
		}
		s.writeErr(w, r, err)
		return
	}
	if s.quota != nil {
		if f.Done() {
			s.quota.release(p.Tenant)
		} else {
			// The slot is the tenant's until the operation finishes (or
			// the service can no longer say).
			go func() {
				defer s.quota.release(p.Tenant)
				_, _ = s.cfg.Service.AwaitOperation(context.WithoutCancel(r.Context()), p.Tenant, f.ID)
			}()
		}
	}
	writeJSON(w, http.StatusAccepted, f)
}

func (s *Server) forwardBackward(w http.ResponseWriter, r *http.Request, p principal) {
	submit(s, w, r, p, s.cfg.Service.ForwardBackward)
}

func (s *Server) forward(w http.ResponseWriter, r *http.Request, p principal) {
	submit(s, w, r, p, s.cfg.Service.Forward)
}

func (s *Server) optimStep(w http.ResponseWriter, r *http.Request, p principal) {
	submit(s, w, r, p, func(ctx context.Context, tenant, id string, _ api.OptimStepRequest) (api.Future, error) {
		return s.cfg.Service.OptimStep(ctx, tenant, id)
	})
}

func (s *Server) sample(w http.ResponseWriter, r *http.Request, p principal) {
	submit(s, w, r, p, s.cfg.Service.Sample)
}

func (s *Server) saveState(w http.ResponseWriter, r *http.Request, p principal) {
	submit(s, w, r, p, s.cfg.Service.SaveState)
}

func (s *Server) loadState(w http.ResponseWriter, r *http.Request, p principal) {
	submit(s, w, r, p, s.cfg.Service.LoadState)
}

func (s *Server) dpMetrics(w http.ResponseWriter, r *http.Request, p principal) {
	m, err := s.cfg.Service.DPMetrics(r.Context(), p.Tenant, r.PathValue("id"))
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, m)
}

// getFuture answers GET /api/v1/futures/{id}?wait=SECONDS: with wait, it holds
// the request until the future has finished or wait has passed, and answers
// the future as it stands.
func (s *Server) getFuture(w http.ResponseWriter, r *http.Request, p principal) {
	id := r.PathValue("id")
	var wait time.Duration
	if v := r.URL.Query().Get("wait"); v != "" {
		secs, err := strconv.ParseFloat(v, 64)
		if err != nil || secs < 0 || secs != secs || secs > s.cfg.MaxWait.Seconds() {
			s.writeError(w, r, http.StatusBadRequest, api.CodeInvalidArgument,
				fmt.Sprintf("must be a number of seconds in [0, %g]", s.cfg.MaxWait.Seconds()), "wait")
			return
		}
		wait = time.Duration(secs * float64(time.Second))
	}
	if wait <= 0 {
		f, err := s.cfg.Service.GetOperation(r.Context(), p.Tenant, id)
		if err != nil {
			s.writeErr(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, f)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), wait)
	defer cancel()
	f, err := s.cfg.Service.AwaitOperation(ctx, p.Tenant, id)
	if err != nil && !(errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil && r.Context().Err() == nil && f.ID != "") {
		s.writeErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, f)
}

func (s *Server) listArtifacts(w http.ResponseWriter, r *http.Request, p principal) {
	as, err := s.cfg.Service.ListArtifacts(r.Context(), p.Tenant)
	answerList(s, w, r, as, err)
}

func (s *Server) getArtifact(w http.ResponseWriter, r *http.Request, p principal) {
	a, err := s.cfg.Service.GetArtifact(r.Context(), p.Tenant, r.PathValue("id"))
	s.answer(w, r, http.StatusOK, a, err)
}

// downloadArtifact streams the decrypted artifact. The service's reader
// fails before releasing bytes that do not match the content hash; a failure
// after the first byte cuts the connection (the client sees a short body,
// never a wrong one).
func (s *Server) downloadArtifact(w http.ResponseWriter, r *http.Request, p principal) {
	rc, a, err := s.cfg.Service.OpenArtifact(r.Context(), p.Tenant, r.PathValue("id"))
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	defer rc.Close()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", a.ID+downloadExt(a.Kind)))
	w.Header().Set("X-Content-Hash", a.ContentHash)
	if _, err := io.Copy(w, rc); err != nil {
		s.log.ErrorContext(r.Context(), "artifact download failed", "request_id", requestID(r), "artifact", a.ID, "error", err.Error())
		panic(http.ErrAbortHandler)
	}
}

// downloadExt is the file extension a download of an artifact kind is
// offered under: TSSP packages are ".tssp" (docs/TSSP_SPEC.md), checkpoints
// ".ckpt".
func downloadExt(kind string) string {
	if kind == api.ArtifactKindTSSP {
		return ".tssp"
	}
	return ".ckpt"
}

// AuditPage is the answer of GET /api/v1/audit: entries after seq After,
// and where the next page starts. Entries are in the stored form of
// docs/AUDIT_LOG.md.
type AuditPage struct {
	Entries []audit.Entry `json:"entries"`
	// NextAfter is the seq to pass as after= for the next page; equal to
	// the request's after when nothing was scanned.
	NextAfter int64 `json:"next_after"`
}

// listAudit pages through the audit log: the caller's tenant's entries
// (every entry for an operator admin) with seq > after, at most limit.
func (s *Server) listAudit(w http.ResponseWriter, r *http.Request, p principal) {
	after, limit, ok := s.seqPage(w, r)
	if !ok {
		return
	}
	page := AuditPage{Entries: []audit.Entry{}, NextAfter: after}
	errStop := errors.New("stop")
	scanned := 0
	err := s.cfg.AuditStore.Scan(r.Context(), uint64(after+1), func(_ uint64, e audit.Entry) error {
		scanned++
		page.NextAfter = int64(e.Seq)
		if p.Operator || e.TenantID == p.Tenant {
			page.Entries = append(page.Entries, e)
		}
		if len(page.Entries) >= limit || scanned >= maxAuditScan {
			return errStop
		}
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		s.writeErr(w, r, fmt.Errorf("server: scan audit log: %w", err))
		return
	}
	writeJSON(w, http.StatusOK, page)
}

// AuditVerification is the answer of GET /api/v1/audit/verify.
type AuditVerification struct {
	Verified          bool   `json:"verified"`
	Origin            string `json:"origin,omitempty"`
	Size              uint64 `json:"size"`
	Root              string `json:"root,omitempty"` // hex of the Merkle root
	Checkpoints       int    `json:"checkpoints"`
	SignaturesChecked bool   `json:"signatures_checked"`
	Error             string `json:"error,omitempty"`
}

func (s *Server) verifyAudit(w http.ResponseWriter, r *http.Request, _ principal) {
	res, err := s.cfg.Audit.Verify(r.Context(), 0, 0)
	if err != nil {
		var ve *audit.VerifyError
		var ce *audit.CheckpointError
		if errors.As(err, &ve) || errors.As(err, &ce) {
			writeJSON(w, http.StatusOK, AuditVerification{Verified: false, Error: err.Error()})
			return
		}
		s.writeErr(w, r, fmt.Errorf("server: verify audit log: %w", err))
		return
	}
	writeJSON(w, http.StatusOK, AuditVerification{
		Verified: true, Origin: res.Origin, Size: res.Size, Root: fmt.Sprintf("%x", res.Root[:]),
		Checkpoints: res.Checkpoints, SignaturesChecked: res.SignaturesChecked,
	})
}

// CreateTenantRequest is the body of POST /api/v1/tenants.
type CreateTenantRequest struct {
	Name string `json:"name"`
}

// CreateAPIKeyRequest is the body of POST /api/v1/tenants/{id}/api_keys.
type CreateAPIKeyRequest struct {
	Role string `json:"role"` // admin, trainer or viewer
}

// APIKeyCreated answers POST /api/v1/tenants/{id}/api_keys. Token is shown
// this once; the server keeps only its hash.
type APIKeyCreated struct {
	store.APIKey
	Token string `json:"token"`
}

func (s *Server) createTenant(w http.ResponseWriter, r *http.Request, p principal) {
	var req CreateTenantRequest
	if !s.decode(w, r, &req) {
		return
	}
	if req.Name == "" || len(req.Name) > store.MaxNameLen {
		s.writeError(w, r, http.StatusBadRequest, api.CodeInvalidArgument, fmt.Sprintf("must be 1 to %d bytes", store.MaxNameLen), "name")
		return
	}
	id, err := store.NewID("tn")
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	t, err := s.cfg.Store.CreateTenant(r.Context(), tenantRecord(r, p, id, req))
	if errors.Is(err, store.ErrDuplicate) {
		s.replayCreateTenant(w, r, p, t, req)
		return
	}
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	s.auditAdmin(r, p, "admin.create_tenant", t.ID, t.ID)
	writeJSON(w, http.StatusCreated, t)
}

func (s *Server) createAPIKey(w http.ResponseWriter, r *http.Request, p principal) {
	tenant := r.PathValue("id")
	if tenant != p.Tenant && !p.Operator {
		s.writeError(w, r, http.StatusNotFound, api.CodeNotFound, "not found", "")
		return
	}
	var req CreateAPIKeyRequest
	if !s.decode(w, r, &req) {
		return
	}
	role := store.Role(req.Role)
	if !role.Valid() {
		s.writeError(w, r, http.StatusBadRequest, api.CodeInvalidArgument, "must be admin, trainer or viewer", "role")
		return
	}
	k, tok, err := NewAPIKey(r.Context(), s.cfg.Store, tenant, role)
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	s.auditAdmin(r, p, "admin.create_api_key", tenant, k.ID)
	writeJSON(w, http.StatusCreated, APIKeyCreated{APIKey: k, Token: tok})
}

// NewAPIKey creates an API key of tenant with role and returns it with its
// token, which is shown once and never stored.
func NewAPIKey(ctx context.Context, st store.Store, tenant string, role store.Role) (store.APIKey, string, error) {
	id, err := store.NewID("key")
	if err != nil {
		return store.APIKey{}, "", err
	}
	tok, prefix, hash, err := store.NewAPIToken()
	if err != nil {
		return store.APIKey{}, "", err
	}
	k, err := st.CreateAPIKey(ctx, store.APIKey{ID: id, TenantID: tenant, Role: role, Prefix: prefix, Hash: hash})
	if err != nil {
		return store.APIKey{}, "", fmt.Errorf("server: create API key: %w", err)
	}
	return k, tok, nil
}

func (s *Server) revokeAPIKey(w http.ResponseWriter, r *http.Request, p principal) {
	id := r.PathValue("id")
	tenant := p.Tenant
	if p.Operator {
		// A global admin may revoke any tenant's key: find its tenant.
		t, err := s.keyTenant(r.Context(), id)
		if err != nil {
			s.writeErr(w, r, err)
			return
		}
		tenant = t
	}
	k, err := s.cfg.Store.RevokeAPIKey(r.Context(), tenant, id)
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	s.auditAdmin(r, p, "admin.revoke_api_key", k.TenantID, k.ID)
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) keyTenant(ctx context.Context, keyID string) (string, error) {
	ts, err := s.cfg.Store.ListTenants(ctx)
	if err != nil {
		return "", fmt.Errorf("server: list tenants: %w", err)
	}
	for _, t := range ts {
		ks, err := s.cfg.Store.ListAPIKeys(ctx, t.ID)
		if err != nil {
			return "", fmt.Errorf("server: list API keys: %w", err)
		}
		for _, k := range ks {
			if k.ID == keyID {
				return t.ID, nil
			}
		}
	}
	return "", store.ErrNotFound
}

// auditAdmin records an administrative action. A failure to record is
// logged: the action has happened and must not be reported as failed.
func (s *Server) auditAdmin(r *http.Request, p principal, op, tenant, resource string) {
	_, err := s.cfg.Audit.Append(r.Context(), service.TagCompliance(audit.Record{
		TenantID: tenant, Actor: p.KeyID, Operation: op, Resource: resource, Outcome: audit.OutcomeSuccess,
		Details: map[string]string{"request_id": requestID(r)},
	}))
	if err != nil {
		s.log.ErrorContext(r.Context(), "audit append failed", "request_id", requestID(r), "operation", op, "error", err.Error())
	}
}
