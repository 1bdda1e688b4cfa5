package he

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
)

func TestBundleRoundTrip(t *testing.T) {
	f := getFixture(t)
	ctx := context.Background()
	x := uniform(newRand(21), 70, testShape.DIn)
	in, err := f.client.EncryptLoRAInput(ctx, x, PackingLatency, testShape)
	if err != nil {
		t.Fatal(err)
	}
	lim := DefaultLimits()
	for _, enc := range []struct {
		name   string
		encode func(*Bundle) ([]byte, error)
		decode func([]byte, Limits) (*Bundle, error)
	}{
		{"json", EncodeBundleJSON, DecodeBundleJSON},
		{"cbor", EncodeBundleCBOR, DecodeBundleCBOR},
	} {
		for _, c := range []Compression{CompressionNone, CompressionDeflate} {
			t.Run(enc.name+"/"+string(c), func(t *testing.T) {
				b, err := NewBundle(KindLoRAInput, in, c)
				if err != nil {
					t.Fatal(err)
				}
				data, err := enc.encode(b)
				if err != nil {
					t.Fatal(err)
				}
				t.Logf("%d ciphertexts: %d bytes", len(in.Ciphertexts), len(data))
				b2, err := enc.decode(data, lim)
				if err != nil {
					t.Fatal(err)
				}
				if b2.ContentHash != b.ContentHash {
					t.Fatalf("hash changed: %s vs %s", b2.ContentHash, b.ContentHash)
				}
				batch, err := b2.Batch(f.params, lim)
				if err != nil {
					t.Fatal(err)
				}
				got, err := f.client.Decrypt(ctx, batch)
				if err != nil {
					t.Fatal(err)
				}
				if d := maxAbsDiff(t, got, x); d > 1e-6 {
					t.Fatalf("decrypted round trip differs by %g", d)
				}
			})
		}
	}
	// The content hash does not depend on compression or encoding.
	b1, _ := NewBundle(KindLoRAInput, in, CompressionNone)
	b2, _ := NewBundle(KindLoRAInput, in, CompressionDeflate)
	if b1.ContentHash != b2.ContentHash {
		t.Fatal("content hash depends on compression")
	}
}

