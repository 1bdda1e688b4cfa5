package seal

import (
	"bytes"
	"crypto/hpke"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
)

// The first MLKEM768-X25519 vector of draft-ietf-hpke-pq (as shipped in
// Go's crypto/hpke testdata): a recipient key parsed from the vector's
// private key has the vector's public key and opens its ciphertexts.
func TestXWingVector(t *testing.T) {
	raw, err := os.ReadFile("testdata/hpke-xwing-vector.json")
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		KDFID       uint16 `json:"kdf_id"`
		AEADID      uint16 `json:"aead_id"`
		Info        string `json:"info"`
		SkRm        string `json:"skRm"`
		PkRm        string `json:"pkRm"`
		Enc         string `json:"enc"`
		Encryptions []struct {
			Aad, Ct, Pt string
		} `json:"encryptions"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	k, err := ParseRecipientKey(append([]byte{AlgXWing}, unhex(t, v.SkRm)...))
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := k.Public().MarshalBinary()
	if hex.EncodeToString(pub[1:]) != v.PkRm {
		t.Fatalf("public key of the vector's private key differs from pkRm")
	}
	kdf, err := hpke.NewKDF(v.KDFID)
	if err != nil {
		t.Fatal(err)
	}
	aead, err := hpke.NewAEAD(v.AEADID)
	if err != nil {
		t.Fatal(err)
	}
	r, err := hpke.NewRecipient(unhex(t, v.Enc), k.priv, kdf, aead, unhex(t, v.Info))
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range v.Encryptions {
		pt, err := r.Open(unhex(t, e.Aad), unhex(t, e.Ct))
		if err != nil {
			t.Fatalf("encryption %d: %v", i, err)
		}
		if hex.EncodeToString(pt) != e.Pt {
			t.Fatalf("encryption %d: plaintext %x, want %s", i, pt, e.Pt)
		}
	}
}

func TestSealOpenDEK(t *testing.T) {
	k, err := GenerateRecipientKey()
	if err != nil {
		t.Fatal(err)
	}
	other, _ := GenerateRecipientKey()
	dek := newDEK(t)
	w, err := SealDEK(k.Public(), dek, testBinding)
	if err != nil {
		t.Fatal(err)
	}
	if len(w) != WrappedDEKSizeHPKE {
		t.Fatalf("wrapped DEK is %d bytes, want %d", len(w), WrappedDEKSizeHPKE)
	}
	if bytes.Contains(w, dek) {
		t.Fatal("wrapped DEK contains the DEK")
	}
	got, err := k.OpenDEK(w, testBinding)
	if err != nil || !bytes.Equal(got, dek) {
		t.Fatalf("OpenDEK = %x, %v", got, err)
	}
	w2, _ := SealDEK(k.Public(), dek, testBinding)
	if bytes.Equal(w, w2) {
		t.Fatal("two wraps of one DEK are equal")
	}
	flipped := bytes.Clone(w)
	flipped[len(flipped)-1] ^= 1
	flippedEnc := bytes.Clone(w)
	flippedEnc[5] ^= 1
	for _, tc := range []struct {
		name string
		key  *RecipientKey
		w    []byte
		b    Binding
	}{
		{"wrong key", other, w, testBinding},
		{"wrong tenant", k, w, Binding{"tenant-b", testBinding.ArtifactID}},
		{"wrong artifact", k, w, Binding{testBinding.TenantID, "x"}},
		{"flipped ciphertext", k, flipped, testBinding},
		{"flipped encapsulation", k, flippedEnc, testBinding},
	} {
		if _, err := tc.key.OpenDEK(tc.w, tc.b); !errors.Is(err, ErrUnwrap) {
			t.Errorf("%s: err = %v, want ErrUnwrap", tc.name, err)
		}
	}
	if _, err := k.OpenDEK(w[:100], testBinding); err == nil || !strings.Contains(err.Error(), "wrapped DEK is 100 bytes") {
		t.Errorf("short wrap: err = %v", err)
	}
	if _, err := SealDEK(k.Public(), dek[:5], testBinding); err == nil || !strings.Contains(err.Error(), "DEK is 5 bytes") {
		t.Errorf("short DEK: err = %v", err)
	}
}

// An envelope whose DEK is wrapped to a recipient: the recipient opens it
// from the header alone.
func TestEnvelopeToRecipient(t *testing.T) {
	k, _ := GenerateRecipientKey()
	dek := newDEK(t)
	wrapped, err := SealDEK(k.Public(), dek, testBinding)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	w, err := NewWriter(&buf, dek, KeyRef{KeyID: k.Public().KeyID(), WrapAlg: WrapHPKEXWing, WrappedDEK: wrapped}, testBinding)
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("adapter weights"))
	w.Close()
	src := bytes.NewReader(buf.Bytes())
	h, err := ReadHeader(src)
	if err != nil {
		t.Fatal(err)
	}
	if h.KeyID != k.Public().KeyID() || h.WrapAlg != WrapHPKEXWing {
		t.Fatalf("header key ref %+v", h.KeyRef)
	}
	dek2, err := k.OpenDEK(h.WrappedDEK, testBinding)
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewReader(src, h, dek2, testBinding, w.ContentHash())
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if _, err := out.ReadFrom(r); err != nil || out.String() != "adapter weights" {
		t.Fatalf("plaintext %q, %v", out.String(), err)
	}
}

func TestRecipientKeyEncodings(t *testing.T) {
	k, _ := GenerateRecipientKey()
	st, _ := k.MarshalText()
	k2, err := ParseRecipientKeyText(string(st) + "\n")
	if err != nil {
		t.Fatal(err)
	}
	if !k2.Public().Equal(k.Public()) {
		t.Fatal("secret text round trip changed the key")
	}
	p2, err := ParseRecipientPublicKeyText(k.Public().String())
	if err != nil {
		t.Fatal(err)
	}
	if !p2.Equal(k.Public()) || p2.KeyID() != k.Public().KeyID() || !strings.HasPrefix(p2.KeyID(), "tr1-") {
		t.Fatal("public text round trip changed the key")
	}
	pb, _ := k.Public().MarshalBinary()
	if len(pb) != RecipientPublicKeySize {
		t.Fatalf("public key is %d bytes, want %d", len(pb), RecipientPublicKeySize)
	}
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"secret as public", errOfR2(ParseRecipientPublicKeyText(string(st))), "must start with"},
		{"public as secret", errOfR(ParseRecipientKeyText(k.Public().String())), "must start with"},
		{"short public", errOfR2(ParseRecipientPublicKey(pb[:50])), "length"},
		{"bad algorithm", errOfR2(ParseRecipientPublicKey(append([]byte{9}, pb[1:]...))), "algorithm"},
		{"signing key as recipient", errOfR2(ParseRecipientPublicKeyText(VerifyingKeyPrefix + "AAAA")), "must start with"},
	} {
		if tc.err == nil || !strings.Contains(tc.err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want one mentioning %q", tc.name, tc.err, tc.want)
		}
	}
}

func errOfR(_ *RecipientKey, err error) error        { return err }
func errOfR2(_ *RecipientPublicKey, err error) error { return err }

func BenchmarkSealDEK(b *testing.B) {
	k, _ := GenerateRecipientKey()
	dek := newDEK(b)
	for b.Loop() {
		if _, err := SealDEK(k.Public(), dek, testBinding); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpenDEK(b *testing.B) {
	k, _ := GenerateRecipientKey()
	dek := newDEK(b)
	w, _ := SealDEK(k.Public(), dek, testBinding)
	for b.Loop() {
		if _, err := k.OpenDEK(w, testBinding); err != nil {
			b.Fatal(err)
		}
	}
}
