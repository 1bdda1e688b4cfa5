package seal

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/cloudflare/circl/sign/mldsa/mldsa65"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func sha256hex(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// RFC 8032 §7.1, tests 1-3: the Ed25519 half of a key derived from the
// RFC's secret key must have the RFC's public key and produce its signature.
func TestEd25519RFC8032(t *testing.T) {
	for _, tc := range []struct{ name, seed, pub, msg, sig string }{
		{"test1",
			"9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
			"d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
			"",
			"e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"},
		{"test2",
			"4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
			"3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
			"72",
			"92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"},
		{"test3",
			"c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
			"fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
			"af82",
			"6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := newSigningKeyFromSeeds(unhex(t, tc.seed), make([]byte, 32))
			if got := hex.EncodeToString(k.Public().ed); got != tc.pub {
				t.Fatalf("public key = %s, want %s", got, tc.pub)
			}
			if got := hex.EncodeToString(ed25519.Sign(k.ed, unhex(t, tc.msg))); got != tc.sig {
				t.Fatalf("signature = %s, want %s", got, tc.sig)
			}
		})
	}
}

// NIST ACVP ML-DSA-keyGen-FIPS204 vectors for ML-DSA-65 (tcId 26-29, as
// shipped in circl's testdata): the ML-DSA half of a key derived from the
// vector's seed must have the vector's public and private keys (compared by
// SHA-256, to keep the 6 KB keys out of the source).
func TestMLDSA65KeyGenACVP(t *testing.T) {
	for _, tc := range []struct {
		tcID           int
		seed, pkH, skH string
	}{
		{26, "70CEFB9AED5B68E018B079DA8284B9D5CAD5499ED9C265FF73588005D85C225C",
			"646b26b8d09dbc9e865b6a006c693a3127b065e62fab5fbe8b159c416462feb6",
			"3894dc56a4553781d68ff0d1b6fcf1b4876085ea602fb6f8738def50ed7d4c75"},
		{27, "4B4B71C5A1BC1074F2167A1D68729CDB9E16ABA3651FF02A0A0F4C883CAAC827",
			"5fef74046438638b54fb828d4ae59fea8eb26de94905664c2c7d76da82672057",
			"c63df42f503d13f9b808bf5cef71239f9f9e4f68437022d84a5ed757bd918810"},
		{28, "FB27DBBB4ED8F4F7D2700283C2B092866694246932EEACEE72DB730EFD172576",
			"a3c9bcc0bed93fe0b8d651b1844dc708ebafecbb30d221c5a608d5579479c39d",
			"0157c26dbbce71e41e72a4f0ff2555fe718e6eddcc576391d154fb58fcb9dc19"},
		{29, "334ADAD056F76D74941FD87E5263E449D97C06D748A82018D0C794154C20A870",
			"6ffd5a39be8e71006e4c7a8516ccfff7ad3fce6e3b9bd243d92106f2b9e35e47",
			"57d11781b17d9ab836d7294a88558dc81c83f0e72873781ed85ebcd327b8985b"},
	} {
		k := newSigningKeyFromSeeds(make([]byte, 32), unhex(t, tc.seed))
		if got := sha256hex(k.Public().mldsa.Bytes()); got != tc.pkH {
			t.Errorf("tcId %d: SHA-256(pk) = %s, want %s", tc.tcID, got, tc.pkH)
		}
		if got := sha256hex(k.mldsa.Bytes()); got != tc.skH {
			t.Errorf("tcId %d: SHA-256(sk) = %s, want %s", tc.tcID, got, tc.skH)
		}
	}
}

// A fixed key (seeds 0x00..0x3f) has a fixed verifying key and KeyID, and
// deterministic ML-DSA-65 signing of the hybrid message gives a fixed
// signature: a regression vector for the whole construction. The values were
// produced by this code and are committed so that any change to the
// encoding, the label or the message layout is caught.
func TestHybridKnownAnswer(t *testing.T) {
	seeds := make([]byte, 64)
	for i := range seeds {
		seeds[i] = byte(i)
	}
	k, err := ParseSigningKey(append([]byte{AlgHybridEd25519MLDSA65}, seeds...))
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := k.Public().MarshalBinary()
	m := signedMessage("tensafe/test", []byte("hello"))
	sig := make([]byte, SignatureSize)
	sig[0] = AlgHybridEd25519MLDSA65
	copy(sig[1:], ed25519.Sign(k.ed, m))
	if err := mldsa65.SignTo(k.mldsa, m, []byte(mldsaContext), false, sig[1+ed25519.SignatureSize:]); err != nil {
		t.Fatal(err)
	}
	if err := k.Public().Verify("tensafe/test", []byte("hello"), sig); err != nil {
		t.Fatalf("deterministic signature does not verify: %v", err)
	}
	for _, c := range []struct{ name, got, want string }{
		{"SHA-256(verifying key)", sha256hex(pub), wantHybridPubSHA256},
		{"KeyID", k.Public().KeyID(), wantHybridKeyID},
		{"SHA-256(signature)", sha256hex(sig), wantHybridSigSHA256},
	} {
		if c.got != c.want {
			t.Errorf("%s = %s, want %s", c.name, c.got, c.want)
		}
	}
}

