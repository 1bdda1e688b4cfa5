package tssp

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/tensafe/tensafe/seal"
)

type rawMember struct {
	name string
	data []byte
}

// split returns the members of a package, read with archive/tar.
func split(t testing.TB, pkg []byte) []rawMember {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(pkg))
	var out []rawMember
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, rawMember{h.Name, b})
	}
}

// join writes members as a package archive (whatever their names and order).
func join(t testing.TB, ms []rawMember) []byte {
	t.Helper()
	var buf bytes.Buffer
	aw := &archiveWriter{w: &buf}
	for _, m := range ms {
		aw.member(m.name, int64(len(m.data)), bytes.NewReader(m.data))
	}
	aw.end()
	if aw.err != nil {
		t.Fatal(aw.err)
	}
	return buf.Bytes()
}

// resign changes the manifest with mod and signs it again with signer.
func resign(t testing.TB, pkg []byte, signer *seal.SigningKey, mod func(m *Manifest, ms []rawMember) []rawMember) []byte {
	t.Helper()
	ms := split(t, pkg)
	m, err := ParseManifest(ms[0].data)
	if err != nil {
		t.Fatal(err)
	}
	ms = mod(m, ms)
	if ms[0].data, err = m.Marshal(); err != nil {
		t.Fatal(err)
	}
	if ms[1].data, err = signer.Sign(SignatureContext, ms[0].data); err != nil {
		t.Fatal(err)
	}
	return join(t, ms)
}

// offsets returns the data offset and size of each member of pkg.
func offsets(t testing.TB, pkg []byte) []entry {
	t.Helper()
	p, err := Read(bytes.NewReader(pkg), int64(len(pkg)))
	if err != nil {
		t.Fatal(err)
	}
	return p.entries
}

func flip(pkg []byte, i int) []byte {
	b := bytes.Clone(pkg)
	b[i] ^= 0x01
	return b
}

// TestTamperAnyByte changes bytes all over the package, in headers, data,
// padding and end blocks, and checks each is refused with the error its
// region calls for.
func TestTamperAnyByte(t *testing.T) {
	f := newFixture(t)
	pkg := f.create(t)
	ents := offsets(t, pkg)
	region := func(i int) (string, []error) {
		for _, e := range ents {
			if int64(i) >= e.off && int64(i) < e.off+e.size {
				switch e.name {
				case NameManifest:
					// Broken JSON, a non-canonical spelling, a different
					// version string, another signer id, or a valid
					// manifest the signature does not cover.
					return e.name, []error{ErrMalformedManifest, ErrBadSignature, ErrUnsupportedVersion, ErrUntrustedSigner}
				case NameSignature:
					return e.name, []error{ErrBadSignature}
				default:
					return e.name, []error{ErrMemberHash}
				}
			}
		}
		return "structure", []error{ErrMalformed}
	}
	// Every byte of the structure and of the small members, and a stride
	// through the weights.
	step := func(i int) int {
		for _, e := range ents {
			if e.name == NameWeights && int64(i) >= e.off+64 && int64(i) < e.off+e.size-64 {
				return 97
			}
		}
		if testing.Short() {
			return 7
		}
		return 1
	}
	n := 0
	for i := 0; i < len(pkg); i += step(i) {
		name, want := region(i)
		_, err := readVerify(flip(pkg, i), f.trusted())
		ok := false
		for _, w := range want {
			ok = ok || errors.Is(err, w)
		}
		if !ok {
			t.Fatalf("byte %d (%s) changed: err = %v, want one of %v", i, name, err, want)
		}
		n++
	}
	t.Logf("%d single-byte changes refused", n)
}

