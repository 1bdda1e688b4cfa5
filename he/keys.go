package he

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/tuneinsight/lattigo/v6/core/rlwe"
)

// Capabilities declares what a tenant's evaluation keys must support; the
// Galois keys generated (and required on import) follow from it.
type Capabilities struct {
	// LoRA lists the adapter shapes usable with the latency packing. The
	// throughput packing needs no evaluation keys and is always available.
	LoRA []LoRAShape `json:"lora,omitempty" cbor:"lora,omitempty"`
	// MLPWidths lists padded widths (powers of two) for private inference.
	// Any entry also brings a relinearization key.
	MLPWidths []int `json:"mlp_widths,omitempty" cbor:"mlp_widths,omitempty"`
}

// GaloisElements returns the sorted Galois elements the capabilities need.
func (c Capabilities) GaloisElements(p Params) ([]uint64, error) {
	var els []uint64
	for i, s := range c.LoRA {
		e, err := loraLatencyGalois(p, s)
		if err != nil {
			return nil, fmt.Errorf("he: capabilities: lora[%d]: %w", i, err)
		}
		els = append(els, e...)
	}
	for i, w := range c.MLPWidths {
		e, err := mlpGalois(p, w)
		if err != nil {
			return nil, fmt.Errorf("he: capabilities: mlp_widths[%d]: %w", i, err)
		}
		els = append(els, e...)
	}
	return sortedUnique(els), nil
}

// needsRelin reports whether a relinearization key is part of the bundle.
func (c Capabilities) needsRelin() bool { return len(c.MLPWidths) > 0 }

// evalKeyLevel is the modulus level of the generated evaluation keys: the
// LoRA input level when only LoRA is declared (smaller keys), else the top.
func (c Capabilities) evalKeyLevel(p Params) int {
	if len(c.MLPWidths) > 0 {
		return p.MaxLevel()
	}
	return loraInputLevel(p)
}

// ClientKeys is the tenant's key pair. It is the only type in the package
// that holds a secret key, and it belongs on the client.
type ClientKeys struct {
	id      string
	params  Params
	caps    Capabilities
	created time.Time
	sk      *rlwe.SecretKey
	pk      *rlwe.PublicKey
}

// EvaluationKeys is the server-side key bundle: public, relinearization and
// Galois keys, with no field able to hold a secret key.
type EvaluationKeys struct {
	ID           string
	Params       Params
	Capabilities Capabilities
	Created      time.Time
	Public       *rlwe.PublicKey
	Relin        *rlwe.RelinearizationKey // nil unless Capabilities needs it
	Galois       []*rlwe.GaloisKey        // sorted by Galois element
}

// ID returns the key id shared by the client keys and their evaluation keys.
func (k *ClientKeys) ID() string { return k.id }

// Params returns the parameter set.
func (k *ClientKeys) Params() Params { return k.params }

// Capabilities returns what the evaluation keys were generated for.
func (k *ClientKeys) Capabilities() Capabilities { return k.caps }

// GenerateKeys creates a fresh key pair and its evaluation keys with
// Lattigo's key generator (randomness from crypto/rand via its PRNG). The
// ClientKeys stay with the client; the EvaluationKeys go to the server.
func GenerateKeys(ctx context.Context, p Params, caps Capabilities) (*ClientKeys, *EvaluationKeys, error) {
	if p.name == "" {
		return nil, nil, errors.New("he: generate keys: params not set")
	}
	gal, err := caps.GaloisElements(p)
	if err != nil {
		return nil, nil, fmt.Errorf("he: generate keys: %w", err)
	}
	kgen := rlwe.NewKeyGenerator(p.p)
	sk, pk := kgen.GenKeyPairNew()
	id, err := keyID(pk)
	if err != nil {
		return nil, nil, fmt.Errorf("he: generate keys: %w", err)
	}
	now := time.Now().UTC().Truncate(time.Second)
	ck := &ClientKeys{id: id, params: p, caps: cloneCaps(caps), created: now, sk: sk, pk: pk}
	evk := &EvaluationKeys{ID: id, Params: p, Capabilities: cloneCaps(caps), Created: now, Public: pk}
	level := caps.evalKeyLevel(p)
	levelP := p.p.MaxLevelP()
	evkParams := rlwe.EvaluationKeyParameters{LevelQ: &level, LevelP: &levelP}
	if caps.needsRelin() {
		evk.Relin = kgen.GenRelinearizationKeyNew(sk, evkParams)
	}
	for _, g := range gal {
		if err := ctx.Err(); err != nil {
			return nil, nil, fmt.Errorf("he: generate keys: %w", err)
		}
		evk.Galois = append(evk.Galois, kgen.GenGaloisKeyNew(g, sk, evkParams))
	}
	return ck, evk, nil
}

