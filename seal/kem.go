package seal

import (
	"crypto/hpke"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
)

// Hybrid KEM: a DEK is encrypted to a recipient with HPKE (RFC 9180) in
// base mode with KEM MLKEM768-X25519 (X-Wing, draft-ietf-hpke-pq),
// KDF HKDF-SHA256 and AEAD AES-256-GCM, all from crypto/hpke. The HPKE
// info string binds the wrap to its use:
//
//	info = "tensafe dek wrap v1" || 0x00 || u16(len(tenant)) || tenant || u16(len(artifact)) || artifact
//
// and the wrapped form is enc (1120 bytes) || AES-256-GCM ciphertext of the
// DEK (48 bytes).

const (
	// RecipientKeySize is the length of a binary recipient (private) key:
	// algorithm byte and the 32-byte X-Wing seed.
	RecipientKeySize = 1 + 32
	// RecipientPublicKeySize is the length of a binary recipient public key:
	// algorithm byte, ML-KEM-768 encapsulation key (1184) and X25519 key (32).
	RecipientPublicKeySize = 1 + 1216
	// WrappedDEKSizeHPKE is the length of a DEK wrapped by SealDEK.
	WrappedDEKSizeHPKE = 1120 + DEKSize + tagSize

	// AlgXWing identifies MLKEM768-X25519 in recipient key encodings.
	AlgXWing byte = 0x01

	RecipientKeyPrefix       = "tensafe-recipient-secret-v1:"
	RecipientPublicKeyPrefix = "tensafe-recipient-pub-v1:"
	recipientIDPrefix        = "tr1-"
	dekWrapLabel             = "tensafe dek wrap v1"
)

// ErrUnwrap is returned when a wrapped DEK does not open: wrong recipient
// key, wrong binding, or altered bytes.
var ErrUnwrap = errors.New("seal: wrapped DEK does not open (wrong key, wrong binding, or altered)")

func hpkeSuite() (hpke.KEM, hpke.KDF, hpke.AEAD) {
	return hpke.MLKEM768X25519(), hpke.HKDFSHA256(), hpke.AES256GCM()
}

// RecipientKey is a hybrid X25519 + ML-KEM-768 private key that DEKs can be
// encrypted to.
type RecipientKey struct {
	priv hpke.PrivateKey
	seed []byte
	pub  *RecipientPublicKey
}

// RecipientPublicKey is the public half of a RecipientKey.
type RecipientPublicKey struct {
	pub hpke.PublicKey
	enc []byte
}

// GenerateRecipientKey returns a new recipient key from crypto/rand.
func GenerateRecipientKey() (*RecipientKey, error) {
	kem, _, _ := hpkeSuite()
	priv, err := kem.GenerateKey()
	if err != nil {
		return nil, fmt.Errorf("seal: generate recipient key: %w", err)
	}
	seed, err := priv.Bytes()
	if err != nil {
		return nil, fmt.Errorf("seal: generate recipient key: %w", err)
	}
	return newRecipientKey(priv, seed), nil
}

func newRecipientKey(priv hpke.PrivateKey, seed []byte) *RecipientKey {
	pub := priv.PublicKey()
	return &RecipientKey{
		priv: priv,
		seed: seed,
		pub:  &RecipientPublicKey{pub: pub, enc: append([]byte{AlgXWing}, pub.Bytes()...)},
	}
}

// Public returns the public key of k.
func (k *RecipientKey) Public() *RecipientPublicKey { return k.pub }

// MarshalBinary returns the secret RecipientKeySize-byte encoding of k.
func (k *RecipientKey) MarshalBinary() ([]byte, error) {
	return append([]byte{AlgXWing}, k.seed...), nil
}

// ParseRecipientKey decodes RecipientKey.MarshalBinary.
func ParseRecipientKey(b []byte) (*RecipientKey, error) {
	if len(b) != RecipientKeySize {
		return nil, fmt.Errorf("seal: parse recipient key: length is %d bytes, want %d", len(b), RecipientKeySize)
	}
	if b[0] != AlgXWing {
		return nil, fmt.Errorf("seal: parse recipient key: unknown algorithm 0x%02x", b[0])
	}
	kem, _, _ := hpkeSuite()
	priv, err := kem.NewPrivateKey(b[1:])
	if err != nil {
		return nil, fmt.Errorf("seal: parse recipient key: %w", err)
	}
	return newRecipientKey(priv, append([]byte(nil), b[1:]...)), nil
}

// MarshalText returns "tensafe-recipient-secret-v1:" and the unpadded
// base64url of the binary encoding.
func (k *RecipientKey) MarshalText() ([]byte, error) {
	b, _ := k.MarshalBinary()
	defer clear(b)
	return []byte(RecipientKeyPrefix + b64.EncodeToString(b)), nil
}

