package seal

import (
	"bytes"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"
)

// Envelope format constants (docs/ENVELOPE.md).
const (
	// EnvelopeVersion is the only envelope format version this package
	// writes and reads.
	EnvelopeVersion = 1
	// AlgAES256GCMHKDF64K is the payload algorithm of version 1:
	// AES-256-GCM segments of SegmentSize plaintext bytes, keys derived with
	// HKDF-SHA256.
	AlgAES256GCMHKDF64K = 1
	// SegmentSize is the plaintext length of every segment but the last.
	SegmentSize = 64 << 10
	// DEKSize is the length of a data encryption key.
	DEKSize = 32
	// MaxKeyIDLen bounds the key id recorded in a header.
	MaxKeyIDLen = 255
	// MaxWrappedDEKLen bounds the wrapped DEK recorded in a header (an HPKE
	// X-Wing wrap is 1168 bytes, an AES-KWP wrap 40).
	MaxWrappedDEKLen = 4096
	// MaxBindingLen bounds the tenant id and the artifact id.
	MaxBindingLen = 1024

	tagSize         = 16
	noncePrefixSize = 7
	saltSize        = 32
	headerMACSize   = 32
	fixedHeaderLen  = 4 + 1 + 1 + saltSize + noncePrefixSize // magic .. nonce prefix
	// MaxHeaderLen is the longest possible header.
	MaxHeaderLen = fixedHeaderLen + 1 + MaxKeyIDLen + 4 + 1 + 2 + MaxWrappedDEKLen + headerMACSize
)

var envelopeMagic = [4]byte{'T', 'S', 'E', 'V'}

// Errors a caller may need to tell apart. Each is wrapped with context
// (the segment index, the field) by the function that returns it.
var (
	// ErrMalformedHeader: the bytes are not a well-formed envelope header.
	ErrMalformedHeader = errors.New("seal: malformed envelope header")
	// ErrUnsupported: a version or algorithm this package does not know.
	ErrUnsupported = errors.New("seal: unsupported envelope version or algorithm")
	// ErrHeaderAuth: the header does not authenticate under the given DEK and
	// binding: wrong key, wrong tenant or artifact, or an altered header.
	ErrHeaderAuth = errors.New("seal: envelope header does not authenticate (wrong key, wrong tenant/artifact binding, or altered header)")
	// ErrSegmentAuth: a segment does not authenticate: altered, cut short,
	// reordered, or spliced in from another envelope.
	ErrSegmentAuth = errors.New("seal: envelope segment does not authenticate (altered, cut short, reordered or spliced)")
	// ErrTruncated: the envelope ends before its final segment.
	ErrTruncated = errors.New("seal: envelope truncated")
	// ErrTrailingData: bytes follow the final segment.
	ErrTrailingData = errors.New("seal: data after the final envelope segment")
	// ErrContentHash: the plaintext does not have the expected hash.
	ErrContentHash = errors.New("seal: content hash mismatch")
	// ErrTooLarge: the plaintext exceeds 2^32 segments.
	ErrTooLarge = errors.New("seal: plaintext too large for one envelope")
)

// WrapAlg says how the DEK in a header is wrapped.
type WrapAlg byte

const (
	// WrapAES256KWP: AES-256 key wrap with padding (RFC 5649) under a
	// tenant's KEK version (package keys).
	WrapAES256KWP WrapAlg = 1
	// WrapHPKEXWing: HPKE base mode, MLKEM768-X25519, HKDF-SHA256,
	// AES-256-GCM, to a recipient key (SealDEK).
	WrapHPKEXWing WrapAlg = 2
)

func (a WrapAlg) String() string {
	switch a {
	case WrapAES256KWP:
		return "aes256-kwp"
	case WrapHPKEXWing:
		return "hpke-mlkem768x25519"
	}
	return fmt.Sprintf("wrap-alg-%d", byte(a))
}

// KeyRef records in a header how to recover the DEK: which key wrapped it
// and the wrapped bytes. It is authenticated by the header MAC.
type KeyRef struct {
	KeyID      string  // the wrapping key: a tenant's KEK id, or a recipient key id
	KEKVersion uint32  // the KEK version; 0 for recipient wraps
	WrapAlg    WrapAlg // how WrappedDEK was produced
	WrappedDEK []byte
}

