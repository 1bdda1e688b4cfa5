package seal

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"

	"github.com/cloudflare/circl/sign/mldsa/mldsa65"
)

// Hybrid signatures: Ed25519 (RFC 8032) and ML-DSA-65 (FIPS 204) over the
// same domain-separated message. A signature is valid only when both
// component signatures verify, so forging one requires breaking both a
// classical and a post-quantum scheme.
//
// The signed message, for a caller context C and message M, is
//
//	M' = "TenSafe hybrid signature v1" || 0x00 || u8(len(C)) || C || M
//
// Ed25519 signs M' (pure Ed25519); ML-DSA-65 signs M' with the FIPS 204
// context string "tensafe-hybrid-v1" (hedged, randomized signing). The label
// in M' binds both halves to this construction, so neither half can be lifted
// out and presented as a standalone Ed25519 or ML-DSA signature over M.
// See docs/KEYS.md for the binary and text encodings.

// Algorithm identifiers, the first byte of every binary encoding.
const (
	// AlgHybridEd25519MLDSA65 identifies Ed25519 + ML-DSA-65.
	AlgHybridEd25519MLDSA65 byte = 0x01
)

const (
	sigLabel      = "TenSafe hybrid signature v1"
	mldsaContext  = "tensafe-hybrid-v1"
	edSeedSize    = ed25519.SeedSize // 32
	mldsaSeedSize = mldsa65.SeedSize // 32

	// SigningKeySize is the length of a binary signing key: algorithm byte,
	// Ed25519 seed, ML-DSA-65 seed.
	SigningKeySize = 1 + edSeedSize + mldsaSeedSize
	// VerifyingKeySize is the length of a binary verifying key: algorithm
	// byte, Ed25519 public key, ML-DSA-65 public key.
	VerifyingKeySize = 1 + ed25519.PublicKeySize + mldsa65.PublicKeySize
	// SignatureSize is the length of a hybrid signature: algorithm byte,
	// Ed25519 signature, ML-DSA-65 signature.
	SignatureSize = 1 + ed25519.SignatureSize + mldsa65.SignatureSize
	// MaxContextLen is the longest context string Sign and Verify accept.
	MaxContextLen = 255
)

// Text encodings of keys, for files and command lines.
const (
	SigningKeyPrefix   = "tensafe-sign-secret-v1:"
	VerifyingKeyPrefix = "tensafe-sign-pub-v1:"
	keyIDPrefix        = "ts1-"
)

// ErrBadSignature is returned by Verify when a signature does not verify,
// for whatever reason (wrong key, wrong context, altered message, malformed
// or truncated signature, or only one of the two halves valid).
var ErrBadSignature = errors.New("seal: bad signature")

// SigningKey is a hybrid Ed25519 + ML-DSA-65 private key.
type SigningKey struct {
	edSeed    [edSeedSize]byte
	mldsaSeed [mldsaSeedSize]byte
	ed        ed25519.PrivateKey
	mldsa     *mldsa65.PrivateKey
	pub       *VerifyingKey
}

// VerifyingKey is a hybrid Ed25519 + ML-DSA-65 public key.
type VerifyingKey struct {
	ed    ed25519.PublicKey
	mldsa *mldsa65.PublicKey
	enc   []byte // canonical binary encoding, VerifyingKeySize bytes
}

// GenerateSigningKey returns a new signing key drawing 64 bytes of entropy
// from rand (crypto/rand.Reader when rand is nil).
func GenerateSigningKey(random io.Reader) (*SigningKey, error) {
	if random == nil {
		random = rand.Reader
	}
	var seeds [edSeedSize + mldsaSeedSize]byte
	if _, err := io.ReadFull(random, seeds[:]); err != nil {
		return nil, fmt.Errorf("seal: generate signing key: %w", err)
	}
	k := newSigningKeyFromSeeds(seeds[:edSeedSize], seeds[edSeedSize:])
	clear(seeds[:])
	return k, nil
}

