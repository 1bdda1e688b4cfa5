package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/tensafe/tensafe/api"
	"github.com/tensafe/tensafe/audit"
	"github.com/tensafe/tensafe/service"
	"github.com/tensafe/tensafe/store"
)

// maxComplianceScan bounds the audit entries one metrics request counts.
const maxComplianceScan = 1 << 20

// complianceMetrics answers GET /api/v1/compliance/metrics: the service's
// measurements (artifacts opened, key ages, retention, DP per client,
// determinism) and the ones only this layer can take: how callers
// authenticate (probed: every route is called without a key), tenant
// isolation (probed: another tenant's artifact must answer not found), the
// audit log verified end to end (a compliance.audit_verify event records
// it), and the compliance events per category. An operator admin sees the
// deployment; a tenant admin its own tenant.
func (s *Server) complianceMetrics(w http.ResponseWriter, r *http.Request, p principal) {
	ctx := r.Context()
	scope := p.Tenant
	if p.Operator {
		scope = ""
	}
	before, denials := s.cfg.Audit.Size(), s.denied.count()
	anon := s.probeAnonymous(r)
	m, err := s.cfg.Service.ComplianceMetrics(ctx, scope, time.Now())
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	if err := s.authMetrics(ctx, &m, scope, anon, before); err != nil {
		s.writeErr(w, r, err)
		return
	}
	// The probes' 401s may have found the denial audit's rate limit spent
	// (authaudit.go): then they are counted for the next auth.denied_summary
	// entry instead of written one by one — audited all the same.
	if s.denied.count() > denials {
		m.Authentication.FailuresAudited = true
	}
	m.Authorization.TenantIsolation = s.probeIsolation(ctx, m.Artifacts)

	// Sign a checkpoint of the current head (when the log has a signer and
	// the latest one does not cover it), so that the head the evidence
	// names is signed; then verify the whole log and record that it was
	// verified.
	if _, err := s.cfg.Audit.Checkpoint(ctx); err != nil {
		s.log.DebugContext(ctx, "compliance: no audit checkpoint signed", "request_id", requestID(r), "error", err.Error())
	}
	res, verr := s.cfg.Audit.Verify(ctx, 0, 0)
	var ve *audit.VerifyError
	var ce *audit.CheckpointError
	det := map[string]string{}
	outcome := audit.OutcomeSuccess
	switch {
	case verr == nil:
		m.AuditLog = api.AuditLogMetric{Verified: true, Origin: res.Origin, Size: res.Size, Root: fmt.Sprintf("%x", res.Root[:]),
			Checkpoints: res.Checkpoints, SignaturesChecked: res.SignaturesChecked}
		det["size"], det["root_hash"], det["checkpoints"] = fmt.Sprint(res.Size), "sha256:"+m.AuditLog.Root, fmt.Sprint(res.Checkpoints)
	case errors.As(verr, &ve) || errors.As(verr, &ce):
		m.AuditLog = api.AuditLogMetric{Verified: false, Size: s.cfg.Audit.Size(), Error: verr.Error()}
		outcome = audit.OutcomeFailure
		if ve != nil {
			det["first_bad_seq"], det["fault"] = fmt.Sprint(ve.Seq), ve.Fault.String()
		}
	default:
		s.writeErr(w, r, fmt.Errorf("server: verify audit log: %w", verr))
		return
	}
	if _, err := s.cfg.Service.RecordComplianceEvent(ctx, scope, p.KeyID, service.OpComplianceAuditVerify, "audit", outcome, det); err != nil {
		s.log.ErrorContext(ctx, "audit append failed", "request_id", requestID(r), "operation", service.OpComplianceAuditVerify, "error", err.Error())
	}
	if m.Encryption.ArtifactsRecorded > 0 {
		eo := audit.OutcomeSuccess
		if !m.Encryption.AllVerified {
			eo = audit.OutcomeFailure
		}
		_, _ = s.cfg.Service.RecordComplianceEvent(ctx, scope, p.KeyID, service.OpComplianceEncryption, "artifacts", eo, map[string]string{
			"artifacts_recorded": fmt.Sprint(m.Encryption.ArtifactsRecorded), "artifacts_verified": fmt.Sprint(m.Encryption.ArtifactsVerified),
			"failure_count": fmt.Sprint(len(m.Encryption.Failures))})
	}

	m.Events = map[string]int{}
	for _, c := range api.ComplianceCategories() {
		m.Events[c] = 0
	}
	scanned := 0
	errStop := errors.New("stop")
	err = s.cfg.AuditStore.Scan(ctx, 0, func(_ uint64, e audit.Entry) error {
		if scanned++; scanned > maxComplianceScan {
			return errStop
		}
		if scope != "" && e.TenantID != scope {
			return nil
		}
		if c, _ := categoryOf(e); c != "" {
			m.Events[c]++
		}
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		// A log that cannot be read has already failed verification above.
		s.log.ErrorContext(ctx, "compliance: scan audit log", "request_id", requestID(r), "error", err.Error())
	}
	writeJSON(w, http.StatusOK, m)
}

// categoryOf returns the compliance category of an audit entry: the one it
// was written with, or the one the service's table derives from its
// operation (derived true).
func categoryOf(e audit.Entry) (string, bool) {
	if c := e.Details[api.ComplianceCategoryKey]; c != "" {
		return c, false
	}
	if c := service.ComplianceCategory(e.Record); c != "" {
		return c, true
	}
	return "", false
}

// probeAnonymous calls every registered route without credentials and
// returns those that answer anything but 401: the routes open to anyone.
// The probes run under a canceled context with an empty body, so that an
// open handler that does work gives up at once; the 401 of a guarded route
// comes before any handler runs.
func (s *Server) probeAnonymous(r *http.Request) []string {
	ctx, cancel := context.WithCancel(r.Context())
	cancel()
	var open []string
	for _, rt := range s.routes {
		method, path, _ := strings.Cut(rt, " ")
		if strings.HasPrefix(path, "/api/v1/compliance/") {
			continue // this handler itself needs a key
		}
		req, err := http.NewRequestWithContext(ctx, method, pathParam.ReplaceAllString(path, "probe"), http.NoBody)
		if err != nil {
			continue
		}
		req.RemoteAddr = r.RemoteAddr
		rec := &codeRecorder{header: http.Header{}}
		s.mux.ServeHTTP(rec, req)
		if rec.code != http.StatusUnauthorized {
			open = append(open, rt)
		}
	}
	sort.Strings(open)
	return open
}

// codeRecorder is a ResponseWriter that keeps only the status code.
type codeRecorder struct {
	header http.Header
	code   int
}

func (c *codeRecorder) Header() http.Header { return c.header }
func (c *codeRecorder) WriteHeader(code int) {
	if c.code == 0 {
		c.code = code
	}
}
func (c *codeRecorder) Write(b []byte) (int, error) {
	if c.code == 0 {
		c.code = http.StatusOK
	}
	return len(b), nil
}

var pathParam = regexp.MustCompile(`\{[^}]+\}`)

// authMetrics fills the authentication and authorization metrics from the
// keys in the store. Failures are audited when the unauthenticated probes
// left an ACCESS entry after seq before.
func (s *Server) authMetrics(ctx context.Context, m *api.ComplianceMetrics, scope string, anon []string, before uint64) error {
	var tenants []string
	if scope != "" {
		tenants = []string{scope}
	} else {
		ts, err := s.cfg.Store.ListTenants(ctx)
		if err != nil {
			return fmt.Errorf("server: compliance metrics: %w", err)
		}
		for _, t := range ts {
			tenants = append(tenants, t.ID)
		}
	}
	m.Authentication = api.AuthenticationMetric{Method: "bearer_api_key",
		TokenStorage: "SHA-256 of each token, looked up by a non-secret prefix, compared in constant time", AnonymousRoutes: nonNilStrings(anon)}
	m.Authorization = api.AuthorizationMetric{Model: "rbac", KeysByRole: map[string]int{}, Tenants: len(tenants),
		Roles: []string{string(store.RoleAdmin), string(store.RoleTrainer), string(store.RoleViewer)}}
	for _, t := range tenants {
		ks, err := s.cfg.Store.ListAPIKeys(ctx, t)
		if err != nil {
			return fmt.Errorf("server: compliance metrics: %w", err)
		}
		for _, k := range ks {
			if k.RevokedAt != nil {
				m.Authentication.RevokedKeys++
				continue
			}
			m.Authentication.ActiveKeys++
			m.Authorization.KeysByRole[string(k.Role)]++
		}
	}
	errStop := errors.New("stop")
	_ = s.cfg.AuditStore.Scan(ctx, before, func(_ uint64, e audit.Entry) error {
		if c, _ := categoryOf(e); c == api.CategoryAccess && e.Outcome != audit.OutcomeSuccess && e.TenantID == "" {
			m.Authentication.FailuresAudited = true
			return errStop
		}
		return nil
	})
	return nil
}

func nonNilStrings(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// probeIsolation asks the service for an artifact under a tenant that does
// not own it: it must answer not found. With no artifact to probe it
// checks a made-up id under a made-up tenant.
func (s *Server) probeIsolation(ctx context.Context, arts []api.ArtifactHash) bool {
	probe := func(tenant, id string) bool {
		_, err := s.cfg.Service.GetArtifact(ctx, tenant, id)
		return errors.Is(err, service.ErrNotFound)
	}
	if len(arts) == 0 {
		return probe("tn_isolation_probe", "art_isolation_probe")
	}
	for _, a := range arts[:min(len(arts), 16)] {
		other := "tn_isolation_probe"
		for _, b := range arts {
			if b.TenantID != a.TenantID {
				other = b.TenantID
				break
			}
		}
		if !probe(other, a.ID) {
			return false
		}
	}
	return true
}

// complianceEvents answers GET /api/v1/compliance/events: audit entries
// with a compliance category, seq > after, filtered by category (a comma
// list) and time (since ≤ time < until, RFC 3339), at most limit. A tenant
// admin sees its tenant's events; an operator admin every event.
func (s *Server) complianceEvents(w http.ResponseWriter, r *http.Request, p principal) {
	after, limit, ok := s.seqPage(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	var cats map[string]bool
	if v := q.Get("category"); v != "" {
		cats = map[string]bool{}
		for _, c := range strings.Split(v, ",") {
			c = strings.ToUpper(strings.TrimSpace(c))
			if !slices.Contains(api.ComplianceCategories(), c) {
				s.writeError(w, r, http.StatusBadRequest, api.CodeInvalidArgument,
					fmt.Sprintf("unknown category (known: %s)", strings.Join(api.ComplianceCategories(), ", ")), "category")
				return
			}
			cats[c] = true
		}
	}
	var since, until time.Time
	for _, f := range []struct {
		name string
		t    *time.Time
	}{{"since", &since}, {"until", &until}} {
		if v := q.Get(f.name); v != "" {
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				s.writeError(w, r, http.StatusBadRequest, api.CodeInvalidArgument, "must be an RFC 3339 time", f.name)
				return
			}
			*f.t = t
		}
	}
	page := api.ComplianceEventsPage{Events: []api.ComplianceEvent{}, NextAfter: after}
	errStop := errors.New("stop")
	scanned := 0
	err := s.cfg.AuditStore.Scan(r.Context(), uint64(after+1), func(_ uint64, e audit.Entry) error {
		scanned++
		page.NextAfter = int64(e.Seq)
		if len(page.Events) >= limit || scanned > maxAuditScan {
			page.More = true
			page.NextAfter = int64(e.Seq) - 1
			return errStop
		}
		if !p.Operator && e.TenantID != p.Tenant {
			return nil
		}
		c, derived := categoryOf(e)
		switch {
		case c == "", cats != nil && !cats[c],
			!since.IsZero() && e.Time.Before(since), !until.IsZero() && !e.Time.Before(until):
			return nil
		}
		page.Events = append(page.Events, api.ComplianceEvent{Seq: e.Seq, Time: e.Time, Category: c, TenantID: e.TenantID,
			Actor: e.Actor, Operation: e.Operation, Resource: e.Resource, Outcome: string(e.Outcome), Details: e.Details,
			EntryHash: e.EntryHash.String(), Derived: derived})
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		s.writeErr(w, r, fmt.Errorf("server: scan audit log: %w", err))
		return
	}
	writeJSON(w, http.StatusOK, page)
}

var (
	scanTargetRE = regexp.MustCompile(`^[^\x00-\x1f\x7f]{1,256}$`)
	scanKindRE   = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)
)

// maxScanKinds bounds the kinds a scan summary may count.
const maxScanKinds = 64

// auditableTarget returns the scan target as the audit log will take it.
// A path the audit log's record checks refuse — a temporary directory's
// long random name reads as key material to them — is recorded as the
// "sha256:" digest of the path instead: the event stays, and whoever holds
// the path can match it.
func auditableTarget(p principal, op, target string) string {
	rec := audit.Record{TenantID: p.Tenant, Actor: p.KeyID, Operation: op, Resource: target,
		Outcome: audit.OutcomeSuccess, Details: map[string]string{"target": target}}
	if rec.Validate() == nil {
		return target
	}
	h := sha256.Sum256([]byte(target))
	return "sha256:" + hex.EncodeToString(h[:])
}

// recordScan answers POST /api/v1/compliance/scans: it records the summary
// of a PII or secrets scan run by `tensafe compliance evidence` as a
// PII_SCAN or SECRETS_SCAN event of the caller's tenant. Only counts are
// accepted.
func (s *Server) recordScan(w http.ResponseWriter, r *http.Request, p principal) {
	var req api.ScanSummaryRequest
	if !s.decode(w, r, &req) {
		return
	}
	bad := func(field, msg string) {
		s.writeError(w, r, http.StatusBadRequest, api.CodeInvalidArgument, msg, field)
	}
	var op string
	switch req.Kind {
	case "pii":
		op = service.OpCompliancePIIScan
	case "secrets":
		op = service.OpComplianceSecretsScan
	default:
		bad("kind", `must be "pii" or "secrets"`)
		return
	}
	switch {
	case !scanTargetRE.MatchString(req.Target):
		bad("target", "must be 1 to 256 characters without control characters")
		return
	case req.Files < 0 || req.Bytes < 0 || req.Findings < 0:
		bad("files_scanned", "counts must not be negative")
		return
	case len(req.Counts) > maxScanKinds:
		bad("counts", fmt.Sprintf("at most %d kinds", maxScanKinds))
		return
	case req.ReportSHA256 != "" && !digestRE.MatchString(req.ReportSHA256):
		bad("report_sha256", `must be "sha256:" and 64 lowercase hex digits`)
		return
	}
	kinds := make([]string, 0, len(req.Counts))
	sum := 0
	for k, n := range req.Counts {
		if !scanKindRE.MatchString(k) || n < 0 {
			bad("counts", "keys must be finding kinds ([a-z][a-z0-9_]*) with non-negative counts")
			return
		}
		kinds = append(kinds, k)
		sum += n
	}
	if sum != req.Findings {
		bad("findings", fmt.Sprintf("is %d but the counts add up to %d", req.Findings, sum))
		return
	}
	sort.Strings(kinds)
	var counts []string
	for _, k := range kinds {
		counts = append(counts, fmt.Sprintf("%s:%d", k, req.Counts[k]))
	}
	target := auditableTarget(p, op, req.Target)
	det := map[string]string{"target": target, "files_scanned": fmt.Sprint(req.Files), "bytes_scanned": fmt.Sprint(req.Bytes),
		"findings": fmt.Sprint(req.Findings)}
	if len(counts) > 0 {
		c := strings.Join(counts, " ")
		if len(c) > audit.MaxDetailValueLen {
			c = c[:audit.MaxDetailValueLen]
		}
		det["counts"] = c
	}
	if req.ReportSHA256 != "" {
		det["report_hash"] = req.ReportSHA256
	}
	outcome := audit.OutcomeSuccess
	if req.Findings > 0 {
		outcome = audit.OutcomeFailure // something to act on
	}
	seq, err := s.cfg.Service.RecordComplianceEvent(r.Context(), p.Tenant, p.KeyID, op, target, outcome, det)
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	cat := api.CategoryPIIScan
	if req.Kind == "secrets" {
		cat = api.CategorySecretsScan
	}
	writeJSON(w, http.StatusCreated, api.ScanSummaryResult{Seq: seq, Category: cat})
}

var digestRE = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
