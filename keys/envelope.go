package keys

import (
	"context"
	"fmt"
	"io"

	"github.com/tensafe/tensafe/seal"
)

// SealTo starts an envelope for one artifact of tenant: a fresh DEK from p,
// wrapped in the header, the payload bound to b. The DEK is forgotten once
// the Writer is made.
func SealTo(ctx context.Context, p Provider, dst io.Writer, b seal.Binding) (*seal.Writer, error) {
	dek, wk, err := p.NewDEK(ctx, b.TenantID)
	if err != nil {
		return nil, err
	}
	defer clear(dek)
	return seal.NewWriter(dst, dek, wk.Ref(), b)
}

// Open reads the header of an envelope of tenant b.TenantID from src,
// unwraps its DEK with p and returns a Reader of the plaintext, which must
// hash to wantHash.
func Open(ctx context.Context, p Provider, src io.Reader, b seal.Binding, wantHash string) (*seal.Reader, error) {
	h, err := seal.ReadHeader(src)
	if err != nil {
		return nil, err
	}
	wk, err := FromRef(h.KeyRef)
	if err != nil {
		return nil, err
	}
	dek, err := p.Unwrap(ctx, b.TenantID, wk)
	if err != nil {
		return nil, err
	}
	defer clear(dek)
	return seal.NewReader(src, h, dek, b, wantHash)
}

// RewrapEnvelope copies the envelope in src to dst with its DEK re-wrapped
// under the tenant's current KEK version. Only the header changes: the
// segments are copied byte for byte, never decrypted. It returns the new
// key reference.
func RewrapEnvelope(ctx context.Context, p Provider, src io.Reader, dst io.Writer, b seal.Binding) (seal.KeyRef, error) {
	h, err := seal.ReadHeader(src)
	if err != nil {
		return seal.KeyRef{}, err
	}
	wk, err := FromRef(h.KeyRef)
	if err != nil {
		return seal.KeyRef{}, err
	}
	dek, err := p.Unwrap(ctx, b.TenantID, wk)
	if err != nil {
		return seal.KeyRef{}, err
	}
	defer clear(dek)
	nw, err := p.Rewrap(ctx, b.TenantID, wk)
	if err != nil {
		return seal.KeyRef{}, err
	}
	hdr, err := seal.RewrapHeader(h, dek, b, nw.Ref())
	if err != nil {
		return seal.KeyRef{}, err
	}
	if _, err := dst.Write(hdr); err != nil {
		return seal.KeyRef{}, fmt.Errorf("keys: rewrap envelope: write header: %w", err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		return seal.KeyRef{}, fmt.Errorf("keys: rewrap envelope: copy segments: %w", err)
	}
	return nw.Ref(), nil
}
