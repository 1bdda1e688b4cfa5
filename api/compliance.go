package api

import "time"

// ComplianceMetricsFormat names the version of ComplianceMetrics.
const ComplianceMetricsFormat = "tensafe.compliance.metrics/v1"

// Compliance event categories (docs/compliance/EVIDENCE.md). Every audit
// entry the service writes for a compliance-relevant operation carries one
// in its details under ComplianceCategoryKey.
const (
	CategoryPIIScan     = "PII_SCAN"
	CategoryEncryption  = "ENCRYPTION"
	CategoryAuditLog    = "AUDIT_LOG"
	CategoryAccess      = "ACCESS"
	CategoryRetention   = "RETENTION"
	CategorySecretsScan = "SECRETS_SCAN"
	CategoryChange      = "CHANGE"
)

// ComplianceCategoryKey is the audit-entry details key of the category.
const ComplianceCategoryKey = "compliance_category"

// ComplianceCategories lists the categories in a stable order.
func ComplianceCategories() []string {
	return []string{CategoryPIIScan, CategoryEncryption, CategoryAuditLog, CategoryAccess, CategoryRetention,
		CategorySecretsScan, CategoryChange}
}

// ComplianceEvent is one audit entry with a compliance category
// (GET /api/v1/compliance/events).
type ComplianceEvent struct {
	Seq       uint64            `json:"seq"`
	Time      time.Time         `json:"time"`
	Category  string            `json:"category"`
	TenantID  string            `json:"tenant_id,omitempty"`
	Actor     string            `json:"actor"`
	Operation string            `json:"operation"`
	Resource  string            `json:"resource,omitempty"`
	Outcome   string            `json:"outcome"`
	Details   map[string]string `json:"details,omitempty"`
	EntryHash string            `json:"entry_hash"`
	// Derived is true when the entry was written without a category (by a
	// writer that does not tag entries, or before tagging existed) and the
	// category was derived from its operation by the same table.
	Derived bool `json:"derived,omitempty"`
}

// ComplianceEventsPage is the answer of GET /api/v1/compliance/events:
// events after seq After, oldest first, and the cursor of the next page.
type ComplianceEventsPage struct {
	Events    []ComplianceEvent `json:"events"`
	NextAfter int64             `json:"next_after"`
	More      bool              `json:"more"`
}

// ScanSummaryRequest is the body of POST /api/v1/compliance/scans: the
// counts of a PII or secrets scan run outside the server, recorded in the
// audit log as a PII_SCAN or SECRETS_SCAN event. It carries counts per
// finding kind, never matched values.
type ScanSummaryRequest struct {
	Kind         string         `json:"kind"` // "pii" or "secrets"
	Target       string         `json:"target"`
	Files        int            `json:"files_scanned"`
	Bytes        int64          `json:"bytes_scanned"`
	Findings     int            `json:"findings"`
	Counts       map[string]int `json:"counts,omitempty"`
	ReportSHA256 string         `json:"report_sha256,omitempty"` // "sha256:<hex>" of the report file
}

// ScanSummaryResult is the answer of POST /api/v1/compliance/scans.
type ScanSummaryResult struct {
	Seq      uint64 `json:"seq"`
	Category string `json:"category"`
}

// ComplianceMetrics is the answer of GET /api/v1/compliance/metrics: what
// the running deployment shows of its controls, each measured, not
// configured. An operator admin sees every tenant; a tenant admin sees its
// own tenant (Scope "tenant") and the deployment-wide facts.
type ComplianceMetrics struct {
	Format          string                `json:"format"`
	CollectedAt     time.Time             `json:"collected_at"`
	Scope           string                `json:"scope"` // "deployment" or "tenant"
	TenantID        string                `json:"tenant_id,omitempty"`
	Authentication  AuthenticationMetric  `json:"authentication"`
	Authorization   AuthorizationMetric   `json:"authorization"`
	Encryption      EncryptionMetric      `json:"encryption"`
	AuditLog        AuditLogMetric        `json:"audit_log"`
	KeyRotation     KeyRotationMetric     `json:"key_rotation"`
	Retention       RetentionMetric       `json:"retention"`
	Artifacts       []ArtifactHash        `json:"artifacts"`
	TrainingClients []ClientPrivacyMetric `json:"training_clients"`
	Determinism     DeterminismMetric     `json:"determinism"`
	Events          map[string]int        `json:"events"` // compliance events per category in the audit log
}

// AuthenticationMetric describes how callers authenticate.
type AuthenticationMetric struct {
	Method          string   `json:"method"`        // "bearer_api_key"
	TokenStorage    string   `json:"token_storage"` // how tokens are kept server-side
	ActiveKeys      int      `json:"active_keys"`
	RevokedKeys     int      `json:"revoked_keys"`
	AnonymousRoutes []string `json:"anonymous_routes"`
	FailuresAudited bool     `json:"failures_audited"`
}

