package service

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/tensafe/tensafe/api"
	"github.com/tensafe/tensafe/audit"
	"github.com/tensafe/tensafe/engine"
	"github.com/tensafe/tensafe/keys"
	"github.com/tensafe/tensafe/model"
	"github.com/tensafe/tensafe/privacy"
	"github.com/tensafe/tensafe/seal"
	"github.com/tensafe/tensafe/store"
)

// Operations the service records for compliance evidence itself (besides
// the training and admin operations it already records).
const (
	OpComplianceAuditVerify = "compliance.audit_verify"
	OpCompliancePIIScan     = "compliance.pii_scan"
	OpComplianceSecretsScan = "compliance.secrets_scan"
	OpComplianceEncryption  = "compliance.encryption_check"
	OpRetentionDelete       = "retention.delete_artifact"
	OpRetentionSweep        = "retention.sweep"
)

// complianceCategories maps audited operations to compliance event
// categories. It is the one table: record tags entries with it, and the
// events export derives the category of untagged entries (written by the
// server's admin handlers, or before tagging existed) with it.
var complianceCategories = map[string]string{
	// Sealing and opening envelopes under tenant keys.
	"training.save_state":  api.CategoryEncryption,
	"training.load_state":  api.CategoryEncryption,
	OpComplianceEncryption: api.CategoryEncryption,
	"artifact.package":     api.CategoryEncryption, // weights sealed to recipient keys (TSSP)
	"he.register_keys":     api.CategoryEncryption, // HE key bundles sealed under the tenant KEK
	"he.retire_key":        api.CategoryEncryption,
	"he.deltas":            api.CategoryEncryption, // computed on ciphertexts
	"he.inference":         api.CategoryEncryption,
	"he.delete_key":        api.CategoryEncryption, // an HE key bundle destroyed
	"he.register_adapter":  api.CategoryChange,
	"he.register_model":    api.CategoryChange,
	// A sealed accountant state that did not authenticate or is behind the
	// audit log (sealed.go): the client is refused.
	OpIntegrityFailure:        api.CategoryEncryption,
	"he.delete_adapter":       api.CategoryChange,
	"he.delete_model":         api.CategoryChange,
	"artifact.download":       api.CategoryAccess,
	"training.dp_certificate": api.CategoryAccess, // a tenant read the guarantee and adapter hash of its client
	"training.create_client":  api.CategoryChange,
	"dataset.create":          api.CategoryEncryption, // training rows sealed under the tenant KEK (datasets.go)
	"dataset.delete":          api.CategoryChange,
	"training.delete_client":  api.CategoryChange,
	"admin.create_tenant":     api.CategoryChange,
	"admin.create_api_key":    api.CategoryChange,
	"admin.revoke_api_key":    api.CategoryChange,
	"service.recover":         api.CategoryChange,
	// Refused requests (server/authaudit.go); every auth.* operation is
	// ACCESS anyway.
	"auth.denied":           api.CategoryAccess,
	"auth.denied_summary":   api.CategoryAccess,
	OpComplianceAuditVerify: api.CategoryAuditLog,
	audit.RepairOperation:   api.CategoryAuditLog,
	OpRetentionDelete:       api.CategoryRetention,
	OpRetentionSweep:        api.CategoryRetention,
	OpCompliancePIIScan:     api.CategoryPIIScan,
	OpComplianceSecretsScan: api.CategorySecretsScan,
}

// dataPlaneOperations are the audited operations that deliberately carry no
// compliance category: the training data plane, one entry per step or
// request, whose volume would bury the compliance events (their audit
// entries, with batch digests, are the training evidence of packages and
// DP certificates instead). A refusal of one is still ACCESS. Every other
// operation the service or the server writes is in complianceCategories
// (TestEveryAuditedOperationHasCategory).
var dataPlaneOperations = map[string]bool{
	"training." + store.KindForwardBackward: true,
	"training." + store.KindForward:         true,
	"training." + store.KindOptimStep:       true,
	"training." + store.KindSample:          true,
	opTrainStep:                             true,
}

// accessCodes are the error codes that make a failed operation an ACCESS
// event: the caller was refused, not the operation broken.
var accessCodes = map[string]bool{api.CodeUnauthenticated: true, api.CodePermissionDenied: true}