func newSigningKeyFromSeeds(edSeed, mldsaSeed []byte) *SigningKey {
	k := &SigningKey{}
	copy(k.edSeed[:], edSeed)
	copy(k.mldsaSeed[:], mldsaSeed)
	k.ed = ed25519.NewKeyFromSeed(k.edSeed[:])
	mpk, msk := mldsa65.NewKeyFromSeed(&k.mldsaSeed)
	k.mldsa = msk
	k.pub = newVerifyingKey(k.ed.Public().(ed25519.PublicKey), mpk)
	return k
}

func newVerifyingKey(ed ed25519.PublicKey, m *mldsa65.PublicKey) *VerifyingKey {
	enc := make([]byte, 0, VerifyingKeySize)
	enc = append(enc, AlgHybridEd25519MLDSA65)
	enc = append(enc, ed...)
	enc = append(enc, m.Bytes()...)
	return &VerifyingKey{ed: ed, mldsa: m, enc: enc}
}

// Public returns the verifying key of k.
func (k *SigningKey) Public() *VerifyingKey { return k.pub }

// Sign signs msg under the domain-separation string context, which must be
// non-empty and at most MaxContextLen bytes. The same context must be given
// to Verify.
func (k *SigningKey) Sign(context string, msg []byte) ([]byte, error) {
	if err := checkContext(context); err != nil {
		return nil, fmt.Errorf("seal: sign: %w", err)
	}
	m := signedMessage(context, msg)
	sig := make([]byte, SignatureSize)
	sig[0] = AlgHybridEd25519MLDSA65
	copy(sig[1:], ed25519.Sign(k.ed, m))
	if err := mldsa65.SignTo(k.mldsa, m, []byte(mldsaContext), true, sig[1+ed25519.SignatureSize:]); err != nil {
		return nil, fmt.Errorf("seal: sign: ml-dsa-65: %w", err)
	}
	return sig, nil
}

// Verify reports whether sig is a valid hybrid signature by v over msg in
// context. It returns nil only when both the Ed25519 and the ML-DSA-65
// signatures verify; otherwise an error wrapping ErrBadSignature.
func (v *VerifyingKey) Verify(context string, msg, sig []byte) error {
	if err := checkContext(context); err != nil {
		return fmt.Errorf("%w: %v", ErrBadSignature, err)
	}
	if len(sig) != SignatureSize {
		return fmt.Errorf("%w: signature is %d bytes, want %d", ErrBadSignature, len(sig), SignatureSize)
	}
	if sig[0] != AlgHybridEd25519MLDSA65 {
		return fmt.Errorf("%w: unknown signature algorithm 0x%02x", ErrBadSignature, sig[0])
	}
	m := signedMessage(context, msg)
	// Evaluate both halves, so that timing does not reveal which one failed.
	edOK := ed25519.Verify(v.ed, m, sig[1:1+ed25519.SignatureSize])
	mlOK := mldsa65.Verify(v.mldsa, m, []byte(mldsaContext), sig[1+ed25519.SignatureSize:])
	if !edOK || !mlOK {
		return ErrBadSignature
	}
	return nil
}

func checkContext(context string) error {
	if context == "" {
		return errors.New("context must not be empty")
	}
	if len(context) > MaxContextLen {
		return fmt.Errorf("context is %d bytes, at most %d allowed", len(context), MaxContextLen)
	}
	return nil
}

func signedMessage(context string, msg []byte) []byte {
	m := make([]byte, 0, len(sigLabel)+2+len(context)+len(msg))
	m = append(m, sigLabel...)
	m = append(m, 0, byte(len(context)))
	m = append(m, context...)
	return append(m, msg...)
}

// KeyID returns a short, stable identifier of v: "ts1-" followed by the hex
// of the first 12 bytes of SHA-256 over the binary encoding. It names a key;
// it is not a substitute for comparing keys.
func (v *VerifyingKey) KeyID() string {
	h := sha256.Sum256(v.enc)
	return keyIDPrefix + hex.EncodeToString(h[:12])
}

// Equal reports whether v and o are the same key.
func (v *VerifyingKey) Equal(o *VerifyingKey) bool {
	return o != nil && subtle.ConstantTimeCompare(v.enc, o.enc) == 1
}

