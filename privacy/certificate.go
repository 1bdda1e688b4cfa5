package privacy

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"math"
	"regexp"
	"slices"
	"time"
)

// Certificate constants (docs/DP_CERTIFICATE.md).
const (
	CertificateFormat = "tensafe-dp-certificate/v1"
	// MechanismSubsampledGaussian is DP-SGD's mechanism: per-example
	// clipping, Poisson subsampling with rate q, Gaussian noise of standard
	// deviation σ·C on the clipped sum.
	MechanismSubsampledGaussian = "poisson-subsampled-gaussian"
	// NeighboringAddRemove: the guarantee is for datasets that differ by
	// adding or removing one example (the relation the accountants assume).
	NeighboringAddRemove = "add-or-remove-one"
)

// Sampling says how the sampling rate q was obtained.
type Sampling string

const (
	// SamplingServerPoisson: the server drew each batch by Poisson sampling
	// from a dataset the tenant registered; q is enforced.
	SamplingServerPoisson Sampling = "server-poisson"
	// SamplingClientDeclared: the client built the batches and declared the
	// dataset size; q = expected batch size / declared size is as honest as
	// the client.
	SamplingClientDeclared Sampling = "client-declared"
)

// Certificate is the DP certificate of a finished training run. Its
// canonical JSON (CanonicalJSON) is what gets signed; see
// docs/DP_CERTIFICATE.md for every field.
type Certificate struct {
	Format      string `json:"format"`
	Mechanism   string `json:"mechanism"`
	Neighboring string `json:"neighboring"`

	Accountant Accountant `json:"accountant"`
	Conversion Conversion `json:"conversion,omitempty"` // rdp
	Orders     []float64  `json:"orders,omitempty"`     // rdp
	Order      float64    `json:"order,omitempty"`      // rdp: optimal order
	EpsError   float64    `json:"eps_error,omitempty"`  // prv
	DeltaError float64    `json:"delta_error,omitempty"`

	Epsilon       float64 `json:"epsilon"`
	Delta         float64 `json:"delta"`
	TargetEpsilon float64 `json:"target_epsilon"`

	// Q is the largest sampling rate and Sigma the smallest noise
	// multiplier of the run (the whole run when they never changed);
	// History has every step.
	Q            float64  `json:"q"`
	Sigma        float64  `json:"sigma"`
	Sampling     Sampling `json:"sampling"`
	DatasetSize  int64    `json:"dataset_size"`
	ClippingNorm float64  `json:"clipping_norm"`
	Steps        int64    `json:"steps"`
	History      []Run    `json:"history"`

	TenSafeVersion     string `json:"tensafe_version"`
	AdapterHash        string `json:"adapter_hash"`
	DatasetFingerprint string `json:"dataset_fingerprint"`
	SessionID          string `json:"session_id,omitempty"`

	TrainingStartedAt  string `json:"training_started_at"`
	TrainingFinishedAt string `json:"training_finished_at"`
	IssuedAt           string `json:"issued_at"`
}

// CertificateInput is what the service knows about a run besides its budget.
type CertificateInput struct {
	Sampling     Sampling
	DatasetSize  int64
	ClippingNorm float64
	// TenSafeVersion is the version of the service that trained.
	TenSafeVersion string
	// AdapterHash and DatasetFingerprint are "sha256:" and 64 lowercase hex
	// digits.
	AdapterHash        string
	DatasetFingerprint string
	SessionID          string
	StartedAt          time.Time
	FinishedAt         time.Time
	IssuedAt           time.Time
}

