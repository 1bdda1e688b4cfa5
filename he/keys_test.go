package he

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/tuneinsight/lattigo/v6/core/rlwe"
	"github.com/tuneinsight/lattigo/v6/schemes/ckks"
)

// gcmWrapper is a real AES-256-GCM Wrapper for tests (package keys supplies
// the production one).
type gcmWrapper struct{ aead cipher.AEAD }

func newGCMWrapper(t testing.TB) gcmWrapper {
	key := make([]byte, 32)
	rand.Read(key)
	b, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	a, err := cipher.NewGCM(b)
	if err != nil {
		t.Fatal(err)
	}
	return gcmWrapper{a}
}

func (g gcmWrapper) Wrap(_ context.Context, pt, aad []byte) ([]byte, error) {
	nonce := make([]byte, g.aead.NonceSize())
	rand.Read(nonce)
	return g.aead.Seal(nonce, nonce, pt, aad), nil
}

func (g gcmWrapper) Unwrap(_ context.Context, ct, aad []byte) ([]byte, error) {
	n := g.aead.NonceSize()
	if len(ct) < n {
		return nil, errors.New("short")
	}
	return g.aead.Open(nil, ct[:n], ct[n:], aad)
}

func TestPresetsMeet128BitBound(t *testing.T) {
	// Homomorphic Encryption Standard, 128-bit classical, ternary secret.
	bound := map[int]float64{13: 218, 14: 438, 15: 881}
	for _, name := range Presets() {
		t.Run(name, func(t *testing.T) {
			p, err := Preset(name)
			if err != nil {
				t.Fatal(err)
			}
			b, ok := bound[p.LogN()]
			if !ok {
				t.Fatalf("preset with logN=%d has no bound in the test table", p.LogN())
			}
			if p.LogQP() > b {
				t.Fatalf("log2(QP)=%.4f > %v for logN=%d", p.LogQP(), b, p.LogN())
			}
			t.Log(p)
		})
	}
	if _, err := Preset("CKKS-N16-toy"); err == nil {
		t.Fatal("unknown preset accepted")
	}
	// A literal that exceeds the bound is refused by CheckSecurity.
	bad, err := newParams("too-big", ckks.ParametersLiteral{LogN: 13, LogQ: []int{60, 60, 60, 60}, LogP: []int{60}, LogDefaultScale: 40})
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckSecurity(bad); err == nil || !strings.Contains(err.Error(), "exceeds the 128-bit bound") {
		t.Fatalf("CheckSecurity(logQP=300 at logN=13) = %v, want bound error", err)
	}
}

// reaches reports whether a value of type target can be reached from t
// through fields, pointers, slices, arrays and maps.
func reaches(t, target reflect.Type, seen map[reflect.Type]bool) bool {
	if t == target {
		return true
	}
	if seen[t] {
		return false
	}
	seen[t] = true
	switch t.Kind() {
	case reflect.Pointer, reflect.Slice, reflect.Array:
		return reaches(t.Elem(), target, seen)
	case reflect.Map:
		return reaches(t.Key(), target, seen) || reaches(t.Elem(), target, seen)
	case reflect.Struct:
		for i := range t.NumField() {
			if reaches(t.Field(i).Type, target, seen) {
				return true
			}
		}
	}
	return false
}

func TestServerSideTypesCannotHoldSecretKey(t *testing.T) {
	sk := reflect.TypeOf(rlwe.SecretKey{})
	// Sanity: the walker finds the key where it is.
	if !reaches(reflect.TypeOf(ClientKeys{}), sk, map[reflect.Type]bool{}) {
		t.Fatal("walker does not find the secret key in ClientKeys")
	}
	for _, v := range []any{EvaluationKeys{}, Evaluator{}, KeyStore{}, Bundle{}, Batch{},
		DeltaRequest{}, InferenceRequest{}, RegisterKeysRequest{}} {
		if reaches(reflect.TypeOf(v), sk, map[reflect.Type]bool{}) {
			t.Errorf("%T can reach an rlwe.SecretKey", v)
		}
	}
}

