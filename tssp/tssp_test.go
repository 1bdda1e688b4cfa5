package tssp

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tensafe/tensafe/keys"
	"github.com/tensafe/tensafe/model"
	"github.com/tensafe/tensafe/privacy"
	"github.com/tensafe/tensafe/seal"
)

// fixture holds the keys and inputs of a test package.
type fixture struct {
	signer     *seal.SigningKey
	other      *seal.SigningKey // a signer nobody trusts
	recipients []*seal.RecipientKey
	outsider   *seal.RecipientKey // not a recipient
	config     []byte
	weights    []byte
	cert       []byte
	evidence   []byte
}

// detReader is a deterministic byte source for test keys.
type detReader struct{ ctr byte }

func (d *detReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = d.ctr
		d.ctr = d.ctr*13 + 7
	}
	return len(p), nil
}

func recipientKey(t testing.TB, seed byte) *seal.RecipientKey {
	t.Helper()
	b := make([]byte, seal.RecipientKeySize)
	b[0] = seal.AlgXWing
	for i := 1; i < len(b); i++ {
		b[i] = seed + byte(i)
	}
	k, err := seal.ParseRecipientKey(b)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// adapterFiles returns a real PEFT adapter of tensafe-tiny.
func adapterFiles(t testing.TB) (config, weights []byte) {
	t.Helper()
	l, err := model.NewLoRA(model.TinyConfig(), model.LoRAConfig{Rank: 2, Alpha: 4}, 7)
	if err != nil {
		t.Fatal(err)
	}
	config, err = l.PEFTConfigJSON(model.TinyName)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := l.WriteSafetensors(&buf); err != nil {
		t.Fatal(err)
	}
	return config, buf.Bytes()
}

func testCertificate(t testing.TB, adapterHash string) []byte {
	t.Helper()
	b, err := privacy.NewBudget(privacy.BudgetConfig{TargetEpsilon: 8, Delta: 1e-5})
	if err != nil {
		t.Fatal(err)
	}
	for range 10 {
		if err := b.RecordStep(256.0/60000, 1.1); err != nil {
			t.Fatal(err)
		}
	}
	f := sha256.Sum256([]byte("dataset"))
	start := time.Date(2026, 11, 27, 6, 0, 0, 0, time.UTC)
	c, err := privacy.NewCertificate(b, privacy.CertificateInput{
		Sampling:           privacy.SamplingServerPoisson,
		DatasetSize:        60000,
		ClippingNorm:       1,
		TenSafeVersion:     "0.1.0-test",
		AdapterHash:        adapterHash,
		DatasetFingerprint: "sha256:" + hex.EncodeToString(f[:]),
		StartedAt:          start,
		FinishedAt:         start.Add(time.Hour),
		IssuedAt:           start.Add(time.Hour + time.Second),
	})
	if err != nil {
		t.Fatal(err)
	}
	j, err := c.CanonicalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	signer, err := seal.GenerateSigningKey(&detReader{ctr: 1})
	if err != nil {
		t.Fatal(err)
	}
	other, err := seal.GenerateSigningKey(&detReader{ctr: 2})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{signer: signer, other: other,
		recipients: []*seal.RecipientKey{recipientKey(t, 10), recipientKey(t, 20)},
		outsider:   recipientKey(t, 30),
	}
	f.config, f.weights = adapterFiles(t)
	f.cert = testCertificate(t, sha256String(f.weights))
	f.evidence = []byte(`{"steps":10,"loss":{"first":2.5,"last":1.25},"dataset_fingerprints":["sha256:00"]}`)
	return f
}

func (f *fixture) opts() CreateOptions {
	var pubs []*seal.RecipientPublicKey
	for _, r := range f.recipients {
		pubs = append(pubs, r.Public())
	}
	return CreateOptions{
		AdapterConfig: f.config,
		Weights:       bytes.NewReader(f.weights),
		BaseModel:     BaseModel{Name: model.TinyName},
		Certificate:   f.cert,
		Evidence:      f.evidence,
		Signer:        f.signer,
		Recipients:    pubs,
		Producer:      "tensafe test",
		Created:       time.Date(2026, 11, 27, 7, 0, 0, 0, time.UTC),
	}
}

func (f *fixture) trusted() []*seal.VerifyingKey { return []*seal.VerifyingKey{f.signer.Public()} }

func (f *fixture) create(t testing.TB) []byte {
	t.Helper()
	var buf bytes.Buffer
	if _, err := Create(context.Background(), &buf, f.opts()); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// readVerify runs Read then Verify.
func readVerify(pkg []byte, trusted []*seal.VerifyingKey) (*Package, error) {
	p, err := Read(bytes.NewReader(pkg), int64(len(pkg)))
	if err != nil {
		return nil, err
	}
	return p, p.Verify(context.Background(), trusted)
}

func TestRoundTrip(t *testing.T) {
	f := newFixture(t)
	pkg := f.create(t)
	ctx := context.Background()

	// Any tar reader lists the members in the format's order.
	tr := tar.NewReader(bytes.NewReader(pkg))
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
	}
	want := []string{NameManifest, NameSignature, NameAdapterConfig, NameCertificate, NameEvidence, NameWeights}
	if strings.Join(names, ",") != strings.Join(want, ",") {
		t.Fatalf("members %v, want %v", names, want)
	}

	for i, r := range f.recipients {
		p, err := Read(bytes.NewReader(pkg), int64(len(pkg)))
		if err != nil {
			t.Fatal(err)
		}
		a, err := Load(ctx, p, f.trusted(), RecipientIdentity(r))
		if err != nil {
			t.Fatalf("recipient %d: %v", i, err)
		}
		if !bytes.Equal(a.Weights, f.weights) || !bytes.Equal(a.Config, f.config) ||
			!bytes.Equal(a.Certificate, f.cert) || !bytes.Equal(a.Evidence, f.evidence) {
			t.Fatalf("recipient %d: contents differ from the inputs", i)
		}
		m := a.Manifest
		if m.Signer != f.signer.Public().KeyID() || m.Weights.PlaintextSHA256 != sha256String(f.weights) ||
			m.Adapter.Rank != 2 || m.Adapter.LoRAAlpha != 4 || m.BaseModel.Name != model.TinyName {
			t.Fatalf("manifest %+v", m)
		}
	}

	// OpenDir writes a PEFT folder that model.LoadPEFT reads.
	p, err := Read(bytes.NewReader(pkg), int64(len(pkg)))
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "adapter")
	if err := OpenDir(ctx, p, f.trusted(), RecipientIdentity(f.recipients[1]), dir); err != nil {
		t.Fatal(err)
	}
	for file, want := range map[string][]byte{FileAdapterConfig: f.config, FileAdapterWeights: f.weights, FileCertificate: f.cert, FileEvidence: f.evidence} {
		got, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s: err %v, equal %v", file, err, bytes.Equal(got, want))
		}
	}
	if _, err := model.LoadPEFT(dir, model.TinyConfig()); err != nil {
		t.Fatal(err)
	}
	// dir exists now: a second open refuses to overwrite it.
	if err := OpenDir(ctx, p, f.trusted(), RecipientIdentity(f.recipients[1]), dir); !errors.Is(err, os.ErrExist) {
		t.Fatalf("open over an existing dir: %v", err)
	}
}