// ComplianceCategory returns the compliance event category of an audit
// record, or "" when it has none. A refusal (outcome denied, or a failure
// for authentication or permission) is ACCESS whatever the operation.
func ComplianceCategory(r audit.Record) string {
	if r.Outcome == audit.OutcomeDenied || accessCodes[r.Details["error_code"]] {
		return api.CategoryAccess
	}
	if strings.HasPrefix(r.Operation, "auth.") || strings.HasPrefix(r.Operation, "access.") {
		return api.CategoryAccess
	}
	return complianceCategories[r.Operation]
}

// TagCompliance returns r with its compliance category in its details
// (under api.ComplianceCategoryKey; a copy of the map, the caller's is not
// changed), or r itself when it has none. Every record the service writes
// is tagged; a writer that appends to the audit log directly (the server's
// admin handlers) calls it to tag its records the same way.
func TagCompliance(r audit.Record) audit.Record { return categorize(r) }

// categorize is TagCompliance.
func categorize(r audit.Record) audit.Record {
	c := ComplianceCategory(r)
	if c == "" {
		return r
	}
	d := make(map[string]string, len(r.Details)+1)
	for k, v := range r.Details {
		d[k] = v
	}
	d[api.ComplianceCategoryKey] = c
	r.Details = d
	return r
}

// RecordComplianceEvent appends a compliance operation (one of the
// OpCompliance* operations) to the audit log, tagged with its category,
// and returns the entry's seq. Details are metadata only (audit.Record's
// rules apply; a refused record is an error).
func (s *Service) RecordComplianceEvent(ctx context.Context, tenant, actor, op, resource string, outcome audit.Outcome, details map[string]string) (uint64, error) {
	if !strings.HasPrefix(op, "compliance.") {
		return 0, fieldErr("operation", "%q is not a compliance operation", op)
	}
	if complianceCategories[op] == "" {
		return 0, fieldErr("operation", "unknown compliance operation %q", op)
	}
	if actor == "" {
		actor = actorOf(ctx)
	}
	e, err := s.audit.Append(context.WithoutCancel(ctx), categorize(audit.Record{TenantID: tenant, Actor: actor,
		Operation: op, Resource: resource, Outcome: outcome, Details: details}))
	if err != nil {
		if errors.Is(err, audit.ErrInvalidRecord) {
			return 0, fieldErr("details", "%v", err)
		}
		return 0, fmt.Errorf("service: record compliance event: %w", err)
	}
	return e.Seq, nil
}

// ComplianceMetrics collects the service's part of the compliance metrics
// of tenant ("" for every tenant): it opens every artifact (the files
// really are sealed envelopes that authenticate), reads key ages from the
// key provider, the retention state, artifact hashes, the DP parameters
// and ε of every training client, and runs the determinism check. The
// fields the HTTP layer owns (authentication, authorization, audit log,
// events) are left for the caller.
func (s *Service) ComplianceMetrics(ctx context.Context, tenant string, now time.Time) (api.ComplianceMetrics, error) {
	m := api.ComplianceMetrics{Format: api.ComplianceMetricsFormat, CollectedAt: now.UTC(), Scope: "deployment",
		Artifacts: []api.ArtifactHash{}, TrainingClients: []api.ClientPrivacyMetric{}}
	var tenants []string
	if tenant != "" {
		if _, err := s.st.GetTenant(ctx, tenant); err != nil {
			return m, fmt.Errorf("%w: tenant", ErrNotFound)
		}
		m.Scope, m.TenantID, tenants = "tenant", tenant, []string{tenant}
	} else {
		ts, err := s.st.ListTenants(ctx)
		if err != nil {
			return m, fmt.Errorf("service: compliance metrics: %w", err)
		}
		for _, t := range ts {
			tenants = append(tenants, t.ID)
		}
	}
	var arts []store.Artifact
	for _, t := range tenants {
		as, err := s.st.ListArtifacts(ctx, t)
		if err != nil {
			return m, fmt.Errorf("service: compliance metrics: artifacts: %w", err)
		}
		arts = append(arts, as...)
		cs, err := s.st.ListClients(ctx, t)
		if err != nil {
			return m, fmt.Errorf("service: compliance metrics: clients: %w", err)
		}
		for _, c := range cs {
			m.TrainingClients = append(m.TrainingClients, clientPrivacy(c))
		}
	}
	for _, a := range arts {
		m.Artifacts = append(m.Artifacts, api.ArtifactHash{ID: a.ID, TenantID: a.TenantID, ClientID: a.ClientID, Kind: a.Kind,
			ContentHash: a.ContentHash, Size: a.Size, CreatedAt: a.CreatedAt, ExpiresAt: s.expiry(a)})
	}
	var err error
	if m.Encryption, err = s.checkEncryption(ctx, arts, tenant == ""); err != nil {
		return m, err
	}
	m.KeyRotation = s.keyAges(ctx, tenants, now)
	m.Retention = s.retentionMetric(arts, now)
	m.Determinism = s.CheckDeterminism(ctx)
	return m, nil
}

