// Package he computes on activations the server never sees: LoRA deltas and
// small HE-friendly models evaluated on CKKS ciphertexts with Lattigo v6.
//
// Why: some tenants do not want the service to see activations at all. The
// client encrypts its activations under a CKKS secret key that never leaves
// it; the server holds only public evaluation keys (public, relinearization
// and Galois keys), multiplies the ciphertexts by plaintext adapter weights,
// and returns encrypted results that only the client can decrypt.
//
// The package is split along that trust line:
//
//   - Client side: [ClientKeys] (the only type that holds a secret key) and
//     [Client] (encode, encrypt, decrypt).
//   - Server side: [EvaluationKeys] and [Evaluator]. Neither has a field that
//     can hold a secret key, and importing evaluation keys rejects anything
//     else; a test walks their types to keep it so.
//
// Two packings serve encrypted LoRA (scale·B(Ax)):
//
//   - [PackingThroughput] (feature-major): ciphertext i holds feature i of up
//     to 2·slots tokens (real and imaginary parts). Ax is r plaintext-scalar
//     linear combinations of d ciphertexts and B(Ax) is d combinations of r
//     ciphertexts: no rotations and no evaluation keys.
//   - [PackingLatency] (token-interleaved): a ciphertext holds a few tokens,
//     features interleaved so rotations are cyclic per token; A and B are
//     diagonal-method matrix products (baby-step giant-step, hoisted
//     rotations) around an inner sum. The package evaluates them itself on
//     Lattigo's ring primitives (latency.go), bit for bit what Lattigo's
//     evaluators compute, so that one ciphertext can use every core: a
//     request of one ciphertext is otherwise bound to one.
//
// Private inference evaluates an [MLP] of linear layers and polynomial
// activations under CKKS with relinearization and rescaling, in the profiles
// encrypted_input, hybrid and full; the client decrypts and finishes any
// plaintext layers itself.
//
// Ciphertexts travel as Lattigo's binary marshalling, base64, or inside a
// [Bundle] (JSON or CBOR, optional DEFLATE) that carries metadata and a
// "sha256:" content hash; every decoder is strict and size-limited. The
// formats are specified in docs/HE.md.
//
// Security (Lattigo's SECURITY.md): CKKS here is IND-CPA only, it is
// malleable, and it offers no circuit privacy. A decrypted CKKS result leaks
// key-dependent noise; a client that shares decrypted values with anyone must
// round them first ([Client] offers DecodePublic-style rounding).
package he