const (
	wantHybridPubSHA256 = "3a40c6595622531409761745bf2adb84aded006013dd8cb88487c9070c7db617"
	wantHybridKeyID     = "ts1-3a40c6595622531409761745"
	wantHybridSigSHA256 = "9efe2bdd64e0e58bc6ee3309dbc9bc1e46eda875ddbb9db18322a2ed6552f0fd"
)

func TestSignVerify(t *testing.T) {
	k, err := GenerateSigningKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	other, err := GenerateSigningKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte("checkpoint 42")
	sig, err := k.Sign("tensafe/audit-checkpoint", msg)
	if err != nil {
		t.Fatal(err)
	}
	if len(sig) != SignatureSize {
		t.Fatalf("signature length %d, want %d", len(sig), SignatureSize)
	}
	if err := k.Public().Verify("tensafe/audit-checkpoint", msg, sig); err != nil {
		t.Fatalf("valid signature rejected: %v", err)
	}

	flip := func(i int) []byte {
		s := bytes.Clone(sig)
		s[i] ^= 0x01
		return s
	}
	// An Ed25519 half from a different message: the ML-DSA half alone must
	// not carry the signature.
	sig2, err := k.Sign("tensafe/audit-checkpoint", []byte("checkpoint 43"))
	if err != nil {
		t.Fatal(err)
	}
	mixedEd := append(append([]byte{sig[0]}, sig2[1:1+ed25519.SignatureSize]...), sig[1+ed25519.SignatureSize:]...)
	mixedML := append(bytes.Clone(sig[:1+ed25519.SignatureSize]), sig2[1+ed25519.SignatureSize:]...)

	for _, tc := range []struct {
		name    string
		key     *VerifyingKey
		context string
		msg     []byte
		sig     []byte
	}{
		{"wrong key", other.Public(), "tensafe/audit-checkpoint", msg, sig},
		{"wrong context", k.Public(), "tensafe/tssp-manifest", msg, sig},
		{"empty context", k.Public(), "", msg, sig},
		{"altered message", k.Public(), "tensafe/audit-checkpoint", []byte("checkpoint 41"), sig},
		{"flipped algorithm byte", k.Public(), "tensafe/audit-checkpoint", msg, flip(0)},
		{"flipped Ed25519 bit", k.Public(), "tensafe/audit-checkpoint", msg, flip(10)},
		{"flipped ML-DSA bit", k.Public(), "tensafe/audit-checkpoint", msg, flip(1000)},
		{"flipped last bit", k.Public(), "tensafe/audit-checkpoint", msg, flip(SignatureSize - 1)},
		{"Ed25519 half of another signature", k.Public(), "tensafe/audit-checkpoint", msg, mixedEd},
		{"ML-DSA half of another signature", k.Public(), "tensafe/audit-checkpoint", msg, mixedML},
		{"truncated", k.Public(), "tensafe/audit-checkpoint", msg, sig[:SignatureSize-1]},
		{"extended", k.Public(), "tensafe/audit-checkpoint", msg, append(bytes.Clone(sig), 0)},
		{"empty", k.Public(), "tensafe/audit-checkpoint", msg, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.key.Verify(tc.context, tc.msg, tc.sig)
			if !errors.Is(err, ErrBadSignature) {
				t.Fatalf("Verify = %v, want ErrBadSignature", err)
			}
		})
	}
}

// The context is length-prefixed, so (context, msg) pairs that concatenate
// to the same bytes are still different statements.
func TestContextIsLengthPrefixed(t *testing.T) {
	k, _ := GenerateSigningKey(nil)
	sig, err := k.Sign("ab", []byte("c"))
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Public().Verify("a", []byte("bc"), sig); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("Verify with shifted context boundary = %v, want ErrBadSignature", err)
	}
}

func TestSignContextLimits(t *testing.T) {
	k, _ := GenerateSigningKey(nil)
	if _, err := k.Sign("", nil); err == nil || !strings.Contains(err.Error(), "context") {
		t.Fatalf("Sign with empty context: err = %v, want a context error", err)
	}
	if _, err := k.Sign(strings.Repeat("x", MaxContextLen+1), nil); err == nil || !strings.Contains(err.Error(), "context") {
		t.Fatalf("Sign with long context: err = %v, want a context error", err)
	}
	long := strings.Repeat("x", MaxContextLen)
	sig, err := k.Sign(long, nil)
	if err != nil {
		t.Fatalf("Sign with %d-byte context: %v", MaxContextLen, err)
	}
	if err := k.Public().Verify(long, nil, sig); err != nil {
		t.Fatal(err)
	}
}