// clientPrivacy reads a client's DP configuration and the ε its stored
// accountant state has spent.
func clientPrivacy(c store.TrainingClient) api.ClientPrivacyMetric {
	out := api.ClientPrivacyMetric{ID: c.ID, TenantID: c.TenantID, BaseModel: c.BaseModel, Status: string(c.Status),
		Step: c.Step, SamplingSource: SamplingClientDeclared}
	var cfg api.TrainingConfig
	if err := json.Unmarshal(c.Config, &cfg); err != nil || cfg.DP == nil {
		out.Error = "stored configuration has no DP settings"
		return out
	}
	d := cfg.DP
	out.NoiseMultiplier, out.MaxGradNorm, out.TargetEpsilon, out.Delta = d.NoiseMultiplier, d.MaxGradNorm, d.TargetEpsilon, d.TargetDelta
	if d.DatasetSize > 0 {
		out.SamplingRate = float64(d.ExpectedBatchSize) / float64(d.DatasetSize)
	}
	if d.Sampling == api.SamplingServer {
		out.SamplingSource = SamplingServerPoisson // train_step draws the batches (trainstep.go)
	}
	b, err := privacy.ParseBudget(c.BudgetState)
	if err != nil {
		out.Error = "stored accountant state does not parse"
		return out
	}
	sp, err := b.Spent()
	if err != nil {
		out.Error = "accountant: " + err.Error()
		return out
	}
	out.EpsilonSpent, out.Accountant, out.Steps = sp.Epsilon, string(sp.Accountant), b.Steps()
	if sp.Delta > 0 {
		out.Delta = sp.Delta
	}
	return out
}

// checkEncryption opens every recorded artifact's file and reads it to the
// end: the header must parse, authenticate under the tenant's wrapped DEK,
// every segment must authenticate and the plaintext must hash to the
// recorded content hash. With all, it also checks that every other file in
// the artifact directory is a sealed envelope (an unrecorded plaintext file
// is a failure).
func (s *Service) checkEncryption(ctx context.Context, arts []store.Artifact, all bool) (api.EncryptionMetric, error) {
	m := api.EncryptionMetric{Envelope: "TSEV v1, AES-256-GCM segments, DEK wrapped under the tenant KEK (docs/ENVELOPE.md)", ArtifactsRecorded: len(arts), Failures: []api.ArtifactCheckFailure{}}
	recorded := map[string]bool{}
	for _, a := range arts {
		recorded[a.Location] = true
		if err := ctx.Err(); err != nil {
			return m, err
		}
		if err := s.verifyArtifactFile(ctx, a); err != nil {
			if errors.Is(err, errFileMissing) {
				// A retention sweep may have deleted it since it was listed.
				if _, gerr := s.st.GetArtifact(ctx, a.TenantID, a.ID); errors.Is(gerr, store.ErrNotFound) {
					m.ArtifactsRecorded--
					continue
				}
			}
			m.Failures = append(m.Failures, api.ArtifactCheckFailure{ArtifactID: a.ID, Reason: err.Error()})
			continue
		}
		m.ArtifactsVerified++
	}
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return m, fmt.Errorf("service: compliance metrics: artifact directory: %w", err)
	}
	for _, e := range ents {
		if !e.Type().IsRegular() || strings.HasPrefix(e.Name(), ".tmp-") {
			continue
		}
		m.FilesOnDisk++
		if !all || recorded[e.Name()] {
			continue
		}
		if err := isEnvelope(filepath.Join(s.dir, e.Name())); err != nil {
			m.Failures = append(m.Failures, api.ArtifactCheckFailure{File: e.Name(), Reason: err.Error()})
		}
	}
	m.AllVerified = len(m.Failures) == 0
	return m, nil
}

// verifyArtifactFile decrypts artifact a to the end, discarding the
// plaintext, and says why it does not verify.
func (s *Service) verifyArtifactFile(ctx context.Context, a store.Artifact) error {
	rc, err := s.openArtifact(ctx, a)
	if err != nil {
		return describeSealErr(err)
	}
	defer rc.Close()
	if _, err := io.Copy(io.Discard, rc); err != nil {
		return describeSealErr(err)
	}
	return nil
}

