package keys

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"golang.org/x/crypto/argon2"

	"github.com/tensafe/tensafe/seal"
)

// Keyring file layout (docs/KEYS.md):
//
//	magic "TSKR" | version 1 | master kind (1 Argon2id, 2 raw key) |
//	salt (16) | argon2 time u32 | argon2 memory KiB u32 | argon2 threads u8 |
//	nonce (12) | AES-256-GCM(file key, nonce, JSON body, ad = the 43 bytes before)
//
// file key = HKDF-SHA256(ikm = Argon2id(passphrase) or the raw master key,
// salt = salt, info = "tensafe keyring v1 file key").
const (
	keyringVersion  = 1
	masterArgon2id  = 1
	masterRawKey    = 2
	fileSaltSize    = 16
	fileNonceSize   = 12
	fileHeaderLen   = 4 + 1 + 1 + fileSaltSize + 4 + 4 + 1 + fileNonceSize
	maxKeyringBytes = 64 << 20
)

var keyringMagic = [4]byte{'T', 'S', 'K', 'R'}

// Errors about the keyring file.
var (
	// ErrWrongMaster: the passphrase or master key does not open the file
	// (or the file was altered).
	ErrWrongMaster = errors.New("keys: wrong passphrase or master key, or the keyring file was altered")
	// ErrExists: CreateKeyring found a file already there.
	ErrExists = errors.New("keys: keyring file already exists")
)

// state is the decrypted body of a keyring file.
type state struct {
	Format  int                     `json:"format"`
	Created time.Time               `json:"created"`
	Tenants map[string]*tenantState `json:"tenants"`
}

type tenantState struct {
	Current  uint32        `json:"current"`
	Versions []*kekVersion `json:"versions"`
	Shredded *time.Time    `json:"shredded,omitempty"`
}

type kekVersion struct {
	Version uint32     `json:"version"`
	Key     []byte     `json:"key,omitempty"` // nil once retired or shredded
	Created time.Time  `json:"created"`
	Retired *time.Time `json:"retired,omitempty"`
}

func (t *tenantState) version(v uint32) *kekVersion {
	for _, kv := range t.Versions {
		if kv.Version == v {
			return kv
		}
	}
	return nil
}

func (s *state) wipe() {
	if s == nil {
		return
	}
	for _, t := range s.Tenants {
		for _, v := range t.Versions {
			clear(v.Key)
		}
	}
}

// fileHeader holds the cleartext parameters at the start of a keyring file.
type fileHeader struct {
	kind   byte
	salt   [fileSaltSize]byte
	argon2 Argon2Params
}

func (h *fileHeader) encode(nonce []byte) []byte {
	b := make([]byte, 0, fileHeaderLen)
	b = append(b, keyringMagic[:]...)
	b = append(b, keyringVersion, h.kind)
	b = append(b, h.salt[:]...)
	b = binary.BigEndian.AppendUint32(b, h.argon2.Time)
	b = binary.BigEndian.AppendUint32(b, h.argon2.MemoryKiB)
	b = append(b, h.argon2.Threads)
	return append(b, nonce...)
}

func parseFileHeader(b []byte) (*fileHeader, error) {
	if len(b) < fileHeaderLen+16 {
		return nil, fmt.Errorf("file is %d bytes, too short for a keyring", len(b))
	}
	if !bytes.Equal(b[:4], keyringMagic[:]) {
		return nil, errors.New("not a TenSafe keyring file (bad magic)")
	}
	if b[4] != keyringVersion {
		return nil, fmt.Errorf("keyring format version %d (this build reads version %d)", b[4], keyringVersion)
	}
	h := &fileHeader{kind: b[5]}
	copy(h.salt[:], b[6:])
	off := 6 + fileSaltSize
	h.argon2 = Argon2Params{
		Time:      binary.BigEndian.Uint32(b[off:]),
		MemoryKiB: binary.BigEndian.Uint32(b[off+4:]),
		Threads:   b[off+8],
	}
	switch h.kind {
	case masterArgon2id:
		if err := h.argon2.check(); err != nil {
			return nil, err
		}
	case masterRawKey:
		if h.argon2 != (Argon2Params{}) {
			return nil, errors.New("raw-key keyring has Argon2 parameters")
		}
	default:
		return nil, fmt.Errorf("unknown master kind %d", h.kind)
	}
	return h, nil
}

