package he

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/tuneinsight/lattigo/v6/schemes/ckks"
)

// fuzzParams is a tiny, insecure ring used only so fuzz inputs stay small;
// the decoders under test are the same for every parameter set.
func fuzzParams(t testing.TB) Params {
	p, err := newParams("test-N10-insecure", ckks.ParametersLiteral{LogN: 10, LogQ: []int{40, 30}, LogP: []int{40}, LogDefaultScale: 30})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// fuzzSeeds returns a valid ciphertext encoding and valid JSON and CBOR
// bundles (one compressed) under fuzzParams.
func fuzzSeeds(t testing.TB) (ct []byte, jsonBundles, cborBundles [][]byte) {
	p := fuzzParams(t)
	ctx := context.Background()
	ck, _, err := GenerateKeys(ctx, p, Capabilities{})
	if err != nil {
		t.Fatal(err)
	}
	c := NewClient(ck)
	x := uniform(newRand(1), 3, 4)
	b, err := c.Encrypt(ctx, x, Layout{Packing: PackingLatency, Dim: 4, Width: 4, Tokens: 3}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if ct, err = MarshalCiphertext(b.Ciphertexts[0]); err != nil {
		t.Fatal(err)
	}
	for _, comp := range []Compression{CompressionNone, CompressionDeflate} {
		bu, err := NewBundle(KindLoRAInput, b, comp)
		if err != nil {
			t.Fatal(err)
		}
		j, err := EncodeBundleJSON(bu)
		if err != nil {
			t.Fatal(err)
		}
		cb, err := EncodeBundleCBOR(bu)
		if err != nil {
			t.Fatal(err)
		}
		jsonBundles = append(jsonBundles, j)
		cborBundles = append(cborBundles, cb)
	}
	return ct, jsonBundles, cborBundles
}

func FuzzUnmarshalCiphertext(f *testing.F) {
	p := fuzzParams(f)
	ct, _, _ := fuzzSeeds(f)
	f.Add(ct)
	f.Add(ct[:len(ct)-1])
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := UnmarshalCiphertext(p, data, 0)
		if err != nil {
			return
		}
		out, err := MarshalCiphertext(c)
		if err != nil {
			t.Fatalf("accepted ciphertext does not re-encode: %v", err)
		}
		c2, err := UnmarshalCiphertext(p, out, 0)
		if err != nil || !c2.Equal(c) {
			t.Fatalf("re-encoded ciphertext does not decode to the same value: %v", err)
		}
	})
}

func fuzzBundle(t *testing.T, p Params, b *Bundle, err error) {
	if err != nil {
		return
	}
	lim := DefaultLimits()
	batch, err := b.Batch(p, lim)
	if err != nil {
		return
	}
	// An accepted bundle re-encodes to the same content hash.
	again, err := NewBundle(b.Kind, batch, b.Compression)
	if err != nil {
		t.Fatalf("accepted bundle does not re-encode: %v", err)
	}
	if again.ContentHash != b.ContentHash {
		t.Fatalf("content hash not stable: %s vs %s", again.ContentHash, b.ContentHash)
	}
}

