// Package seal holds TenSafe's cryptographic formats, each built from
// standard primitives and nothing invented:
//
//   - the streaming envelope for artifacts (AES-256-GCM in 64 KiB segments,
//     in the manner of age's STREAM and Tink's streaming AEAD), so that a
//     multi-gigabyte checkpoint is encrypted and decrypted in bounded memory
//     and truncation, reordering and splicing are detected (docs/ENVELOPE.md);
//   - hybrid signatures, Ed25519 + ML-DSA-65, both of which must verify, so a
//     signed package stays unforgeable if either scheme falls;
//   - a hybrid KEM, X25519 + ML-KEM-768 through crypto/hpke, to encrypt a data
//     key to a recipient so that a package recorded today cannot be opened by
//     a quantum computer tomorrow.
//
// seal is a leaf: it knows nothing of tenants' key hierarchies (package keys
// wraps and unwraps data keys) and nothing of where bytes are stored.
package seal
