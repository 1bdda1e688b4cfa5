package tssp

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"time"

	"github.com/tensafe/tensafe/keys"
	"github.com/tensafe/tensafe/privacy"
	"github.com/tensafe/tensafe/seal"
)

// CreateOptions is what goes into a package.
type CreateOptions struct {
	// AdapterConfig is the PEFT adapter_config.json (required).
	AdapterConfig []byte
	// Weights yields the PEFT adapter_model.safetensors (required). It is
	// read once and encrypted as it streams.
	Weights io.Reader
	// BaseModel names the base model (Name required).
	BaseModel BaseModel
	// Certificate is the DP certificate's canonical JSON (optional). Its
	// adapter_hash must be the SHA-256 of Weights.
	Certificate []byte
	// Evidence is the training provenance, a JSON object (optional).
	Evidence []byte
	// Signer signs the manifest (required).
	Signer *seal.SigningKey
	// Recipients may decrypt the weights.
	Recipients []*seal.RecipientPublicKey
	// Tenant, when set, also lets the producing tenant open the package
	// with its own KEK: the DEK comes from Tenant.Provider.NewDEK and is
	// recorded wrapped under the tenant's current KEK version. At least
	// one recipient or a tenant is required.
	Tenant *TenantKey
	// Producer names the software; "tensafe" when empty.
	Producer string
	// Created is the creation time; the current time when zero.
	Created time.Time
	// TempDir holds the encrypted weights while the manifest is computed
	// (the archive puts the manifest first); os.TempDir() when empty.
	TempDir string
}

// TenantKey names a tenant and the provider that keeps its KEK.
type TenantKey struct {
	Provider keys.Provider
	Tenant   string
}

// Create writes a package to w and returns its manifest. The weights are
// encrypted under a fresh DEK into a temporary file first (the manifest,
// which commits to the ciphertext's hash, comes first in the archive), so
// memory stays bounded whatever their size.
func Create(ctx context.Context, w io.Writer, opts CreateOptions) (*Manifest, error) {
	if opts.Weights == nil {
		return nil, errors.New("tssp: create: weights: required")
	}
	if opts.Signer == nil {
		return nil, errors.New("tssp: create: signer: required")
	}
	if len(opts.Recipients) == 0 && opts.Tenant == nil {
		return nil, errors.New("tssp: create: recipients: at least one recipient or a tenant required")
	}
	if len(opts.Recipients) > MaxRecipients {
		return nil, fmt.Errorf("tssp: create: recipients: %d, at most %d", len(opts.Recipients), MaxRecipients)
	}
	info, err := adapterInfoFromConfig(opts.AdapterConfig)
	if err != nil {
		return nil, err
	}
	var cert *privacy.Certificate
	if opts.Certificate != nil {
		if cert, err = checkCertificate(opts.Certificate); err != nil {
			return nil, err
		}
	}
	if opts.Evidence != nil {
		if err := checkEvidence(opts.Evidence); err != nil {
			return nil, err
		}
	}
	producer := opts.Producer
	if producer == "" {
		producer = "tensafe"
	}
	created := opts.Created
	if created.IsZero() {
		created = time.Now()
	}
	var idb [16]byte
	if _, err := rand.Read(idb[:]); err != nil {
		return nil, fmt.Errorf("tssp: create: package id: %w", err)
	}
	m := &Manifest{
		Adapter:   info,
		BaseModel: opts.BaseModel,
		Created:   privacy.FormatTime(created),
		Format:    Format,
		PackageID: "tssp-" + hex.EncodeToString(idb[:]),
		Producer:  producer,
		Signer:    opts.Signer.Public().KeyID(),
	}
	binding := seal.Binding{TenantID: BindingTenant, ArtifactID: m.PackageID}

	// A fresh DEK, from the tenant's key provider when there is one,
	// sealed to every recipient.
	var (
		dek   []byte
		first seal.KeyRef
	)
	if t := opts.Tenant; t != nil {
		if t.Provider == nil {
			return nil, errors.New("tssp: create: tenant: no key provider")
		}
		d, wrapped, err := t.Provider.NewDEK(ctx, t.Tenant)
		if err != nil {
			return nil, fmt.Errorf("tssp: create: tenant %q: %w", t.Tenant, err)
		}
		dek, first = d, wrapped.Ref()
		m.TenantKEK = &TenantKEK{Alg: TenantKEKAlg, KEKVersion: wrapped.KEKVersion, KeyID: wrapped.KeyID,
			WrappedDEK: base64.StdEncoding.EncodeToString(wrapped.Wrapped)}
	} else {
		dek = make([]byte, seal.DEKSize)
		if _, err := rand.Read(dek); err != nil {
			return nil, fmt.Errorf("tssp: create: DEK: %w", err)
		}
	}
	defer clear(dek)
	for i, p := range opts.Recipients {
		if p == nil {
			return nil, fmt.Errorf("tssp: create: recipients[%d]: nil key", i)
		}
		wrapped, err := seal.SealDEK(p, dek, binding)
		if err != nil {
			return nil, fmt.Errorf("tssp: create: recipients[%d]: %w", i, err)
		}
		if first.KeyID == "" {
			first = seal.KeyRef{KeyID: p.KeyID(), WrapAlg: seal.WrapHPKEXWing, WrappedDEK: wrapped}
		}
		m.Recipients = append(m.Recipients, Recipient{Alg: RecipientAlg, KeyID: p.KeyID(), WrappedDEK: base64.StdEncoding.EncodeToString(wrapped)})
	}

	// Encrypt the weights into a temporary file, hashing the ciphertext.
	tmp, err := os.CreateTemp(opts.TempDir, "tssp-weights-*.enc")
	if err != nil {
		return nil, fmt.Errorf("tssp: create: %w", err)
	}
	defer func() {
		tmp.Close()
		os.Remove(tmp.Name())
	}()
	ch := sha256.New()
	sw, err := seal.NewWriter(io.MultiWriter(tmp, ch), dek, first, binding)
	if err != nil {
		return nil, fmt.Errorf("tssp: create: weights: %w", err)
	}
	if _, err := io.Copy(sw, ctxReader{ctx, opts.Weights}); err != nil {
		return nil, fmt.Errorf("tssp: create: weights: %w", err)
	}
	if err := sw.Close(); err != nil {
		return nil, fmt.Errorf("tssp: create: weights: %w", err)
	}
	encSize, err := tmp.Seek(0, io.SeekCurrent)
	if err != nil {
		return nil, fmt.Errorf("tssp: create: weights: %w", err)
	}
	if encSize > MaxWeightsSize {
		return nil, fmt.Errorf("tssp: create: weights: encrypted size %d exceeds %d", encSize, int64(MaxWeightsSize))
	}
	m.Weights = Weights{Envelope: EnvelopeAlg, PlaintextSHA256: sw.ContentHash(), PlaintextSize: sw.Size()}
	if cert != nil && cert.AdapterHash != m.Weights.PlaintextSHA256 {
		return nil, fmt.Errorf("tssp: create: %w: adapter_hash %s, the weights hash to %s", ErrCertificate, cert.AdapterHash, m.Weights.PlaintextSHA256)
	}

	// The members after the signature, in order.
	small := map[string][]byte{NameAdapterConfig: opts.AdapterConfig, NameCertificate: opts.Certificate, NameEvidence: opts.Evidence}
	for _, s := range members[specIndex(NameSignature)+1:] {
		if s.name == NameWeights {
			m.Members = append(m.Members, Member{Name: NameWeights, SHA256: hashString(ch), Size: encSize})
			continue
		}
		if b := small[s.name]; b != nil {
			m.Members = append(m.Members, Member{Name: s.name, SHA256: sha256String(b), Size: int64(len(b))})
		}
	}
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("tssp: create: %w", err)
	}
	mj, err := m.Marshal()
	if err != nil {
		return nil, err
	}
	sig, err := opts.Signer.Sign(SignatureContext, mj)
	if err != nil {
		return nil, fmt.Errorf("tssp: create: sign manifest: %w", err)
	}

	// The archive.
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("tssp: create: %w", err)
	}
	aw := &archiveWriter{w: w}
	aw.member(NameManifest, int64(len(mj)), bytes.NewReader(mj))
	aw.member(NameSignature, int64(len(sig)), bytes.NewReader(sig))
	for _, mem := range m.Members {
		if mem.Name == NameWeights {
			aw.member(NameWeights, encSize, ctxReader{ctx, tmp})
		} else {
			aw.member(mem.Name, mem.Size, bytes.NewReader(small[mem.Name]))
		}
	}
	aw.end()
	if aw.err != nil {
		return nil, fmt.Errorf("tssp: create: write archive: %w", aw.err)
	}
	return m, nil
}

