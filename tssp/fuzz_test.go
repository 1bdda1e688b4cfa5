package tssp

import (
	"bytes"
	"context"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/tensafe/tensafe/seal"
)

// FuzzRead feeds arbitrary bytes to the reader, the verifier and the
// decryptor with the test vector's keys. Nothing may panic, and memory is
// bounded by the member caps: no member is allocated before its bytes are
// known to be present.
func FuzzRead(f *testing.F) {
	pkg, err := os.ReadFile("testdata/vector/package.tssp")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(pkg)
	f.Add(pkg[:len(pkg)/2])
	f.Add([]byte{})
	pubText, err := os.ReadFile("testdata/vector/signer.pub")
	if err != nil {
		f.Fatal(err)
	}
	pub, err := seal.ParseVerifyingKeyText(string(pubText))
	if err != nil {
		f.Fatal(err)
	}
	secText, err := os.ReadFile("testdata/vector/recipient.sec")
	if err != nil {
		f.Fatal(err)
	}
	id, err := seal.ParseRecipientKeyText(strings.TrimSpace(string(secText)))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Read(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			return
		}
		if err := p.Manifest().Validate(); err != nil {
			t.Fatalf("Read accepted an invalid manifest: %v", err)
		}
		if err := p.Verify(context.Background(), []*seal.VerifyingKey{pub}); err != nil {
			return
		}
		if err := p.Decrypt(context.Background(), RecipientIdentity(id), io.Discard); err != nil {
			return
		}
	})
}

// FuzzParseManifest checks that an accepted manifest re-encodes to exactly
// its input: one spelling per manifest.
func FuzzParseManifest(f *testing.F) {
	mj, err := os.ReadFile("testdata/vector/manifest.json")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(mj)
	f.Add([]byte(`{"format":"tensafe-tssp/v1"}`))
	f.Add([]byte(`{"format":"tensafe-tssp/v0"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseManifest(data)
		if err != nil {
			return
		}
		b, err := m.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, data) {
			t.Fatalf("accepted manifest re-encodes differently:\n%s\n%s", data, b)
		}
	})
}
