package keys

import (
	"fmt"

	"github.com/tensafe/tensafe/seal"
	"github.com/tink-crypto/tink-go/v2/kwp/subtle"
)

const (
	// KEKSize is the length of a KEK version: an AES-256 key.
	KEKSize = 32
	// WrappedDEKSize is the length of a DEK wrapped with AES-256-KWP.
	WrappedDEKSize = seal.DEKSize + 8
)

// wrapDEK wraps dek under kek with AES-256-KWP (RFC 5649).
func wrapDEK(kek, dek []byte) ([]byte, error) {
	if len(dek) != seal.DEKSize {
		return nil, fmt.Errorf("DEK is %d bytes, want %d", len(dek), seal.DEKSize)
	}
	k, err := subtle.NewKWP(kek)
	if err != nil {
		return nil, err
	}
	return k.Wrap(dek)
}

// unwrapDEK reverses wrapDEK; it fails with ErrUnwrap when the integrity
// check fails.
func unwrapDEK(kek, wrapped []byte) ([]byte, error) {
	if len(wrapped) != WrappedDEKSize {
		return nil, fmt.Errorf("%w: wrapped DEK is %d bytes, want %d", ErrUnwrap, len(wrapped), WrappedDEKSize)
	}
	k, err := subtle.NewKWP(kek)
	if err != nil {
		return nil, err
	}
	dek, err := k.Unwrap(wrapped)
	if err != nil {
		return nil, ErrUnwrap
	}
	if len(dek) != seal.DEKSize {
		clear(dek)
		return nil, fmt.Errorf("%w: unwrapped key is %d bytes, want %d", ErrUnwrap, len(dek), seal.DEKSize)
	}
	return dek, nil
}
