package compliance

import (
	"fmt"
	"strings"
	"time"

	"github.com/tensafe/tensafe/api"
)

// Status is the evidence status of one control, computed from measured
// metrics by the control's check — never written by hand.
type Status string

// Statuses.
const (
	StatusPresent Status = "Evidence Present"
	StatusPartial Status = "Partial"
	StatusGap     Status = "Gap"
)

// DefaultKeyRotationDays is the KEK age beyond which the key-rotation
// control is Partial.
const DefaultKeyRotationDays = 90

// Inputs is everything a pack is built from.
type Inputs struct {
	// Metrics is GET /api/v1/compliance/metrics of the deployment (nil when
	// no server was asked: the controls it feeds are Gaps).
	Metrics *api.ComplianceMetrics
	// Events are the compliance events of the audit log.
	Events []api.ComplianceEvent
	// PIIScan and SecretsScan are scans of the datasets, logs and
	// artifacts named for the pack (nil: none ran).
	PIIScan, SecretsScan *Report
	// Minimization are the reports of `tensafe compliance filter` runs.
	Minimization []MinimizationReport
	// KeyRotationDays is the rotation policy (default
	// DefaultKeyRotationDays).
	KeyRotationDays float64
}

// Control is one row of the control matrix: what is checked, from which
// metric, and which clauses of ISO/IEC 27701:2019, ISO/IEC 27001:2022
// Annex A and the SOC 2 Trust Services Criteria (2017, rev. 2022) the
// evidence supports.
type Control struct {
	ID       string
	Title    string
	Metric   string // where in metrics.json the evidence is
	Evidence string // what is measured
	ISO27701 []string
	ISO27001 []string
	SOC2     []string
	check    func(in *Inputs) (Status, string)
}

// Result is a control's status and why.
type Result struct {
	Status Status
	Reason string
}

// Check computes the control's status from in.
func (c Control) Check(in *Inputs) Result {
	s, why := c.check(in)
	return Result{Status: s, Reason: why}
}