func FuzzDecodeBundleJSON(f *testing.F) {
	p := fuzzParams(f)
	_, js, _ := fuzzSeeds(f)
	for _, j := range js {
		f.Add(j)
	}
	f.Add([]byte(`{"format":"tensafe.he.bundle","version":1,"kind":"lora_input","ciphertexts":[]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := DecodeBundleJSON(data, DefaultLimits())
		fuzzBundle(t, p, b, err)
	})
}

func FuzzDecodeBundleCBOR(f *testing.F) {
	p := fuzzParams(f)
	_, _, cs := fuzzSeeds(f)
	for _, c := range cs {
		f.Add(c)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := DecodeBundleCBOR(data, DefaultLimits())
		fuzzBundle(t, p, b, err)
	})
}

// FuzzUnmarshalEvaluationKeys exercises the key-bundle decoder's CBOR and
// header checks (valid bundles under a 128-bit preset are tens of MB, so the
// seeds are small structurally valid headers).
func FuzzUnmarshalEvaluationKeys(f *testing.F) {
	hdr, err := cborEnc.Marshal(evkWire{Kind: evkKind, Version: keyVersion, ID: "hek_" + fmt.Sprintf("%032x", 1),
		Params: DefaultPreset, Public: []byte{2, 0, 0, 0, 0, 0, 0, 0}})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(hdr)
	f.Fuzz(func(t *testing.T, data []byte) {
		if k, err := UnmarshalEvaluationKeys(data, 1<<20); err == nil && !ValidKeyID(k.ID) {
			t.Fatalf("accepted keys with id %q", k.ID)
		}
	})
}

// wireSeeds returns CBOR request bodies of the HE routes under fuzzParams.
func wireSeeds(t testing.TB) [][]byte {
	_, _, cs := fuzzSeeds(t)
	b, err := DecodeBundleCBOR(cs[0], DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, v := range []any{
		DeltaRequest{KeyID: b.KeyID, Modules: []string{"layers.0.q_proj"}, Input: *b, Compression: CompressionDeflate},
		InferenceRequest{KeyID: b.KeyID, Model: "mlp", Input: *b},
		RegisterAdapterRequest{Module: "m", A: [][]float64{{0.5, -1}}, B: [][]float64{{2}, {0.25}}, Scale: 2},
		RegisterModelRequest{Name: "mlp", Model: MLP{Layers: []Layer{{W: [][]float64{{1, 2}}, Bias: []float64{0.5}, Act: Activation{Kind: ActSquare}}}}, Profile: ProfileFull},
		RegisterKeysRequest{EvaluationKeys: []byte{1, 2, 3}},
	} {
		enc, err := MarshalWireCBOR(v)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, enc)
	}
	return out
}

// FuzzUnmarshalWireCBOR: the HE routes' CBOR request decoder. Whatever it
// accepts re-encodes to bytes that decode to the same value, and a bundle
// inside is then verified without panicking.
func FuzzUnmarshalWireCBOR(f *testing.F) {
	p := fuzzParams(f)
	for _, s := range wireSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		check := func(v any, fresh func() any) {
			enc, err := MarshalWireCBOR(v)
			if err != nil {
				t.Fatalf("accepted %T does not re-encode: %v", v, err)
			}
			w := fresh()
			if err := UnmarshalWireCBOR(enc, w); err != nil {
				t.Fatalf("re-encoded %T does not decode: %v", v, err)
			}
			enc2, err := MarshalWireCBOR(w)
			if err != nil || !bytes.Equal(enc, enc2) {
				t.Fatalf("%T: encoding not stable: %v", v, err)
			}
		}
		var d DeltaRequest
		if UnmarshalWireCBOR(data, &d) == nil {
			check(d, func() any { return new(DeltaRequest) })
			_, _ = d.Input.Batch(p, DefaultLimits())
		}
		var a RegisterAdapterRequest
		if UnmarshalWireCBOR(data, &a) == nil {
			check(a, func() any { return new(RegisterAdapterRequest) })
			_, _ = a.Adapter().Shape()
		}
		var m RegisterModelRequest
		if UnmarshalWireCBOR(data, &m) == nil {
			check(m, func() any { return new(RegisterModelRequest) })
			_ = m.Model.Validate()
		}
	})
}

// TestUnmarshalWireCBORStrict: trailing data, unknown fields and duplicate
// keys are refused.
func TestUnmarshalWireCBORStrict(t *testing.T) {
	seeds := wireSeeds(t)
	var d DeltaRequest
	if err := UnmarshalWireCBOR(seeds[0], &d); err != nil {
		t.Fatal(err)
	}
	if err := UnmarshalWireCBOR(append(bytes.Clone(seeds[0]), 0), &d); err == nil {
		t.Fatal("trailing byte accepted")
	}
	unknown, _ := cborEnc.Marshal(map[string]any{"key_id": "x", "extra": 1})
	if err := UnmarshalWireCBOR(unknown, &d); err == nil {
		t.Fatal("unknown field accepted")
	}
	// {"module": "a", "module": "b"} built by hand (encoders refuse it).
	dup := []byte{0xa2, 0x66, 'm', 'o', 'd', 'u', 'l', 'e', 0x61, 'a', 0x66, 'm', 'o', 'd', 'u', 'l', 'e', 0x61, 'b'}
	var a RegisterAdapterRequest
	if err := UnmarshalWireCBOR(dup, &a); err == nil {
		t.Fatal("duplicate key accepted")
	}
}

// TestWriteFuzzCorpus regenerates the committed seed corpora under
// testdata/fuzz when HE_WRITE_CORPUS=1.
func TestWriteFuzzCorpus(t *testing.T) {
	if os.Getenv("HE_WRITE_CORPUS") != "1" {
		t.Skip("set HE_WRITE_CORPUS=1 to regenerate testdata/fuzz")
	}
	ct, js, cs := fuzzSeeds(t)
	write := func(target, name string, data []byte) {
		dir := filepath.Join("testdata", "fuzz", target)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		fmt.Fprintf(&buf, "go test fuzz v1\n[]byte(%q)\n", data)
		if err := os.WriteFile(filepath.Join(dir, name), buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("FuzzUnmarshalCiphertext", "valid", ct)
	write("FuzzUnmarshalCiphertext", "truncated", ct[:len(ct)-9])
	write("FuzzUnmarshalCiphertext", "huge-prefix", append(bytes.Clone(ct[:1+metaDataSize]), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f))
	write("FuzzDecodeBundleJSON", "valid", js[0])
	write("FuzzDecodeBundleJSON", "valid-deflate", js[1])
	write("FuzzDecodeBundleJSON", "duplicate-key", []byte(`{"kind":"a","kind":"b"}`))
	write("FuzzDecodeBundleCBOR", "valid", cs[0])
	write("FuzzDecodeBundleCBOR", "valid-deflate", cs[1])
	hdr, _ := cborEnc.Marshal(evkWire{Kind: evkKind, Version: keyVersion, ID: "hek_" + fmt.Sprintf("%032x", 1), Params: DefaultPreset})
	write("FuzzUnmarshalEvaluationKeys", "header", hdr)
	for i, name := range []string{"delta", "inference", "adapter", "model", "keys"} {
		write("FuzzUnmarshalWireCBOR", name, wireSeeds(t)[i])
	}
}