func cloneCaps(c Capabilities) Capabilities {
	return Capabilities{LoRA: slices.Clone(c.LoRA), MLPWidths: slices.Clone(c.MLPWidths)}
}

// keyID derives the key id from the public key: "hek_" and the first 16
// bytes of SHA-256 over its binary encoding, in hex.
func keyID(pk *rlwe.PublicKey) (string, error) {
	b, err := pk.MarshalBinary()
	if err != nil {
		return "", fmt.Errorf("marshal public key: %w", err)
	}
	sum := sha256.Sum256(b)
	return "hek_" + hex.EncodeToString(sum[:16]), nil
}

var keyIDPattern = regexp.MustCompile(`^hek_[0-9a-f]{32}$`)

// ValidKeyID reports whether s has the form of a key id.
func ValidKeyID(s string) bool { return keyIDPattern.MatchString(s) }

// EvaluationKeys returns a server bundle for these client keys that carries
// only the public key; useful to re-derive the id on the client. Evaluation
// keys proper are made once, by GenerateKeys.
func (k *ClientKeys) PublicKey() *rlwe.PublicKey { return k.pk }

// Wire formats. Both are CBOR maps (RFC 8949, core deterministic encoding)
// and versioned; see docs/HE.md.
const (
	evkKind    = "tensafe.he.evaluation_keys"
	skKind     = "tensafe.he.client_keys"
	sealedKind = "tensafe.he.sealed_client_keys"
	keyVersion = 1
)

type evkWire struct {
	Kind    string       `cbor:"kind"`
	Version int          `cbor:"v"`
	ID      string       `cbor:"id"`
	Params  string       `cbor:"params"`
	Caps    Capabilities `cbor:"caps"`
	Created int64        `cbor:"created"`
	Public  []byte       `cbor:"pk"`
	Relin   []byte       `cbor:"rlk,omitempty"`
	Galois  [][]byte     `cbor:"gks"`
}

// DefaultMaxKeyBytes bounds an encoded evaluation-key bundle (1 GiB).
const DefaultMaxKeyBytes = 1 << 30

// MarshalBinary encodes the bundle in the versioned CBOR key format.
func (k *EvaluationKeys) MarshalBinary() ([]byte, error) {
	w := evkWire{Kind: evkKind, Version: keyVersion, ID: k.ID, Params: k.Params.name,
		Caps: k.Capabilities, Created: k.Created.Unix()}
	var err error
	if w.Public, err = k.Public.MarshalBinary(); err != nil {
		return nil, fmt.Errorf("he: marshal evaluation keys: public key: %w", err)
	}
	if k.Relin != nil {
		if w.Relin, err = k.Relin.MarshalBinary(); err != nil {
			return nil, fmt.Errorf("he: marshal evaluation keys: relinearization key: %w", err)
		}
	}
	w.Galois = make([][]byte, len(k.Galois))
	for i, g := range k.Galois {
		if w.Galois[i], err = g.MarshalBinary(); err != nil {
			return nil, fmt.Errorf("he: marshal evaluation keys: galois key %d: %w", i, err)
		}
	}
	out, err := cborEnc.Marshal(w)
	if err != nil {
		return nil, fmt.Errorf("he: marshal evaluation keys: %w", err)
	}
	return out, nil
}

