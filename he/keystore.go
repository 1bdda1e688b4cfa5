package he

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"sync"
	"time"
)

// Key states in a KeyStore.
const (
	KeyActive  = "active"
	KeyRetired = "retired"
)

var (
	// ErrKeyNotFound: no such key id for the tenant.
	ErrKeyNotFound = errors.New("he: key not found")
	// ErrKeyRetired: the key was rotated out; new work must use the active key.
	ErrKeyRetired = errors.New("he: key retired")
)

// KeyInfo describes a stored evaluation-key bundle.
type KeyInfo struct {
	ID           string       `json:"id"`
	State        string       `json:"state"`
	Params       string       `json:"params"`
	Capabilities Capabilities `json:"capabilities"`
	Created      time.Time    `json:"created"`
	Stored       time.Time    `json:"stored"`
	Retired      *time.Time   `json:"retired,omitempty"`
	Bytes        int          `json:"bytes"`
}

// KeyStore keeps tenants' evaluation-key bundles on disk, each sealed with
// the Wrapper (the tenant KEK) under associated data that binds tenant and
// key id. One key per tenant is active; putting a new one retires the old
// (rotation). Safe for concurrent use within one process.
//
// Layout: dir/<tenant>/index.json (plaintext metadata: ids, states, times)
// and dir/<tenant>/<key id>.evk (sealed CBOR key bundle).
type KeyStore struct {
	dir string
	w   Wrapper
	mu  sync.Mutex
}

var tenantPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)

// OpenKeyStore opens (creating if needed) a key store in dir.
func OpenKeyStore(dir string, w Wrapper) (*KeyStore, error) {
	if w == nil {
		return nil, errors.New("he: key store: wrapper is nil")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("he: key store: %w", err)
	}
	return &KeyStore{dir: dir, w: w}, nil
}

func evkAAD(tenant, id string) []byte { return []byte(evkKind + "/v1/" + tenant + "/" + id) }

func (s *KeyStore) tenantDir(tenant string) (string, error) {
	if !tenantPattern.MatchString(tenant) {
		return "", fmt.Errorf("he: key store: tenant %q must match %s", tenant, tenantPattern)
	}
	return filepath.Join(s.dir, tenant), nil
}

func (s *KeyStore) readIndex(dir string) ([]KeyInfo, error) {
	b, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var idx []KeyInfo
	if err := json.Unmarshal(b, &idx); err != nil {
		return nil, fmt.Errorf("index: %w", err)
	}
	return idx, nil
}

func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
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
	return os.Rename(tmp.Name(), path)
}

func (s *KeyStore) writeIndex(dir string, idx []KeyInfo) error {
	b, err := json.MarshalIndent(idx, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, "index.json"), b)
}