func TestMinimalPackage(t *testing.T) {
	f := newFixture(t)
	o := f.opts()
	o.Certificate, o.Evidence = nil, nil
	var buf bytes.Buffer
	m, err := Create(context.Background(), &buf, o)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Members) != 2 {
		t.Fatalf("members %+v", m.Members)
	}
	p, err := readVerify(buf.Bytes(), f.trusted())
	if err != nil {
		t.Fatal(err)
	}
	if c, err := p.Member(NameCertificate); err != nil || c != nil {
		t.Fatalf("certificate of a package without one: %q, %v", c, err)
	}
}

func TestCreateRefuses(t *testing.T) {
	f := newFixture(t)
	cases := []struct {
		name string
		mod  func(*CreateOptions)
		want string
	}{
		{"no signer", func(o *CreateOptions) { o.Signer = nil }, "signer"},
		{"no recipients", func(o *CreateOptions) { o.Recipients = nil }, "recipients"},
		{"no weights", func(o *CreateOptions) { o.Weights = nil }, "weights"},
		{"no base model", func(o *CreateOptions) { o.BaseModel.Name = "" }, "base_model.name"},
		{"bad base model hash", func(o *CreateOptions) { o.BaseModel.Hash = "md5:00" }, "base_model.hash"},
		{"config not JSON", func(o *CreateOptions) { o.AdapterConfig = []byte("{") }, "adapter config"},
		{"config not LoRA", func(o *CreateOptions) {
			o.AdapterConfig = []byte(`{"peft_type":"IA3","r":2,"lora_alpha":4}`)
		}, "peft_type"},
		{"certificate for other weights", func(o *CreateOptions) {
			o.Certificate = testCertificate(t, sha256String([]byte("other")))
		}, "adapter_hash"},
		{"certificate not canonical", func(o *CreateOptions) { o.Certificate = append([]byte(" "), f.cert...) }, "DP certificate"},
		{"evidence not an object", func(o *CreateOptions) { o.Evidence = []byte(`[1]`) }, "evidence"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := f.opts()
			c.mod(&o)
			var buf bytes.Buffer
			_, err := Create(context.Background(), &buf, o)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want one naming %q", err, c.want)
			}
			if buf.Len() != 0 {
				t.Fatalf("%d bytes written on error", buf.Len())
			}
		})
	}
}

