package seal

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
)

// NIST AES-GCM test cases 13-16 (McGrew & Viega, "The Galois/Counter Mode
// of Operation", the 256-bit-key cases of the NIST GCM submission),
// through the same constructor the envelope uses.
func TestAESGCMNISTVectors(t *testing.T) {
	const k15 = "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308"
	for _, tc := range []struct{ name, key, iv, pt, aad, ct, tag string }{
		{"case13", strings.Repeat("00", 32), strings.Repeat("00", 12), "", "", "", "530f8afbc74536b9a963b4f1c4cb738b"},
		{"case14", strings.Repeat("00", 32), strings.Repeat("00", 12), strings.Repeat("00", 16), "",
			"cea7403d4d606b6e074ec5d3baf39d18", "d0d1c8a799996bf0265b98b5d48ab919"},
		{"case15", k15, "cafebabefacedbaddecaf888",
			"d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255", "",
			"522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015ad",
			"b094dac5d93471bdec1a502270e3cc6c"},
		{"case16", k15, "cafebabefacedbaddecaf888",
			"d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
			"feedfacedeadbeeffeedfacedeadbeefabaddad2",
			"522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
			"76fc6ece0f4e1768cddf8853bb2d551b"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, err := newGCM(unhex(t, tc.key))
			if err != nil {
				t.Fatal(err)
			}
			out := g.Seal(nil, unhex(t, tc.iv), unhex(t, tc.pt), unhex(t, tc.aad))
			if got, want := hex.EncodeToString(out), tc.ct+tc.tag; got != want {
				t.Fatalf("Seal = %s, want %s", got, want)
			}
			pt, err := g.Open(nil, unhex(t, tc.iv), out, unhex(t, tc.aad))
			if err != nil || hex.EncodeToString(pt) != tc.pt {
				t.Fatalf("Open = %x, %v", pt, err)
			}
		})
	}
}

// The nonce of segment i is prefix || u32be(i) || last: over a million
// segments, with both values of the last flag, no two nonces are equal.
func TestSegmentNoncesUnique(t *testing.T) {
	const segments = 1 << 20
	var prefix [noncePrefixSize]byte
	rand.Read(prefix[:])
	nonces := make([][12]byte, 0, 2*segments)
	for i := range uint32(segments) {
		nonces = append(nonces, segmentNonce(&prefix, i, false), segmentNonce(&prefix, i, true))
	}
	// The last segment, at the counter's limit, too.
	nonces = append(nonces, segmentNonce(&prefix, 1<<32-1, false), segmentNonce(&prefix, 1<<32-1, true))
	slices.SortFunc(nonces, func(a, b [12]byte) int { return bytes.Compare(a[:], b[:]) })
	for i := 1; i < len(nonces); i++ {
		if nonces[i] == nonces[i-1] {
			t.Fatalf("nonce %x repeats", nonces[i])
		}
	}
	for _, n := range nonces[:3] {
		if !bytes.Equal(n[:noncePrefixSize], prefix[:]) {
			t.Fatalf("nonce %x does not start with the prefix %x", n, prefix)
		}
	}
	if n := segmentNonce(&prefix, 0x01020304, true); hex.EncodeToString(n[noncePrefixSize:]) != "0102030401" {
		t.Fatalf("nonce tail %x, want 0102030401", n[noncePrefixSize:])
	}
}

var testBinding = Binding{TenantID: "tenant-a", ArtifactID: "ckpt/run-1/step-100"}

func testRef() KeyRef {
	return KeyRef{KeyID: "tenant-a/kek", KEKVersion: 3, WrapAlg: WrapAES256KWP, WrappedDEK: bytes.Repeat([]byte{0xAB}, 40)}
}

func newDEK(t testing.TB) []byte {
	dek := make([]byte, DEKSize)
	rand.Read(dek)
	return dek
}

func sealBytes(t testing.TB, dek, plain []byte, b Binding) ([]byte, string) {
	t.Helper()
	var buf bytes.Buffer
	w, err := NewWriter(&buf, dek, testRef(), b)
	if err != nil {
		t.Fatal(err)
	}
	// Odd-sized writes, to cross segment boundaries inside a Write.
	for p := plain; len(p) > 0; {
		n := min(len(p), 10007)
		if _, err := w.Write(p[:n]); err != nil {
			t.Fatal(err)
		}
		p = p[n:]
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), w.ContentHash()
}

