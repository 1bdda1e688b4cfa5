package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

// TestBase32Vectors checks the token alphabet against RFC 4648 §10 (the
// standard base32 alphabet, lowercased, without padding).
func TestBase32Vectors(t *testing.T) {
	for in, want := range map[string]string{
		"": "", "f": "my", "fo": "mzxq", "foo": "mzxw6", "foob": "mzxw6yq",
		"fooba": "mzxw6ytb", "foobar": "mzxw6ytboi",
	} {
		if got := b32.EncodeToString([]byte(in)); got != want {
			t.Errorf("base32(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestAPITokenVector pins the token layout: bytes 0..39 as the random
// input give this token and hash (computed independently with Python's
// base64.b32encode and hashlib.sha256).
func TestAPITokenVector(t *testing.T) {
	r := make([]byte, prefixBytes+secretBytes)
	for i := range r {
		r[i] = byte(i)
	}
	token, prefix, hash, err := newAPIToken(bytes.NewReader(r))
	if err != nil {
		t.Fatal(err)
	}
	const wantToken = "ts_aaaqeayeaudao_baequcymbuha6earcijrifiwc4mbsgq3dqor4hzaeercgjbfeytq"
	const wantHash = "caf0c12fa1a85302e23a138faeff7281d635701cdf47545d2ba76d4eb6c01195"
	if token != wantToken || prefix != "aaaqeayeaudao" || hex.EncodeToString(hash) != wantHash {
		t.Fatalf("token %q prefix %q hash %x", token, prefix, hash)
	}
	p2, h2, err := ParseAPIToken(token)
	if err != nil || p2 != prefix || !bytes.Equal(h2, hash) {
		t.Fatalf("ParseAPIToken = %q, %x, %v", p2, h2, err)
	}
	if _, _, _, err := newAPIToken(bytes.NewReader(r[:10])); err == nil {
		t.Fatal("a short random source gave a token")
	}
}

func TestNewAPIToken(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 50; i++ {
		token, prefix, hash, err := NewAPIToken()
		if err != nil {
			t.Fatal(err)
		}
		if len(token) != 69 || !strings.HasPrefix(token, "ts_"+prefix+"_") || seen[token] || seen[prefix] {
			t.Fatalf("token %q prefix %q (repeat: %v)", token, prefix, seen[token])
		}
		seen[token], seen[prefix] = true, true
		if h := sha256.Sum256([]byte(token)); !bytes.Equal(h[:], hash) {
			t.Fatal("hash is not SHA-256 of the token")
		}
		k := APIKey{Hash: hash}
		if !k.HashMatches(hash) {
			t.Fatal("HashMatches refuses the right hash")
		}
		other := append([]byte(nil), hash...)
		other[31] ^= 1
		if k.HashMatches(other) || k.HashMatches(hash[:31]) || (&APIKey{}).HashMatches(nil) {
			t.Fatal("HashMatches accepts a wrong hash")
		}
	}
}

func TestParseAPITokenRefuses(t *testing.T) {
	good, _, _, _ := NewAPIToken()
	secret := good[17:]
	cases := map[string]string{
		"empty":          "",
		"short":          good[:68],
		"long":           good + "a",
		"scheme":         "tx_" + good[3:],
		"bearer":         "Bearer " + good[:62],
		"separator":      good[:16] + "-" + good[17:],
		"upper":          strings.ToUpper(good[:3]) + good[3:],
		"upper secret":   good[:17] + strings.ToUpper(secret),
		"digit 1":        good[:20] + "1" + good[21:],
		"digit 8":        good[:5] + "8" + good[6:],
		"padding":        good[:68] + "=",
		"space":          good[:30] + " " + good[31:],
		"non-ascii":      good[:30] + "é" + good[32:],
		"second sep":     good[:40] + "_" + good[41:],
		"prefix has sep": good[:10] + "_" + good[11:],
	}
	for name, tok := range cases {
		p, h, err := ParseAPIToken(tok)
		if !errors.Is(err, ErrInvalidToken) || p != "" || h != nil {
			t.Errorf("%s: ParseAPIToken(%q) = %q, %x, %v; want ErrInvalidToken", name, tok, p, h, err)
			continue
		}
		if len(secret) > 8 && strings.Contains(err.Error(), secret[:8]) {
			t.Errorf("%s: error %q contains the secret", name, err)
		}
	}
}

func TestNewID(t *testing.T) {
	id, err := NewID("tc")
	if err != nil || len(id) != 3+26 || !strings.HasPrefix(id, "tc_") || checkID("id", id) != nil {
		t.Fatalf("NewID = %q, %v", id, err)
	}
	if id2, _ := NewID("tc"); id2 == id {
		t.Fatal("NewID repeated")
	}
	for _, p := range []string{"", "TC", "t_c", "a-b", strings.Repeat("a", 17)} {
		if _, err := NewID(p); err == nil {
			t.Errorf("NewID(%q) succeeded", p)
		}
	}
}

// FuzzParseAPIToken: ParseAPIToken never panics, accepts only the exact
// format, returns the prefix in the token and SHA-256 of the whole token,
// and never echoes the input in its error.
func FuzzParseAPIToken(f *testing.F) {
	f.Add("ts_aaaqeayeaudao_baequcymbuha6earcijrifiwc4mbsgq3dqor4hzaeercgjbfeytq")
	f.Add("ts_aaaqeayeaudao-baequcymbuha6earcijrifiwc4mbsgq3dqor4hzaeercgjbfeytq")
	f.Add("")
	f.Add("Bearer ts_abc")
	f.Fuzz(func(t *testing.T, s string) {
		prefix, hash, err := ParseAPIToken(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidToken) || prefix != "" || hash != nil {
				t.Fatalf("failure returned %q, %x, %v", prefix, hash, err)
			}
			if len(s) >= 12 && strings.Contains(err.Error(), s) {
				t.Fatalf("error %q echoes the input", err)
			}
			return
		}
		if len(s) != tokenLen || !strings.HasPrefix(s, "ts_"+prefix+"_") || checkPrefix("prefix", prefix) != nil {
			t.Fatalf("accepted %q with prefix %q", s, prefix)
		}
		if h := sha256.Sum256([]byte(s)); !bytes.Equal(h[:], hash) {
			t.Fatalf("hash of %q is not its SHA-256", s)
		}
		for i := 3; i < len(s); i++ {
			if i != 16 && !isB32(s[i]) {
				t.Fatalf("accepted %q with %q at %d", s, s[i], i)
			}
		}
	})
}
