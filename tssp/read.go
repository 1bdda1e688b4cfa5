package tssp

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/tensafe/tensafe/keys"
	"github.com/tensafe/tensafe/seal"
)

// entry is one member found in the archive.
type entry struct {
	name      string
	off, size int64 // data offset and length
}

// Package is a parsed package. Read fills in its structure and manifest;
// nothing in it is trusted until Verify has returned nil. A Package is not
// safe for concurrent use.
type Package struct {
	r            io.ReaderAt
	size         int64
	entries      []entry
	manifestJSON []byte
	signature    []byte
	manifest     *Manifest

	verified bool
	small    map[string][]byte // verified small members
}

// Read parses the archive structure of the package in r (size bytes) and
// its manifest. It checks headers, member order, size caps, padding, the
// end blocks and that nothing follows them, and that the manifest is a
// canonical v1 manifest; it checks no signature or hash (see Verify).
func Read(r io.ReaderAt, size int64) (*Package, error) {
	p := &Package{r: r, size: size}
	var off int64
	hdr := make([]byte, blockSize)
	for {
		if size-off < blockSize {
			return nil, fmt.Errorf("%w: archive ends at offset %d without end blocks", ErrMalformed, off)
		}
		if _, err := r.ReadAt(hdr, off); err != nil {
			return nil, fmt.Errorf("%w: header at offset %d: %v", ErrMalformed, off, err)
		}
		if bytes.Equal(hdr, zeros[:blockSize]) {
			// End of archive: two zero blocks, then nothing.
			if size-off != 2*blockSize {
				return nil, fmt.Errorf("%w: %d bytes at offset %d where the two end blocks must close the archive", ErrMalformed, size-off, off)
			}
			if err := readZeros(r, off+blockSize, blockSize); err != nil {
				return nil, err
			}
			break
		}
		name, msize, err := parseHeader(hdr)
		if err != nil {
			return nil, fmt.Errorf("%w (at offset %d)", err, off)
		}
		k := specIndex(name)
		if k < 0 {
			return nil, fmt.Errorf("%w: %q at offset %d", ErrUnexpectedMember, name, off)
		}
		if len(p.entries) >= len(members) {
			return nil, fmt.Errorf("%w: more than %d members", ErrMemberOrder, len(members))
		}
		if msize > members[k].max {
			return nil, fmt.Errorf("%w: %s is %d bytes, at most %d allowed", ErrMemberSize, name, msize, members[k].max)
		}
		data := off + blockSize
		end := data + msize + padding(msize)
		if end > size-2*blockSize || end < data {
			return nil, fmt.Errorf("%w: %s (%d bytes at offset %d) runs past the end of the archive", ErrMalformed, name, msize, data)
		}
		if err := readZeros(r, data+msize, padding(msize)); err != nil {
			return nil, err
		}
		p.entries = append(p.entries, entry{name: name, off: data, size: msize})
		off = end
	}
	// The members in the format's order, each once, the required ones
	// present.
	prev := -1
	for _, e := range p.entries {
		k := specIndex(e.name)
		if k == prev {
			return nil, fmt.Errorf("%w: %s repeated", ErrMemberOrder, e.name)
		}
		if k < prev {
			return nil, fmt.Errorf("%w: %s after %s", ErrMemberOrder, e.name, members[prev].name)
		}
		prev = k
	}
	for _, s := range members {
		if !s.required {
			continue
		}
		found := false
		for _, e := range p.entries {
			found = found || e.name == s.name
		}
		if !found {
			return nil, fmt.Errorf("%w: %s", ErrMissingMember, s.name)
		}
	}
	var err error
	if p.manifestJSON, err = p.readSmall(p.entries[0]); err != nil {
		return nil, err
	}
	if p.signature, err = p.readSmall(p.entries[1]); err != nil {
		return nil, err
	}
	if p.manifest, err = ParseManifest(p.manifestJSON); err != nil {
		return nil, err
	}
	return p, nil
}

func readZeros(r io.ReaderAt, off, n int64) error {
	if n == 0 {
		return nil
	}
	buf := make([]byte, n)
	if _, err := r.ReadAt(buf, off); err != nil {
		return fmt.Errorf("%w: padding at offset %d: %v", ErrMalformed, off, err)
	}
	if !bytes.Equal(buf, zeros[:n]) {
		return fmt.Errorf("%w: nonzero padding at offset %d", ErrMalformed, off)
	}
	return nil
}

// readSmall reads a capped member into memory.
func (p *Package) readSmall(e entry) ([]byte, error) {
	if e.size > members[specIndex(e.name)].max || e.size > MaxEvidenceSize {
		return nil, fmt.Errorf("%w: %s is %d bytes", ErrMemberSize, e.name, e.size)
	}
	b := make([]byte, e.size)
	if _, err := p.r.ReadAt(b, e.off); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrMalformed, e.name, err)
	}
	return b, nil
}