// Put stores k for tenant as the active key and retires the previously
// active one. Putting an id that is already stored is an error.
func (s *KeyStore) Put(ctx context.Context, tenant string, k *EvaluationKeys) error {
	dir, err := s.tenantDir(tenant)
	if err != nil {
		return err
	}
	if !ValidKeyID(k.ID) {
		return fmt.Errorf("he: key store: key id %q is malformed", k.ID)
	}
	raw, err := k.MarshalBinary()
	if err != nil {
		return fmt.Errorf("he: key store: %w", err)
	}
	sealed, err := s.w.Wrap(ctx, raw, evkAAD(tenant, k.ID))
	if err != nil {
		return fmt.Errorf("he: key store: wrap: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("he: key store: %w", err)
	}
	idx, err := s.readIndex(dir)
	if err != nil {
		return fmt.Errorf("he: key store: %w", err)
	}
	for _, ki := range idx {
		if ki.ID == k.ID {
			return fmt.Errorf("he: key store: key %s already stored for tenant %s", k.ID, tenant)
		}
	}
	if err := writeFileAtomic(filepath.Join(dir, k.ID+".evk"), sealed); err != nil {
		return fmt.Errorf("he: key store: %w", err)
	}
	now := time.Now().UTC().Truncate(time.Second)
	for i := range idx {
		if idx[i].State == KeyActive {
			idx[i].State = KeyRetired
			idx[i].Retired = &now
		}
	}
	idx = append(idx, KeyInfo{ID: k.ID, State: KeyActive, Params: k.Params.name, Capabilities: k.Capabilities,
		Created: k.Created, Stored: now, Bytes: len(raw)})
	if err := s.writeIndex(dir, idx); err != nil {
		os.Remove(filepath.Join(dir, k.ID+".evk"))
		return fmt.Errorf("he: key store: %w", err)
	}
	return nil
}

// List returns the tenant's keys, oldest first.
func (s *KeyStore) List(ctx context.Context, tenant string) ([]KeyInfo, error) {
	dir, err := s.tenantDir(tenant)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	idx, err := s.readIndex(dir)
	if err != nil {
		return nil, fmt.Errorf("he: key store: %w", err)
	}
	sort.SliceStable(idx, func(i, j int) bool { return idx[i].Stored.Before(idx[j].Stored) })
	return idx, nil
}

// Get loads, unseals and verifies a key bundle. Retired keys load too (for
// inspection and export); Evaluator refuses them via ForEvaluation.
func (s *KeyStore) Get(ctx context.Context, tenant, id string) (*EvaluationKeys, KeyInfo, error) {
	dir, err := s.tenantDir(tenant)
	if err != nil {
		return nil, KeyInfo{}, err
	}
	if !ValidKeyID(id) {
		return nil, KeyInfo{}, fmt.Errorf("he: key store: key id %q is malformed", id)
	}
	s.mu.Lock()
	idx, err := s.readIndex(dir)
	s.mu.Unlock()
	if err != nil {
		return nil, KeyInfo{}, fmt.Errorf("he: key store: %w", err)
	}
	var info *KeyInfo
	for i := range idx {
		if idx[i].ID == id {
			info = &idx[i]
		}
	}
	if info == nil {
		return nil, KeyInfo{}, fmt.Errorf("%w: %s for tenant %s", ErrKeyNotFound, id, tenant)
	}
	sealed, err := os.ReadFile(filepath.Join(dir, id+".evk"))
	if err != nil {
		return nil, KeyInfo{}, fmt.Errorf("he: key store: %w", err)
	}
	raw, err := s.w.Unwrap(ctx, sealed, evkAAD(tenant, id))
	if err != nil {
		return nil, KeyInfo{}, fmt.Errorf("he: key store: unwrap %s: %w", id, err)
	}
	k, err := UnmarshalEvaluationKeys(raw, 0)
	if err != nil {
		return nil, KeyInfo{}, fmt.Errorf("he: key store: %s: %w", id, err)
	}
	if k.ID != id {
		return nil, KeyInfo{}, fmt.Errorf("he: key store: file for %s holds key %s", id, k.ID)
	}
	return k, *info, nil
}

// ForEvaluation loads a key for new work: it must exist and be active.
func (s *KeyStore) ForEvaluation(ctx context.Context, tenant, id string) (*EvaluationKeys, error) {
	k, info, err := s.Get(ctx, tenant, id)
	if err != nil {
		return nil, err
	}
	if info.State != KeyActive {
		return nil, fmt.Errorf("%w: %s for tenant %s", ErrKeyRetired, id, tenant)
	}
	return k, nil
}

// Active returns the tenant's active key id.
func (s *KeyStore) Active(ctx context.Context, tenant string) (string, error) {
	idx, err := s.List(ctx, tenant)
	if err != nil {
		return "", err
	}
	for _, ki := range idx {
		if ki.State == KeyActive {
			return ki.ID, nil
		}
	}
	return "", fmt.Errorf("%w: no active key for tenant %s", ErrKeyNotFound, tenant)
}

// Delete removes a retired key. The active key cannot be deleted; rotate first.
func (s *KeyStore) Delete(ctx context.Context, tenant, id string) error {
	dir, err := s.tenantDir(tenant)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	idx, err := s.readIndex(dir)
	if err != nil {
		return fmt.Errorf("he: key store: %w", err)
	}
	for i, ki := range idx {
		if ki.ID != id {
			continue
		}
		if ki.State == KeyActive {
			return fmt.Errorf("he: key store: key %s is active; rotate before deleting", id)
		}
		rest := append(idx[:i:i], idx[i+1:]...)
		if err := s.writeIndex(dir, rest); err != nil {
			return fmt.Errorf("he: key store: %w", err)
		}
		if err := os.Remove(filepath.Join(dir, id+".evk")); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("he: key store: %w", err)
		}
		return nil
	}
	return fmt.Errorf("%w: %s for tenant %s", ErrKeyNotFound, id, tenant)
}