func TestBaseModelHash(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "config.json"), []byte("{}\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "model.safetensors"), []byte("weights"), 0o644)
	os.WriteFile(filepath.Join(dir, "README.md"), []byte("ignored"), 0o644)
	got, err := BaseModelHash(dir)
	if err != nil {
		t.Fatal(err)
	}
	// From coreutils: cd dir && sha256sum config.json *.safetensors | sha256sum
	want := "sha256:e8b205fa5057610d398af4516b56913f18eec0fcf49692ba55cbc00fd69ae326"
	if got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
	if _, err := BaseModelHash(t.TempDir()); err == nil {
		t.Fatal("a folder without config.json has a hash")
	}
}

func testKeyring(t *testing.T, name string) *keys.Keyring {
	t.Helper()
	mk := bytes.Repeat([]byte{byte(len(name))}, keys.MasterKeySize)
	m, err := keys.RawMasterKey(mk)
	if err != nil {
		t.Fatal(err)
	}
	k, err := keys.CreateKeyring(context.Background(), filepath.Join(t.TempDir(), name+".tsk"), m, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	return k
}

// TestTenantKEK: a package the producing tenant opens with its own KEK,
// alone or beside recipients, and nobody else.
func TestTenantKEK(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	ring := testKeyring(t, "ring")
	other := testKeyring(t, "other-ring")
	for _, k := range []*keys.Keyring{ring, other} {
		if err := k.AddTenant(ctx, "acme"); err != nil {
			t.Fatal(err)
		}
	}
	for _, withRecipients := range []bool{false, true} {
		o := f.opts()
		if !withRecipients {
			o.Recipients = nil
		}
		o.Tenant = &TenantKey{Provider: ring, Tenant: "acme"}
		var buf bytes.Buffer
		m, err := Create(ctx, &buf, o)
		if err != nil {
			t.Fatal(err)
		}
		if m.TenantKEK == nil || m.TenantKEK.KeyID != keys.KeyIDFor("acme") || m.TenantKEK.KEKVersion == 0 {
			t.Fatalf("tenant_kek %+v", m.TenantKEK)
		}
		p, err := readVerify(buf.Bytes(), f.trusted())
		if err != nil {
			t.Fatal(err)
		}
		a, err := Load(ctx, p, f.trusted(), TenantIdentity(ring, "acme"))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a.Weights, f.weights) {
			t.Fatal("tenant decrypts other weights")
		}
		// After a KEK rotation the old version still opens it.
		if _, err := ring.Rotate(ctx, "acme"); err != nil {
			t.Fatal(err)
		}
		if err := p.Decrypt(ctx, TenantIdentity(ring, "acme"), io.Discard); err != nil {
			t.Fatalf("after rotation: %v", err)
		}
		for name, id := range map[string]Identity{
			"another keyring's acme": TenantIdentity(other, "acme"),
			"another tenant":         TenantIdentity(ring, "globex"),
			"no provider":            TenantIdentity(nil, "acme"),
			"an outsider":            RecipientIdentity(f.outsider),
		} {
			if err := p.Decrypt(ctx, id, io.Discard); !errors.Is(err, ErrNotRecipient) {
				t.Errorf("recipients %v, %s: err = %v", withRecipients, name, err)
			}
		}
		if withRecipients {
			if err := p.Decrypt(ctx, RecipientIdentity(f.recipients[1]), io.Discard); err != nil {
				t.Fatal(err)
			}
		}
	}
	o := f.opts()
	o.Recipients = nil
	if _, err := Create(ctx, io.Discard, o); err == nil || !strings.Contains(err.Error(), "recipient") {
		t.Fatalf("no recipient, no tenant: %v", err)
	}
}