func TestBundleRejects(t *testing.T) {
	f := getFixture(t)
	ctx := context.Background()
	x := uniform(newRand(22), 3, testShape.DIn)
	in, err := f.client.EncryptLoRAInput(ctx, x, PackingLatency, testShape)
	if err != nil {
		t.Fatal(err)
	}
	good, err := NewBundle(KindLoRAInput, in, CompressionNone)
	if err != nil {
		t.Fatal(err)
	}
	lim := DefaultLimits()
	clone := func() *Bundle {
		c := *good
		c.Ciphertexts = make([][]byte, len(good.Ciphertexts))
		for i := range c.Ciphertexts {
			c.Ciphertexts[i] = bytes.Clone(good.Ciphertexts[i])
		}
		return &c
	}
	cases := []struct {
		name string
		mod  func(*Bundle)
		lim  Limits
		want string
	}{
		{"flipped ciphertext byte", func(b *Bundle) { b.Ciphertexts[0][len(b.Ciphertexts[0])-8] ^= 1 }, lim, "content_hash"},
		{"changed tokens", func(b *Bundle) { b.Layout.Tokens = 2 }, lim, "content_hash"},
		{"changed key id", func(b *Bundle) { b.KeyID = "hek_" + strings.Repeat("a", 32) }, lim, "content_hash"},
		{"wrong params", func(b *Bundle) { b.Params = PresetN14 }, lim, "params"},
		{"bad kind", func(b *Bundle) { b.Kind = "other" }, lim, "kind"},
		{"bad version", func(b *Bundle) { b.Version = 2 }, lim, "version"},
		{"count mismatch", func(b *Bundle) { b.Ciphertexts = append(b.Ciphertexts, b.Ciphertexts[0]) }, lim, "layout needs"},
		{"too many", func(b *Bundle) {
			b.Layout.Tokens = 130
			b.Ciphertexts = append(b.Ciphertexts, b.Ciphertexts[0], b.Ciphertexts[0])
		}, Limits{MaxCiphertexts: 2}, "exceeds limit 2"},
		{"truncated ciphertext", func(b *Bundle) { b.Ciphertexts[0] = b.Ciphertexts[0][:1000] }, lim, "truncated"},
		{"ciphertext too big", func(b *Bundle) {}, Limits{MaxCiphertextBytes: 1000}, "exceeds limit"},
		{"bad hash form", func(b *Bundle) { b.ContentHash = "md5:00" }, lim, "sha256"},
		{"unknown compression", func(b *Bundle) { b.Compression = "zip" }, lim, "compression"},
		{"not deflate", func(b *Bundle) { b.Compression = CompressionDeflate }, lim, "inflate"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := clone()
			tc.mod(b)
			_, err := b.Batch(f.params, tc.lim)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want error containing %q", err, tc.want)
			}
		})
	}
	data, _ := EncodeBundleJSON(good)
	jsonCases := []struct {
		name string
		data []byte
		lim  Limits
		want string
	}{
		{"unknown field", bytes.Replace(data, []byte(`"kind"`), []byte(`"extra":1,"kind"`), 1), lim, "unknown field"},
		{"duplicate key", bytes.Replace(data, []byte(`"kind":"lora_input"`), []byte(`"kind":"lora_input","kind":"lora_delta"`), 1), lim, "duplicate key"},
		{"trailing data", append(bytes.Clone(data), []byte(` {}`)...), lim, "trailing"},
		{"too large", data, Limits{MaxBundleBytes: 100}, "exceeds limit"},
	}
	for _, tc := range jsonCases {
		t.Run("json/"+tc.name, func(t *testing.T) {
			if _, err := DecodeBundleJSON(tc.data, tc.lim); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want error containing %q", err, tc.want)
			}
		})
	}
	cb, _ := EncodeBundleCBOR(good)
	if _, err := DecodeBundleCBOR(append(bytes.Clone(cb), 0), lim); err == nil {
		t.Fatal("cbor: trailing byte accepted")
	}
	if _, err := DecodeBundleCBOR(cb, Limits{MaxBundleBytes: 10}); err == nil {
		t.Fatal("cbor: size limit not enforced")
	}
	var generic map[string]any
	if err := json.Unmarshal(data, &generic); err != nil {
		t.Fatal(err)
	}
	if _, ok := generic["ciphertexts"].([]any)[0].(string); !ok {
		t.Fatal("JSON ciphertexts are not base64 strings")
	}
}

func TestDeflateBombRejected(t *testing.T) {
	zeros := make([]byte, 8<<20)
	z, err := deflate(zeros)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := inflate(z, 1<<20); err == nil || !strings.Contains(err.Error(), "more than") {
		t.Fatalf("inflate of 8 MiB with a 1 MiB limit: %v", err)
	}
}

func TestCiphertextEncodings(t *testing.T) {
	f := getFixture(t)
	ctx := context.Background()
	in, err := f.client.EncryptLoRAInput(ctx, uniform(newRand(23), 1, testShape.DIn), PackingLatency, testShape)
	if err != nil {
		t.Fatal(err)
	}
	ct := in.Ciphertexts[0]
	raw, err := MarshalCiphertext(ct)
	if err != nil {
		t.Fatal(err)
	}
	back, err := UnmarshalCiphertext(f.params, raw, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !back.Equal(ct) {
		t.Fatal("binary round trip changed the ciphertext")
	}
	s, err := EncodeCiphertextBase64(ct)
	if err != nil {
		t.Fatal(err)
	}
	back, err = DecodeCiphertextBase64(f.params, s, 0)
	if err != nil || !back.Equal(ct) {
		t.Fatalf("base64 round trip: %v", err)
	}
	bad := []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "empty"},
		{"trailing", append(bytes.Clone(raw), 0), "trailing"},
		{"truncated", raw[:len(raw)-1], "truncated"},
		{"unreduced coefficient", func() []byte {
			b := bytes.Clone(raw)
			for i := len(b) - 8; i < len(b); i++ {
				b[i] = 0xff
			}
			return b
		}(), "not reduced"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := UnmarshalCiphertext(f.params, tc.data, 0); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want error containing %q", err, tc.want)
			}
		})
	}
	if _, err := DecodeCiphertextBase64(f.params, s+"=", 0); err == nil {
		t.Fatal("malformed base64 accepted")
	}
}