// UnmarshalEvaluationKeys decodes and checks an evaluation-key bundle: kind
// and version, a known 128-bit preset, a key id that matches the public key,
// exactly the Galois keys the capabilities need at a sufficient level, and
// a relinearization key only where needed. maxBytes ≤ 0 means
// DefaultMaxKeyBytes.
func UnmarshalEvaluationKeys(data []byte, maxBytes int) (*EvaluationKeys, error) {
	if maxBytes <= 0 {
		maxBytes = DefaultMaxKeyBytes
	}
	if len(data) > maxBytes {
		return nil, fmt.Errorf("he: evaluation keys: %d bytes exceeds limit %d", len(data), maxBytes)
	}
	var w evkWire
	if err := cborDec.Unmarshal(data, &w); err != nil {
		return nil, fmt.Errorf("he: evaluation keys: %w", err)
	}
	if w.Kind != evkKind || w.Version != keyVersion {
		return nil, fmt.Errorf("he: evaluation keys: kind %q version %d, want %q version %d", w.Kind, w.Version, evkKind, keyVersion)
	}
	p, err := Preset(w.Params)
	if err != nil {
		return nil, fmt.Errorf("he: evaluation keys: %w", err)
	}
	k := &EvaluationKeys{ID: w.ID, Params: p, Capabilities: w.Caps, Created: time.Unix(w.Created, 0).UTC()}
	k.Public = new(rlwe.PublicKey)
	if err := safeUnmarshal("public key", w.Public, k.Public, func(b []byte) error { return shapePublicKey(p, b) }); err != nil {
		return nil, fmt.Errorf("he: evaluation keys: %w", err)
	}
	if err := checkQPElement(p, "public key", k.Public.Value, p.MaxLevel()); err != nil {
		return nil, fmt.Errorf("he: evaluation keys: %w", err)
	}
	id, err := keyID(k.Public)
	if err != nil {
		return nil, fmt.Errorf("he: evaluation keys: %w", err)
	}
	if id != w.ID {
		return nil, fmt.Errorf("he: evaluation keys: id %q does not match the public key (%s)", w.ID, id)
	}
	need, err := w.Caps.GaloisElements(p)
	if err != nil {
		return nil, fmt.Errorf("he: evaluation keys: %w", err)
	}
	level := w.Caps.evalKeyLevel(p)
	if w.Caps.needsRelin() != (len(w.Relin) > 0) {
		return nil, fmt.Errorf("he: evaluation keys: relinearization key present=%v, capabilities need %v", len(w.Relin) > 0, w.Caps.needsRelin())
	}
	if len(w.Relin) > 0 {
		k.Relin = new(rlwe.RelinearizationKey)
		if err := safeUnmarshal("relinearization key", w.Relin, k.Relin, func(b []byte) error { return shapeRelinKey(p, b, level) }); err != nil {
			return nil, fmt.Errorf("he: evaluation keys: %w", err)
		}
		if len(k.Relin.Seed) != 0 {
			return nil, errors.New("he: evaluation keys: compressed relinearization key is not accepted")
		}
		if err := checkGadget(p, "relinearization key", &k.Relin.GadgetCiphertext, level); err != nil {
			return nil, fmt.Errorf("he: evaluation keys: %w", err)
		}
	}
	if len(w.Galois) != len(need) {
		return nil, fmt.Errorf("he: evaluation keys: %d galois keys, capabilities need %d", len(w.Galois), len(need))
	}
	k.Galois = make([]*rlwe.GaloisKey, len(w.Galois))
	for i, b := range w.Galois {
		g := new(rlwe.GaloisKey)
		what := fmt.Sprintf("galois key %d", i)
		if err := safeUnmarshal(what, b, g, func(b []byte) error { return shapeGaloisKey(p, b, level) }); err != nil {
			return nil, fmt.Errorf("he: evaluation keys: %w", err)
		}
		if len(g.Seed) != 0 || g.NthRoot != uint64(p.p.NthRoot()) {
			return nil, fmt.Errorf("he: evaluation keys: %s: compressed or foreign-ring keys are not accepted", what)
		}
		if g.GaloisElement != need[i] {
			return nil, fmt.Errorf("he: evaluation keys: %s has element %d, want %d", what, g.GaloisElement, need[i])
		}
		if err := checkGadget(p, what, &g.GadgetCiphertext, level); err != nil {
			return nil, fmt.Errorf("he: evaluation keys: %w", err)
		}
		k.Galois[i] = g
	}
	return k, nil
}

