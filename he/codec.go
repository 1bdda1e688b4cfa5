package he

import (
	"bytes"
	"compress/flate"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/tuneinsight/lattigo/v6/core/rlwe"
)

// Limits bound what the decoders accept from untrusted bytes.
type Limits struct {
	// MaxBundleBytes bounds an encoded bundle (JSON or CBOR).
	MaxBundleBytes int
	// MaxCiphertexts bounds the ciphertexts in a bundle.
	MaxCiphertexts int
	// MaxCiphertextBytes bounds one ciphertext's binary encoding (after
	// decompression). 0 means the size of a ciphertext at the top level of
	// the parameters plus 4 KiB of metadata.
	MaxCiphertextBytes int
}

// DefaultLimits are generous for one request: 1 GiB bundles of at most
// 65536 ciphertexts.
func DefaultLimits() Limits {
	return Limits{MaxBundleBytes: 1 << 30, MaxCiphertexts: 1 << 16}
}

func (l Limits) ctBytes(p Params) int {
	if l.MaxCiphertextBytes > 0 {
		return l.MaxCiphertextBytes
	}
	return 2*(p.MaxLevel()+1)*p.p.N()*8 + 4096
}

// MarshalCiphertext encodes a ciphertext in Lattigo's binary format.
func MarshalCiphertext(ct *rlwe.Ciphertext) ([]byte, error) {
	b, err := ct.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("he: marshal ciphertext: %w", err)
	}
	return b, nil
}

// UnmarshalCiphertext decodes Lattigo's binary format strictly: at most
// maxBytes (≤ 0: the default for p), no trailing bytes, and a ciphertext
// valid for p (degree 1, a level p has, reduced coefficients, p's slot
// dimensions, a sane scale).
func UnmarshalCiphertext(p Params, data []byte, maxBytes int) (*rlwe.Ciphertext, error) {
	if maxBytes <= 0 {
		maxBytes = Limits{}.ctBytes(p)
	}
	if len(data) > maxBytes {
		return nil, fmt.Errorf("he: ciphertext: %d bytes exceeds limit %d", len(data), maxBytes)
	}
	ct := new(rlwe.Ciphertext)
	if err := safeUnmarshal("ciphertext", data, ct, func(b []byte) error { return shapeCiphertext(p, b) }); err != nil {
		return nil, fmt.Errorf("he: %w", err)
	}
	if err := checkCiphertext(p, ct); err != nil {
		return nil, fmt.Errorf("he: ciphertext: %w", err)
	}
	return ct, nil
}

// EncodeCiphertextBase64 is MarshalCiphertext in standard base64 (RFC 4648).
func EncodeCiphertextBase64(ct *rlwe.Ciphertext) (string, error) {
	b, err := MarshalCiphertext(ct)
	if err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(b), nil
}

// DecodeCiphertextBase64 reverses EncodeCiphertextBase64 strictly.
func DecodeCiphertextBase64(p Params, s string, maxBytes int) (*rlwe.Ciphertext, error) {
	if maxBytes <= 0 {
		maxBytes = Limits{}.ctBytes(p)
	}
	if base64.StdEncoding.DecodedLen(len(s)) > maxBytes+3 {
		return nil, fmt.Errorf("he: ciphertext: base64 of %d bytes exceeds limit %d", len(s), maxBytes)
	}
	b, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("he: ciphertext: base64: %w", err)
	}
	return UnmarshalCiphertext(p, b, maxBytes)
}

// Compression of the ciphertexts inside a bundle.
type Compression string

const (
	CompressionNone    Compression = "none"
	CompressionDeflate Compression = "deflate" // RFC 1951, compress/flate
)

// Bundle format identifiers.
const (
	BundleFormat  = "tensafe.he.bundle"
	BundleVersion = 1
)

// Bundle is the wire form of a Batch: metadata, the ciphertexts in Lattigo's
// binary format (optionally DEFLATE-compressed) and a content hash. In JSON
// the ciphertexts are standard base64 strings; in CBOR byte strings.
type Bundle struct {
	Format      string      `json:"format" cbor:"format"`
	Version     int         `json:"version" cbor:"version"`
	Kind        string      `json:"kind" cbor:"kind"`
	Params      string      `json:"params" cbor:"params"`
	KeyID       string      `json:"key_id" cbor:"key_id"`
	Layout      Layout      `json:"layout" cbor:"layout"`
	Compression Compression `json:"compression" cbor:"compression"`
	Ciphertexts [][]byte    `json:"ciphertexts" cbor:"ciphertexts"`
	// ContentHash is "sha256:" and the hex SHA-256 of the canonical content
	// (docs/HE.md): independent of encoding and compression.
	ContentHash string `json:"content_hash" cbor:"content_hash"`
}

// Bundle kinds.
const (
	KindLoRAInput   = "lora_input"
	KindLoRADelta   = "lora_delta"
	KindModelInput  = "model_input"
	KindModelOutput = "model_output"
)

var bundleKinds = map[string]bool{KindLoRAInput: true, KindLoRADelta: true, KindModelInput: true, KindModelOutput: true}