// Controls returns the control matrix. It is data: docs/compliance/
// CONTROL_MATRIX.md is generated from it (MatrixMarkdown) and a test keeps
// the two equal.
func Controls() []Control {
	return []Control{
		{
			ID: "TS-AUTH-1", Title: "API callers authenticate", Metric: "deployment.authentication",
			Evidence: "bearer API keys, stored as SHA-256 hashes; keys active and revoked; whether failures are audited",
			ISO27701: []string{"6.6.4.2"}, ISO27001: []string{"A.5.17", "A.8.5"}, SOC2: []string{"CC6.1", "CC6.2"},
			check: checkAuth,
		},
		{
			ID: "TS-AUTHZ-1", Title: "Role-based authorization and tenant isolation", Metric: "deployment.authorization",
			Evidence: "roles of the keys in use; every lookup scoped to the key's tenant",
			ISO27701: []string{"6.6.2.2", "6.6.4.1"}, ISO27001: []string{"A.5.15", "A.5.18", "A.8.3"}, SOC2: []string{"CC6.1", "CC6.3"},
			check: checkAuthz,
		},
		{
			ID: "TS-ENC-1", Title: "Artifacts encrypted at rest", Metric: "deployment.encryption",
			Evidence: "every artifact file opened: a sealed envelope that authenticates and decrypts to its recorded SHA-256",
			ISO27701: []string{"6.7.1.1"}, ISO27001: []string{"A.8.24"}, SOC2: []string{"CC6.1", "C1.1"},
			check: checkEncryption,
		},
		{
			ID: "TS-AUD-1", Title: "Tamper-evident audit log", Metric: "deployment.audit_log",
			Evidence: "hash chain verified end to end; signed checkpoints matching the Merkle root; head",
			ISO27701: []string{"6.9.4.1", "6.9.4.2"}, ISO27001: []string{"A.8.15"}, SOC2: []string{"CC7.2", "CC7.3"},
			check: checkAudit,
		},
		{
			ID: "TS-KEY-1", Title: "Key encryption keys rotated", Metric: "deployment.key_rotation",
			Evidence: "age of each tenant's current KEK version, from the key provider",
			ISO27701: []string{"6.7.1.2"}, ISO27001: []string{"A.8.24"}, SOC2: []string{"CC6.1"},
			check: checkKeys,
		},
		{
			ID: "TS-RET-1", Title: "Artifacts deleted when their retention ends", Metric: "deployment.retention",
			Evidence: "artifact TTL, sweeper state, artifacts past expiry still present, RETENTION events",
			ISO27701: []string{"7.4.7", "7.4.8"}, ISO27001: []string{"A.8.10", "A.5.33"}, SOC2: []string{"C1.2", "P4.2", "P4.3"},
			check: checkRetention,
		},
		{
			ID: "TS-MIN-1", Title: "Training data minimized by a PII policy", Metric: "data_minimization",
			Evidence: "minimization reports: fields dropped, examples dropped and values redacted per kind, dataset hashes",
			ISO27701: []string{"7.4.1", "7.4.4", "7.4.5"}, ISO27001: []string{"A.5.34", "A.8.11"}, SOC2: []string{"P3.1", "P4.1"},
			check: checkMinimization,
		},
		{
			ID: "TS-PII-1", Title: "Datasets, logs and artifacts scanned for personal data", Metric: "pii_scan",
			Evidence: "PII scan counts per kind and location (never values)",
			ISO27701: []string{"7.2.8", "7.4.1"}, ISO27001: []string{"A.5.12", "A.5.34"}, SOC2: []string{"C1.1", "P3.1"},
			check: checkPIIScan,
		},
		{
			ID: "TS-SEC-1", Title: "No secrets in datasets, logs or artifacts", Metric: "secrets_scan",
			Evidence: "secrets scan counts per kind and location (never values)",
			ISO27701: []string{"6.6.3.1"}, ISO27001: []string{"A.5.17", "A.8.12"}, SOC2: []string{"CC6.1", "CC6.7"},
			check: checkSecretsScan,
		},
		{
			ID: "TS-LIN-1", Title: "Dataset and adapter lineage by hash", Metric: "deployment.artifacts, data_minimization",
			Evidence: "SHA-256 of every adapter/checkpoint artifact and of every minimized dataset",
			ISO27701: []string{"7.2.8"}, ISO27001: []string{"A.5.33", "A.8.32"}, SOC2: []string{"PI1.2", "PI1.5"},
			check: checkLineage,
		},
		{
			ID: "TS-DP-1", Title: "Differential privacy on every training client", Metric: "deployment.training_clients",
			Evidence: "noise multiplier, clipping norm, sampling rate, ε spent against target ε and δ per client",
			ISO27701: []string{"7.4.5"}, ISO27001: []string{"A.5.34", "A.8.11"}, SOC2: []string{"P4.1", "C1.1"},
			check: checkDP,
		},
		{
			ID: "TS-DET-1", Title: "Reproducible processing", Metric: "deployment.determinism",
			Evidence: "two fresh engines with one seed sampled greedily and at temperature 1: identical tokens",
			ISO27001: []string{"A.8.29"}, SOC2: []string{"PI1.3", "CC8.1"},
			check: checkDeterminism,
		},
		{
			ID: "TS-EVT-1", Title: "Compliance events recorded and exportable", Metric: "deployment.events, events.json",
			Evidence: "audit entries tagged PII_SCAN, ENCRYPTION, AUDIT_LOG, ACCESS, RETENTION, SECRETS_SCAN, CHANGE",
			ISO27701: []string{"6.9.4.1", "6.9.1.2"}, ISO27001: []string{"A.8.15", "A.8.16", "A.8.32"}, SOC2: []string{"CC7.2", "CC8.1"},
			check: checkEvents,
		},
	}
}

const noServer = "no deployment metrics (no server was asked)"