func (r *KeyRef) check() error {
	switch {
	case r.KeyID == "":
		return fmt.Errorf("key id is empty")
	case len(r.KeyID) > MaxKeyIDLen:
		return fmt.Errorf("key id is %d bytes, at most %d allowed", len(r.KeyID), MaxKeyIDLen)
	case !utf8.ValidString(r.KeyID):
		return fmt.Errorf("key id is not valid UTF-8")
	case r.WrapAlg != WrapAES256KWP && r.WrapAlg != WrapHPKEXWing:
		return fmt.Errorf("wrap algorithm %d is unknown", byte(r.WrapAlg))
	case len(r.WrappedDEK) == 0:
		return fmt.Errorf("wrapped DEK is empty")
	case len(r.WrappedDEK) > MaxWrappedDEKLen:
		return fmt.Errorf("wrapped DEK is %d bytes, at most %d allowed", len(r.WrappedDEK), MaxWrappedDEKLen)
	}
	return nil
}

// Binding is the associated data of an envelope: the envelope opens only
// under the tenant id and artifact id it was sealed with, so an artifact
// copied to another tenant or another name is rejected.
type Binding struct {
	TenantID   string
	ArtifactID string
}

func (b Binding) check() error {
	for _, f := range []struct{ name, v string }{{"tenant id", b.TenantID}, {"artifact id", b.ArtifactID}} {
		switch {
		case f.v == "":
			return fmt.Errorf("%s is empty", f.name)
		case len(f.v) > MaxBindingLen:
			return fmt.Errorf("%s is %d bytes, at most %d allowed", f.name, len(f.v), MaxBindingLen)
		}
	}
	return nil
}

// Header is a parsed envelope header. Until NewReader (or RewrapHeader)
// has authenticated it with the DEK, its fields are untrusted input: use
// KeyRef only to find and unwrap the DEK.
type Header struct {
	KeyRef
	salt        [saltSize]byte
	noncePrefix [noncePrefixSize]byte
	mac         [headerMACSize]byte
	raw         []byte // encoded header without the MAC
}

// Len is the encoded length of the header; the first segment starts there.
func (h *Header) Len() int { return len(h.raw) + headerMACSize }

// envelopeKeys holds the keys derived from a DEK for one envelope.
type envelopeKeys struct {
	payload [32]byte
	header  [32]byte
}

func deriveKeys(dek []byte, salt []byte, b Binding) (*envelopeKeys, error) {
	if len(dek) != DEKSize {
		return nil, fmt.Errorf("DEK is %d bytes, want %d", len(dek), DEKSize)
	}
	var k envelopeKeys
	for _, d := range []struct {
		label string
		out   []byte
	}{{"tensafe envelope v1 payload key", k.payload[:]}, {"tensafe envelope v1 header key", k.header[:]}} {
		key, err := hkdf.Key(sha256.New, dek, salt, string(bindingInfo(d.label, b)), 32)
		if err != nil {
			return nil, err
		}
		copy(d.out, key)
		clear(key)
	}
	return &k, nil
}

// bindingInfo is label || 0x00 || u16(len(tenant)) || tenant ||
// u16(len(artifact)) || artifact.
func bindingInfo(label string, b Binding) []byte {
	info := make([]byte, 0, len(label)+5+len(b.TenantID)+len(b.ArtifactID))
	info = append(info, label...)
	info = append(info, 0)
	info = binary.BigEndian.AppendUint16(info, uint16(len(b.TenantID)))
	info = append(info, b.TenantID...)
	info = binary.BigEndian.AppendUint16(info, uint16(len(b.ArtifactID)))
	return append(info, b.ArtifactID...)
}

// newHeader builds a header with fresh salt and nonce prefix.
func newHeader(ref KeyRef) (*Header, error) {
	h := &Header{KeyRef: ref}
	h.WrappedDEK = bytes.Clone(ref.WrappedDEK)
	if _, err := io.ReadFull(rand.Reader, h.salt[:]); err != nil {
		return nil, err
	}
	if _, err := io.ReadFull(rand.Reader, h.noncePrefix[:]); err != nil {
		return nil, err
	}
	h.raw = h.encodeBody()
	return h, nil
}

func (h *Header) encodeBody() []byte {
	b := make([]byte, 0, fixedHeaderLen+8+len(h.KeyID)+len(h.WrappedDEK))
	b = append(b, envelopeMagic[:]...)
	b = append(b, EnvelopeVersion, AlgAES256GCMHKDF64K)
	b = append(b, h.salt[:]...)
	b = append(b, h.noncePrefix[:]...)
	b = append(b, byte(len(h.KeyID)))
	b = append(b, h.KeyID...)
	b = binary.BigEndian.AppendUint32(b, h.KEKVersion)
	b = append(b, byte(h.WrapAlg))
	b = binary.BigEndian.AppendUint16(b, uint16(len(h.WrappedDEK)))
	return append(b, h.WrappedDEK...)
}

func (h *Header) computeMAC(k *envelopeKeys) [headerMACSize]byte {
	m := hmac.New(sha256.New, k.header[:])
	m.Write(h.raw)
	var out [headerMACSize]byte
	m.Sum(out[:0])
	return out
}

