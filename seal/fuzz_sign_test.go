package seal

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzParseVerifyingKey: arbitrary bytes never panic the decoder, and
// whatever it accepts re-encodes to exactly the input.
func FuzzParseVerifyingKey(f *testing.F) {
	k, _ := GenerateSigningKey(bytes.NewReader(make([]byte, 64)))
	pub, _ := k.Public().MarshalBinary()
	f.Add(pub)
	f.Add(pub[:40])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := ParseVerifyingKey(b)
		if err != nil {
			return
		}
		enc, _ := v.MarshalBinary()
		if !bytes.Equal(enc, b) {
			t.Fatalf("accepted a non-canonical encoding")
		}
		if _, err := ParseVerifyingKeyText(v.String()); err != nil {
			t.Fatalf("text form of an accepted key does not parse: %v", err)
		}
	})
}

// FuzzParseSigningKey: arbitrary bytes and text never panic the decoders.
func FuzzParseSigningKey(f *testing.F) {
	k, _ := GenerateSigningKey(bytes.NewReader(make([]byte, 64)))
	sk, _ := k.MarshalBinary()
	st, _ := k.MarshalText()
	f.Add(sk, string(st))
	f.Add(sk[:10], SigningKeyPrefix)
	f.Fuzz(func(t *testing.T, b []byte, s string) {
		if k, err := ParseSigningKey(b); err == nil {
			enc, _ := k.MarshalBinary()
			if !bytes.Equal(enc, b) {
				t.Fatalf("signing key does not round-trip")
			}
		}
		_, _ = ParseSigningKeyText(s)
		_, _ = ParseVerifyingKeyText(s)
	})
}

// FuzzVerify: arbitrary signatures over arbitrary messages never panic and
// never verify under a fixed key whose secret the fuzzer does not hold
// (a valid one is only reachable by forging).
func FuzzVerify(f *testing.F) {
	k, _ := GenerateSigningKey(bytes.NewReader(make([]byte, 64)))
	pub := k.Public()
	sig, _ := k.Sign("fuzz", []byte("m"))
	f.Add("fuzz", []byte("m"), sig)
	f.Add("fuzz", []byte("m"), sig[:100])
	f.Add("", []byte{}, []byte{})
	f.Fuzz(func(t *testing.T, context string, msg, s []byte) {
		err := pub.Verify(context, msg, s)
		if err == nil {
			if context == "fuzz" && bytes.Equal(msg, []byte("m")) {
				return // the seed's genuine signature, or another valid one for the same statement
			}
			t.Fatalf("forged signature verified")
		}
		if !errors.Is(err, ErrBadSignature) {
			t.Fatalf("Verify error %v does not wrap ErrBadSignature", err)
		}
	})
}
