package keys

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// Master is what unlocks a keyring file: a passphrase (stretched with
// Argon2id) or a raw 32-byte master key. Which kind a file needs is
// recorded in the file.
type Master struct {
	passphrase []byte
	key        []byte
}

// Passphrase returns a Master from a passphrase, which must not be empty.
func Passphrase(p []byte) (Master, error) {
	if len(bytes.TrimSpace(p)) == 0 {
		return Master{}, errors.New("keys: passphrase is empty")
	}
	return Master{passphrase: bytes.Clone(p)}, nil
}

// RawMasterKey returns a Master from a MasterKeySize-byte key.
func RawMasterKey(k []byte) (Master, error) {
	if len(k) != MasterKeySize {
		return Master{}, fmt.Errorf("keys: master key is %d bytes, want %d", len(k), MasterKeySize)
	}
	return Master{key: bytes.Clone(k)}, nil
}

// Wipe clears the secret held by m.
func (m *Master) Wipe() {
	clear(m.passphrase)
	clear(m.key)
}

func (m Master) kind() byte {
	if m.key != nil {
		return masterRawKey
	}
	return masterArgon2id
}

// MasterKeySize is the length of a raw master key.
const MasterKeySize = 32

// MasterKeyPrefix starts the text form of a raw master key, as kept in a
// key file or in the TENSAFE_MASTER_KEY environment variable.
const MasterKeyPrefix = "tensafe-master-v1:"

// GenerateMasterKey returns the text form of a new random master key.
func GenerateMasterKey() (string, error) {
	k := make([]byte, MasterKeySize)
	if _, err := rand.Read(k); err != nil {
		return "", fmt.Errorf("keys: generate master key: %w", err)
	}
	defer clear(k)
	return MasterKeyPrefix + base64.RawURLEncoding.EncodeToString(k), nil
}

// ParseMasterKey decodes the text form of a master key (white space around
// it is ignored) into a Master. Errors never quote the input.
func ParseMasterKey(s string) (Master, error) {
	rest, ok := strings.CutPrefix(strings.TrimSpace(s), MasterKeyPrefix)
	if !ok {
		return Master{}, fmt.Errorf("keys: master key must start with %q", MasterKeyPrefix)
	}
	k, err := base64.RawURLEncoding.Strict().DecodeString(rest)
	if err != nil {
		return Master{}, fmt.Errorf("keys: master key after %q is not unpadded base64url", MasterKeyPrefix)
	}
	defer clear(k)
	return RawMasterKey(k)
}

// Argon2Params are the Argon2id cost parameters of a passphrase-sealed
// keyring, recorded in its file.
type Argon2Params struct {
	Time      uint32 // passes
	MemoryKiB uint32
	Threads   uint8
}

// DefaultArgon2 is the second recommended option of RFC 9106 §4:
// t=3, m=64 MiB, p=4.
var DefaultArgon2 = Argon2Params{Time: 3, MemoryKiB: 64 << 10, Threads: 4}

// Limits on parameters read from a file, so that a crafted file cannot make
// opening it take unbounded time or memory.
const (
	maxArgon2Time      = 64
	maxArgon2MemoryKiB = 4 << 20 // 4 GiB
)

func (p Argon2Params) check() error {
	switch {
	case p.Time < 1 || p.Time > maxArgon2Time:
		return fmt.Errorf("argon2 time %d out of range 1..%d", p.Time, maxArgon2Time)
	case p.Threads < 1:
		return errors.New("argon2 threads must be at least 1")
	case p.MemoryKiB < 8*uint32(p.Threads) || p.MemoryKiB > maxArgon2MemoryKiB:
		return fmt.Errorf("argon2 memory %d KiB out of range %d..%d", p.MemoryKiB, 8*uint32(p.Threads), maxArgon2MemoryKiB)
	}
	return nil
}