func deriveFileKey(h *fileHeader, m Master) ([]byte, error) {
	var ikm []byte
	switch {
	case h.kind == masterArgon2id && m.passphrase != nil:
		ikm = argon2.IDKey(m.passphrase, h.salt[:], h.argon2.Time, h.argon2.MemoryKiB, h.argon2.Threads, 32)
		defer clear(ikm)
	case h.kind == masterRawKey && m.key != nil:
		ikm = m.key
	case h.kind == masterArgon2id:
		return nil, errors.New("keyring is sealed with a passphrase, but a raw master key was given")
	default:
		return nil, errors.New("keyring is sealed with a raw master key, but a passphrase was given")
	}
	return hkdf.Key(sha256.New, ikm, h.salt[:], "tensafe keyring v1 file key", 32)
}

// Keyring is the local Provider: tenants' KEKs in one sealed file. It is
// safe for concurrent use, and several processes may share the file: each
// change is made under an exclusive lock on PATH.lock after re-reading the
// file, and readers reload when the file has changed.
type Keyring struct {
	path    string
	mu      sync.Mutex
	hdr     *fileHeader
	fileKey []byte
	st      *state
	stamp   fileStamp // of the file st was read from
	now     func() time.Time
}

// fileStamp tells whether the keyring file changed since it was read: every
// save renames a new file into place, so the inode changes.
type fileStamp struct {
	id      uint64
	size    int64
	modTime int64
}

func stampOf(fi fs.FileInfo) fileStamp {
	return fileStamp{fileID(fi), fi.Size(), fi.ModTime().UnixNano()}
}

// Options tune CreateKeyring.
type Options struct {
	// Argon2 sets the cost of a passphrase-sealed keyring; zero means
	// DefaultArgon2.
	Argon2 Argon2Params
}

var _ Provider = (*Keyring)(nil)

// CreateKeyring creates a new, empty keyring file at path (mode 0600; the
// directory is created with mode 0700 if missing) sealed by m.
func CreateKeyring(ctx context.Context, path string, m Master, opts *Options) (*Keyring, error) {
	h := &fileHeader{kind: m.kind()}
	if h.kind == masterArgon2id {
		h.argon2 = DefaultArgon2
		if opts != nil && opts.Argon2 != (Argon2Params{}) {
			h.argon2 = opts.Argon2
		}
		if err := h.argon2.check(); err != nil {
			return nil, fmt.Errorf("keys: create keyring: %w", err)
		}
	}
	if _, err := rand.Read(h.salt[:]); err != nil {
		return nil, fmt.Errorf("keys: create keyring: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("keys: create keyring: %w", err)
	}
	fk, err := deriveFileKey(h, m)
	if err != nil {
		return nil, fmt.Errorf("keys: create keyring: %w", err)
	}
	k := &Keyring{path: path, hdr: h, fileKey: fk, now: func() time.Time { return time.Now().UTC() }}
	unlock, err := lockFile(ctx, path)
	if err != nil {
		return nil, fmt.Errorf("keys: create keyring: %w", err)
	}
	defer unlock()
	if _, err := os.Lstat(path); err == nil {
		return nil, fmt.Errorf("%w: %s", ErrExists, path)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("keys: create keyring: %w", err)
	}
	st := &state{Format: keyringVersion, Created: k.now(), Tenants: map[string]*tenantState{}}
	if err := k.save(st); err != nil {
		return nil, fmt.Errorf("keys: create keyring: %w", err)
	}
	return k, nil
}

// OpenKeyring opens the keyring file at path with m. It refuses a file that
// others than its owner can read or write.
func OpenKeyring(ctx context.Context, path string, m Master) (*Keyring, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("keys: open keyring: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("keys: open keyring: %s has mode %04o; it must be readable by its owner only (chmod 600)", path, fi.Mode().Perm())
	}
	raw, err := readLimited(path)
	if err != nil {
		return nil, fmt.Errorf("keys: open keyring: %w", err)
	}
	h, err := parseFileHeader(raw)
	if err != nil {
		return nil, fmt.Errorf("keys: open keyring %s: %w", path, err)
	}
	fk, err := deriveFileKey(h, m)
	if err != nil {
		return nil, fmt.Errorf("keys: open keyring %s: %w", path, err)
	}
	k := &Keyring{path: path, hdr: h, fileKey: fk, now: func() time.Time { return time.Now().UTC() }}
	st, err := k.decrypt(raw)
	if err != nil {
		clear(fk)
		return nil, fmt.Errorf("keys: open keyring %s: %w", path, err)
	}
	k.st, k.stamp = st, stampOf(fi)
	return k, nil
}

// Path returns the keyring file's path.
func (k *Keyring) Path() string { return k.path }

// Close forgets the key material held in memory.
func (k *Keyring) Close() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.st.wipe()
	k.st = nil
	clear(k.fileKey)
	return nil
}