func TestEvaluationKeysRoundTrip(t *testing.T) {
	f := getFixture(t)
	raw, err := f.evk.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("evaluation keys: %d galois keys, relin=%v, %d bytes", len(f.evk.Galois), f.evk.Relin != nil, len(raw))
	got, err := UnmarshalEvaluationKeys(raw, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != f.ck.ID() || got.Params.Name() != DefaultPreset || len(got.Galois) != len(f.evk.Galois) {
		t.Fatalf("round trip: id %s params %s %d keys", got.ID, got.Params.Name(), len(got.Galois))
	}
	// The imported keys serve the latency packing.
	ev, err := NewEvaluator(got)
	if err != nil {
		t.Fatal(err)
	}
	checkLatencyDelta(t, f, ev)

	if _, err := UnmarshalEvaluationKeys(raw, len(raw)-1); err == nil {
		t.Fatal("size limit not enforced")
	}
	// Tampering: re-encode with a field changed.
	var w evkWire
	if err := cborDec.Unmarshal(raw, &w); err != nil {
		t.Fatal(err)
	}
	tamper := []struct {
		name string
		mod  func(w *evkWire)
		want string
	}{
		{"wrong id", func(w *evkWire) { w.ID = "hek_" + strings.Repeat("0", 32) }, "does not match the public key"},
		{"missing galois key", func(w *evkWire) { w.Galois = w.Galois[1:] }, "galois keys"},
		{"reordered galois keys", func(w *evkWire) { w.Galois[0], w.Galois[1] = w.Galois[1], w.Galois[0] }, "has element"},
		{"no relin", func(w *evkWire) { w.Relin = nil }, "relinearization key present=false"},
		{"wrong kind", func(w *evkWire) { w.Kind = skKind }, "kind"},
		{"unknown params", func(w *evkWire) { w.Params = "CKKS-N12-QP109" }, "unknown preset"},
		{"truncated public key", func(w *evkWire) { w.Public = w.Public[:len(w.Public)-8] }, "public key"},
	}
	for _, tc := range tamper {
		t.Run(tc.name, func(t *testing.T) {
			c := w
			c.Galois = append([][]byte(nil), w.Galois...)
			tc.mod(&c)
			b, err := cborEnc.Marshal(c)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := UnmarshalEvaluationKeys(b, 0); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want error containing %q", err, tc.want)
			}
		})
	}
}

func checkLatencyDelta(t *testing.T, f *fixture, ev *Evaluator) {
	t.Helper()
	ctx := context.Background()
	r := newRand(11)
	ad := testAdapter(r, testShape)
	if err := ev.RegisterAdapter("m", ad); err != nil {
		t.Fatal(err)
	}
	x := uniform(r, 3, testShape.DIn)
	in, err := f.client.EncryptLoRAInput(ctx, x, PackingLatency, testShape)
	if err != nil {
		t.Fatal(err)
	}
	out, err := ev.Delta(ctx, "m", in)
	if err != nil {
		t.Fatal(err)
	}
	got, err := f.client.Decrypt(ctx, out)
	if err != nil {
		t.Fatal(err)
	}
	for i := range x {
		if d := maxAbsDiff(t, got[i:i+1], [][]float64{ad.Apply(x[i])}); d > 1e-4 {
			t.Fatalf("token %d: error %g", i, d)
		}
	}
}