func TestTamperMatrix(t *testing.T) {
	f := newFixture(t)
	pkg := f.create(t)
	other := f.create(t) // same inputs, another package id and DEK
	ms := split(t, pkg)
	without := func(name string) []rawMember {
		var out []rawMember
		for _, m := range ms {
			if m.name != name {
				out = append(out, m)
			}
		}
		return out
	}
	with := func(at int, m rawMember) []rawMember {
		out := append([]rawMember{}, ms[:at]...)
		out = append(out, m)
		return append(out, ms[at:]...)
	}
	minimal := func() []byte {
		o := f.opts()
		o.Evidence = nil
		var buf bytes.Buffer
		if _, err := Create(context.Background(), &buf, o); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}()

	cases := []struct {
		name    string
		pkg     []byte
		trusted []*seal.VerifyingKey
		want    error
	}{
		{"intact", pkg, f.trusted(), nil},
		{"truncated", pkg[:len(pkg)-1], f.trusted(), ErrMalformed},
		{"truncated to a block", pkg[:len(pkg)-blockSize], f.trusted(), ErrMalformed},
		{"trailing data", append(bytes.Clone(pkg), make([]byte, blockSize)...), f.trusted(), ErrMalformed},
		{"empty", nil, f.trusted(), ErrMalformed},
		{"optional member dropped", join(t, without(NameCertificate)), f.trusted(), ErrMissingMember},
		{"weights dropped", join(t, without(NameWeights)), f.trusted(), ErrMissingMember},
		{"signature dropped", join(t, without(NameSignature)), f.trusted(), ErrMissingMember},
		{"manifest dropped", join(t, without(NameManifest)), f.trusted(), ErrMissingMember},
		{"unknown member added", join(t, with(5, rawMember{"extra.bin", []byte("x")})), f.trusted(), ErrUnexpectedMember},
		{"member added, not in manifest", join(t, with(4, rawMember{NameEvidence, []byte(`{}`)})), nil, nil},
		{"member repeated", join(t, with(3, ms[2])), f.trusted(), ErrMemberOrder},
		{"members reordered", join(t, []rawMember{ms[0], ms[1], ms[3], ms[2], ms[4], ms[5]}), f.trusted(), ErrMemberOrder},
		{"manifest after signature", join(t, append([]rawMember{ms[1], ms[0]}, ms[2:]...)), f.trusted(), ErrMemberOrder},
		{"signature swapped", join(t, append([]rawMember{ms[0], split(t, other)[1]}, ms[2:]...)), f.trusted(), ErrBadSignature},
		{"weights swapped", join(t, append(append([]rawMember{}, ms[:5]...), split(t, other)[5])), f.trusted(), ErrMemberHash},
		{"evidence replaced by a server-poisson claim", join(t, append(append(append([]rawMember{}, ms[:4]...), rawMember{NameEvidence, func() []byte {
			b, err := json.Marshal(serverTemplate())
			if err != nil {
				t.Fatal(err)
			}
			return b
		}()}), ms[5])), f.trusted(), ErrMemberSize},
		{"evidence replaced, same size", join(t, append(append(append([]rawMember{}, ms[:4]...), rawMember{NameEvidence, func() []byte {
			b := []byte(`{"format":"tensafe-tssp-evidence/v2","dataset":{"sampling":"server-poisson"}}`)
			if len(b) > len(ms[4].data) {
				t.Fatalf("forged evidence longer than the vector's (%d > %d)", len(b), len(ms[4].data))
			}
			return append(b, bytes.Repeat([]byte(" "), len(ms[4].data)-len(b))...)
		}()}), ms[5])), f.trusted(), ErrMemberHash},
		{"untrusted signer", pkg, []*seal.VerifyingKey{f.other.Public()}, ErrUntrustedSigner},
		{"no trusted keys", pkg, nil, ErrUntrustedSigner},
		{"re-signed by an untrusted key", resign(t, pkg, f.other, func(m *Manifest, ms []rawMember) []rawMember {
			m.Signer = f.other.Public().KeyID()
			return ms
		}), f.trusted(), ErrUntrustedSigner},
		{"signer id claims the trusted key", resign(t, pkg, f.other, func(m *Manifest, ms []rawMember) []rawMember { return ms }), f.trusted(), ErrBadSignature},
		{"version downgrade", resign(t, pkg, f.signer, func(m *Manifest, ms []rawMember) []rawMember {
			m.Format = "tensafe-tssp/v0"
			return ms
		}), f.trusted(), ErrUnsupportedVersion},
		{"version upgrade", resign(t, pkg, f.signer, func(m *Manifest, ms []rawMember) []rawMember {
			m.Format = "tensafe-tssp/v2"
			return ms
		}), f.trusted(), ErrUnsupportedVersion},
		{"manifest member size", resign(t, pkg, f.signer, func(m *Manifest, ms []rawMember) []rawMember {
			m.Members[0].Size++
			return ms
		}), f.trusted(), ErrMemberSize},
		{"certificate for other weights", resign(t, pkg, f.signer, func(m *Manifest, ms []rawMember) []rawMember {
			c := testCertificate(t, sha256String([]byte("other")))
			ms[3].data = c
			m.Members[1] = Member{Name: NameCertificate, SHA256: sha256String(c), Size: int64(len(c))}
			return ms
		}), f.trusted(), ErrCertificate},
		{"adapter config disagrees", resign(t, pkg, f.signer, func(m *Manifest, ms []rawMember) []rawMember {
			m.Adapter.Rank = 3
			return ms
		}), f.trusted(), ErrAdapterConfig},
		{"manifest not canonical", join(t, append([]rawMember{{NameManifest, append(bytes.Clone(ms[0].data[:1]), append([]byte(" "), ms[0].data[1:]...)...)}}, ms[1:]...)), f.trusted(), ErrMalformedManifest},
		{"minimal package, evidence added", join(t, func() []rawMember {
			mm := split(t, minimal)
			return append(append(append([]rawMember{}, mm[:4]...), rawMember{NameEvidence, []byte(`{}`)}), mm[4])
		}()), f.trusted(), ErrUnexpectedMember},
	}
	for _, c := range cases {
		if c.trusted == nil && c.want == nil {
			continue // placeholder rows
		}
		t.Run(c.name, func(t *testing.T) {
			_, err := readVerify(c.pkg, c.trusted)
			if c.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
			// And open leaves nothing behind.
			p, rerr := Read(bytes.NewReader(c.pkg), int64(len(c.pkg)))
			if rerr != nil {
				return
			}
			parent := t.TempDir()
			if err := OpenDir(context.Background(), p, c.trusted, RecipientIdentity(f.recipients[0]), filepath.Join(parent, "out")); !errors.Is(err, c.want) {
				t.Fatalf("open: err = %v, want %v", err, c.want)
			}
			assertEmpty(t, parent)
		})
	}
}