// Manifest returns the package's manifest. Before Verify it is only what
// the package claims.
func (p *Package) Manifest() *Manifest { return p.manifest }

// ManifestJSON returns manifest.json as stored.
func (p *Package) ManifestJSON() []byte { return bytes.Clone(p.manifestJSON) }

// Verify checks the package against the signing keys the caller trusts:
// the manifest's signer is one of trusted, its signature verifies, the
// archive holds exactly the members the manifest lists with their sizes and
// SHA-256, the adapter config agrees with the manifest, and the DP
// certificate (if any) is valid and certifies these weights. It returns nil
// only when all of these hold; otherwise an error wrapping the Err value
// that names the failure.
func (p *Package) Verify(ctx context.Context, trusted []*seal.VerifyingKey) error {
	m := p.manifest
	var signer *seal.VerifyingKey
	for _, k := range trusted {
		if k != nil && k.KeyID() == m.Signer {
			signer = k
			break
		}
	}
	if signer == nil {
		return fmt.Errorf("%w: signed by %s", ErrUntrustedSigner, m.Signer)
	}
	if err := signer.Verify(SignatureContext, p.manifestJSON, p.signature); err != nil {
		return fmt.Errorf("%w: signer %s: %w", ErrBadSignature, m.Signer, err)
	}
	// The archive's members after the signature are the manifest's.
	got := p.entries[2:]
	for i, mem := range m.Members {
		if i >= len(got) {
			return fmt.Errorf("%w: %s", ErrMissingMember, mem.Name)
		}
		if got[i].name != mem.Name {
			if _, ok := m.member(got[i].name); !ok {
				return fmt.Errorf("%w: %s is not in the manifest", ErrUnexpectedMember, got[i].name)
			}
			return fmt.Errorf("%w: %s", ErrMissingMember, mem.Name)
		}
		if got[i].size != mem.Size {
			return fmt.Errorf("%w: %s is %d bytes, the manifest says %d", ErrMemberSize, mem.Name, got[i].size, mem.Size)
		}
	}
	if len(got) > len(m.Members) {
		return fmt.Errorf("%w: %s is not in the manifest", ErrUnexpectedMember, got[len(m.Members)].name)
	}
	// Every hash; the small members are kept, so that what was verified is
	// what is used.
	small := map[string][]byte{}
	for i, mem := range m.Members {
		e := got[i]
		h := sha256.New()
		if mem.Name == NameWeights {
			if _, err := io.Copy(h, ctxReader{ctx, io.NewSectionReader(p.r, e.off, e.size)}); err != nil {
				return fmt.Errorf("tssp: verify: read %s: %w", mem.Name, err)
			}
		} else {
			b, err := p.readSmall(e)
			if err != nil {
				return err
			}
			h.Write(b)
			small[mem.Name] = b
		}
		if hashString(h) != mem.SHA256 {
			return fmt.Errorf("%w: %s", ErrMemberHash, mem.Name)
		}
	}
	info, err := adapterInfoFromConfig(small[NameAdapterConfig])
	if err != nil {
		return err
	}
	if info.PEFTType != m.Adapter.PEFTType || info.Rank != m.Adapter.Rank || info.LoRAAlpha != m.Adapter.LoRAAlpha ||
		!slices.Equal(info.TargetModules, m.Adapter.TargetModules) {
		return fmt.Errorf("%w: adapter_config.json says %+v, the manifest %+v", ErrAdapterConfig, info, m.Adapter)
	}
	if b, ok := small[NameCertificate]; ok {
		c, err := checkCertificate(b)
		if err != nil {
			return err
		}
		if c.AdapterHash != m.Weights.PlaintextSHA256 {
			return fmt.Errorf("%w: adapter_hash %s, the manifest's weights %s", ErrCertificate, c.AdapterHash, m.Weights.PlaintextSHA256)
		}
	}
	if b, ok := small[NameEvidence]; ok {
		if err := checkEvidence(b); err != nil {
			return err
		}
	}
	p.small = small
	p.verified = true
	return nil
}

// Member returns a verified small member (adapter_config.json,
// dp_certificate.json, evidence.json), or nil if the package has none.
func (p *Package) Member(name string) ([]byte, error) {
	if !p.verified {
		return nil, ErrNotVerified
	}
	return bytes.Clone(p.small[name]), nil
}

// Identity recovers the DEK of a package: a recipient's key
// (RecipientIdentity) or a tenant's KEK kept by a keys.Provider
// (TenantIdentity).
type Identity interface {
	unwrapDEK(ctx context.Context, m *Manifest) ([]byte, error)
}

// RecipientIdentity is the identity of the holder of a recipient key.
func RecipientIdentity(k *seal.RecipientKey) Identity { return recipientIdentity{k} }