func checkAuth(in *Inputs) (Status, string) {
	m := in.Metrics
	if m == nil {
		return StatusGap, noServer
	}
	a := m.Authentication
	switch {
	case a.Method == "":
		return StatusGap, "the server reports no authentication method"
	case a.ActiveKeys == 0:
		return StatusGap, "no active API key: nobody can be authenticated"
	case !a.FailuresAudited:
		return StatusPartial, fmt.Sprintf("%s (%s), %d active and %d revoked keys; authentication failures are logged but not written to the audit log",
			a.Method, a.TokenStorage, a.ActiveKeys, a.RevokedKeys)
	}
	return StatusPresent, fmt.Sprintf("%s (%s), %d active and %d revoked keys; failures audited", a.Method, a.TokenStorage, a.ActiveKeys, a.RevokedKeys)
}

func checkAuthz(in *Inputs) (Status, string) {
	m := in.Metrics
	if m == nil {
		return StatusGap, noServer
	}
	a := m.Authorization
	switch {
	case a.Model == "":
		return StatusGap, "no authorization model reported"
	case !a.TenantIsolation:
		return StatusGap, "requests are not scoped to the caller's tenant"
	case len(a.Roles) < 2:
		return StatusPartial, fmt.Sprintf("%s with a single role", a.Model)
	}
	return StatusPresent, fmt.Sprintf("%s with roles %s over %d tenants, tenant-scoped lookups; keys by role %v",
		a.Model, strings.Join(a.Roles, ", "), a.Tenants, a.KeysByRole)
}

func checkEncryption(in *Inputs) (Status, string) {
	m := in.Metrics
	if m == nil {
		return StatusGap, noServer
	}
	e := m.Encryption
	if len(e.Failures) > 0 {
		var why []string
		for i, f := range e.Failures {
			if i == 3 {
				why = append(why, fmt.Sprintf("and %d more", len(e.Failures)-3))
				break
			}
			id := f.ArtifactID
			if id == "" {
				id = f.File
			}
			why = append(why, id+": "+f.Reason)
		}
		return StatusGap, fmt.Sprintf("%d of %d artifact files do not verify as sealed envelopes: %s",
			len(e.Failures), max(e.ArtifactsRecorded, e.FilesOnDisk), strings.Join(why, "; "))
	}
	if e.ArtifactsRecorded == 0 {
		return StatusPartial, "no artifact stored yet: encryption at rest could not be observed"
	}
	return StatusPresent, fmt.Sprintf("%d of %d artifacts opened, authenticated and decrypted to their recorded SHA-256 (%s); %d files on disk, all sealed",
		e.ArtifactsVerified, e.ArtifactsRecorded, e.Envelope, e.FilesOnDisk)
}

func checkAudit(in *Inputs) (Status, string) {
	m := in.Metrics
	if m == nil {
		return StatusGap, noServer
	}
	a := m.AuditLog
	switch {
	case !a.Verified:
		return StatusGap, "audit log does not verify: " + a.Error
	case a.Checkpoints == 0 || !a.SignaturesChecked:
		return StatusPartial, fmt.Sprintf("hash chain of %d entries verified (root %s), but no signed checkpoint was checked", a.Size, a.Root)
	}
	return StatusPresent, fmt.Sprintf("%d entries verified, head root %s, %d signed checkpoints checked (origin %s)", a.Size, a.Root, a.Checkpoints, a.Origin)
}

func checkKeys(in *Inputs) (Status, string) {
	m := in.Metrics
	if m == nil {
		return StatusGap, noServer
	}
	k := m.KeyRotation
	limit := in.KeyRotationDays
	if limit <= 0 {
		limit = DefaultKeyRotationDays
	}
	switch {
	case !k.Observable:
		return StatusGap, fmt.Sprintf("key provider %s does not report key ages", k.Provider)
	case len(k.Tenants) == 0:
		return StatusPartial, "no tenant has a KEK yet"
	}
	var old []string
	for _, t := range k.Tenants {
		if !t.Shredded && t.AgeDays > limit {
			old = append(old, fmt.Sprintf("%s (%.0f days)", t.TenantID, t.AgeDays))
		}
	}
	if len(old) > 0 {
		return StatusPartial, fmt.Sprintf("KEKs older than the %.0f-day rotation policy: %s", limit, strings.Join(old, ", "))
	}
	return StatusPresent, fmt.Sprintf("%d tenant KEKs, the oldest current version %.1f days old (policy %.0f days)", len(k.Tenants), k.MaxAgeDays, limit)
}