func assertEmpty(t *testing.T, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 0 {
		t.Fatalf("%s holds %d entries after a failed open (first %s)", dir, len(ents), ents[0].Name())
	}
}

// TestOpenRefuses covers the failures that come only at decryption.
func TestOpenRefuses(t *testing.T) {
	f := newFixture(t)
	pkg := f.create(t)
	ctx := context.Background()
	swapped := resign(t, pkg, f.signer, func(m *Manifest, ms []rawMember) []rawMember {
		// Recipient 0's entry carries recipient 1's wrapped DEK.
		m.Recipients[0].WrappedDEK = m.Recipients[1].WrappedDEK
		return ms
	})
	badHash := resign(t, pkg, f.signer, func(m *Manifest, ms []rawMember) []rawMember {
		// A trusted signer's manifest that names the wrong plaintext:
		// every segment authenticates but the last, which is held back.
		m.Weights.PlaintextSHA256 = sha256String([]byte("not the weights"))
		ms[3].data = nil // drop the certificate, which would disagree first
		m.Members = append(m.Members[:1], m.Members[2:]...)
		return dropNil(ms)
	})
	otherPkg := split(t, f.create(t))
	spliced := resign(t, pkg, f.signer, func(m *Manifest, ms []rawMember) []rawMember {
		// Another package's weights, hashed correctly into this manifest:
		// the envelope is bound to the other package id.
		ms[5] = otherPkg[5]
		m.Members[3] = Member{Name: NameWeights, SHA256: sha256String(ms[5].data), Size: int64(len(ms[5].data))}
		return ms
	})
	cases := []struct {
		name     string
		pkg      []byte
		identity *seal.RecipientKey
		want     error
	}{
		{"not a recipient", pkg, f.outsider, ErrNotRecipient},
		{"nil identity", pkg, nil, ErrNotRecipient},
		{"wrapped DEK of another recipient", swapped, f.recipients[0], ErrNotRecipient},
		{"plaintext hash differs", badHash, f.recipients[0], ErrWeights},
		{"weights of another package", spliced, f.recipients[0], ErrWeights},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := readVerify(c.pkg, f.trusted())
			if err != nil {
				t.Fatal(err)
			}
			if err := p.Decrypt(ctx, RecipientIdentity(c.identity), io.Discard); !errors.Is(err, c.want) {
				t.Fatalf("decrypt: err = %v, want %v", err, c.want)
			}
			if _, err := Load(ctx, p, f.trusted(), RecipientIdentity(c.identity)); !errors.Is(err, c.want) {
				t.Fatalf("load: err = %v, want %v", err, c.want)
			}
			parent := t.TempDir()
			if err := OpenDir(ctx, p, f.trusted(), RecipientIdentity(c.identity), filepath.Join(parent, "out")); !errors.Is(err, c.want) {
				t.Fatalf("open: err = %v, want %v", err, c.want)
			}
			assertEmpty(t, parent)
		})
	}
	t.Run("decrypt before verify", func(t *testing.T) {
		p, err := Read(bytes.NewReader(pkg), int64(len(pkg)))
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Decrypt(ctx, RecipientIdentity(f.recipients[0]), io.Discard); !errors.Is(err, ErrNotVerified) {
			t.Fatalf("err = %v", err)
		}
		if _, err := p.Member(NameAdapterConfig); !errors.Is(err, ErrNotVerified) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("destination fails", func(t *testing.T) {
		p, err := readVerify(pkg, f.trusted())
		if err != nil {
			t.Fatal(err)
		}
		err = p.Decrypt(ctx, RecipientIdentity(f.recipients[0]), failWriter{})
		if !errors.Is(err, errDisk) || errors.Is(err, ErrWeights) {
			t.Fatalf("err = %v, want the write error and not ErrWeights", err)
		}
	})
	t.Run("canceled", func(t *testing.T) {
		p, err := readVerify(pkg, f.trusted())
		if err != nil {
			t.Fatal(err)
		}
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if err := p.Decrypt(cctx, RecipientIdentity(f.recipients[0]), io.Discard); !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v", err)
		}
	})
}

