// Package tssp reads and writes TenSafe Secure Packages: the one file in
// which a trained LoRA adapter leaves TenSafe.
//
// A package has to prove three things to whoever receives it, without
// trusting the channel it came through: who made it (a hybrid Ed25519 +
// ML-DSA-65 signature by a key the receiver trusts), that nobody changed it
// (the signed manifest commits to the size and SHA-256 of every other
// member, and the archive itself is canonical, so there is exactly one byte
// string for a given package), and how private its training was (the DP
// certificate, whose adapter hash must match the packaged weights). And it
// must be readable only by its intended recipients: the weights are
// encrypted with a fresh data key in the seal streaming envelope, and that
// key is encrypted to each recipient's hybrid X25519 + ML-KEM-768 key.
//
// The format is specified in docs/TSSP_SPEC.md, versioned, and simple enough
// to implement elsewhere: a USTAR archive with fixed headers and a fixed
// member order (manifest.json, manifest.sig, adapter_config.json, optional
// dp_certificate.json and evidence.json, weights.bin.enc).
//
// Reading is split in three steps so that nothing is trusted before it is
// checked: Read parses the archive structure and the manifest (bounded
// sizes, no decryption), Package.Verify checks signer, signature, every
// member and the certificate, and only a verified package can be decrypted
// (Package.Decrypt; Load, into memory for the edge loader; or OpenDir,
// which writes a PEFT adapter folder through a temporary directory renamed
// into place only after everything has checked out). The opener is an
// Identity: a recipient's key, or the producing tenant's KEK in a
// keys.Provider for packages made with CreateOptions.Tenant.
//
// Every failure wraps one of the exported Err values, so callers (and the
// tamper tests) can tell a bad signature from an untrusted signer from an
// altered member.
package tssp
