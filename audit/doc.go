// Package audit is TenSafe's tamper-evident record of what was done to
// whose data: an append-only log in which every entry commits to the one
// before it, so that nobody — an operator with shell access included — can
// change, drop, insert or reorder a past entry without the change being
// found.
//
// Three mechanisms stack:
//
//   - A hash chain. Each Entry carries prev_hash, the entry_hash of its
//     predecessor, and entry_hash, SHA-256 over its own canonical encoding
//     (prev_hash included). Verify walks the chain and names the first seq
//     that does not verify (VerifyError).
//   - A Merkle tree with RFC 6962 hashing over the entry hashes, leaf index
//     = seq, built with github.com/transparency-dev/merkle. It proves that one
//     entry is in the log in O(log n) hashes (InclusionProof) and that a
//     later tree extends an earlier one (consistency proofs).
//   - Signed checkpoints: the tree size and root hash, in the text format of
//     a C2SP signed note, signed with a hybrid Ed25519 + ML-DSA-65 key from
//     package seal, written every N entries or T seconds. A chain can be
//     rewritten from some point on by whoever can write the file; a signed
//     checkpoint cannot, so a rewrite, a truncation or a rolled-back
//     checkpoint file is caught by Verify, and a forged or stale checkpoint
//     is refused by a Witness.
//
// Entries are plain metadata: who did which operation to which resource for
// which tenant, and how it ended. Details never carry secrets or training
// data; Append refuses detail keys that name secret material and values that
// look like keys or tokens (see Record).
//
// Storage sits behind the small Store interface. FileStore (JSON lines,
// fdatasync'd) is the embedded default; a SQL store comes with the server.
// The formats — canonical encoding, hashing, file layout, checkpoint text —
// are specified, versioned, in docs/AUDIT_LOG.md.
package audit