// openBytes decrypts env and returns the plaintext the Reader released
// before any error.
func openBytes(env, dek []byte, b Binding, wantHash string) ([]byte, error) {
	src := bytes.NewReader(env)
	h, err := ReadHeader(src)
	if err != nil {
		return nil, err
	}
	r, err := NewReader(src, h, dek, b, wantHash)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	// Read in small pieces, so that Read (not only WriteTo) is exercised.
	buf := make([]byte, 5000)
	for {
		n, err := r.Read(buf)
		out.Write(buf[:n])
		if err == io.EOF {
			return out.Bytes(), nil
		}
		if err != nil {
			return out.Bytes(), err
		}
	}
}

func hashOf(p []byte) string {
	h := sha256.Sum256(p)
	return "sha256:" + hex.EncodeToString(h[:])
}

func TestEnvelopeRoundTrip(t *testing.T) {
	dek := newDEK(t)
	for _, size := range []int{0, 1, 15, 16, 17, SegmentSize - 1, SegmentSize, SegmentSize + 1,
		2 * SegmentSize, 3*SegmentSize + 12345} {
		plain := make([]byte, size)
		rand.Read(plain)
		env, sum := sealBytes(t, dek, plain, testBinding)
		if sum != hashOf(plain) {
			t.Fatalf("size %d: ContentHash %s, want %s", size, sum, hashOf(plain))
		}
		segs := max(1, (size+SegmentSize-1)/SegmentSize)
		h, err := ParseHeader(env)
		if err != nil {
			t.Fatal(err)
		}
		if want := h.Len() + size + segs*tagSize; len(env) != want {
			t.Fatalf("size %d: envelope is %d bytes, want %d", size, len(env), want)
		}
		got, err := openBytes(env, dek, testBinding, sum)
		if err != nil {
			t.Fatalf("size %d: %v", size, err)
		}
		if !bytes.Equal(got, plain) {
			t.Fatalf("size %d: plaintext differs", size)
		}
		// WriteTo (io.Copy) path.
		src := bytes.NewReader(env)
		h, _ = ReadHeader(src)
		r, err := NewReader(src, h, dek, testBinding, sum)
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		if _, err := io.Copy(&out, r); err != nil {
			t.Fatalf("size %d: io.Copy: %v", size, err)
		}
		if !bytes.Equal(out.Bytes(), plain) || r.ContentHash() != sum {
			t.Fatalf("size %d: io.Copy plaintext or hash differs", size)
		}
	}
}

func TestHeaderFields(t *testing.T) {
	dek := newDEK(t)
	env, _ := sealBytes(t, dek, []byte("x"), testBinding)
	h, err := ParseHeader(env)
	if err != nil {
		t.Fatal(err)
	}
	ref := testRef()
	if h.KeyID != ref.KeyID || h.KEKVersion != ref.KEKVersion || h.WrapAlg != ref.WrapAlg || !bytes.Equal(h.WrappedDEK, ref.WrappedDEK) {
		t.Fatalf("header %+v, want %+v", h.KeyRef, ref)
	}
	if string(env[:4]) != "TSEV" || env[4] != 1 || env[5] != 1 {
		t.Fatalf("header starts %x", env[:6])
	}
	// Two envelopes of the same plaintext under the same DEK share nothing:
	// fresh salt and nonce prefix.
	env2, _ := sealBytes(t, dek, []byte("x"), testBinding)
	if bytes.Equal(env[6:6+saltSize], env2[6:6+saltSize]) || bytes.Equal(env[h.Len():], env2[h.Len():]) {
		t.Fatal("two envelopes repeat salt or ciphertext")
	}
}

func TestWriterRejectsBadInput(t *testing.T) {
	dek := newDEK(t)
	for _, tc := range []struct {
		name string
		dek  []byte
		ref  func(*KeyRef)
		b    Binding
		want string
	}{
		{"short DEK", dek[:16], nil, testBinding, "DEK is 16 bytes"},
		{"empty tenant", dek, nil, Binding{ArtifactID: "a"}, "tenant id is empty"},
		{"empty artifact", dek, nil, Binding{TenantID: "t"}, "artifact id is empty"},
		{"long tenant", dek, nil, Binding{TenantID: strings.Repeat("t", MaxBindingLen+1), ArtifactID: "a"}, "tenant id is 1025 bytes"},
		{"empty key id", dek, func(r *KeyRef) { r.KeyID = "" }, testBinding, "key id is empty"},
		{"long key id", dek, func(r *KeyRef) { r.KeyID = strings.Repeat("k", 256) }, testBinding, "key id is 256 bytes"},
		{"unknown wrap", dek, func(r *KeyRef) { r.WrapAlg = 9 }, testBinding, "wrap algorithm 9"},
		{"no wrapped DEK", dek, func(r *KeyRef) { r.WrappedDEK = nil }, testBinding, "wrapped DEK is empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ref := testRef()
			if tc.ref != nil {
				tc.ref(&ref)
			}
			var buf bytes.Buffer
			_, err := NewWriter(&buf, tc.dek, ref, tc.b)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
			if buf.Len() != 0 {
				t.Fatalf("wrote %d bytes despite the error", buf.Len())
			}
		})
	}
}