func checkRetention(in *Inputs) (Status, string) {
	m := in.Metrics
	if m == nil {
		return StatusGap, noServer
	}
	r := m.Retention
	ttl := time.Duration(r.ArtifactTTLSeconds) * time.Second
	deletions := countEvents(in.Events, api.CategoryRetention)
	switch {
	case r.ArtifactTTLSeconds <= 0:
		return StatusGap, "no artifact TTL: artifacts are kept forever"
	case r.Overdue > 0:
		return StatusGap, fmt.Sprintf("%d artifacts outlived the %v TTL and are still stored", r.Overdue, ttl)
	case r.LastSweepError != "":
		return StatusPartial, "the last retention sweep failed: " + r.LastSweepError
	case r.LastSweep == nil:
		return StatusPartial, fmt.Sprintf("artifact TTL %v, but no sweep has run yet", ttl)
	case !r.SweeperRunning:
		return StatusPartial, fmt.Sprintf("artifact TTL %v enforced once, but no sweeper runs", ttl)
	}
	return StatusPresent, fmt.Sprintf("artifact TTL %v, sweeper every %ds (last %s), %d deleted by this process, %d RETENTION events, none overdue",
		ttl, r.SweepIntervalSecs, r.LastSweep.Format(time.RFC3339), r.Deleted, deletions)
}

func checkMinimization(in *Inputs) (Status, string) {
	if len(in.Minimization) == 0 {
		return StatusGap, "no data-minimization report (tensafe compliance filter)"
	}
	dropped, redacted, fields := 0, 0, 0
	var weak []string
	for _, r := range in.Minimization {
		dropped += r.ExamplesDropped
		for _, n := range r.RedactedByKind {
			redacted += n
		}
		for _, n := range r.FieldsDropped {
			fields += n
		}
		for _, k := range []Kind{KindPaymentCard, KindSSN, KindIBAN} {
			if r.Policy.PII[k] == ActionAllow && r.AllowedByKind[k] > 0 {
				weak = append(weak, fmt.Sprintf("%s kept %d %s", r.Output, r.AllowedByKind[k], k))
			}
		}
		if r.Policy.Secrets == ActionAllow {
			weak = append(weak, r.Output+": policy allows secrets")
		}
	}
	if len(weak) > 0 {
		return StatusPartial, "high-risk data allowed through: " + strings.Join(weak, "; ")
	}
	return StatusPresent, fmt.Sprintf("%d datasets minimized: %d examples dropped, %d values redacted, %d field removals",
		len(in.Minimization), dropped, redacted, fields)
}

func checkPIIScan(in *Inputs) (Status, string) {
	r := in.PIIScan
	switch {
	case r == nil || r.Files == 0:
		return StatusGap, "no PII scan of datasets, logs or artifacts"
	case r.PII > 0:
		return StatusPartial, fmt.Sprintf("%d files scanned: %d PII findings remain (see pii_scan.json; apply a minimization policy)", r.Files, r.PII)
	}
	return StatusPresent, fmt.Sprintf("%d files (%d bytes) scanned: no personal data found", r.Files, r.Bytes)
}

func checkSecretsScan(in *Inputs) (Status, string) {
	r := in.SecretsScan
	switch {
	case r == nil || r.Files == 0:
		return StatusGap, "no secrets scan of datasets, logs or artifacts"
	case r.Secrets > 0:
		return StatusGap, fmt.Sprintf("%d files scanned: %d secrets found (see secrets_scan.json for kinds and locations)", r.Files, r.Secrets)
	}
	return StatusPresent, fmt.Sprintf("%d files (%d bytes) scanned: no secrets found", r.Files, r.Bytes)
}