func readLimited(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxKeyringBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxKeyringBytes {
		return nil, fmt.Errorf("keyring file exceeds %d bytes", maxKeyringBytes)
	}
	return b, nil
}

func (k *Keyring) aead() (cipher.AEAD, error) {
	b, err := aes.NewCipher(k.fileKey)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

func (k *Keyring) decrypt(raw []byte) (*state, error) {
	h, err := parseFileHeader(raw)
	if err != nil {
		return nil, err
	}
	if h.kind != k.hdr.kind || h.salt != k.hdr.salt || h.argon2 != k.hdr.argon2 {
		return nil, errors.New("keyring file was replaced by another keyring; open it again")
	}
	g, err := k.aead()
	if err != nil {
		return nil, err
	}
	body, err := g.Open(nil, raw[fileHeaderLen-fileNonceSize:fileHeaderLen], raw[fileHeaderLen:], raw[:fileHeaderLen])
	if err != nil {
		return nil, ErrWrongMaster
	}
	defer clear(body)
	var st state
	if err := json.Unmarshal(body, &st); err != nil {
		return nil, fmt.Errorf("keyring body: %w", err)
	}
	if st.Format != keyringVersion || st.Tenants == nil {
		return nil, fmt.Errorf("keyring body format %d unsupported", st.Format)
	}
	return &st, nil
}

// save encrypts st to a temporary file and renames it over the keyring, so
// that a crash leaves either the old or the new file, never a torn one.
func (k *Keyring) save(st *state) error {
	body, err := json.Marshal(st)
	if err != nil {
		return err
	}
	defer clear(body)
	nonce := make([]byte, fileNonceSize)
	if _, err := rand.Read(nonce); err != nil {
		return err
	}
	g, err := k.aead()
	if err != nil {
		return err
	}
	hdr := k.hdr.encode(nonce)
	out := g.Seal(hdr, nonce, body, hdr)

	dir := filepath.Dir(k.path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(k.path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(out); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), k.path); err != nil {
		return err
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	fi, err := os.Stat(k.path)
	if err != nil {
		return err
	}
	if k.st != nil && k.st != st {
		k.st.wipe()
	}
	k.st, k.stamp = st, stampOf(fi)
	return nil
}

// refresh reloads the file if another process changed it. k.mu is held.
func (k *Keyring) refresh() error {
	if k.st == nil {
		return errors.New("keyring is closed")
	}
	fi, err := os.Stat(k.path)
	if err != nil {
		return err
	}
	if stampOf(fi) == k.stamp {
		return nil
	}
	raw, err := readLimited(k.path)
	if err != nil {
		return err
	}
	st, err := k.decrypt(raw)
	if err != nil {
		return err
	}
	k.st.wipe()
	k.st, k.stamp = st, stampOf(fi)
	return nil
}

// view runs f on the current state.
func (k *Keyring) view(ctx context.Context, op string, f func(*state) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("keys: %s: %w", op, err)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.refresh(); err != nil {
		return fmt.Errorf("keys: %s: %w", op, err)
	}
	return f(k.st)
}

// update runs f on a fresh copy of the state under the file lock and saves
// the result; when f fails nothing is written and nothing changes.
func (k *Keyring) update(ctx context.Context, op string, f func(*state) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("keys: %s: %w", op, err)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	unlock, err := lockFile(ctx, k.path)
	if err != nil {
		return fmt.Errorf("keys: %s: %w", op, err)
	}
	defer unlock()
	if err := k.refresh(); err != nil {
		return fmt.Errorf("keys: %s: %w", op, err)
	}
	st, err := k.st.clone()
	if err != nil {
		return fmt.Errorf("keys: %s: %w", op, err)
	}
	if err := f(st); err != nil {
		st.wipe()
		return err
	}
	if err := k.save(st); err != nil {
		st.wipe()
		return fmt.Errorf("keys: %s: save keyring: %w", op, err)
	}
	return nil
}

func (s *state) clone() (*state, error) {
	b, err := json.Marshal(s)
	if err != nil {
		return nil, err
	}
	defer clear(b)
	var c state
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, err
	}
	return &c, nil
}

func (k *Keyring) newVersion(t *tenantState) error {
	kek := make([]byte, KEKSize)
	if _, err := rand.Read(kek); err != nil {
		return err
	}
	t.Current++
	t.Versions = append(t.Versions, &kekVersion{Version: t.Current, Key: kek, Created: k.now()})
	return nil
}

func checkTenant(op, tenant string) error {
	if err := CheckTenantID(tenant); err != nil {
		return fmt.Errorf("keys: %s: %w", op, err)
	}
	return nil
}

// AddTenant creates version 1 of tenant's KEK. It fails if the tenant
// already has one or was shredded.
func (k *Keyring) AddTenant(ctx context.Context, tenant string) error {
	if err := checkTenant("add tenant", tenant); err != nil {
		return err
	}
	return k.update(ctx, "add tenant", func(st *state) error {
		if t, ok := st.Tenants[tenant]; ok {
			if t.Shredded != nil {
				return fmt.Errorf("keys: add tenant %q: %w", tenant, ErrShredded)
			}
			return fmt.Errorf("keys: add tenant %q: tenant already has a KEK", tenant)
		}
		t := &tenantState{}
		if err := k.newVersion(t); err != nil {
			return fmt.Errorf("keys: add tenant %q: %w", tenant, err)
		}
		st.Tenants[tenant] = t
		return nil
	})
}

// NewDEK implements Provider. A tenant without a KEK gets version 1.
func (k *Keyring) NewDEK(ctx context.Context, tenant string) ([]byte, WrappedKey, error) {
	if err := checkTenant("new DEK", tenant); err != nil {
		return nil, WrappedKey{}, err
	}
	var kek []byte
	var ver uint32
	find := func(st *state) error {
		t, ok := st.Tenants[tenant]
		if !ok {
			return ErrUnknownTenant
		}
		if t.Shredded != nil {
			return fmt.Errorf("keys: new DEK for %q: %w", tenant, ErrShredded)
		}
		kv := t.version(t.Current)
		kek, ver = bytes.Clone(kv.Key), kv.Version
		return nil
	}
	err := k.view(ctx, "new DEK", find)
	if errors.Is(err, ErrUnknownTenant) {
		err = k.update(ctx, "new DEK", func(st *state) error {
			if _, ok := st.Tenants[tenant]; !ok {
				t := &tenantState{}
				if err := k.newVersion(t); err != nil {
					return fmt.Errorf("keys: new DEK for %q: %w", tenant, err)
				}
				st.Tenants[tenant] = t
			}
			return find(st)
		})
	}
	if err != nil {
		return nil, WrappedKey{}, err
	}
	defer clear(kek)
	dek := make([]byte, seal.DEKSize)
	if _, err := rand.Read(dek); err != nil {
		return nil, WrappedKey{}, fmt.Errorf("keys: new DEK for %q: %w", tenant, err)
	}
	w, err := wrapDEK(kek, dek)
	if err != nil {
		clear(dek)
		return nil, WrappedKey{}, fmt.Errorf("keys: new DEK for %q: wrap: %w", tenant, err)
	}
	return dek, WrappedKey{KeyID: KeyIDFor(tenant), KEKVersion: ver, Wrapped: w}, nil
}

// kekFor returns a copy of the KEK version that wrapped w.
func (k *Keyring) kekFor(ctx context.Context, op, tenant string, w WrappedKey) ([]byte, error) {
	if err := checkTenant(op, tenant); err != nil {
		return nil, err
	}
	if w.KeyID != KeyIDFor(tenant) {
		return nil, fmt.Errorf("keys: %s: key id %q is not tenant %q's: %w", op, w.KeyID, tenant, ErrWrongTenant)
	}
	var kek []byte
	err := k.view(ctx, op, func(st *state) error {
		t, ok := st.Tenants[tenant]
		if !ok {
			return fmt.Errorf("keys: %s: tenant %q: %w", op, tenant, ErrUnknownTenant)
		}
		if t.Shredded != nil {
			return fmt.Errorf("keys: %s: tenant %q: %w", op, tenant, ErrShredded)
		}
		kv := t.version(w.KEKVersion)
		if kv == nil || kv.Key == nil {
			return fmt.Errorf("keys: %s: tenant %q KEK version %d: %w", op, tenant, w.KEKVersion, ErrUnknownVersion)
		}
		kek = bytes.Clone(kv.Key)
		return nil
	})
	return kek, err
}

// Unwrap implements Provider.
func (k *Keyring) Unwrap(ctx context.Context, tenant string, w WrappedKey) ([]byte, error) {
	kek, err := k.kekFor(ctx, "unwrap", tenant, w)
	if err != nil {
		return nil, err
	}
	defer clear(kek)
	dek, err := unwrapDEK(kek, w.Wrapped)
	if err != nil {
		return nil, fmt.Errorf("keys: unwrap for tenant %q KEK version %d: %w", tenant, w.KEKVersion, err)
	}
	return dek, nil
}

// Rewrap implements Provider.
func (k *Keyring) Rewrap(ctx context.Context, tenant string, w WrappedKey) (WrappedKey, error) {
	dek, err := k.Unwrap(ctx, tenant, w)
	if err != nil {
		return WrappedKey{}, err
	}
	defer clear(dek)
	var kek []byte
	var ver uint32
	err = k.view(ctx, "rewrap", func(st *state) error {
		t := st.Tenants[tenant]
		if t == nil || t.Shredded != nil {
			return fmt.Errorf("keys: rewrap: tenant %q: %w", tenant, ErrShredded)
		}
		kv := t.version(t.Current)
		kek, ver = bytes.Clone(kv.Key), kv.Version
		return nil
	})
	if err != nil {
		return WrappedKey{}, err
	}
	defer clear(kek)
	if ver == w.KEKVersion {
		return w, nil
	}
	nw, err := wrapDEK(kek, dek)
	if err != nil {
		return WrappedKey{}, fmt.Errorf("keys: rewrap for tenant %q: %w", tenant, err)
	}
	return WrappedKey{KeyID: KeyIDFor(tenant), KEKVersion: ver, Wrapped: nw}, nil
}

// Rotate adds a new KEK version for tenant and makes it current; new DEKs
// are wrapped under it, and older versions still unwrap until retired.
func (k *Keyring) Rotate(ctx context.Context, tenant string) (uint32, error) {
	if err := checkTenant("rotate", tenant); err != nil {
		return 0, err
	}
	var ver uint32
	err := k.update(ctx, "rotate", func(st *state) error {
		t, ok := st.Tenants[tenant]
		if !ok {
			return fmt.Errorf("keys: rotate: tenant %q: %w", tenant, ErrUnknownTenant)
		}
		if t.Shredded != nil {
			return fmt.Errorf("keys: rotate: tenant %q: %w", tenant, ErrShredded)
		}
		if err := k.newVersion(t); err != nil {
			return fmt.Errorf("keys: rotate %q: %w", tenant, err)
		}
		ver = t.Current
		return nil
	})
	return ver, err
}

// Retire destroys KEK version v of tenant, which must not be the current
// one. DEKs still wrapped under it become unreadable: re-wrap them first.
func (k *Keyring) Retire(ctx context.Context, tenant string, v uint32) error {
	if err := checkTenant("retire", tenant); err != nil {
		return err
	}
	return k.update(ctx, "retire", func(st *state) error {
		t, ok := st.Tenants[tenant]
		if !ok {
			return fmt.Errorf("keys: retire: tenant %q: %w", tenant, ErrUnknownTenant)
		}
		if t.Shredded != nil {
			return fmt.Errorf("keys: retire: tenant %q: %w", tenant, ErrShredded)
		}
		kv := t.version(v)
		if kv == nil || kv.Key == nil {
			return fmt.Errorf("keys: retire: tenant %q version %d: %w", tenant, v, ErrUnknownVersion)
		}
		if v == t.Current {
			return fmt.Errorf("keys: retire: version %d is tenant %q's current KEK; rotate first", v, tenant)
		}
		clear(kv.Key)
		kv.Key = nil
		now := k.now()
		kv.Retired = &now
		return nil
	})
}

// Shred destroys every KEK version of tenant: all of its artifacts become
// unreadable, and no new DEK is issued for it. A tombstone stays so that
// the tenant id is not silently given a fresh KEK.
func (k *Keyring) Shred(ctx context.Context, tenant string) error {
	if err := checkTenant("shred", tenant); err != nil {
		return err
	}
	return k.update(ctx, "shred", func(st *state) error {
		t, ok := st.Tenants[tenant]
		if !ok {
			return fmt.Errorf("keys: shred: tenant %q: %w", tenant, ErrUnknownTenant)
		}
		if t.Shredded != nil {
			return fmt.Errorf("keys: shred: tenant %q: %w", tenant, ErrShredded)
		}
		now := k.now()
		for _, kv := range t.Versions {
			clear(kv.Key)
			kv.Key = nil
			if kv.Retired == nil {
				kv.Retired = &now
			}
		}
		t.Shredded = &now
		return nil
	})
}

// TenantInfo describes a tenant's KEKs without revealing them.
type TenantInfo struct {
	Tenant   string
	KeyID    string
	Current  uint32
	Versions []VersionInfo
	Shredded time.Time // zero unless shredded
}

// VersionInfo describes one KEK version.
type VersionInfo struct {
	Version uint32
	Created time.Time
	Retired time.Time // zero while the version can unwrap
}

// List describes every tenant in the keyring, sorted by tenant id.
func (k *Keyring) List(ctx context.Context) ([]TenantInfo, error) {
	var out []TenantInfo
	err := k.view(ctx, "list", func(st *state) error {
		for name, t := range st.Tenants {
			ti := TenantInfo{Tenant: name, KeyID: KeyIDFor(name), Current: t.Current}
			if t.Shredded != nil {
				ti.Shredded = *t.Shredded
			}
			for _, kv := range t.Versions {
				vi := VersionInfo{Version: kv.Version, Created: kv.Created}
				if kv.Retired != nil {
					vi.Retired = *kv.Retired
				}
				ti.Versions = append(ti.Versions, vi)
			}
			out = append(out, ti)
		}
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Tenant < out[j].Tenant })
	return out, err
}