func TestReaderRejectsBadExpectedHash(t *testing.T) {
	dek := newDEK(t)
	env, _ := sealBytes(t, dek, []byte("x"), testBinding)
	for _, bad := range []string{"", "sha256:", "md5:" + strings.Repeat("0", 32), "sha256:" + strings.Repeat("A", 64), "sha256:" + strings.Repeat("g", 64)} {
		if _, err := openBytes(env, dek, testBinding, bad); err == nil || !strings.Contains(err.Error(), "content hash") {
			t.Errorf("expected hash %q: err = %v, want a content hash error", bad, err)
		}
	}
}

// The tamper matrix: every alteration is reported with the right error,
// and no plaintext from the altered segment or after it is released.
func TestEnvelopeTamper(t *testing.T) {
	dek := newDEK(t)
	plain := make([]byte, 3*SegmentSize+5000) // segments 0-2 full, 3 final
	rand.Read(plain)
	env, sum := sealBytes(t, dek, plain, testBinding)
	h, _ := ParseHeader(env)
	hl := h.Len()
	seg := func(i int) (int, int) { // byte range of segment i in env
		start := hl + i*(SegmentSize+tagSize)
		return start, min(start+SegmentSize+tagSize, len(env))
	}
	flip := func(off int) []byte {
		e := bytes.Clone(env)
		e[off] ^= 0x04
		return e
	}
	swap := func(i, j int) []byte {
		e := bytes.Clone(env)
		si, ei := seg(i)
		sj, _ := seg(j)
		copy(e[si:ei], env[sj:sj+(ei-si)])
		copy(e[sj:sj+(ei-si)], env[si:ei])
		return e
	}
	other, _ := sealBytes(t, dek, plain, testBinding) // same DEK, plaintext and binding: fresh salt and prefix
	otherDEK := newDEK(t)
	splice := func(i int) []byte {
		e := bytes.Clone(env)
		s, end := seg(i)
		copy(e[s:end], other[s:end])
		return e
	}
	s1, _ := seg(1)
	s3, e3 := seg(3)
	keyIDOff := fixedHeaderLen + 1
	type tc struct {
		name     string
		env      []byte
		dek      []byte
		b        Binding
		hash     string
		want     error
		released int // most plaintext bytes the reader may release
	}
	cases := []tc{
		{"wrong DEK", env, otherDEK, testBinding, sum, ErrHeaderAuth, 0},
		{"other tenant", env, dek, Binding{"tenant-b", testBinding.ArtifactID}, sum, ErrHeaderAuth, 0},
		{"other artifact id", env, dek, Binding{testBinding.TenantID, "ckpt/run-1/step-200"}, sum, ErrHeaderAuth, 0},
		{"wrong content hash", env, dek, testBinding, hashOf([]byte("other")), ErrContentHash, 3 * SegmentSize},
		{"header magic", flip(0), dek, testBinding, sum, ErrMalformedHeader, 0},
		{"header version", flip(4), dek, testBinding, sum, ErrUnsupported, 0},
		{"header algorithm", flip(5), dek, testBinding, sum, ErrUnsupported, 0},
		{"header salt", flip(6), dek, testBinding, sum, ErrHeaderAuth, 0},
		{"header nonce prefix", flip(6 + saltSize), dek, testBinding, sum, ErrHeaderAuth, 0},
		{"header key id", flip(keyIDOff), dek, testBinding, sum, ErrHeaderAuth, 0},
		{"header KEK version", flip(keyIDOff + len(h.KeyID) + 3), dek, testBinding, sum, ErrHeaderAuth, 0},
		{"header wrap algorithm", flip(keyIDOff + len(h.KeyID) + 4), dek, testBinding, sum, ErrMalformedHeader, 0},
		{"header wrapped DEK", flip(hl - headerMACSize - 1), dek, testBinding, sum, ErrHeaderAuth, 0},
		{"header MAC", flip(hl - 1), dek, testBinding, sum, ErrHeaderAuth, 0},
		{"segment 0 first byte", flip(hl), dek, testBinding, sum, ErrSegmentAuth, 0},
		{"segment 1 middle", flip(s1 + SegmentSize/2), dek, testBinding, sum, ErrSegmentAuth, SegmentSize},
		{"segment 1 tag", flip(s1 + SegmentSize + tagSize - 1), dek, testBinding, sum, ErrSegmentAuth, SegmentSize},
		{"final segment", flip(s3 + 10), dek, testBinding, sum, ErrSegmentAuth, 3 * SegmentSize},
		{"final tag", flip(len(env) - 1), dek, testBinding, sum, ErrSegmentAuth, 3 * SegmentSize},
		{"truncated inside header", env[:hl-5], dek, testBinding, sum, ErrMalformedHeader, 0},
		{"truncated after header", env[:hl], dek, testBinding, sum, ErrTruncated, 0},
		{"truncated at segment boundary", env[:s3], dek, testBinding, sum, ErrTruncated, 2 * SegmentSize},
		{"truncated inside final segment", env[:e3-1], dek, testBinding, sum, ErrSegmentAuth, 3 * SegmentSize},
		{"truncated to 5 bytes of final segment", env[:s3+5], dek, testBinding, sum, ErrTruncated, 3 * SegmentSize},
		{"reorder segments 0 and 1", swap(0, 1), dek, testBinding, sum, ErrSegmentAuth, 0},
		{"reorder segments 1 and 2", swap(1, 2), dek, testBinding, sum, ErrSegmentAuth, SegmentSize},
		{"segment 1 duplicated over 2", func() []byte {
			e := bytes.Clone(env)
			s, end := seg(1)
			s2, _ := seg(2)
			copy(e[s2:], env[s:end])
			return e
		}(), dek, testBinding, sum, ErrSegmentAuth, 2 * SegmentSize},
		{"segment 2 spliced from another envelope", splice(2), dek, testBinding, sum, ErrSegmentAuth, 2 * SegmentSize},
		{"final segment spliced from another envelope", splice(3), dek, testBinding, sum, ErrSegmentAuth, 3 * SegmentSize},
		{"segment removed from the middle", append(bytes.Clone(env[:s1]), env[s1+SegmentSize+tagSize:]...), dek, testBinding, sum, ErrSegmentAuth, SegmentSize},
		{"byte appended", append(bytes.Clone(env), 0), dek, testBinding, sum, ErrSegmentAuth, 3 * SegmentSize},
		{"segment appended", append(bytes.Clone(env), env[s1:s1+SegmentSize+tagSize]...), dek, testBinding, sum, ErrSegmentAuth, 3 * SegmentSize},
		{"header of another envelope", append(bytes.Clone(other[:hl]), env[hl:]...), dek, testBinding, sum, ErrSegmentAuth, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := openBytes(c.env, c.dek, c.b, c.hash)
			if !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
			if len(got) > c.released {
				t.Fatalf("released %d plaintext bytes, at most %d allowed", len(got), c.released)
			}
			if !bytes.Equal(got, plain[:len(got)]) {
				t.Fatal("released bytes that are not the plaintext")
			}
		})
	}
}