func dropNil(ms []rawMember) []rawMember {
	var out []rawMember
	for _, m := range ms {
		if m.data != nil {
			out = append(out, m)
		}
	}
	return out
}

func TestManifestCanonical(t *testing.T) {
	f := newFixture(t)
	ms := split(t, f.create(t))
	good := ms[0].data
	if _, err := ParseManifest(good); err != nil {
		t.Fatal(err)
	}
	m, _ := ParseManifest(good)
	wrapped, _ := base64.StdEncoding.DecodeString(m.Recipients[0].WrappedDEK)
	cases := map[string][]byte{
		"leading space":   append([]byte(" "), good...),
		"trailing space":  append(bytes.Clone(good), ' '),
		"trailing object": append(bytes.Clone(good), "{}"...),
		"duplicate key":   bytes.Replace(good, []byte(`{"adapter"`), []byte(`{"format":"tensafe-tssp/v1","adapter"`), 1),
		"unknown field":   bytes.Replace(good, []byte(`{"adapter"`), []byte(`{"a":1,"adapter"`), 1),
		"escaped slash":   bytes.Replace(good, []byte(`tensafe-tssp/v1`), []byte(`tensafe-tssp\/v1`), 1),
		"number spelling": bytes.Replace(good, []byte(`"rank":2`), []byte(`"rank":2.0`), 1),
		"base64 url":      bytes.Replace(good, []byte(m.Recipients[0].WrappedDEK), []byte(base64.URLEncoding.EncodeToString(wrapped)), 1),
	}
	for name, b := range cases {
		if bytes.Equal(b, good) {
			t.Fatalf("%s: mutation did not apply", name)
		}
		if _, err := ParseManifest(b); !errors.Is(err, ErrMalformedManifest) {
			t.Errorf("%s: err = %v, want ErrMalformedManifest", name, err)
		}
	}
	fields := []struct {
		name string
		mod  func(*Manifest)
	}{
		{"package_id", func(m *Manifest) { m.PackageID = "x" }},
		{"created", func(m *Manifest) { m.Created = "2026-11-27T07:00:00+01:00" }},
		{"producer", func(m *Manifest) { m.Producer = "a\nb" }},
		{"signer", func(m *Manifest) { m.Signer = "ts1-zz" }},
		{"recipients", func(m *Manifest) { m.Recipients = nil }},
		{"recipients[1].key_id", func(m *Manifest) { m.Recipients[1].KeyID = m.Recipients[0].KeyID }},
		{"recipients[0].alg", func(m *Manifest) { m.Recipients[0].Alg = "rsa" }},
		{"weights.envelope", func(m *Manifest) { m.Weights.Envelope = "none" }},
		{"weights.plaintext_size", func(m *Manifest) { m.Weights.PlaintextSize = -1 }},
		{"members", func(m *Manifest) { m.Members = m.Members[:len(m.Members)-1] }},
		{"members[1].name", func(m *Manifest) { m.Members[0], m.Members[1] = m.Members[1], m.Members[0] }},
		{"members[0].size", func(m *Manifest) { m.Members[0].Size = MaxAdapterConfigSize + 1 }},
		{"adapter.rank", func(m *Manifest) { m.Adapter.Rank = 0 }},
		{"tenant_kek.key_id", func(m *Manifest) {
			m.TenantKEK = &TenantKEK{Alg: TenantKEKAlg, KEKVersion: 1, KeyID: "acme", WrappedDEK: base64.StdEncoding.EncodeToString(make([]byte, 40))}
		}},
		{"tenant_kek.wrapped_dek", func(m *Manifest) {
			m.TenantKEK = &TenantKEK{Alg: TenantKEKAlg, KEKVersion: 1, KeyID: "kek:acme", WrappedDEK: "AAAA"}
		}},
		{"tenant_kek.kek_version", func(m *Manifest) {
			m.TenantKEK = &TenantKEK{Alg: TenantKEKAlg, KeyID: "kek:acme", WrappedDEK: base64.StdEncoding.EncodeToString(make([]byte, 40))}
		}},
	}
	for _, c := range fields {
		m, _ := ParseManifest(good)
		c.mod(m)
		b, err := m.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		_, err = ParseManifest(b)
		if !errors.Is(err, ErrMalformedManifest) || !bytes.Contains([]byte(err.Error()), []byte(c.name)) {
			t.Errorf("%s: err = %v, want ErrMalformedManifest naming the field", c.name, err)
		}
	}
}

