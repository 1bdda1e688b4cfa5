package keys

import (
	"bytes"
	"crypto/aes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"testing"

	"github.com/tink-crypto/tink-go/v2/kwp/subtle"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// rfc5649Wrap is a direct transcription of RFC 5649 §4.1 (with the
// index-based wrapping of RFC 3394 §2.2.1), for any AES key size. It exists
// only to check the published vectors, which use AES-192, and to compare
// with the library on AES-256.
func rfc5649Wrap(kek, p []byte) []byte {
	block, err := aes.NewCipher(kek)
	if err != nil {
		panic(err)
	}
	var aiv [8]byte
	binary.BigEndian.PutUint32(aiv[:4], 0xA65959A6)
	binary.BigEndian.PutUint32(aiv[4:], uint32(len(p)))
	padded := make([]byte, (len(p)+7)/8*8)
	copy(padded, p)
	n := len(padded) / 8
	if n == 1 {
		out := make([]byte, 16)
		copy(out, aiv[:])
		copy(out[8:], padded)
		block.Encrypt(out, out)
		return out
	}
	a := aiv
	r := bytes.Clone(padded)
	var buf [16]byte
	for j := 0; j <= 5; j++ {
		for i := 1; i <= n; i++ {
			copy(buf[:8], a[:])
			copy(buf[8:], r[(i-1)*8:i*8])
			block.Encrypt(buf[:], buf[:])
			t := uint64(n*j + i)
			binary.BigEndian.PutUint64(a[:], binary.BigEndian.Uint64(buf[:8])^t)
			copy(r[(i-1)*8:], buf[8:])
		}
	}
	return append(a[:], r...)
}

// RFC 5649 §6: the two published vectors (AES-192 KEK).
func TestRFC5649Vectors(t *testing.T) {
	kek := unhex(t, "5840df6e29b02af1ab493b705bf16ea1ae8338f4dcc176a8")
	for _, tc := range []struct{ key, wrapped string }{
		{"c37b7e6492584340bed12207808941155068f738", "138bdeaa9b8fa7fc61f97742e72248ee5ae6ae5360d1ae6a5f54f373fa543b6a"},
		{"466f7250617369", "afbeb0f07dfbf5419200f2ccb50bb24f"},
	} {
		if got := hex.EncodeToString(rfc5649Wrap(kek, unhex(t, tc.key))); got != tc.wrapped {
			t.Fatalf("RFC 5649 wrap of %s = %s, want %s", tc.key, got, tc.wrapped)
		}
	}
}

// NIST CAVP KWP_AE_256.txt (SP 800-38F, AES-256), plaintext length 808
// bits, COUNT 20 and 21: the library the keyring uses, byte for byte.
func TestKWPNISTVectors(t *testing.T) {
	for _, tc := range []struct{ k, p, c string }{
		{"6c25b7e7cc98ffa5b5bbf498e91ada405cc04356d5f2fda883fba5c96546dff1",
			"18ff4ce44c5bbd465cc8df9b6a0df78d5b5429af617aa757036ad42ba85d0f88cf2e911612e52639fbdb3f6a7ea50df75b5063646139b5d3856a14d9f3aabc7ccaf0beabba4a21909c654da48d8b7535ed1168d1b2e485e762fa0913673145f48a7a98ec22",
			"205d2cf674deac1b75448aae33785b7c85fadc5861c9a9c4ea46c6e07808ac7753c68247ec0b54e095591c7794961fb587c5f51f77f2e180a294ce21dcad0a42144e5b7ba662a59cee7e1bbf35dfa11df0b5fcfc235e4d172b2bcf853061f1ca353de38f1444ba3fb90e6512afbefd88"},
		{"c6bde44ad4d2a2b865c97cc3793917d0e8a25e80bd23c876c402c6b31412d6eb",
			"7ce2791cbaacca874229503fe8ed06f0a6c70f49da3f1fcf26017fa40651b3b54fa4c1a8d42de4cba0ebefa3bf8b819c5b841de596bc3e3dee793d9c7af912bfed60bffe59c2bf0907eb69f897c3d998e35d785dd4b4fc8f9b6f51c9f09c24b6b5ca87d7c2",
			"615ca4e184ebe777327e0bd2d142f24e42852f27fbf39465235a765f4afa3374d0ea3a3a708fc63fc73495d92591e8cac7973bfdf6a684b0e639ce43a266622899009bd348d897753fadcd704fd1206cb495b9c42fa11ed472c9552efceef2798033e2de6ed25df859f3b9ab830d9040"},
	} {
		k, err := subtle.NewKWP(unhex(t, tc.k))
		if err != nil {
			t.Fatal(err)
		}
		w, err := k.Wrap(unhex(t, tc.p))
		if err != nil {
			t.Fatal(err)
		}
		if got := hex.EncodeToString(w); got != tc.c {
			t.Fatalf("KWP wrap = %s, want %s", got, tc.c)
		}
		if got := hex.EncodeToString(rfc5649Wrap(unhex(t, tc.k), unhex(t, tc.p))); got != tc.c {
			t.Fatalf("reference wrap = %s, want %s", got, tc.c)
		}
		p, err := k.Unwrap(w)
		if err != nil || hex.EncodeToString(p) != tc.p {
			t.Fatalf("KWP unwrap = %x, %v", p, err)
		}
	}
}

// wrapDEK agrees with the RFC 5649 transcription on random 32-byte DEKs
// under random AES-256 KEKs, and unwrapDEK inverts it.
func TestWrapDEKMatchesRFC5649(t *testing.T) {
	for range 200 {
		kek, dek := make([]byte, 32), make([]byte, 32)
		rand.Read(kek)
		rand.Read(dek)
		w, err := wrapDEK(kek, dek)
		if err != nil {
			t.Fatal(err)
		}
		if want := rfc5649Wrap(kek, dek); !bytes.Equal(w, want) {
			t.Fatalf("wrapDEK = %x, RFC 5649 = %x", w, want)
		}
		got, err := unwrapDEK(kek, w)
		if err != nil || !bytes.Equal(got, dek) {
			t.Fatalf("unwrapDEK = %x, %v", got, err)
		}
	}
}

func TestUnwrapDEKRejects(t *testing.T) {
	kek, dek := make([]byte, 32), make([]byte, 32)
	rand.Read(kek)
	rand.Read(dek)
	w, _ := wrapDEK(kek, dek)
	other := make([]byte, 32)
	rand.Read(other)
	short, _ := subtle.NewKWP(kek)
	w16, _ := short.Wrap(dek[:16]) // a valid wrap of a 16-byte key: not a DEK
	for _, tc := range []struct {
		name    string
		kek, w  []byte
		wantErr error
	}{
		{"wrong KEK", other, w, ErrUnwrap},
		{"flipped bit", kek, func() []byte { b := bytes.Clone(w); b[20] ^= 1; return b }(), ErrUnwrap},
		{"truncated", kek, w[:32], ErrUnwrap},
		{"wrong length key inside", kek, w16, ErrUnwrap},
	} {
		if _, err := unwrapDEK(tc.kek, tc.w); !errors.Is(err, tc.wantErr) {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.wantErr)
		}
	}
	if _, err := wrapDEK(kek, dek[:31]); err == nil {
		t.Error("wrapDEK accepted a 31-byte DEK")
	}
}

func BenchmarkWrapDEK(b *testing.B) {
	kek, dek := make([]byte, 32), make([]byte, 32)
	for b.Loop() {
		if _, err := wrapDEK(kek, dek); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkUnwrapDEK(b *testing.B) {
	kek, dek := make([]byte, 32), make([]byte, 32)
	w, _ := wrapDEK(kek, dek)
	for b.Loop() {
		if _, err := unwrapDEK(kek, w); err != nil {
			b.Fatal(err)
		}
	}
}