// A final segment that is exactly full, with bytes appended after it, is
// reported as trailing data; cut at a segment boundary, as truncation.
func TestEnvelopeTrailingAndBoundary(t *testing.T) {
	dek := newDEK(t)
	plain := make([]byte, 2*SegmentSize)
	rand.Read(plain)
	env, sum := sealBytes(t, dek, plain, testBinding)
	if _, err := openBytes(append(bytes.Clone(env), 1, 2, 3), dek, testBinding, sum); !errors.Is(err, ErrTrailingData) {
		t.Fatalf("appended bytes: err = %v, want ErrTrailingData", err)
	}
	h, _ := ParseHeader(env)
	got, err := openBytes(env[:h.Len()+SegmentSize+tagSize], dek, testBinding, sum)
	if !errors.Is(err, ErrTruncated) || len(got) != 0 {
		t.Fatalf("cut after segment 0: err = %v, released %d; want ErrTruncated and nothing released", err, len(got))
	}
}

func TestWriterTooLarge(t *testing.T) {
	var buf bytes.Buffer
	w, err := NewWriter(&buf, newDEK(t), testRef(), testBinding)
	if err != nil {
		t.Fatal(err)
	}
	w.counter = 1<<32 - 1
	if _, err := w.Write(make([]byte, SegmentSize+1)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Write past 2^32 segments: err = %v, want ErrTooLarge", err)
	}
	if err := w.Close(); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Close after the error: err = %v, want ErrTooLarge", err)
	}
}