func TestKeyEncodings(t *testing.T) {
	k, err := GenerateSigningKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	skb, _ := k.MarshalBinary()
	if len(skb) != SigningKeySize {
		t.Fatalf("signing key is %d bytes, want %d", len(skb), SigningKeySize)
	}
	k2, err := ParseSigningKey(skb)
	if err != nil {
		t.Fatal(err)
	}
	if !k2.Public().Equal(k.Public()) {
		t.Fatal("binary round trip changed the key")
	}
	pkb, _ := k.Public().MarshalBinary()
	if len(pkb) != VerifyingKeySize {
		t.Fatalf("verifying key is %d bytes, want %d", len(pkb), VerifyingKeySize)
	}
	p2, err := ParseVerifyingKey(pkb)
	if err != nil {
		t.Fatal(err)
	}
	if p2.KeyID() != k.Public().KeyID() || !strings.HasPrefix(p2.KeyID(), "ts1-") || len(p2.KeyID()) != 4+24 {
		t.Fatalf("KeyID %q after round trip, want %q", p2.KeyID(), k.Public().KeyID())
	}

	st, _ := k.MarshalText()
	if !strings.HasPrefix(string(st), SigningKeyPrefix) {
		t.Fatalf("signing key text %.30q... lacks prefix", st)
	}
	k3, err := ParseSigningKeyText("  " + string(st) + "\n")
	if err != nil {
		t.Fatal(err)
	}
	if !k3.Public().Equal(k.Public()) {
		t.Fatal("text round trip changed the signing key")
	}
	pt := k.Public().String()
	if !strings.HasPrefix(pt, VerifyingKeyPrefix) {
		t.Fatalf("verifying key text lacks prefix")
	}
	p3, err := ParseVerifyingKeyText(pt + "\n")
	if err != nil {
		t.Fatal(err)
	}
	if !p3.Equal(k.Public()) {
		t.Fatal("text round trip changed the verifying key")
	}

	// A signature made by the parsed key verifies under the original.
	sig, err := k3.Sign("ctx", []byte("m"))
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Public().Verify("ctx", []byte("m"), sig); err != nil {
		t.Fatal(err)
	}

	bad := func(b []byte, i int) []byte { b = bytes.Clone(b); b[i] ^= 0xff; return b }
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"signing key short", errOf(ParseSigningKey(skb[1:])), "length"},
		{"signing key algorithm", errOf(ParseSigningKey(bad(skb, 0))), "algorithm"},
		{"verifying key short", errOf2(ParseVerifyingKey(pkb[:100])), "length"},
		{"verifying key algorithm", errOf2(ParseVerifyingKey(bad(pkb, 0))), "algorithm"},
		{"verifying key text prefix", errOf2(ParseVerifyingKeyText(strings.Replace(pt, "pub-v1", "pub-v2", 1))), "must start with"},
		{"verifying key text base64", errOf2(ParseVerifyingKeyText(pt + "!")), "base64"},
		{"signing key text as verifying key", errOf2(ParseVerifyingKeyText(string(st))), "must start with"},
		{"verifying key text as signing key", errOf(ParseSigningKeyText(pt)), "must start with"},
	} {
		if tc.err == nil || !strings.Contains(tc.err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want one mentioning %q", tc.name, tc.err, tc.want)
		}
	}
	// Errors never quote a secret key.
	if err := errOf(ParseSigningKeyText(string(st) + "!")); err == nil || strings.Contains(err.Error(), string(st[len(SigningKeyPrefix):len(SigningKeyPrefix)+16])) {
		t.Fatalf("error %v quotes the secret key", err)
	}
}

func errOf(_ *SigningKey, err error) error    { return err }
func errOf2(_ *VerifyingKey, err error) error { return err }

func BenchmarkHybridSign(b *testing.B) {
	k, _ := GenerateSigningKey(nil)
	msg := make([]byte, 64)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := k.Sign("tensafe/bench", msg); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkHybridVerify(b *testing.B) {
	k, _ := GenerateSigningKey(nil)
	msg := make([]byte, 64)
	sig, _ := k.Sign("tensafe/bench", msg)
	pub := k.Public()
	b.ReportAllocs()
	for b.Loop() {
		if err := pub.Verify("tensafe/bench", msg, sig); err != nil {
			b.Fatal(err)
		}
	}
}