var errFileMissing = errors.New("file missing")

// describeSealErr shortens an artifact error to its cause, for evidence.
func describeSealErr(err error) error {
	if errors.Is(err, seal.ErrMalformedHeader) || errors.Is(err, seal.ErrUnsupported) {
		return fmt.Errorf("not a sealed envelope: %w", err)
	}
	if errors.Is(err, os.ErrNotExist) {
		return errFileMissing
	}
	return err
}

// isEnvelope reports whether the file at path starts with a well-formed
// envelope header.
func isEnvelope(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := seal.ReadHeader(f); err != nil {
		return fmt.Errorf("unrecorded file is not a sealed envelope: %w", err)
	}
	return nil
}

// keyLister is a key provider that can describe its keys (the local
// keyring does; a KMS may not).
type keyLister interface {
	List(ctx context.Context) ([]keys.TenantInfo, error)
}

func (s *Service) keyAges(ctx context.Context, tenants []string, now time.Time) api.KeyRotationMetric {
	m := api.KeyRotationMetric{Provider: fmt.Sprintf("%T", s.keys), Tenants: []api.TenantKeyAge{}}
	kl, ok := s.keys.(keyLister)
	if !ok {
		return m
	}
	infos, err := kl.List(ctx)
	if err != nil {
		return m
	}
	m.Observable = true
	want := map[string]bool{}
	for _, t := range tenants {
		want[t] = true
	}
	for _, ti := range infos {
		if !want[ti.Tenant] {
			continue
		}
		ta := api.TenantKeyAge{TenantID: ti.Tenant, KeyID: ti.KeyID, CurrentVersion: ti.Current, Versions: len(ti.Versions),
			Shredded: !ti.Shredded.IsZero()}
		for _, v := range ti.Versions {
			if v.Version == ti.Current {
				ta.CurrentCreated = v.Created.UTC()
				ta.AgeDays = now.Sub(v.Created).Hours() / 24
			}
		}
		m.MaxAgeDays = max(m.MaxAgeDays, ta.AgeDays)
		m.Tenants = append(m.Tenants, ta)
	}
	return m
}

// Determinism check parameters: a fixed prompt and seed on the built-in
// model, sampled twice greedily and twice at temperature 1.
const (
	determinismSeed   = 20240917
	determinismTokens = 12
)

// CheckDeterminism builds two fresh engines on the built-in model with the
// same seed and samples the same prompt from each, greedily and at
// temperature 1 with the same sampling seed: the runs must give the same
// tokens. It runs the real engine.
func (s *Service) CheckDeterminism(ctx context.Context) api.DeterminismMetric {
	out := api.DeterminismMetric{Model: model.TinyName, Seed: determinismSeed, Runs: 2, Tokens: determinismTokens}
	base, ok := s.models.get(model.TinyName)
	if !ok {
		out.Error = "built-in model not registered"
		return out
	}
	m, _, err := base.load()
	if err != nil {
		out.Error = err.Error()
		return out
	}
	cfg := engine.Config{
		LoRA:      model.LoRAConfig{Rank: 2, Alpha: 4},
		Optimizer: engine.DefaultOptimizer(),
		Seed:      determinismSeed,
	}
	prompt := []int{1, 17, 42, 99, 7}
	var runs [2][2][]int // [run][greedy, seeded]
	for i := range runs {
		eng, err := engine.New(m, cfg)
		if err != nil {
			out.Error = err.Error()
			return out
		}
		for j, temp := range []float64{0, 1} {
			seqs, err := eng.Sample(ctx, engine.SampleRequest{Prompt: prompt, MaxTokens: determinismTokens, Temperature: temp,
				N: 1, Seed: determinismSeed}, nil)
			if err != nil {
				out.Error = err.Error()
				return out
			}
			runs[i][j] = seqs[0].Tokens
		}
	}
	out.Checked = true
	out.Greedy = len(runs[0][0]) > 0 && slices.Equal(runs[0][0], runs[1][0])
	out.Seeded = len(runs[0][1]) > 0 && slices.Equal(runs[0][1], runs[1][1])
	h := sha256.New()
	for _, t := range append(slices.Clone(runs[0][0]), runs[0][1]...) {
		h.Write(binary.BigEndian.AppendUint32(nil, uint32(t)))
	}
	out.OutputHash = "sha256:" + hex.EncodeToString(h.Sum(nil))
	return out
}