// ParseRecipientKeyText decodes RecipientKey.MarshalText.
func ParseRecipientKeyText(s string) (*RecipientKey, error) {
	b, err := decodeText(s, RecipientKeyPrefix)
	if err != nil {
		return nil, fmt.Errorf("seal: parse recipient key: %w", err)
	}
	defer clear(b)
	return ParseRecipientKey(b)
}

// MarshalBinary returns the RecipientPublicKeySize-byte encoding of p.
func (p *RecipientPublicKey) MarshalBinary() ([]byte, error) {
	return append([]byte(nil), p.enc...), nil
}

// ParseRecipientPublicKey decodes RecipientPublicKey.MarshalBinary.
func ParseRecipientPublicKey(b []byte) (*RecipientPublicKey, error) {
	if len(b) != RecipientPublicKeySize {
		return nil, fmt.Errorf("seal: parse recipient public key: length is %d bytes, want %d", len(b), RecipientPublicKeySize)
	}
	if b[0] != AlgXWing {
		return nil, fmt.Errorf("seal: parse recipient public key: unknown algorithm 0x%02x", b[0])
	}
	kem, _, _ := hpkeSuite()
	pub, err := kem.NewPublicKey(b[1:])
	if err != nil {
		return nil, fmt.Errorf("seal: parse recipient public key: %w", err)
	}
	return &RecipientPublicKey{pub: pub, enc: append([]byte(nil), b...)}, nil
}

// MarshalText returns "tensafe-recipient-pub-v1:" and the unpadded
// base64url of the binary encoding.
func (p *RecipientPublicKey) MarshalText() ([]byte, error) {
	return []byte(RecipientPublicKeyPrefix + b64.EncodeToString(p.enc)), nil
}

// String returns the text form of p.
func (p *RecipientPublicKey) String() string {
	t, _ := p.MarshalText()
	return string(t)
}

// ParseRecipientPublicKeyText decodes RecipientPublicKey.MarshalText.
func ParseRecipientPublicKeyText(s string) (*RecipientPublicKey, error) {
	b, err := decodeText(s, RecipientPublicKeyPrefix)
	if err != nil {
		return nil, fmt.Errorf("seal: parse recipient public key: %w", err)
	}
	return ParseRecipientPublicKey(b)
}

// KeyID returns "tr1-" and the hex of the first 12 bytes of SHA-256 over
// the binary encoding of p.
func (p *RecipientPublicKey) KeyID() string {
	h := sha256.Sum256(p.enc)
	return recipientIDPrefix + hex.EncodeToString(h[:12])
}

// Equal reports whether p and o are the same key.
func (p *RecipientPublicKey) Equal(o *RecipientPublicKey) bool {
	return o != nil && subtle.ConstantTimeCompare(p.enc, o.enc) == 1
}

// SealDEK encrypts dek to the recipient p, bound to b. The result is
// WrappedDEKSizeHPKE bytes, for a KeyRef with WrapAlg WrapHPKEXWing and
// KeyID p.KeyID().
func SealDEK(p *RecipientPublicKey, dek []byte, b Binding) ([]byte, error) {
	if len(dek) != DEKSize {
		return nil, fmt.Errorf("seal: seal DEK: DEK is %d bytes, want %d", len(dek), DEKSize)
	}
	if err := b.check(); err != nil {
		return nil, fmt.Errorf("seal: seal DEK: %w", err)
	}
	_, kdf, aead := hpkeSuite()
	out, err := hpke.Seal(p.pub, kdf, aead, bindingInfo(dekWrapLabel, b), dek)
	if err != nil {
		return nil, fmt.Errorf("seal: seal DEK: %w", err)
	}
	return out, nil
}

// OpenDEK decrypts a DEK that SealDEK encrypted to k's public key with
// binding b.
func (k *RecipientKey) OpenDEK(wrapped []byte, b Binding) ([]byte, error) {
	if len(wrapped) != WrappedDEKSizeHPKE {
		return nil, fmt.Errorf("seal: open DEK: wrapped DEK is %d bytes, want %d", len(wrapped), WrappedDEKSizeHPKE)
	}
	if err := b.check(); err != nil {
		return nil, fmt.Errorf("seal: open DEK: %w", err)
	}
	_, kdf, aead := hpkeSuite()
	dek, err := hpke.Open(k.priv, kdf, aead, bindingInfo(dekWrapLabel, b), wrapped)
	if err != nil {
		return nil, fmt.Errorf("seal: open DEK: %w", ErrUnwrap)
	}
	return dek, nil
}