// archiveWriter writes members; the first error sticks.
type archiveWriter struct {
	w   io.Writer
	err error
}

var zeros [2 * blockSize]byte

func (a *archiveWriter) member(name string, size int64, r io.Reader) {
	if a.err != nil {
		return
	}
	h, err := memberHeader(name, size)
	if err != nil {
		a.err = err
		return
	}
	if _, a.err = a.w.Write(h); a.err != nil {
		return
	}
	n, err := io.Copy(a.w, io.LimitReader(r, size))
	if err != nil {
		a.err = err
		return
	}
	if n != size {
		a.err = fmt.Errorf("%s: %d bytes, expected %d", name, n, size)
		return
	}
	_, a.err = a.w.Write(zeros[:padding(size)])
}

func (a *archiveWriter) end() {
	if a.err == nil {
		_, a.err = a.w.Write(zeros[:])
	}
}

func sha256String(b []byte) string {
	s := sha256.Sum256(b)
	return seal.ContentHashPrefix + hex.EncodeToString(s[:])
}

func hashString(h hash.Hash) string {
	return seal.ContentHashPrefix + hex.EncodeToString(h.Sum(nil))
}

// checkCertificate parses and verifies a DP certificate.
func checkCertificate(b []byte) (*privacy.Certificate, error) {
	if len(b) > MaxCertificateSize {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrCertificate, len(b), MaxCertificateSize)
	}
	c, err := privacy.ParseCertificate(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCertificate, err)
	}
	if err := c.Verify(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCertificate, err)
	}
	return c, nil
}

// checkEvidence checks that b is one JSON object.
func checkEvidence(b []byte) error {
	if len(b) > MaxEvidenceSize {
		return fmt.Errorf("%w: %d bytes, at most %d", ErrEvidence, len(b), MaxEvidenceSize)
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(b, &obj); err != nil {
		return fmt.Errorf("%w: %v", ErrEvidence, err)
	}
	if obj == nil {
		return fmt.Errorf("%w: null", ErrEvidence)
	}
	return nil
}

// ctxReader stops a long copy when its context is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