func checkLineage(in *Inputs) (Status, string) {
	adapters := 0
	if in.Metrics != nil {
		for _, a := range in.Metrics.Artifacts {
			if strings.HasPrefix(a.ContentHash, "sha256:") && len(a.ContentHash) == 7+64 {
				adapters++
			}
		}
	}
	datasets := 0
	for _, r := range in.Minimization {
		if strings.HasPrefix(r.OutputSHA256, "sha256:") {
			datasets++
		}
	}
	switch {
	case adapters > 0 && datasets > 0:
		return StatusPresent, fmt.Sprintf("%d artifacts and %d datasets identified by SHA-256", adapters, datasets)
	case adapters > 0:
		return StatusPartial, fmt.Sprintf("%d artifacts identified by SHA-256; no dataset hash (no minimization report)", adapters)
	case datasets > 0:
		return StatusPartial, fmt.Sprintf("%d datasets identified by SHA-256; no adapter artifact", datasets)
	}
	return StatusGap, "neither dataset nor adapter hashes"
}

func checkDP(in *Inputs) (Status, string) {
	m := in.Metrics
	if m == nil {
		return StatusGap, noServer
	}
	if len(m.TrainingClients) == 0 {
		return StatusPartial, "no training client yet"
	}
	var bad []string
	maxEps := 0.0
	for _, c := range m.TrainingClients {
		switch {
		case c.Error != "":
			bad = append(bad, c.ID+": "+c.Error)
		case !(c.NoiseMultiplier > 0) || !(c.MaxGradNorm > 0):
			bad = append(bad, c.ID+": no noise or clipping")
		case c.EpsilonSpent > c.TargetEpsilon*(1+1e-9):
			bad = append(bad, fmt.Sprintf("%s: ε spent %.4g exceeds target %.4g", c.ID, c.EpsilonSpent, c.TargetEpsilon))
		}
		maxEps = max(maxEps, c.EpsilonSpent)
	}
	if len(bad) > 0 {
		return StatusGap, strings.Join(bad, "; ")
	}
	return StatusPresent, fmt.Sprintf("%d training clients, all with DP-SGD (σ > 0, clipping) within their ε targets; largest ε spent %.4g",
		len(m.TrainingClients), maxEps)
}

func checkDeterminism(in *Inputs) (Status, string) {
	m := in.Metrics
	if m == nil {
		return StatusGap, noServer
	}
	d := m.Determinism
	switch {
	case !d.Checked:
		return StatusGap, "determinism check did not run: " + d.Error
	case !d.Greedy || !d.Seeded:
		return StatusGap, fmt.Sprintf("same seed gave different samples (greedy identical %v, seeded identical %v)", d.Greedy, d.Seeded)
	}
	return StatusPresent, fmt.Sprintf("%d runs of %s with seed %d: identical greedy and seeded samples (%d tokens, %s)",
		d.Runs, d.Model, d.Seed, d.Tokens, d.OutputHash)
}

func checkEvents(in *Inputs) (Status, string) {
	have := map[string]int{}
	for _, e := range in.Events {
		have[e.Category]++
	}
	if len(have) == 0 {
		return StatusGap, "no compliance events exported"
	}
	var parts, missing []string
	for _, c := range api.ComplianceCategories() {
		if have[c] > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", c, have[c]))
		}
	}
	for _, c := range []string{api.CategoryChange, api.CategoryEncryption, api.CategoryAuditLog} {
		if have[c] == 0 {
			missing = append(missing, c)
		}
	}
	if len(missing) > 0 {
		return StatusPartial, fmt.Sprintf("%d events (%s); none of %s", len(in.Events), strings.Join(parts, ", "), strings.Join(missing, ", "))
	}
	return StatusPresent, fmt.Sprintf("%d events: %s", len(in.Events), strings.Join(parts, ", "))
}

func countEvents(es []api.ComplianceEvent, cat string) int {
	n := 0
	for _, e := range es {
		if e.Category == cat {
			n++
		}
	}
	return n
}