// evaluationKeySet is the Lattigo key set backing an evaluator.
func (k *EvaluationKeys) evaluationKeySet() *rlwe.MemEvaluationKeySet {
	return rlwe.NewMemEvaluationKeySet(k.Relin, k.Galois...)
}

// Size is the encoded size in bytes of the evaluation keys' key material.
func (k *EvaluationKeys) Size() int {
	n := k.Public.BinarySize()
	if k.Relin != nil {
		n += k.Relin.BinarySize()
	}
	for _, g := range k.Galois {
		n += g.BinarySize()
	}
	return n
}

type skWire struct {
	Kind    string       `cbor:"kind"`
	Version int          `cbor:"v"`
	ID      string       `cbor:"id"`
	Params  string       `cbor:"params"`
	Caps    Capabilities `cbor:"caps"`
	Created int64        `cbor:"created"`
	Secret  []byte       `cbor:"sk"`
	Public  []byte       `cbor:"pk"`
}

type sealedWire struct {
	Kind    string `cbor:"kind"`
	Version int    `cbor:"v"`
	ID      string `cbor:"id"`
	Params  string `cbor:"params"`
	Sealed  []byte `cbor:"sealed"`
}

// Wrapper seals key material under a tenant key-encryption key (package
// keys provides one). aad binds the sealed bytes to their context.
type Wrapper interface {
	Wrap(ctx context.Context, plaintext, aad []byte) ([]byte, error)
	Unwrap(ctx context.Context, sealed, aad []byte) ([]byte, error)
}

func sealedAAD(kind, id, params string) []byte {
	return []byte(kind + "/v1/" + id + "/" + params)
}

// Seal exports the client keys encrypted with w. The id and parameter set
// stay readable and are bound to the sealed secret as associated data.
func (k *ClientKeys) Seal(ctx context.Context, w Wrapper) ([]byte, error) {
	sw := skWire{Kind: skKind, Version: keyVersion, ID: k.id, Params: k.params.name, Caps: k.caps, Created: k.created.Unix()}
	var err error
	if sw.Secret, err = k.sk.MarshalBinary(); err != nil {
		return nil, fmt.Errorf("he: seal client keys: %w", err)
	}
	defer clear(sw.Secret)
	if sw.Public, err = k.pk.MarshalBinary(); err != nil {
		return nil, fmt.Errorf("he: seal client keys: %w", err)
	}
	plain, err := cborEnc.Marshal(sw)
	if err != nil {
		return nil, fmt.Errorf("he: seal client keys: %w", err)
	}
	defer clear(plain)
	sealed, err := w.Wrap(ctx, plain, sealedAAD(sealedKind, k.id, k.params.name))
	if err != nil {
		return nil, fmt.Errorf("he: seal client keys: wrap: %w", err)
	}
	out, err := cborEnc.Marshal(sealedWire{Kind: sealedKind, Version: keyVersion, ID: k.id, Params: k.params.name, Sealed: sealed})
	if err != nil {
		return nil, fmt.Errorf("he: seal client keys: %w", err)
	}
	return out, nil
}