// MarshalBinary returns the VerifyingKeySize-byte encoding of v.
func (v *VerifyingKey) MarshalBinary() ([]byte, error) {
	return bytes.Clone(v.enc), nil
}

// ParseVerifyingKey decodes the binary encoding produced by MarshalBinary.
func ParseVerifyingKey(b []byte) (*VerifyingKey, error) {
	if len(b) != VerifyingKeySize {
		return nil, fmt.Errorf("seal: parse verifying key: length is %d bytes, want %d", len(b), VerifyingKeySize)
	}
	if b[0] != AlgHybridEd25519MLDSA65 {
		return nil, fmt.Errorf("seal: parse verifying key: unknown algorithm 0x%02x", b[0])
	}
	ed := ed25519.PublicKey(bytes.Clone(b[1 : 1+ed25519.PublicKeySize]))
	var m mldsa65.PublicKey
	if err := m.UnmarshalBinary(b[1+ed25519.PublicKeySize:]); err != nil {
		return nil, fmt.Errorf("seal: parse verifying key: ml-dsa-65 key: %w", err)
	}
	v := newVerifyingKey(ed, &m)
	// Unpacking ML-DSA-65 keys is lenient about a few encodings; insist on
	// the canonical one so that one key has exactly one KeyID.
	if !bytes.Equal(v.enc, b) {
		return nil, errors.New("seal: parse verifying key: non-canonical encoding")
	}
	return v, nil
}

// MarshalBinary returns the SigningKeySize-byte encoding of k: the
// algorithm byte and the two 32-byte seeds. It is secret.
func (k *SigningKey) MarshalBinary() ([]byte, error) {
	b := make([]byte, 0, SigningKeySize)
	b = append(b, AlgHybridEd25519MLDSA65)
	b = append(b, k.edSeed[:]...)
	return append(b, k.mldsaSeed[:]...), nil
}

// ParseSigningKey decodes the binary encoding produced by
// SigningKey.MarshalBinary.
func ParseSigningKey(b []byte) (*SigningKey, error) {
	if len(b) != SigningKeySize {
		return nil, fmt.Errorf("seal: parse signing key: length is %d bytes, want %d", len(b), SigningKeySize)
	}
	if b[0] != AlgHybridEd25519MLDSA65 {
		return nil, fmt.Errorf("seal: parse signing key: unknown algorithm 0x%02x", b[0])
	}
	return newSigningKeyFromSeeds(b[1:1+edSeedSize], b[1+edSeedSize:]), nil
}

// MarshalText returns the text form "tensafe-sign-pub-v1:" followed by the
// unpadded base64url of the binary encoding.
func (v *VerifyingKey) MarshalText() ([]byte, error) {
	return []byte(VerifyingKeyPrefix + b64.EncodeToString(v.enc)), nil
}

// String returns the text form of v.
func (v *VerifyingKey) String() string {
	t, _ := v.MarshalText()
	return string(t)
}

// ParseVerifyingKeyText decodes the text form produced by MarshalText.
// Surrounding white space is ignored.
func ParseVerifyingKeyText(s string) (*VerifyingKey, error) {
	b, err := decodeText(s, VerifyingKeyPrefix)
	if err != nil {
		return nil, fmt.Errorf("seal: parse verifying key: %w", err)
	}
	return ParseVerifyingKey(b)
}

// MarshalText returns the secret text form "tensafe-sign-secret-v1:"
// followed by the unpadded base64url of the binary encoding.
func (k *SigningKey) MarshalText() ([]byte, error) {
	b, _ := k.MarshalBinary()
	defer clear(b)
	return []byte(SigningKeyPrefix + b64.EncodeToString(b)), nil
}

// ParseSigningKeyText decodes the text form produced by
// SigningKey.MarshalText. Surrounding white space is ignored.
func ParseSigningKeyText(s string) (*SigningKey, error) {
	b, err := decodeText(s, SigningKeyPrefix)
	if err != nil {
		return nil, fmt.Errorf("seal: parse signing key: %w", err)
	}
	defer clear(b)
	return ParseSigningKey(b)
}