func TestRewrapHeader(t *testing.T) {
	dek := newDEK(t)
	plain := make([]byte, SegmentSize+100)
	rand.Read(plain)
	env, sum := sealBytes(t, dek, plain, testBinding)
	h, _ := ParseHeader(env)
	newRef := KeyRef{KeyID: "tenant-a/kek", KEKVersion: 4, WrapAlg: WrapAES256KWP, WrappedDEK: bytes.Repeat([]byte{0xCD}, 40)}
	nh, err := RewrapHeader(h, dek, testBinding, newRef)
	if err != nil {
		t.Fatal(err)
	}
	rewrapped := append(nh, env[h.Len():]...)
	got, err := openBytes(rewrapped, dek, testBinding, sum)
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("rewrapped envelope: err = %v", err)
	}
	h2, _ := ParseHeader(rewrapped)
	if h2.KEKVersion != 4 || !bytes.Equal(h2.WrappedDEK, newRef.WrappedDEK) {
		t.Fatalf("rewrapped header %+v", h2.KeyRef)
	}
	if _, err := RewrapHeader(h, newDEK(t), testBinding, newRef); !errors.Is(err, ErrHeaderAuth) {
		t.Fatalf("rewrap with a wrong DEK: err = %v, want ErrHeaderAuth", err)
	}
	if _, err := RewrapHeader(h, dek, Binding{"tenant-b", "x"}, newRef); !errors.Is(err, ErrHeaderAuth) {
		t.Fatalf("rewrap with a wrong binding: err = %v, want ErrHeaderAuth", err)
	}
}

func benchmarkPlain(b *testing.B) []byte {
	p := make([]byte, 256<<20)
	rand.Read(p[:1<<20])
	for i := 1 << 20; i < len(p); i += 1 << 20 {
		copy(p[i:], p[:1<<20])
	}
	return p
}

// BenchmarkEnvelopeEncrypt256MiB: streaming encryption, content hash
// included, of a 256 MiB artifact to io.Discard.
func BenchmarkEnvelopeEncrypt256MiB(b *testing.B) {
	plain := benchmarkPlain(b)
	dek := newDEK(b)
	b.SetBytes(int64(len(plain)))
	b.ResetTimer()
	for b.Loop() {
		w, err := NewWriter(io.Discard, dek, testRef(), testBinding)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.Copy(w, bytes.NewReader(plain)); err != nil {
			b.Fatal(err)
		}
		if err := w.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEnvelopeDecrypt256MiB: streaming decryption, authentication
// and content-hash check of a 256 MiB artifact to io.Discard.
func BenchmarkEnvelopeDecrypt256MiB(b *testing.B) {
	plain := benchmarkPlain(b)
	dek := newDEK(b)
	var buf bytes.Buffer
	buf.Grow(len(plain) + len(plain)/SegmentSize*tagSize + 1024)
	w, _ := NewWriter(&buf, dek, testRef(), testBinding)
	io.Copy(w, bytes.NewReader(plain))
	w.Close()
	env, sum := buf.Bytes(), w.ContentHash()
	plain = nil
	b.SetBytes(int64(len(env)))
	b.ResetTimer()
	for b.Loop() {
		src := bytes.NewReader(env)
		h, err := ReadHeader(src)
		if err != nil {
			b.Fatal(err)
		}
		r, err := NewReader(src, h, dek, testBinding, sum)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, r); err != nil {
			b.Fatal(err)
		}
	}
}

// The known-answer envelope of docs/ENVELOPE.md: fixed DEK, salt, nonce
// prefix, key reference and binding; the plaintext "hello, tensafe" and a
// 65537-byte plaintext (two segments). An independent implementation must
// produce exactly these bytes; testdata/envelope_ref.py, written from the
// document with pyca/cryptography, does.
func TestEnvelopeKnownAnswer(t *testing.T) {
	dek := make([]byte, DEKSize)
	for i := range dek {
		dek[i] = byte(i)
	}
	ref := KeyRef{KeyID: "kek:tenant-a", KEKVersion: 1, WrapAlg: WrapAES256KWP, WrappedDEK: bytes.Repeat([]byte{0xAA}, 40)}
	b := Binding{TenantID: "tenant-a", ArtifactID: "artifact-1"}
	build := func(plain []byte) []byte {
		h := &Header{KeyRef: ref}
		for i := range h.salt {
			h.salt[i] = 0x10 + byte(i)
		}
		copy(h.noncePrefix[:], []byte{0xF0, 0xF1, 0xF2, 0xF3, 0xF4, 0xF5, 0xF6})
		h.raw = h.encodeBody()
		var buf bytes.Buffer
		w, err := newWriter(&buf, dek, h, b)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(plain)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		got, err := openBytes(buf.Bytes(), dek, b, w.ContentHash())
		if err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("known-answer envelope does not open: %v", err)
		}
		return buf.Bytes()
	}
	small := build([]byte("hello, tensafe"))
	if got := hex.EncodeToString(small); got != wantSmallEnvelope {
		t.Errorf("envelope of %q =\n%s\nwant\n%s", "hello, tensafe", got, wantSmallEnvelope)
	}
	big := make([]byte, SegmentSize+1)
	for i := range big {
		big[i] = byte(i % 251)
	}
	if got := sha256hex(build(big)); got != wantBigEnvelopeSHA256 {
		t.Errorf("SHA-256 of the two-segment envelope = %s, want %s", got, wantBigEnvelopeSHA256)
	}
}