// FormatTime is the certificate's time format: RFC 3339 in UTC with the
// shortest exact fraction of a second.
func FormatTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// NewCertificate certifies the run recorded in b.
func NewCertificate(b *Budget, in CertificateInput) (*Certificate, error) {
	spent, err := b.Spent()
	if err != nil {
		return nil, fmt.Errorf("privacy: new certificate: %w", err)
	}
	cfg := b.Config()
	hist := b.History()
	if len(hist) == 0 {
		return nil, fmt.Errorf("privacy: new certificate: %w", inputErr("history", "no step was recorded"))
	}
	c := &Certificate{
		Format:             CertificateFormat,
		Mechanism:          MechanismSubsampledGaussian,
		Neighboring:        NeighboringAddRemove,
		Accountant:         cfg.Accountant,
		Conversion:         cfg.Conversion,
		Orders:             cfg.Orders,
		Order:              spent.Order,
		EpsError:           cfg.EpsError,
		DeltaError:         cfg.DeltaError,
		Epsilon:            spent.Epsilon,
		Delta:              cfg.Delta,
		TargetEpsilon:      cfg.TargetEpsilon,
		Sampling:           in.Sampling,
		DatasetSize:        in.DatasetSize,
		ClippingNorm:       in.ClippingNorm,
		Steps:              spent.Steps,
		History:            hist,
		TenSafeVersion:     in.TenSafeVersion,
		AdapterHash:        in.AdapterHash,
		DatasetFingerprint: in.DatasetFingerprint,
		SessionID:          in.SessionID,
		TrainingStartedAt:  FormatTime(in.StartedAt),
		TrainingFinishedAt: FormatTime(in.FinishedAt),
		IssuedAt:           FormatTime(in.IssuedAt),
	}
	c.Q, c.Sigma = summarize(hist)
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("privacy: new certificate: %w", err)
	}
	return c, nil
}

func summarize(h []Run) (maxQ, minSigma float64) {
	maxQ, minSigma = 0, math.Inf(1)
	for _, r := range h {
		maxQ = math.Max(maxQ, r.Q)
		minSigma = math.Min(minSigma, r.Sigma)
	}
	return maxQ, minSigma
}

var sha256Ref = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// Validate checks that every field is present, well formed and consistent
// with the others. It does not recompute ε; Verify does.
func (c *Certificate) Validate() error {
	if c.Format != CertificateFormat {
		return inputErr("format", "must be %q, got %q", CertificateFormat, c.Format)
	}
	if c.Mechanism != MechanismSubsampledGaussian {
		return inputErr("mechanism", "must be %q, got %q", MechanismSubsampledGaussian, c.Mechanism)
	}
	if c.Neighboring != NeighboringAddRemove {
		return inputErr("neighboring", "must be %q, got %q", NeighboringAddRemove, c.Neighboring)
	}
	switch c.Accountant {
	case AccountantRDP:
		if c.Conversion != ConversionImproved && c.Conversion != ConversionClassic {
			return inputErr("conversion", "must be %q or %q for rdp, got %q", ConversionImproved, ConversionClassic, c.Conversion)
		}
		if err := ValidateOrders(c.Orders); err != nil {
			return err
		}
		if !slices.Contains(c.Orders, c.Order) {
			return inputErr("order", "%v is not one of the orders", c.Order)
		}
		if c.EpsError != 0 || c.DeltaError != 0 {
			return inputErr("eps_error", "eps_error and delta_error are for prv only")
		}
	case AccountantPRV:
		if c.Conversion != "" || c.Orders != nil || c.Order != 0 {
			return inputErr("conversion", "conversion, orders and order are for rdp only")
		}
		if !finite(c.EpsError) || !(c.EpsError > 0) || c.EpsError >= 1 {
			return inputErr("eps_error", "must be in (0, 1), got %v", c.EpsError)
		}
		if !finite(c.DeltaError) || !(c.DeltaError > 0) || c.DeltaError >= c.Delta {
			return inputErr("delta_error", "must be in (0, delta), got %v", c.DeltaError)
		}
	default:
		return inputErr("accountant", "must be %q or %q, got %q", AccountantRDP, AccountantPRV, c.Accountant)
	}
	if err := validateEpsilon(c.Epsilon); err != nil {
		return err
	}
	if err := validateDelta(c.Delta); err != nil {
		return err
	}
	if !finite(c.TargetEpsilon) || !(c.TargetEpsilon > 0) {
		return inputErr("target_epsilon", "must be positive and finite, got %v", c.TargetEpsilon)
	}
	steps, err := ValidateHistory(c.History)
	if err != nil {
		return err
	}
	if len(c.History) == 0 {
		return inputErr("history", "must hold at least one run")
	}
	if steps != c.Steps {
		return inputErr("steps", "is %d but the history holds %d", c.Steps, steps)
	}
	if q, s := summarize(c.History); q != c.Q || s != c.Sigma {
		return inputErr("q", "q and sigma must be the history's largest q (%v) and smallest sigma (%v), got %v and %v", q, s, c.Q, c.Sigma)
	}
	switch c.Sampling {
	case SamplingServerPoisson, SamplingClientDeclared:
	default:
		return inputErr("sampling", "must be %q or %q, got %q", SamplingServerPoisson, SamplingClientDeclared, c.Sampling)
	}
	if c.DatasetSize < 1 {
		return inputErr("dataset_size", "must be ≥ 1, got %d", c.DatasetSize)
	}
	if !finite(c.ClippingNorm) || !(c.ClippingNorm > 0) {
		return inputErr("clipping_norm", "must be positive and finite, got %v", c.ClippingNorm)
	}
	if c.TenSafeVersion == "" || len(c.TenSafeVersion) > 128 {
		return inputErr("tensafe_version", "must be 1 to 128 bytes")
	}
	if !sha256Ref.MatchString(c.AdapterHash) {
		return inputErr("adapter_hash", `must be "sha256:" and 64 lowercase hex digits`)
	}
	if !sha256Ref.MatchString(c.DatasetFingerprint) {
		return inputErr("dataset_fingerprint", `must be "sha256:" and 64 lowercase hex digits`)
	}
	if len(c.SessionID) > 256 {
		return inputErr("session_id", "at most 256 bytes")
	}
	started, err := parseCertTime("training_started_at", c.TrainingStartedAt)
	if err != nil {
		return err
	}
	finished, err := parseCertTime("training_finished_at", c.TrainingFinishedAt)
	if err != nil {
		return err
	}
	issued, err := parseCertTime("issued_at", c.IssuedAt)
	if err != nil {
		return err
	}
	if finished.Before(started) {
		return inputErr("training_finished_at", "is before training_started_at")
	}
	if issued.Before(finished) {
		return inputErr("issued_at", "is before training_finished_at")
	}
	return nil
}

