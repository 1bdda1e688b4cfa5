package tssp

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tensafe/tensafe/seal"
)

var updateVector = flag.Bool("update-vector", false, "rewrite testdata/vector (a new package id and DEK)")

const vectorDir = "testdata/vector"

// TestVector reads the committed test-vector package (docs/TSSP_SPEC.md,
// "Test vector") with its committed keys: it must verify, decrypt to the
// committed adapter, and be refused by an untrusted key.
func TestVector(t *testing.T) {
	if *updateVector {
		writeVector(t)
	}
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(vectorDir, name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	pub, err := seal.ParseVerifyingKeyText(string(read("signer.pub")))
	if err != nil {
		t.Fatal(err)
	}
	id, err := seal.ParseRecipientKeyText(strings.TrimSpace(string(read("recipient.sec"))))
	if err != nil {
		t.Fatal(err)
	}
	rpub, err := seal.ParseRecipientPublicKeyText(strings.TrimSpace(string(read("recipient.pub"))))
	if err != nil {
		t.Fatal(err)
	}
	if !rpub.Equal(id.Public()) {
		t.Fatal("recipient.pub is not the public key of recipient.sec")
	}
	pkg := read("package.tssp")
	p, err := Read(bytes.NewReader(pkg), int64(len(pkg)))
	if err != nil {
		t.Fatal(err)
	}
	a, err := Load(context.Background(), p, []*seal.VerifyingKey{pub}, RecipientIdentity(id))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Weights, read("adapter/adapter_model.safetensors")) || !bytes.Equal(a.Config, read("adapter/adapter_config.json")) {
		t.Fatal("vector decrypts to something other than testdata/vector/adapter")
	}
	if !bytes.Equal(p.ManifestJSON(), read("manifest.json")) {
		t.Fatal("manifest differs from testdata/vector/manifest.json")
	}
	if got := a.Manifest.Signer; got != pub.KeyID() {
		t.Fatalf("signer %s", got)
	}
}

func writeVector(t *testing.T) {
	f := newFixture(t)
	o := f.opts()
	o.Recipients = o.Recipients[:1]
	var buf bytes.Buffer
	m, err := Create(context.Background(), &buf, o)
	if err != nil {
		t.Fatal(err)
	}
	mj, _ := m.Marshal()
	sec, _ := f.signer.MarshalText()
	rsec, _ := f.recipients[0].MarshalText()
	rpub, _ := f.recipients[0].Public().MarshalText()
	spub, _ := f.signer.Public().MarshalText()
	files := map[string][]byte{
		"package.tssp":                      buf.Bytes(),
		"manifest.json":                     mj,
		"signer.sec":                        append(sec, '\n'),
		"signer.pub":                        append(spub, '\n'),
		"recipient.sec":                     append(rsec, '\n'),
		"recipient.pub":                     append(rpub, '\n'),
		"adapter/adapter_config.json":       f.config,
		"adapter/adapter_model.safetensors": f.weights,
	}
	for name, b := range files {
		path := filepath.Join(vectorDir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