// AuthorizationMetric describes the authorization model.
type AuthorizationMetric struct {
	Model           string         `json:"model"` // "rbac"
	Roles           []string       `json:"roles"`
	KeysByRole      map[string]int `json:"keys_by_role"`
	TenantIsolation bool           `json:"tenant_isolation"`
	Tenants         int            `json:"tenants"`
}

// EncryptionMetric is the result of opening every artifact file on disk.
type EncryptionMetric struct {
	Envelope          string                 `json:"envelope"` // docs/ENVELOPE.md format
	ArtifactsRecorded int                    `json:"artifacts_recorded"`
	ArtifactsVerified int                    `json:"artifacts_verified"`
	FilesOnDisk       int                    `json:"files_on_disk"`
	Failures          []ArtifactCheckFailure `json:"failures"`
	// AllVerified: every recorded artifact's file is a sealed envelope
	// that authenticates and decrypts to its recorded content hash, and
	// every other file in the artifact directory is a sealed envelope.
	AllVerified bool `json:"all_verified"`
}

// ArtifactCheckFailure names an artifact (or an unrecorded file) that did
// not verify, and why.
type ArtifactCheckFailure struct {
	ArtifactID string `json:"artifact_id,omitempty"`
	File       string `json:"file,omitempty"`
	Reason     string `json:"reason"`
}

// AuditLogMetric is the result of verifying the audit log.
type AuditLogMetric struct {
	Verified          bool   `json:"verified"`
	Origin            string `json:"origin,omitempty"`
	Size              uint64 `json:"size"`
	Root              string `json:"root,omitempty"`
	Checkpoints       int    `json:"checkpoints"`
	SignaturesChecked bool   `json:"signatures_checked"`
	Error             string `json:"error,omitempty"`
}

// KeyRotationMetric reports the age of each tenant's current KEK.
type KeyRotationMetric struct {
	Provider   string         `json:"provider"`
	Observable bool           `json:"observable"` // the provider reports key ages
	Tenants    []TenantKeyAge `json:"tenants"`
	MaxAgeDays float64        `json:"max_age_days"`
}

// TenantKeyAge is the state of one tenant's KEK.
type TenantKeyAge struct {
	TenantID       string    `json:"tenant_id"`
	KeyID          string    `json:"key_id"`
	CurrentVersion uint32    `json:"current_version"`
	Versions       int       `json:"versions"`
	CurrentCreated time.Time `json:"current_created"`
	AgeDays        float64   `json:"age_days"`
	Shredded       bool      `json:"shredded"`
}

// RetentionMetric reports the artifact retention policy and its enforcement.
type RetentionMetric struct {
	ArtifactTTLSeconds int64      `json:"artifact_ttl_seconds"` // 0: no TTL
	SweepIntervalSecs  int64      `json:"sweep_interval_seconds"`
	SweeperRunning     bool       `json:"sweeper_running"`
	LastSweep          *time.Time `json:"last_sweep,omitempty"`
	LastSweepError     string     `json:"last_sweep_error,omitempty"`
	Deleted            int64      `json:"deleted"` // artifacts deleted by this process
	Overdue            int        `json:"overdue"` // artifacts past their expiry still present
}

// ArtifactHash is an artifact's identity for lineage evidence.
type ArtifactHash struct {
	ID          string     `json:"id"`
	TenantID    string     `json:"tenant_id"`
	ClientID    string     `json:"client_id,omitempty"`
	Kind        string     `json:"kind"`
	ContentHash string     `json:"content_hash"`
	Size        int64      `json:"size"`
	CreatedAt   time.Time  `json:"created_at"`
	ExpiresAt   *time.Time `json:"expires_at,omitempty"`
}

// ClientPrivacyMetric is the DP configuration and spend of one training
// client.
type ClientPrivacyMetric struct {
	ID              string  `json:"id"`
	TenantID        string  `json:"tenant_id"`
	BaseModel       string  `json:"base_model"`
	Status          string  `json:"status"`
	Step            int64   `json:"step"`
	NoiseMultiplier float64 `json:"noise_multiplier"`
	MaxGradNorm     float64 `json:"max_grad_norm"`
	SamplingRate    float64 `json:"sampling_rate"`
	SamplingSource  string  `json:"sampling_source"`
	TargetEpsilon   float64 `json:"target_epsilon"`
	Delta           float64 `json:"delta"`
	EpsilonSpent    float64 `json:"epsilon_spent"`
	Accountant      string  `json:"accountant"`
	Steps           int64   `json:"steps"`
	Error           string  `json:"error,omitempty"`
}

// DeterminismMetric is the result of sampling twice with the same seed.
type DeterminismMetric struct {
	Checked    bool   `json:"checked"`
	Model      string `json:"model"`
	Seed       uint64 `json:"seed"`
	Runs       int    `json:"runs"`
	Tokens     int    `json:"tokens"` // tokens generated per run
	Greedy     bool   `json:"greedy_identical"`
	Seeded     bool   `json:"seeded_identical"` // temperature 1 with the same sampling seed
	OutputHash string `json:"output_hash,omitempty"`
	Error      string `json:"error,omitempty"`
}