func parseCertTime(field, s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, inputErr(field, "must be an RFC 3339 time: %q", s)
	}
	if FormatTime(t) != s {
		return time.Time{}, inputErr(field, "must be in UTC with the shortest fraction (%q), got %q", FormatTime(t), s)
	}
	return t, nil
}

// Verify validates c and recomputes ε from its history with its accountant:
// the certificate's ε must be what this package computes (to 1e-9
// relative, room for floating-point differences between builds).
func (c *Certificate) Verify() error {
	if err := c.Validate(); err != nil {
		return fmt.Errorf("privacy: verify certificate: %w", err)
	}
	opt := Options{Accountant: c.Accountant, Conversion: c.Conversion, Orders: c.Orders, EpsError: c.EpsError, DeltaError: c.DeltaError}
	r, err := Epsilon(c.History, c.Delta, opt)
	if err != nil {
		return fmt.Errorf("privacy: verify certificate: recompute: %w", err)
	}
	if math.Abs(r.Epsilon-c.Epsilon) > 1e-9*math.Max(1, r.Epsilon) {
		return fmt.Errorf("privacy: verify certificate: epsilon is %v but the history spends %v", c.Epsilon, r.Epsilon)
	}
	if c.Accountant == AccountantRDP && r.Order != c.Order {
		return fmt.Errorf("privacy: verify certificate: order is %v but the optimum is %v", c.Order, r.Order)
	}
	return nil
}

// CanonicalJSON returns the certificate's canonical JSON (RFC 8785 style:
// sorted keys, no whitespace, shortest round-trip numbers): the bytes to
// sign and to hash.
func (c *Certificate) CanonicalJSON() ([]byte, error) {
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("privacy: certificate: %w", err)
	}
	b, err := canonicalJSON(c)
	if err != nil {
		return nil, fmt.Errorf("privacy: certificate: %w", err)
	}
	return b, nil
}

// Digest is SHA-256 of CanonicalJSON.
func (c *Certificate) Digest() ([32]byte, error) {
	b, err := c.CanonicalJSON()
	if err != nil {
		return [32]byte{}, err
	}
	return sha256.Sum256(b), nil
}

// ParseCertificate decodes a certificate. The input must be exactly its
// canonical JSON (what was signed); unknown fields, duplicate keys and any
// other spelling are rejected, so every reader sees the same certificate.
func ParseCertificate(data []byte) (*Certificate, error) {
	var c Certificate
	if err := decodeStrict(data, &c); err != nil {
		return nil, fmt.Errorf("privacy: parse certificate: %w", err)
	}
	canon, err := c.CanonicalJSON()
	if err != nil {
		return nil, fmt.Errorf("privacy: parse certificate: %w", err)
	}
	if !bytes.Equal(canon, data) {
		return nil, fmt.Errorf("privacy: parse certificate: not in canonical form")
	}
	return &c, nil
}