// NewBundle encodes a batch.
func NewBundle(kind string, b *Batch, c Compression) (*Bundle, error) {
	if !bundleKinds[kind] {
		return nil, fmt.Errorf("he: bundle: unknown kind %q", kind)
	}
	if c == "" {
		c = CompressionNone
	}
	if c != CompressionNone && c != CompressionDeflate {
		return nil, fmt.Errorf("he: bundle: unknown compression %q", c)
	}
	bu := &Bundle{Format: BundleFormat, Version: BundleVersion, Kind: kind, Params: b.Params.name,
		KeyID: b.KeyID, Layout: b.Layout, Compression: c, Ciphertexts: make([][]byte, len(b.Ciphertexts))}
	h := newContentHash(bu)
	for i, ct := range b.Ciphertexts {
		raw, err := MarshalCiphertext(ct)
		if err != nil {
			return nil, fmt.Errorf("he: bundle: ciphertext %d: %w", i, err)
		}
		h.add(raw)
		if c == CompressionDeflate {
			if raw, err = deflate(raw); err != nil {
				return nil, fmt.Errorf("he: bundle: ciphertext %d: %w", i, err)
			}
		}
		bu.Ciphertexts[i] = raw
	}
	bu.ContentHash = h.sum()
	return bu, nil
}

// Batch verifies and decodes the bundle for parameters p: header fields,
// layout, count, each ciphertext strictly (after size-limited
// decompression), and the content hash.
func (b *Bundle) Batch(p Params, lim Limits) (*Batch, error) {
	if err := b.checkHeader(p, lim); err != nil {
		return nil, err
	}
	maxCt := lim.ctBytes(p)
	h := newContentHash(b)
	out := &Batch{KeyID: b.KeyID, Params: p, Layout: b.Layout, Ciphertexts: make([]*rlwe.Ciphertext, len(b.Ciphertexts))}
	for i, enc := range b.Ciphertexts {
		raw := enc
		if b.Compression == CompressionDeflate {
			var err error
			if raw, err = inflate(enc, maxCt); err != nil {
				return nil, fieldErrorf(fmt.Sprintf("ciphertexts[%d]", i), "he: bundle: ciphertext %d: %w", i, err)
			}
		}
		ct, err := UnmarshalCiphertext(p, raw, maxCt)
		if err != nil {
			return nil, fieldErrorf(fmt.Sprintf("ciphertexts[%d]", i), "he: bundle: ciphertext %d: %w", i, err)
		}
		h.add(raw)
		out.Ciphertexts[i] = ct
	}
	if got := h.sum(); got != b.ContentHash {
		return nil, fieldErrorf("content_hash", "he: bundle: content_hash %q does not match content (%s)", b.ContentHash, got)
	}
	return out, nil
}

func (b *Bundle) checkHeader(p Params, lim Limits) error {
	if b.Format != BundleFormat || b.Version != BundleVersion {
		f := "format"
		if b.Format == BundleFormat {
			f = "version"
		}
		return fieldErrorf(f, "he: bundle: format %q version %d, want %q version %d", b.Format, b.Version, BundleFormat, BundleVersion)
	}
	if !bundleKinds[b.Kind] {
		return fieldErrorf("kind", "he: bundle: unknown kind %q", b.Kind)
	}
	if b.Params != p.name {
		return fieldErrorf("params", "he: bundle: params %q, want %q", b.Params, p.name)
	}
	if !ValidKeyID(b.KeyID) {
		return fieldErrorf("key_id", "he: bundle: key_id %q is not a key id", b.KeyID)
	}
	if b.Compression != CompressionNone && b.Compression != CompressionDeflate {
		return fieldErrorf("compression", "he: bundle: unknown compression %q", b.Compression)
	}
	if err := b.Layout.validate(p.Slots()); err != nil {
		return fieldErrorf("layout", "he: bundle: %w", err)
	}
	if lim.MaxCiphertexts > 0 && len(b.Ciphertexts) > lim.MaxCiphertexts {
		return fieldErrorf("ciphertexts", "he: bundle: %d ciphertexts exceeds limit %d", len(b.Ciphertexts), lim.MaxCiphertexts)
	}
	if want := b.Layout.Ciphertexts(p.Slots()); len(b.Ciphertexts) != want {
		return fieldErrorf("ciphertexts", "he: bundle: %d ciphertexts, layout needs %d", len(b.Ciphertexts), want)
	}
	if len(b.ContentHash) != len("sha256:")+64 || b.ContentHash[:7] != "sha256:" {
		return fieldErrorf("content_hash", "he: bundle: content_hash %q is not sha256:<64 hex>", b.ContentHash)
	}
	return nil
}

// contentHash is SHA-256 over "tensafe.he.bundle/v1\n" followed by the
// header fields and each uncompressed ciphertext, each as an 8-byte
// big-endian length and the bytes.
type contentHash struct{ h hashWriter }

type hashWriter interface {
	io.Writer
	Sum([]byte) []byte
}

