// Package keys holds TenSafe's key hierarchy: every tenant has a key
// encryption key (KEK), kept by a Provider, and every artifact has its own
// data encryption key (DEK), stored next to the artifact only in wrapped
// form (AES-256-KWP, RFC 5649, under a version of the tenant's KEK).
//
// The hierarchy is what makes the operations that matter cheap: rotating a
// tenant's KEK re-wraps 40-byte DEKs instead of re-encrypting gigabytes of
// checkpoints; deleting a tenant's KEK (crypto-shredding) makes every one of
// its artifacts unreadable at once, wherever copies of them live.
//
// Keyring is the local Provider: one file, mode 0600, sealed with
// AES-256-GCM under a master key that comes from a passphrase (Argon2id) or
// from a raw 32-byte key (a file or an environment variable). An external
// KMS is a second Provider; nothing above this package depends on which.
// The file format and the procedures are in docs/KEYS.md.
package keys

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/tensafe/tensafe/seal"
)

// Provider keeps tenants' KEKs and uses them to wrap and unwrap DEKs. KEK
// material never leaves a Provider; callers see DEKs (which they must not
// store unwrapped) and WrappedKeys (which they store freely).
type Provider interface {
	// NewDEK returns a fresh random DEK for one artifact of tenant, and the
	// same DEK wrapped under the tenant's current KEK version. A tenant
	// without a KEK gets one (version 1); a shredded tenant gets
	// ErrShredded.
	NewDEK(ctx context.Context, tenant string) (dek []byte, wrapped WrappedKey, err error)
	// Unwrap returns the DEK inside wrapped, which must belong to tenant.
	// It fails with ErrUnknownVersion for a retired or unknown KEK version,
	// ErrShredded for a shredded tenant, and ErrUnwrap when the bytes do not
	// unwrap.
	Unwrap(ctx context.Context, tenant string, wrapped WrappedKey) ([]byte, error)
	// Rewrap returns the DEK inside wrapped wrapped again under the tenant's
	// current KEK version (wrapped itself when it already is).
	Rewrap(ctx context.Context, tenant string, wrapped WrappedKey) (WrappedKey, error)
}

// WrappedKey is a DEK wrapped under one version of a tenant's KEK.
type WrappedKey struct {
	KeyID      string // "kek:" + tenant id
	KEKVersion uint32
	Wrapped    []byte // AES-256-KWP(KEK version, DEK): 40 bytes
}

// Ref returns the envelope header key reference for w.
func (w WrappedKey) Ref() seal.KeyRef {
	return seal.KeyRef{KeyID: w.KeyID, KEKVersion: w.KEKVersion, WrapAlg: seal.WrapAES256KWP, WrappedDEK: w.Wrapped}
}

// FromRef returns the WrappedKey recorded in an envelope header.
func FromRef(r seal.KeyRef) (WrappedKey, error) {
	if r.WrapAlg != seal.WrapAES256KWP {
		return WrappedKey{}, fmt.Errorf("keys: envelope DEK is wrapped with %v, not with a tenant KEK", r.WrapAlg)
	}
	return WrappedKey{KeyID: r.KeyID, KEKVersion: r.KEKVersion, Wrapped: r.WrappedDEK}, nil
}

// KeyIDFor returns the KEK id of tenant.
func KeyIDFor(tenant string) string { return kekIDPrefix + tenant }

const (
	kekIDPrefix = "kek:"
	// MaxTenantIDLen bounds tenant ids, so that a KEK id fits an envelope
	// header.
	MaxTenantIDLen = 200
)

// CheckTenantID reports whether id is an acceptable tenant id: 1 to
// MaxTenantIDLen bytes of UTF-8 with no control or white-space characters.
func CheckTenantID(id string) error {
	switch {
	case id == "":
		return errors.New("tenant id is empty")
	case len(id) > MaxTenantIDLen:
		return fmt.Errorf("tenant id is %d bytes, at most %d allowed", len(id), MaxTenantIDLen)
	case !utf8.ValidString(id):
		return errors.New("tenant id is not valid UTF-8")
	case strings.IndexFunc(id, func(r rune) bool { return unicode.IsControl(r) || unicode.IsSpace(r) }) >= 0:
		return fmt.Errorf("tenant id %q contains a control or space character", id)
	}
	return nil
}

// Errors callers must tell apart.
var (
	// ErrShredded: the tenant's KEKs were destroyed; its artifacts are
	// unreadable and no new DEKs are issued for it.
	ErrShredded = errors.New("keys: tenant's keys were shredded")
	// ErrUnknownTenant: the provider has no KEK for the tenant.
	ErrUnknownTenant = errors.New("keys: no KEK for tenant")
	// ErrUnknownVersion: the KEK version is retired or never existed.
	ErrUnknownVersion = errors.New("keys: KEK version retired or unknown")
	// ErrWrongTenant: a wrapped key of one tenant was presented for another.
	ErrWrongTenant = errors.New("keys: wrapped key belongs to another tenant")
	// ErrUnwrap: the wrapped bytes do not unwrap under the KEK version.
	ErrUnwrap = errors.New("keys: wrapped DEK does not unwrap (altered, or wrapped under another key)")
)