// MatrixMarkdown renders the control matrix (docs/compliance/CONTROL_MATRIX.md).
func MatrixMarkdown() string {
	var b strings.Builder
	b.WriteString("# Control matrix\n\n")
	b.WriteString("<!-- Generated from compliance.Controls() by `go test ./compliance/ -run TestControlMatrixDoc -update`; do not edit. -->\n\n")
	b.WriteString("Each control's status in an evidence pack (Evidence Present, Partial, Gap) is computed by its check from\n")
	b.WriteString("the metrics the running deployment measures (`GET /api/v1/compliance/metrics`), the compliance events of\n")
	b.WriteString("the audit log, the PII and secrets scans and the data-minimization reports. The mapping supports audit\n")
	b.WriteString("preparation; it is not a certification. Clause ids: ISO/IEC 27701:2019 (clauses 6 and 7), ISO/IEC\n")
	b.WriteString("27001:2022 Annex A, SOC 2 Trust Services Criteria (2017, revised points of focus 2022).\n\n")
	b.WriteString("| Control | Title | Evidence (metric) | ISO/IEC 27701 | ISO/IEC 27001:2022 Annex A | SOC 2 |\n")
	b.WriteString("|---|---|---|---|---|---|\n")
	for _, c := range Controls() {
		fmt.Fprintf(&b, "| %s | %s | %s (`%s`) | %s | %s | %s |\n", c.ID, c.Title, c.Evidence, c.Metric,
			ids(c.ISO27701), ids(c.ISO27001), ids(c.SOC2))
	}
	b.WriteString("\n## How each status is computed\n\n")
	b.WriteString("| Control | Evidence Present | Partial | Gap |\n|---|---|---|---|\n")
	rules := statusRules()
	for _, c := range Controls() {
		r := rules[c.ID]
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", c.ID, r[0], r[1], r[2])
	}
	return b.String()
}

func ids(s []string) string {
	if len(s) == 0 {
		return "—"
	}
	return strings.Join(s, ", ")
}

// statusRules describe, per control, what its check makes Evidence
// Present, Partial and Gap (documentation of the check functions above).
func statusRules() map[string][3]string {
	return map[string][3]string{
		"TS-AUTH-1":  {"bearer keys in use, failures audited", "bearer keys in use, failures not audited", "no method or no active key; no metrics"},
		"TS-AUTHZ-1": {"RBAC with ≥ 2 roles, tenant-scoped", "a single role", "no model or no tenant isolation; no metrics"},
		"TS-ENC-1":   {"every artifact file authenticates and decrypts to its hash; no plaintext file", "no artifact to check", "any file fails (plaintext, altered, missing); no metrics"},
		"TS-AUD-1":   {"chain verified and signed checkpoints checked", "chain verified, no signed checkpoint", "verification fails (tampered, truncated); no metrics"},
		"TS-KEY-1":   {"every current KEK younger than the policy", "a KEK older than the policy; no KEK yet", "provider does not report ages; no metrics"},
		"TS-RET-1":   {"TTL set, sweeper running, none overdue", "TTL set but no sweep yet, sweeper not running, or last sweep failed", "no TTL or artifacts overdue; no metrics"},
		"TS-MIN-1":   {"minimization reports, no high-risk kind allowed", "a report let payment cards, SSNs, IBANs or secrets through", "no report"},
		"TS-PII-1":   {"scan ran, nothing found", "scan ran, PII found", "no scan"},
		"TS-SEC-1":   {"scan ran, nothing found", "—", "no scan, or secrets found"},
		"TS-LIN-1":   {"adapter and dataset hashes", "only one of them", "neither"},
		"TS-DP-1":    {"every client noised and clipped within its ε target", "no client yet", "a client without noise, over its target or unreadable; no metrics"},
		"TS-DET-1":   {"identical greedy and seeded samples", "—", "different samples or check failed; no metrics"},
		"TS-EVT-1":   {"CHANGE, ENCRYPTION and AUDIT_LOG events present", "some categories missing", "no events"},
	}
}