func newContentHash(b *Bundle) *contentHash {
	c := &contentHash{h: sha256.New()}
	io.WriteString(c.h, "tensafe.he.bundle/v1\n")
	for _, f := range []string{b.Kind, b.Params, b.KeyID, string(b.Layout.Packing),
		strconv.Itoa(b.Layout.Dim), strconv.Itoa(b.Layout.Width), strconv.Itoa(b.Layout.Tokens),
		strconv.Itoa(len(b.Ciphertexts))} {
		c.add([]byte(f))
	}
	return c
}

func (c *contentHash) add(b []byte) {
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(b)))
	c.h.Write(n[:])
	c.h.Write(b)
}

func (c *contentHash) sum() string { return "sha256:" + hex.EncodeToString(c.h.Sum(nil)) }

func deflate(b []byte) ([]byte, error) {
	var buf bytes.Buffer
	w, err := flate.NewWriter(&buf, flate.BestSpeed)
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(b); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// inflate decompresses at most limit bytes; more is an error (no bombs).
func inflate(b []byte, limit int) ([]byte, error) {
	r := flate.NewReader(bytes.NewReader(b))
	defer r.Close()
	out, err := io.ReadAll(io.LimitReader(r, int64(limit)+1))
	if err != nil {
		return nil, fmt.Errorf("inflate: %w", err)
	}
	if len(out) > limit {
		return nil, fmt.Errorf("inflate: more than %d bytes", limit)
	}
	return out, nil
}

// EncodeBundleJSON encodes a bundle as JSON.
func EncodeBundleJSON(b *Bundle) ([]byte, error) {
	out, err := json.Marshal(b)
	if err != nil {
		return nil, fmt.Errorf("he: bundle json: %w", err)
	}
	return out, nil
}

// DecodeBundleJSON decodes a JSON bundle strictly: size limit, no unknown
// fields, no trailing data, duplicate keys rejected. Call Batch to verify
// and decode the ciphertexts.
func DecodeBundleJSON(data []byte, lim Limits) (*Bundle, error) {
	if lim.MaxBundleBytes > 0 && len(data) > lim.MaxBundleBytes {
		return nil, fmt.Errorf("he: bundle json: %d bytes exceeds limit %d", len(data), lim.MaxBundleBytes)
	}
	if err := rejectDuplicateKeys(data); err != nil {
		return nil, fmt.Errorf("he: bundle json: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var b Bundle
	if err := dec.Decode(&b); err != nil {
		return nil, fmt.Errorf("he: bundle json: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("he: bundle json: trailing data after the bundle")
	}
	if lim.MaxCiphertexts > 0 && len(b.Ciphertexts) > lim.MaxCiphertexts {
		return nil, fmt.Errorf("he: bundle json: %d ciphertexts exceeds limit %d", len(b.Ciphertexts), lim.MaxCiphertexts)
	}
	return &b, nil
}

// rejectDuplicateKeys walks the JSON token stream and fails on an object
// with a repeated key (encoding/json would silently keep the last).
func rejectDuplicateKeys(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	type frame struct {
		obj  bool
		keys map[string]bool
		key  bool // next string token in an object is a key
	}
	var stack []*frame
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{', '[':
				if top != nil && top.obj {
					top.key = true
				}
				if len(stack) >= 16 {
					return errors.New("nesting too deep")
				}
				stack = append(stack, &frame{obj: t == '{', keys: map[string]bool{}, key: true})
			case '}', ']':
				stack = stack[:len(stack)-1]
			}
		default:
			if top != nil && top.obj {
				if top.key {
					k, _ := t.(string)
					if top.keys[k] {
						return fmt.Errorf("duplicate key %q", k)
					}
					top.keys[k] = true
					top.key = false
				} else {
					top.key = true
				}
			}
		}
	}
}

// EncodeBundleCBOR encodes a bundle as CBOR (core deterministic encoding).
func EncodeBundleCBOR(b *Bundle) ([]byte, error) {
	out, err := cborEnc.Marshal(b)
	if err != nil {
		return nil, fmt.Errorf("he: bundle cbor: %w", err)
	}
	return out, nil
}

// DecodeBundleCBOR decodes a CBOR bundle strictly: size limit, no unknown
// fields, duplicate keys, indefinite lengths or tags, no trailing data.
func DecodeBundleCBOR(data []byte, lim Limits) (*Bundle, error) {
	if lim.MaxBundleBytes > 0 && len(data) > lim.MaxBundleBytes {
		return nil, fmt.Errorf("he: bundle cbor: %d bytes exceeds limit %d", len(data), lim.MaxBundleBytes)
	}
	var b Bundle
	if err := cborDec.Unmarshal(data, &b); err != nil {
		return nil, fmt.Errorf("he: bundle cbor: %w", err)
	}
	if lim.MaxCiphertexts > 0 && len(b.Ciphertexts) > lim.MaxCiphertexts {
		return nil, fmt.Errorf("he: bundle cbor: %d ciphertexts exceeds limit %d", len(b.Ciphertexts), lim.MaxCiphertexts)
	}
	return &b, nil
}
