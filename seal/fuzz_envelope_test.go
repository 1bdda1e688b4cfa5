package seal

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// fuzzDEK is the fixed DEK of the fuzz seeds, so that mutated envelopes
// reach segment decryption.
var fuzzDEK = bytes.Repeat([]byte{0x42}, DEKSize)

func fuzzEnvelope(t testing.TB, plain []byte) ([]byte, string) {
	return sealBytes(t, fuzzDEK, plain, testBinding)
}

// FuzzParseHeader: the header parser never panics, never reads past
// MaxHeaderLen, and what it accepts re-encodes to the bytes it consumed.
func FuzzParseHeader(f *testing.F) {
	env, _ := fuzzEnvelope(f, []byte("seed"))
	h, _ := ParseHeader(env)
	f.Add(env[:h.Len()])
	f.Add(env[:h.Len()-1])
	f.Add(env[:10])
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ParseHeader(b)
		if err != nil {
			if h != nil {
				t.Fatal("header returned with an error")
			}
			return
		}
		if h.Len() > MaxHeaderLen || h.Len() > len(b) {
			t.Fatalf("header length %d (input %d, max %d)", h.Len(), len(b), MaxHeaderLen)
		}
		if !bytes.Equal(h.encode(), b[:h.Len()]) {
			t.Fatal("accepted header does not re-encode to its bytes")
		}
	})
}

// FuzzOpenEnvelope: arbitrary envelope bytes under a fixed DEK and binding
// never panic the reader, and whatever it releases is a prefix of the one
// plaintext that was sealed: nothing forged or altered ever comes out.
func FuzzOpenEnvelope(f *testing.F) {
	plain := make([]byte, SegmentSize+100)
	for i := range plain {
		plain[i] = byte(i * 7)
	}
	env, sum := fuzzEnvelope(f, plain)
	small, _ := fuzzEnvelope(f, plain[:20])
	f.Add(env)
	f.Add(small)
	f.Add(env[:len(env)-1])
	f.Fuzz(func(t *testing.T, b []byte) {
		src := bytes.NewReader(b)
		h, err := ReadHeader(src)
		if err != nil {
			return
		}
		r, err := NewReader(src, h, fuzzDEK, testBinding, sum)
		if err != nil {
			return
		}
		var out bytes.Buffer
		_, err = io.Copy(&out, r)
		got := out.Bytes()
		if len(got) > len(plain) || !bytes.Equal(got, plain[:len(got)]) {
			t.Fatalf("released %d bytes that are not the sealed plaintext", len(got))
		}
		if err == nil && len(got) != len(plain) {
			t.Fatalf("clean EOF after %d of %d bytes", len(got), len(plain))
		}
		if err != nil && !errors.Is(err, ErrSegmentAuth) && !errors.Is(err, ErrTruncated) &&
			!errors.Is(err, ErrTrailingData) && !errors.Is(err, ErrContentHash) {
			t.Fatalf("unclassified error %v", err)
		}
	})
}

// FuzzParseRecipientKeys: the recipient key decoders never panic.
func FuzzParseRecipientKeys(f *testing.F) {
	k, _ := ParseRecipientKey(append([]byte{AlgXWing}, bytes.Repeat([]byte{1}, 32)...))
	pub, _ := k.Public().MarshalBinary()
	sec, _ := k.MarshalBinary()
	f.Add(pub, k.Public().String())
	f.Add(sec, RecipientKeyPrefix+"AAAA")
	f.Fuzz(func(t *testing.T, b []byte, s string) {
		if p, err := ParseRecipientPublicKey(b); err == nil {
			enc, _ := p.MarshalBinary()
			if !bytes.Equal(enc, b) {
				t.Fatal("recipient public key does not round-trip")
			}
		}
		_, _ = ParseRecipientKey(b)
		_, _ = ParseRecipientKeyText(s)
		_, _ = ParseRecipientPublicKeyText(s)
	})
}
