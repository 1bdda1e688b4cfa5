package api

// PackageRequest is the body of POST /api/v1/artifacts/{id}/package: make a
// TenSafe Secure Package (docs/TSSP_SPEC.md) of a saved checkpoint.
type PackageRequest struct {
	// Recipients may open the package. Each is a hybrid X25519 +
	// ML-KEM-768 public key in the text form `tensafe keys recipient new`
	// writes ("tensafe-recipient-pub-v1:…"), or the word "tenant" for the
	// tenant's own KEK. At least one.
	Recipients []string `json:"recipients"`
	// Name names the new artifact (default "<checkpoint name>.tssp").
	Name string `json:"name,omitempty"`
}

// PackageResult answers POST /api/v1/artifacts/{id}/package: the new
// artifact (kind "tssp", downloadable with GET /api/v1/artifacts/{id}/download)
// and what its signed manifest says.
type PackageResult struct {
	Artifact Artifact `json:"artifact"`
	// PackageID is the manifest's package_id ("tssp-" and 32 hex digits).
	PackageID string `json:"package_id"`
	// Signer is the key id of the server's package signing key.
	Signer string `json:"signer"`
	// Recipients are the key ids the weights are encrypted to ("tr1-…"),
	// and "kek:<tenant>" when the tenant's KEK may open them.
	Recipients []string `json:"recipients"`
	// WeightsSHA256 is the SHA-256 of the packaged PEFT adapter weights,
	// which the DP certificate names as its adapter_hash.
	WeightsSHA256 string `json:"weights_sha256"`
	// Epsilon and Delta are the certified guarantee.
	Epsilon float64 `json:"epsilon"`
	Delta   float64 `json:"delta"`
	// Steps is the optimizer steps the checkpoint holds.
	Steps int64 `json:"steps"`
}

// Signer answers GET /api/v1/signer: the server's package signing public
// key, so that clients can pin it and verify packages offline.
type Signer struct {
	// KeyID is the key id a package manifest names as its signer ("ts1-…").
	KeyID string `json:"key_id"`
	// PublicKey is the hybrid Ed25519 + ML-DSA-65 verifying key in the
	// text form `tensafe keys signer new` writes.
	PublicKey string `json:"public_key"`
	// AuditPublicKey is the key that signs the audit log's checkpoints
	// (same text form), against which the inclusion proofs in a package's
	// evidence verify; absent when the server does not publish it.
	AuditPublicKey string `json:"audit_public_key,omitempty"`
}

// ArtifactKindTSSP is the kind of an artifact holding a package.
const ArtifactKindTSSP = "tssp"

// RecipientTenant in PackageRequest.Recipients names the tenant's own KEK.
const RecipientTenant = "tenant"