// OpenClientKeys reverses Seal and checks that the secret and public keys
// belong together (the public key decrypts under the secret key to small
// noise) and that the id matches.
func OpenClientKeys(ctx context.Context, w Wrapper, data []byte) (*ClientKeys, error) {
	if len(data) > DefaultMaxKeyBytes {
		return nil, fmt.Errorf("he: open client keys: %d bytes exceeds limit %d", len(data), DefaultMaxKeyBytes)
	}
	var sw sealedWire
	if err := cborDec.Unmarshal(data, &sw); err != nil {
		return nil, fmt.Errorf("he: open client keys: %w", err)
	}
	if sw.Kind != sealedKind || sw.Version != keyVersion {
		return nil, fmt.Errorf("he: open client keys: kind %q version %d, want %q version %d", sw.Kind, sw.Version, sealedKind, keyVersion)
	}
	plain, err := w.Unwrap(ctx, sw.Sealed, sealedAAD(sealedKind, sw.ID, sw.Params))
	if err != nil {
		return nil, fmt.Errorf("he: open client keys: unwrap: %w", err)
	}
	defer clear(plain)
	var kw skWire
	if err := cborDec.Unmarshal(plain, &kw); err != nil {
		return nil, fmt.Errorf("he: open client keys: %w", err)
	}
	defer clear(kw.Secret)
	if kw.Kind != skKind || kw.Version != keyVersion || kw.ID != sw.ID || kw.Params != sw.Params {
		return nil, errors.New("he: open client keys: inner header does not match the sealed header")
	}
	p, err := Preset(kw.Params)
	if err != nil {
		return nil, fmt.Errorf("he: open client keys: %w", err)
	}
	k := &ClientKeys{id: kw.ID, params: p, caps: kw.Caps, created: time.Unix(kw.Created, 0).UTC(),
		sk: new(rlwe.SecretKey), pk: new(rlwe.PublicKey)}
	if err := safeUnmarshal("secret key", kw.Secret, k.sk, func(b []byte) error { return shapeSecretKey(p, b) }); err != nil {
		return nil, fmt.Errorf("he: open client keys: %w", err)
	}
	if err := safeUnmarshal("public key", kw.Public, k.pk, func(b []byte) error { return shapePublicKey(p, b) }); err != nil {
		return nil, fmt.Errorf("he: open client keys: %w", err)
	}
	if err := checkQPElement(p, "public key", k.pk.Value, p.MaxLevel()); err != nil {
		return nil, fmt.Errorf("he: open client keys: %w", err)
	}
	if k.sk.Value.Q.N() != p.p.N() || k.sk.LevelQ() != p.MaxLevel() {
		return nil, errors.New("he: open client keys: secret key does not match the parameters")
	}
	if id, err := keyID(k.pk); err != nil || id != k.id {
		return nil, errors.New("he: open client keys: id does not match the public key")
	}
	if err := checkKeyPair(p, k.sk, k.pk); err != nil {
		return nil, fmt.Errorf("he: open client keys: %w", err)
	}
	return k, nil
}

// safeUnmarshal runs Lattigo's decoder, turning any panic on malformed input
// into an error, and requires the whole input to be consumed.
func safeUnmarshal(what string, data []byte, v interface {
	UnmarshalBinary([]byte) error
	BinarySize() int
}, shape func([]byte) error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%s: malformed encoding", what)
		}
	}()
	if len(data) == 0 {
		return fmt.Errorf("%s: empty", what)
	}
	if err := shape(data); err != nil {
		return fmt.Errorf("%s: malformed encoding: %w", what, err)
	}
	if err := v.UnmarshalBinary(data); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if n := v.BinarySize(); n != len(data) {
		return fmt.Errorf("%s: %d trailing bytes", what, len(data)-n)
	}
	return nil
}

var (
	cborEnc = func() cbor.EncMode {
		em, err := cbor.CoreDetEncOptions().EncMode()
		if err != nil {
			panic(err)
		}
		return em
	}()
	cborDec = func() cbor.DecMode {
		dm, err := cbor.DecOptions{
			DupMapKey:         cbor.DupMapKeyEnforcedAPF,
			IndefLength:       cbor.IndefLengthForbidden,
			TagsMd:            cbor.TagsForbidden,
			MaxNestedLevels:   8,
			MaxArrayElements:  1 << 20,
			MaxMapPairs:       64,
			ExtraReturnErrors: cbor.ExtraDecErrorUnknownField,
		}.DecMode()
		if err != nil {
			panic(err)
		}
		return dm
	}()
)