type recipientIdentity struct{ k *seal.RecipientKey }

func (r recipientIdentity) unwrapDEK(_ context.Context, m *Manifest) ([]byte, error) {
	if r.k == nil {
		return nil, fmt.Errorf("%w: no identity", ErrNotRecipient)
	}
	id := r.k.Public().KeyID()
	for _, rec := range m.Recipients {
		if rec.KeyID != id {
			continue
		}
		wrapped, err := base64.StdEncoding.DecodeString(rec.WrappedDEK)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: wrapped DEK: %v", ErrNotRecipient, id, err)
		}
		dek, err := r.k.OpenDEK(wrapped, binding(m))
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrNotRecipient, id, err)
		}
		return dek, nil
	}
	return nil, fmt.Errorf("%w: %s is not listed", ErrNotRecipient, id)
}

// TenantIdentity is the identity of a tenant whose KEK p keeps: it opens
// packages made with CreateOptions.Tenant.
func TenantIdentity(p keys.Provider, tenant string) Identity { return tenantIdentity{p, tenant} }

type tenantIdentity struct {
	p      keys.Provider
	tenant string
}

func (t tenantIdentity) unwrapDEK(ctx context.Context, m *Manifest) ([]byte, error) {
	if t.p == nil {
		return nil, fmt.Errorf("%w: no key provider", ErrNotRecipient)
	}
	tk := m.TenantKEK
	if tk == nil || tk.KeyID != keys.KeyIDFor(t.tenant) {
		return nil, fmt.Errorf("%w: tenant %q's KEK is not listed", ErrNotRecipient, t.tenant)
	}
	wrapped, err := base64.StdEncoding.DecodeString(tk.WrappedDEK)
	if err != nil {
		return nil, fmt.Errorf("%w: tenant_kek: %v", ErrNotRecipient, err)
	}
	dek, err := t.p.Unwrap(ctx, t.tenant, keys.WrappedKey{KeyID: tk.KeyID, KEKVersion: tk.KEKVersion, Wrapped: wrapped})
	if err != nil {
		return nil, fmt.Errorf("%w: tenant %q: %w", ErrNotRecipient, t.tenant, err)
	}
	return dek, nil
}

func binding(m *Manifest) seal.Binding {
	return seal.Binding{TenantID: BindingTenant, ArtifactID: m.PackageID}
}

// Decrypt decrypts the weights of a verified package for identity and
// writes the plaintext (PEFT adapter_model.safetensors) to w. The seal
// envelope releases each segment only once it has authenticated and the
// last one only once the whole plaintext has the SHA-256 the signed
// manifest records; on error, what was written to w must be discarded.
func (p *Package) Decrypt(ctx context.Context, identity Identity, w io.Writer) error {
	if !p.verified {
		return ErrNotVerified
	}
	if identity == nil {
		return fmt.Errorf("%w: no identity", ErrNotRecipient)
	}
	m := p.manifest
	dek, err := identity.unwrapDEK(ctx, m)
	if err != nil {
		return err
	}
	defer clear(dek)
	bind := binding(m)
	e := p.entries[len(p.entries)-1]
	src := ctxReader{ctx, io.NewSectionReader(p.r, e.off, e.size)}
	h, err := seal.ReadHeader(src)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrWeights, err)
	}
	sr, err := seal.NewReader(src, h, dek, bind, m.Weights.PlaintextSHA256)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrWeights, err)
	}
	dw := &destWriter{w: w}
	n, err := io.Copy(dw, sr)
	if err != nil {
		if dw.err != nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			// Not the package's fault: the destination or the caller.
			return fmt.Errorf("tssp: decrypt: %w", err)
		}
		return fmt.Errorf("%w: %w", ErrWeights, err)
	}
	if n != m.Weights.PlaintextSize {
		return fmt.Errorf("%w: %d plaintext bytes, the manifest says %d", ErrWeights, n, m.Weights.PlaintextSize)
	}
	return nil
}

// UnverifiedMember returns a small member as stored, before or without
// verification: for display (tensafe package inspect) only, never to act
// on. It returns nil when the package has no such member.
func (p *Package) UnverifiedMember(name string) ([]byte, error) {
	k := specIndex(name)
	if k < 0 || name == NameWeights {
		return nil, fmt.Errorf("tssp: %q is not a small member", name)
	}
	for _, e := range p.entries {
		if e.name == name {
			return p.readSmall(e)
		}
	}
	return nil, nil
}

// destWriter remembers a write error, to tell it from a decryption error.
type destWriter struct {
	w   io.Writer
	err error
}

func (d *destWriter) Write(p []byte) (int, error) {
	n, err := d.w.Write(p)
	if err != nil {
		d.err = err
	}
	return n, err
}
