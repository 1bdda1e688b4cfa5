package he

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/tensafe/tensafe/keys"
	"github.com/tensafe/tensafe/seal"
)

// KEKWrapper is the production Wrapper: each Wrap seals the plaintext in
// package seal's streaming envelope under a fresh DEK wrapped by the
// tenant's KEK (keys.Provider), with the associated data as the envelope's
// artifact binding. Rotating the tenant KEK (keys.Keyring.Rotate) leaves
// existing blobs readable; shredding the tenant makes them unreadable.
//
// Output: "sha256:<hex of the plaintext's SHA-256>\n" followed by the
// envelope; Unwrap requires the plaintext to match that hash, as the
// envelope format does.
type KEKWrapper struct {
	Provider keys.Provider
	Tenant   string
}

var _ Wrapper = KEKWrapper{}

const hashLineLen = len(seal.ContentHashPrefix) + 64 + 1

// Wrap seals plaintext bound to aad.
func (w KEKWrapper) Wrap(ctx context.Context, plaintext, aad []byte) ([]byte, error) {
	var buf bytes.Buffer
	buf.Grow(hashLineLen + len(plaintext) + len(plaintext)/1024 + 512)
	buf.WriteString(string(make([]byte, hashLineLen))) // placeholder for the hash line
	sw, err := keys.SealTo(ctx, w.Provider, &buf, seal.Binding{TenantID: w.Tenant, ArtifactID: string(aad)})
	if err != nil {
		return nil, fmt.Errorf("he: kek wrap: %w", err)
	}
	if _, err := sw.Write(plaintext); err != nil {
		return nil, fmt.Errorf("he: kek wrap: %w", err)
	}
	if err := sw.Close(); err != nil {
		return nil, fmt.Errorf("he: kek wrap: %w", err)
	}
	out := buf.Bytes()
	copy(out, sw.ContentHash()+"\n")
	return out, nil
}

// Unwrap opens what Wrap sealed with the same tenant and aad.
func (w KEKWrapper) Unwrap(ctx context.Context, sealed, aad []byte) ([]byte, error) {
	if len(sealed) < hashLineLen || sealed[hashLineLen-1] != '\n' {
		return nil, errors.New("he: kek unwrap: missing content hash line")
	}
	want := string(sealed[:hashLineLen-1])
	if err := seal.CheckContentHash(want); err != nil {
		return nil, fmt.Errorf("he: kek unwrap: %w", err)
	}
	r, err := keys.Open(ctx, w.Provider, bytes.NewReader(sealed[hashLineLen:]), seal.Binding{TenantID: w.Tenant, ArtifactID: string(aad)}, want)
	if err != nil {
		return nil, fmt.Errorf("he: kek unwrap: %w", err)
	}
	out, err := io.ReadAll(io.LimitReader(r, int64(len(sealed))))
	if err != nil {
		return nil, fmt.Errorf("he: kek unwrap: %w", err)
	}
	return out, nil
}
