package tssp

import (
	"errors"

	"github.com/tensafe/tensafe/seal"
)

// Format constants (docs/TSSP_SPEC.md).
const (
	// Format is the manifest's format string for the only version this
	// package writes and reads.
	Format = "tensafe-tssp/v1"
	// SignatureContext is the hybrid-signature context of a manifest; it
	// names the version, so a signature cannot be replayed onto another
	// format's manifest.
	SignatureContext = "tensafe-tssp/v1 manifest"
	// BindingTenant is the tenant half of the seal binding of the weights
	// envelope and of every recipient's wrapped DEK; the artifact half is
	// the package id.
	BindingTenant = "tensafe-tssp/v1"
	// RecipientAlg names the wrap of a recipient's DEK: HPKE base mode,
	// MLKEM768-X25519 (X-Wing), HKDF-SHA256, AES-256-GCM (seal.SealDEK).
	RecipientAlg = "hpke-mlkem768-x25519"
	// TenantKEKAlg names the wrap of the DEK under a tenant's KEK:
	// AES-256-KWP (RFC 5649) through package keys.
	TenantKEKAlg = "aes256-kwp"
	// kwpWrappedSize is the length of a KWP-wrapped 32-byte DEK.
	kwpWrappedSize = 40
	// EnvelopeAlg names the weights encryption: the seal streaming
	// envelope, version 1.
	EnvelopeAlg = "seal-stream-v1"
)

// Member names, in the one order they appear in a package.
const (
	NameManifest      = "manifest.json"
	NameSignature     = "manifest.sig"
	NameAdapterConfig = "adapter_config.json"
	NameCertificate   = "dp_certificate.json"
	NameEvidence      = "evidence.json"
	NameWeights       = "weights.bin.enc"
)

// Size caps. A reader refuses a member larger than its cap before reading
// it, so a hostile header cannot make it allocate.
const (
	MaxManifestSize      = 1 << 20
	MaxAdapterConfigSize = 64 << 10
	MaxCertificateSize   = 4 << 20
	MaxEvidenceSize      = 16 << 20
	// MaxWeightsSize is the largest USTAR member: 11 octal digits.
	MaxWeightsSize = 1<<33 - 1
	// MaxRecipients bounds the recipients of one package.
	MaxRecipients = 64
	// MaxStringLen bounds the free-text fields of the manifest.
	MaxStringLen = 1024
)

// memberSpec is one allowed member: its name, the largest size, and whether
// every package has it.
type memberSpec struct {
	name     string
	max      int64
	required bool
}

// members lists every allowed member in archive order.
var members = [...]memberSpec{
	{NameManifest, MaxManifestSize, true},
	{NameSignature, seal.SignatureSize, true},
	{NameAdapterConfig, MaxAdapterConfigSize, true},
	{NameCertificate, MaxCertificateSize, false},
	{NameEvidence, MaxEvidenceSize, false},
	{NameWeights, MaxWeightsSize, true},
}

func specIndex(name string) int {
	for i, m := range members {
		if m.name == name {
			return i
		}
	}
	return -1
}

// Errors callers tell apart. Each is wrapped with context (the member, the
// field) by the function that returns it.
var (
	// ErrMalformed: the bytes are not a well-formed package archive
	// (headers, padding, end blocks, sizes, trailing data).
	ErrMalformed = errors.New("tssp: malformed package archive")
	// ErrMalformedManifest: manifest.json is not a valid, canonical v1
	// manifest.
	ErrMalformedManifest = errors.New("tssp: malformed manifest")
	// ErrUnsupportedVersion: the manifest's format is not tensafe-tssp/v1
	// (a newer format, or a downgrade to an older one).
	ErrUnsupportedVersion = errors.New("tssp: unsupported package format version")
	// ErrUntrustedSigner: the manifest is signed by no key the caller
	// trusts.
	ErrUntrustedSigner = errors.New("tssp: package signer is not trusted")
	// ErrBadSignature: manifest.sig is not a valid signature of
	// manifest.json by the trusted signer key.
	ErrBadSignature = errors.New("tssp: manifest signature does not verify")
	// ErrUnexpectedMember: the archive holds a member the format or the
	// manifest does not list.
	ErrUnexpectedMember = errors.New("tssp: unexpected package member")
	// ErrMissingMember: a member the format or the manifest requires is
	// absent.
	ErrMissingMember = errors.New("tssp: missing package member")
	// ErrMemberOrder: members are out of the format's order, or repeated.
	ErrMemberOrder = errors.New("tssp: package members out of order")
	// ErrMemberSize: a member's size differs from the manifest's, or
	// exceeds its cap.
	ErrMemberSize = errors.New("tssp: package member size mismatch")
	// ErrMemberHash: a member's SHA-256 differs from the manifest's.
	ErrMemberHash = errors.New("tssp: package member hash mismatch")
	// ErrCertificate: the DP certificate is invalid or does not match the
	// packaged weights.
	ErrCertificate = errors.New("tssp: DP certificate invalid or inconsistent with the package")
	// ErrAdapterConfig: adapter_config.json is invalid or disagrees with the
	// manifest.
	ErrAdapterConfig = errors.New("tssp: adapter config invalid or inconsistent with the manifest")
	// ErrEvidence: evidence.json is not a JSON object (Package.Verify), or
	// not valid evidence of a known schema, or its proofs or its agreement
	// with the DP certificate do not check (ParseEvidence,
	// Evidence.VerifyAudit, Evidence.CheckCertificate).
	ErrEvidence = errors.New("tssp: evidence invalid or inconsistent")
	// ErrNotVerified: decryption was asked of a package not yet verified.
	ErrNotVerified = errors.New("tssp: package not verified")
	// ErrNotRecipient: the identity is not among the package's recipients,
	// or its wrapped DEK does not open with it.
	ErrNotRecipient = errors.New("tssp: identity is not a recipient of this package")
	// ErrWeights: the weights do not decrypt to the plaintext the manifest
	// commits to.
	ErrWeights = errors.New("tssp: weights do not decrypt to the signed plaintext")
)