const (
	wantSmallEnvelope     = "545345560101101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2ff0f1f2f3f4f5f60c6b656b3a74656e616e742d6100000001010028aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaeb925743e8211e18e79dacc66d51115584785310175a944654583e676dc10af74b70fab3b2431580cba5afdd6f4fc69f4e0ef46ab4a898713e8faa6952a"
	wantBigEnvelopeSHA256 = "c551e4a09671f7e4c972c56356f3da3d2a9003d91382809ab1f03ee4c4b7a707"
)

// The two primitives of a segment, for comparison with the envelope
// benchmarks on the same machine: the envelope cannot beat
// 1/(1/GCM + 1/SHA-256) while it hashes in line.
func BenchmarkPrimitiveAESGCM64K(b *testing.B) {
	g, _ := newGCM(make([]byte, 32))
	seg := make([]byte, SegmentSize)
	out := make([]byte, 0, SegmentSize+tagSize)
	nonce := make([]byte, 12)
	b.SetBytes(SegmentSize)
	for b.Loop() {
		out = g.Seal(out[:0], nonce, seg, nil)
	}
}

func BenchmarkPrimitiveSHA256_64K(b *testing.B) {
	h := sha256.New()
	seg := make([]byte, SegmentSize)
	b.SetBytes(SegmentSize)
	for b.Loop() {
		h.Write(seg)
	}
}

// onlyReader hides a reader's WriteTo, so io.Copy goes through
// Writer.ReadFrom.
type onlyReader struct{ r io.Reader }

func (o onlyReader) Read(p []byte) (int, error) { return o.r.Read(p) }

func TestWriterReadFrom(t *testing.T) {
	dek := newDEK(t)
	for _, size := range []int{0, 1, SegmentSize - 1, SegmentSize, SegmentSize + 1, 3*SegmentSize + 99} {
		plain := make([]byte, size)
		rand.Read(plain)
		var buf bytes.Buffer
		w, err := NewWriter(&buf, dek, testRef(), testBinding)
		if err != nil {
			t.Fatal(err)
		}
		// A few bytes through Write first, then the rest through ReadFrom
		// in uneven reads.
		head := min(size, 7)
		w.Write(plain[:head])
		n, err := io.Copy(w, onlyReader{iotestHalfReader{bytes.NewReader(plain[head:])}})
		if err != nil || n != int64(size-head) {
			t.Fatalf("size %d: io.Copy = %d, %v", size, n, err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		got, err := openBytes(buf.Bytes(), dek, testBinding, w.ContentHash())
		if err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("size %d: round trip through ReadFrom: %v", size, err)
		}
		if w.ContentHash() != hashOf(plain) || w.Size() != int64(size) {
			t.Fatalf("size %d: hash or size wrong", size)
		}
	}
}

// iotestHalfReader returns at most half of what is asked (at least one
// byte), so reads end at odd places.
type iotestHalfReader struct{ r io.Reader }

func (h iotestHalfReader) Read(p []byte) (int, error) { return h.r.Read(p[:max(1, len(p)/2)]) }
