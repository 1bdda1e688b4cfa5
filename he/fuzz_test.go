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
}