func TestClientKeysSealOpen(t *testing.T) {
	f := getFixture(t)
	ctx := context.Background()
	w := newGCMWrapper(t)
	sealed, err := f.ck.Seal(ctx, w)
	if err != nil {
		t.Fatal(err)
	}
	skBytes, _ := f.ck.sk.MarshalBinary()
	if bytes.Contains(sealed, skBytes[len(skBytes)-64:]) {
		t.Fatal("sealed export contains secret key bytes in the clear")
	}
	k2, err := OpenClientKeys(ctx, w, sealed)
	if err != nil {
		t.Fatal(err)
	}
	if k2.ID() != f.ck.ID() {
		t.Fatalf("id %s, want %s", k2.ID(), f.ck.ID())
	}
	// The reopened key decrypts what the evaluator computed for the original.
	x := uniform(newRand(5), 2, testShape.DIn)
	in, err := f.client.EncryptLoRAInput(ctx, x, PackingThroughput, testShape)
	if err != nil {
		t.Fatal(err)
	}
	got, err := NewClient(k2).Decrypt(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	if d := maxAbsDiff(t, got, x); d > 1e-6 {
		t.Fatalf("reopened key decrypts with error %g", d)
	}
	// Another KEK, or a header rebound to another id, fails.
	if _, err := OpenClientKeys(ctx, newGCMWrapper(t), sealed); err == nil {
		t.Fatal("opened under another KEK")
	}
	var sw sealedWire
	if err := cborDec.Unmarshal(sealed, &sw); err != nil {
		t.Fatal(err)
	}
	sw.ID = "hek_" + strings.Repeat("1", 32)
	rebound, _ := cborEnc.Marshal(sw)
	if _, err := OpenClientKeys(ctx, w, rebound); err == nil {
		t.Fatal("opened with a rebound id")
	}
}

func TestKeyStoreRotation(t *testing.T) {
	ctx := context.Background()
	p, err := Preset(DefaultPreset)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	w := newGCMWrapper(t)
	ks, err := OpenKeyStore(dir, w)
	if err != nil {
		t.Fatal(err)
	}
	_, k1, err := GenerateKeys(ctx, p, Capabilities{})
	if err != nil {
		t.Fatal(err)
	}
	_, k2, err := GenerateKeys(ctx, p, Capabilities{})
	if err != nil {
		t.Fatal(err)
	}
	if err := ks.Put(ctx, "acme", k1); err != nil {
		t.Fatal(err)
	}
	if err := ks.Put(ctx, "acme", k1); err == nil {
		t.Fatal("same key stored twice")
	}
	if id, err := ks.Active(ctx, "acme"); err != nil || id != k1.ID {
		t.Fatalf("active = %s, %v; want %s", id, err, k1.ID)
	}
	if err := ks.Put(ctx, "acme", k2); err != nil {
		t.Fatal(err)
	}
	if id, _ := ks.Active(ctx, "acme"); id != k2.ID {
		t.Fatalf("after rotation active = %s, want %s", id, k2.ID)
	}
	if _, err := ks.ForEvaluation(ctx, "acme", k1.ID); !errors.Is(err, ErrKeyRetired) {
		t.Fatalf("retired key for evaluation: %v, want ErrKeyRetired", err)
	}
	got, err := ks.ForEvaluation(ctx, "acme", k2.ID)
	if err != nil || got.ID != k2.ID {
		t.Fatalf("ForEvaluation(k2) = %v", err)
	}
	list, _ := ks.List(ctx, "acme")
	if len(list) != 2 || list[0].State != KeyRetired || list[1].State != KeyActive {
		t.Fatalf("list = %+v", list)
	}
	// The file on disk is sealed: the public key bytes do not appear.
	sealed, err := os.ReadFile(filepath.Join(dir, "acme", k2.ID+".evk"))
	if err != nil {
		t.Fatal(err)
	}
	pk, _ := k2.Public.MarshalBinary()
	if bytes.Contains(sealed, pk[100:164]) {
		t.Fatal("stored bundle is not encrypted")
	}
	// Sealed under tenant+id: a copy under another tenant does not open.
	if err := os.MkdirAll(filepath.Join(dir, "other"), 0o700); err != nil {
		t.Fatal(err)
	}
	idx, _ := os.ReadFile(filepath.Join(dir, "acme", "index.json"))
	os.WriteFile(filepath.Join(dir, "other", "index.json"), idx, 0o600)
	os.WriteFile(filepath.Join(dir, "other", k2.ID+".evk"), sealed, 0o600)
	if _, _, err := ks.Get(ctx, "other", k2.ID); err == nil {
		t.Fatal("bundle opened under another tenant")
	}
	if err := ks.Delete(ctx, "acme", k2.ID); err == nil {
		t.Fatal("deleted the active key")
	}
	if err := ks.Delete(ctx, "acme", k1.ID); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ks.Get(ctx, "acme", k1.ID); !errors.Is(err, ErrKeyNotFound) {
		t.Fatalf("deleted key: %v, want ErrKeyNotFound", err)
	}
	for _, bad := range []string{"", "../x", "a/b", strings.Repeat("a", 65)} {
		if err := ks.Put(ctx, bad, k2); err == nil || !strings.Contains(err.Error(), "tenant") {
			t.Errorf("tenant %q: %v", bad, err)
		}
	}
}