func (h *Header) encode() []byte {
	return append(bytes.Clone(h.raw), h.mac[:]...)
}

func (h *Header) authenticate(k *envelopeKeys) error {
	want := h.computeMAC(k)
	if !hmac.Equal(want[:], h.mac[:]) {
		return ErrHeaderAuth
	}
	return nil
}

// ParseHeader parses the header at the start of b; the segments start at
// offset h.Len(). It checks structure only; nothing is authenticated yet.
func ParseHeader(b []byte) (*Header, error) {
	return ReadHeader(bytes.NewReader(b))
}

// ReadHeader reads exactly one header from r, leaving r at the first
// segment. It checks structure only; nothing is authenticated until
// NewReader is given the DEK.
func ReadHeader(r io.Reader) (*Header, error) {
	raw := make([]byte, 0, 256)
	read := func(n int, field string) ([]byte, error) {
		start := len(raw)
		raw = append(raw, make([]byte, n)...)
		if _, err := io.ReadFull(r, raw[start:]); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return nil, fmt.Errorf("%w: ends inside the %s", ErrMalformedHeader, field)
			}
			return nil, fmt.Errorf("seal: read envelope header: %s: %w", field, err)
		}
		return raw[start:], nil
	}
	b, err := read(6, "magic and version")
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(b[:4], envelopeMagic[:]) {
		return nil, fmt.Errorf("%w: magic is %q, want %q", ErrMalformedHeader, b[:4], envelopeMagic[:])
	}
	if b[4] != EnvelopeVersion {
		return nil, fmt.Errorf("%w: version %d (this build reads version %d)", ErrUnsupported, b[4], EnvelopeVersion)
	}
	if b[5] != AlgAES256GCMHKDF64K {
		return nil, fmt.Errorf("%w: payload algorithm %d", ErrUnsupported, b[5])
	}
	h := &Header{}
	if b, err = read(saltSize, "salt"); err != nil {
		return nil, err
	}
	copy(h.salt[:], b)
	if b, err = read(noncePrefixSize, "nonce prefix"); err != nil {
		return nil, err
	}
	copy(h.noncePrefix[:], b)
	if b, err = read(1, "key id length"); err != nil {
		return nil, err
	}
	if b, err = read(int(b[0]), "key id"); err != nil {
		return nil, err
	}
	h.KeyID = string(b)
	if b, err = read(4, "KEK version"); err != nil {
		return nil, err
	}
	h.KEKVersion = binary.BigEndian.Uint32(b)
	if b, err = read(1, "wrap algorithm"); err != nil {
		return nil, err
	}
	h.WrapAlg = WrapAlg(b[0])
	if b, err = read(2, "wrapped DEK length"); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint16(b))
	if n > MaxWrappedDEKLen {
		return nil, fmt.Errorf("%w: wrapped DEK length %d exceeds %d", ErrMalformedHeader, n, MaxWrappedDEKLen)
	}
	if b, err = read(n, "wrapped DEK"); err != nil {
		return nil, err
	}
	h.WrappedDEK = bytes.Clone(b)
	if err := h.KeyRef.check(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformedHeader, err)
	}
	h.raw = bytes.Clone(raw)
	if _, err := io.ReadFull(r, h.mac[:]); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("%w: ends inside the header MAC", ErrMalformedHeader)
		}
		return nil, fmt.Errorf("seal: read envelope header: MAC: %w", err)
	}
	return h, nil
}

// RewrapHeader returns the encoding of a new header for the same payload
// with ref as its key reference: the DEK re-wrapped under a new KEK version,
// say. It first authenticates h with dek and b, so a wrong DEK cannot be
// recorded. The segments that follow the old header are unchanged: write
// the new header followed by the old envelope from offset h.Len() on.
func RewrapHeader(h *Header, dek []byte, b Binding, ref KeyRef) ([]byte, error) {
	if err := b.check(); err != nil {
		return nil, fmt.Errorf("seal: rewrap header: %w", err)
	}
	if err := ref.check(); err != nil {
		return nil, fmt.Errorf("seal: rewrap header: %w", err)
	}
	k, err := deriveKeys(dek, h.salt[:], b)
	if err != nil {
		return nil, fmt.Errorf("seal: rewrap header: %w", err)
	}
	if err := h.authenticate(k); err != nil {
		return nil, fmt.Errorf("seal: rewrap header: %w", err)
	}
	nh := &Header{KeyRef: ref, salt: h.salt, noncePrefix: h.noncePrefix}
	nh.WrappedDEK = bytes.Clone(ref.WrappedDEK)
	nh.raw = nh.encodeBody()
	nh.mac = nh.computeMAC(k)
	return nh.encode(), nil
}