// TestHostileSizes checks that a header claiming a huge member is refused
// before anything is allocated for it.
func TestHostileSizes(t *testing.T) {
	for _, c := range []struct {
		name string
		size int64
		want error
	}{
		{NameManifest, MaxManifestSize + 1, ErrMemberSize},
		{NameManifest, MaxManifestSize, ErrMalformed},
		{NameSignature, seal.SignatureSize + 1, ErrMemberSize},
		{NameWeights, MaxWeightsSize, ErrMalformed}, // runs past the end
	} {
		h, err := memberHeader(c.name, c.size)
		if err != nil {
			t.Fatal(err)
		}
		pkg := append(h, make([]byte, 2*blockSize)...)
		_, err = Read(bytes.NewReader(pkg), int64(len(pkg)))
		if !errors.Is(err, c.want) {
			t.Errorf("%s of %d bytes: err = %v, want %v", c.name, c.size, err, c.want)
		}
	}
}

func ExampleRead() {
	pkg, err := os.ReadFile("testdata/vector/package.tssp")
	if err != nil {
		fmt.Println(err)
		return
	}
	p, err := Read(bytes.NewReader(pkg), int64(len(pkg)))
	if err != nil {
		fmt.Println(err)
		return
	}
	m := p.Manifest()
	fmt.Println(m.Format, m.BaseModel.Name, len(m.Recipients), "recipient")
	// Output: tensafe-tssp/v1 tensafe-tiny 1 recipient
}

var errDisk = errors.New("disk full")

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errDisk }
