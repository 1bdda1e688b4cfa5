package store

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"errors"
	"fmt"
	"io"
)

// API token format (docs/STORE.md §API keys):
//
//	ts_<prefix>_<secret>
//
// prefix is 8 random bytes and secret 32 random bytes from crypto/rand,
// each in lowercase unpadded base32 (RFC 4648 alphabet a-z2-7), so a token
// is 69 ASCII characters with 320 random bits. The prefix locates the key
// row and is not secret; the store keeps only SHA-256 of the whole token.
const (
	tokenScheme    = "ts_"
	prefixBytes    = 8
	secretBytes    = 32
	hashLen        = sha256.Size
	idRandomBytes  = 16
	maxIDPrefixLen = 16
)

var b32 = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

var (
	prefixLen = b32.EncodedLen(prefixBytes) // 13
	secretLen = b32.EncodedLen(secretBytes) // 52
	tokenLen  = len(tokenScheme) + prefixLen + 1 + secretLen
)

// NewAPIToken returns a fresh API token, its lookup prefix and the SHA-256
// of the token, which is all the store keeps. Show the token to its owner
// once; never log or store it.
func NewAPIToken() (token, prefix string, hash []byte, err error) {
	return newAPIToken(rand.Reader)
}

func newAPIToken(r io.Reader) (token, prefix string, hash []byte, err error) {
	var b [prefixBytes + secretBytes]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return "", "", nil, fmt.Errorf("store: new API token: %w", err)
	}
	prefix = b32.EncodeToString(b[:prefixBytes])
	token = tokenScheme + prefix + "_" + b32.EncodeToString(b[prefixBytes:])
	h := sha256.Sum256([]byte(token))
	return token, prefix, h[:], nil
}

// ParseAPIToken checks the form of a token and returns its lookup prefix
// and its SHA-256. Errors wrap ErrInvalidToken and never contain the token.
func ParseAPIToken(token string) (prefix string, hash []byte, err error) {
	if len(token) != tokenLen {
		return "", nil, fmt.Errorf("%w: %d characters, want %d", ErrInvalidToken, len(token), tokenLen)
	}
	if token[:len(tokenScheme)] != tokenScheme {
		return "", nil, fmt.Errorf("%w: does not start with %q", ErrInvalidToken, tokenScheme)
	}
	sep := len(tokenScheme) + prefixLen
	if token[sep] != '_' {
		return "", nil, fmt.Errorf("%w: no '_' after the prefix", ErrInvalidToken)
	}
	for i := len(tokenScheme); i < len(token); i++ {
		if i != sep && !isB32(token[i]) {
			return "", nil, fmt.Errorf("%w: character at %d is not lowercase base32", ErrInvalidToken, i)
		}
	}
	h := sha256.Sum256([]byte(token))
	return token[len(tokenScheme):sep], h[:], nil
}

func isB32(c byte) bool { return 'a' <= c && c <= 'z' || '2' <= c && c <= '7' }

// checkPrefix checks a stored lookup prefix.
func checkPrefix(field, p string) error {
	if len(p) != prefixLen {
		return fieldErr(field, "%d characters, want %d", len(p), prefixLen)
	}
	for i := 0; i < len(p); i++ {
		if !isB32(p[i]) {
			return fieldErr(field, "character at %d is not lowercase base32", i)
		}
	}
	return nil
}

// HashMatches reports, in constant time, whether hash is k's token hash.
func (k *APIKey) HashMatches(hash []byte) bool {
	return len(k.Hash) == hashLen && subtle.ConstantTimeCompare(k.Hash, hash) == 1
}

// Authenticate returns the key a bearer token belongs to. Every failure —
// malformed, unknown, wrong secret — is ErrInvalidToken, and a revoked key
// is ErrRevoked (which matches ErrInvalidToken too); other errors are the
// store's. No error contains the token.
func Authenticate(ctx context.Context, s Store, token string) (APIKey, error) {
	prefix, hash, err := ParseAPIToken(token)
	if err != nil {
		return APIKey{}, err
	}
	k, err := s.GetAPIKeyByPrefix(ctx, prefix)
	if errors.Is(err, ErrNotFound) {
		return APIKey{}, fmt.Errorf("%w: unknown key", ErrInvalidToken)
	}
	if err != nil {
		return APIKey{}, fmt.Errorf("store: authenticate: %w", err)
	}
	if !k.HashMatches(hash) {
		return APIKey{}, fmt.Errorf("%w: secret does not match", ErrInvalidToken)
	}
	if k.RevokedAt != nil {
		return APIKey{}, ErrRevoked
	}
	return k, nil
}

// NewID returns prefix + "_" + 128 random bits in lowercase base32, e.g.
// NewID("tc") = "tc_…". prefix is 1 to 16 lowercase letters or digits.
func NewID(prefix string) (string, error) {
	if prefix == "" || len(prefix) > maxIDPrefixLen {
		return "", fmt.Errorf("store: new id: prefix %q: want 1 to %d characters", prefix, maxIDPrefixLen)
	}
	for i := 0; i < len(prefix); i++ {
		if c := prefix[i]; !('a' <= c && c <= 'z' || '0' <= c && c <= '9') {
			return "", fmt.Errorf("store: new id: prefix %q: character %q is not a lowercase letter or digit", prefix, c)
		}
	}
	var b [idRandomBytes]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("store: new id: %w", err)
	}
	return prefix + "_" + b32.EncodeToString(b[:]), nil
}
