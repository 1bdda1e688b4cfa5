package service

// The HE evaluator cache. Unsealing, decoding and validating a key bundle
// with the Galois keys of a d = 4096 adapter costs hundreds of milliseconds,
// far more than the homomorphic work of a small interleaved request, and
// encoding an adapter's diagonals or a model's matrices is the next cost.
// The cache keeps, per tenant and evaluation-key artifact, a ready
// he.Evaluator with the adapters and models that requests needed already
// registered on it.
//
// Correctness does not depend on invalidation: every call still lists the
// tenant's artifacts and finds the active key, the adapters and the model
// it names in the store, and an entry is looked up by tenant, key id,
// artifact id and content hash, and registrations inside it by artifact id
// and content hash. A deleted, retired or replaced object is therefore never
// used (the call answers 404 or 409 exactly as without a cache). Deletion,
// rotation and replacement also drop what the cache holds for them, so that
// memory is given back at once rather than by LRU eviction.
//
// Registrations are immutable: an adapter or model is registered on the
// evaluator under its artifact id (not its name), so a replacement never
// changes what a request in flight uses. he.Evaluator is safe for
// concurrent use (evaluation takes a Lattigo ShallowCopy of the CKKS
// evaluator per worker), so requests share an entry's evaluator; only
// registrations are serialized, by the entry's mutex. Dropping the stale
// registrations of an entry swaps in a fresh evaluator over the same decoded
// keys; requests in flight keep the old one.
//
// The cache never holds a secret key: he.EvaluationKeys has public,
// relinearization and Galois keys only.

import (
	"container/list"
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/tensafe/tensafe/he"
	"github.com/tensafe/tensafe/store"
)

// Bounds of the HE evaluator cache.
const (
	// heCacheEntries bounds the cached evaluators (key artifacts).
	heCacheEntries = 16
	// heCacheBytes bounds the cache's footprint, counted as the stored
	// sizes of the key bundles and of the registered adapters and models
	// (the decoded, pre-encoded forms are of the same order).
	heCacheBytes = 2 << 30
	// heCacheRegistrations bounds the adapters and models registered on one
	// evaluator; beyond it the evaluator is replaced by a fresh one.
	heCacheRegistrations = 256
)

// heCacheKey names a cached evaluator: the tenant, its key and the exact
// artifact holding it. full is false for the keyless evaluator of the
// feature-major packing.
type heCacheKey struct {
	tenant, keyID, artifactID, contentHash string
	full                                   bool
}

// heReg is an adapter or model registered on an entry's evaluator under its
// artifact id.
type heReg struct {
	kind, name, contentHash string
	bytes                   int64
}

type heEntry struct {
	key  heCacheKey
	elem *list.Element // in heCache.lru; nil once evicted
	// counted is what heCache.bytes holds for the entry; guarded by
	// heCache.mu (bytes below may run ahead of it for a moment).
	counted int64

	// fresh builds an evaluator over the entry's decoded keys.
	fresh    func() (*he.Evaluator, error)
	keyBytes int64

	mu    sync.Mutex // guards ev, reg and bytes; held while registering
	ev    *he.Evaluator
	reg   map[string]heReg // artifact id → registration
	bytes int64            // keyBytes + registrations
}

// heCache is a bounded LRU of evaluators, safe for concurrent use.
type heCache struct {
	maxEntries int
	maxBytes   int64
	maxRegs    int

	mu      sync.Mutex
	lru     *list.List // *heEntry, most recent first
	m       map[heCacheKey]*heEntry
	bytes   int64
	hits    uint64
	misses  uint64
	evicted uint64
}

func newHECache() *heCache {
	return &heCache{maxEntries: heCacheEntries, maxBytes: heCacheBytes, maxRegs: heCacheRegistrations,
		lru: list.New(), m: map[heCacheKey]*heEntry{}}
}

// heCacheStats is a snapshot of the cache's counters.
type heCacheStats struct {
	Entries               int
	Bytes                 int64
	Hits, Misses, Evicted uint64
}

func (c *heCache) stats() heCacheStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return heCacheStats{Entries: len(c.m), Bytes: c.bytes, Hits: c.hits, Misses: c.misses, Evicted: c.evicted}
}

// entry returns the cached evaluator of k, building it with load on a miss:
// load returns the evaluator factory and the bytes it holds. Two requests
// missing at once both load; the first to finish is kept.
func (c *heCache) entry(k heCacheKey, load func() (func() (*he.Evaluator, error), int64, error)) (*heEntry, error) {
	c.mu.Lock()
	if en, ok := c.m[k]; ok {
		c.hits++
		c.lru.MoveToFront(en.elem)
		c.mu.Unlock()
		return en, nil
	}
	c.misses++
	c.mu.Unlock()

	fresh, n, err := load()
	if err != nil {
		return nil, err
	}
	ev, err := fresh()
	if err != nil {
		return nil, err
	}
	en := &heEntry{key: k, fresh: fresh, keyBytes: n, ev: ev, reg: map[string]heReg{}, bytes: n}

	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.m[k]; ok {
		c.lru.MoveToFront(old.elem)
		return old, nil
	}
	en.elem = c.lru.PushFront(en)
	en.counted = n
	c.m[k] = en
	c.bytes += n
	c.evictLocked(en)
	return en, nil
}

// evictLocked drops least recently used entries, other than keep, until the
// bounds hold.
func (c *heCache) evictLocked(keep *heEntry) {
	for len(c.m) > c.maxEntries || c.bytes > c.maxBytes {
		e := c.lru.Back()
		for e != nil && e.Value.(*heEntry) == keep {
			e = e.Prev()
		}
		if e == nil {
			return
		}
		c.removeLocked(e.Value.(*heEntry))
		c.evicted++
	}
}

func (c *heCache) removeLocked(en *heEntry) {
	if en.elem == nil {
		return
	}
	c.lru.Remove(en.elem)
	en.elem = nil
	delete(c.m, en.key)
	c.bytes -= en.counted
	en.counted = 0
}

// grow accounts n more bytes to en (after a registration or a reset) and
// evicts other entries if the bounds are exceeded.
func (c *heCache) grow(en *heEntry, n int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if en.elem == nil { // evicted meanwhile: its bytes are no longer counted
		return
	}
	c.bytes += n
	en.counted += n
	c.evictLocked(en)
}

// dropKey forgets every evaluator of the tenant's key id (rotation retired
// it, or it was deleted).
func (c *heCache) dropKey(tenant, keyID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, en := range c.m {
		if k.tenant == tenant && k.keyID == keyID {
			c.removeLocked(en)
		}
	}
}

// dropNamed forgets the registrations of the tenant's adapter or model
// called name (it was replaced or deleted): each entry holding one gets a
// fresh evaluator over the same keys.
func (c *heCache) dropNamed(tenant, kind, name string) {
	c.mu.Lock()
	var ens []*heEntry
	for k, en := range c.m {
		if k.tenant == tenant {
			ens = append(ens, en)
		}
	}
	c.mu.Unlock()
	for _, en := range ens {
		en.mu.Lock()
		held := false
		for _, r := range en.reg {
			if r.kind == kind && r.name == name {
				held = true
				break
			}
		}
		var freed int64
		if held {
			freed = en.resetLocked()
		}
		en.mu.Unlock()
		if held {
			c.grow(en, -freed)
		}
	}
}

// resetLocked replaces the entry's evaluator by a fresh one without
// registrations and returns the bytes freed. On failure (it cannot fail for
// keys that built an evaluator once) the old evaluator is kept. en.mu is
// held.
func (en *heEntry) resetLocked() int64 {
	ev, err := en.fresh()
	if err != nil {
		return 0
	}
	freed := en.bytes - en.keyBytes
	en.ev, en.reg, en.bytes = ev, map[string]heReg{}, en.keyBytes
	return freed
}

// evaluator returns the entry's current evaluator.
func (en *heEntry) evaluator() *he.Evaluator {
	en.mu.Lock()
	defer en.mu.Unlock()
	return en.ev
}

// heNeed is an adapter or model a request needs registered: register loads
// the artifact and registers it on ev under name.
type heNeed struct {
	kind     string
	art      store.Artifact
	register func(ev *he.Evaluator, name string) error
}

// prepare registers on the entry's evaluator whatever of needs it lacks and
// returns the evaluator; the needs are then registered on it under their
// artifact ids.
func (c *heCache) prepare(en *heEntry, needs []heNeed) (*he.Evaluator, error) {
	en.mu.Lock()
	var (
		grown int64
		err   error
	)
	missing := 0
	for _, n := range needs {
		if r, ok := en.reg[n.art.ID]; !ok || r.contentHash != n.art.ContentHash {
			missing++
		}
	}
	if missing > 0 && len(en.reg)+missing > c.maxRegs {
		grown -= en.resetLocked()
	}
	for _, n := range needs {
		if r, ok := en.reg[n.art.ID]; ok && r.contentHash == n.art.ContentHash {
			continue
		}
		if err = n.register(en.ev, n.art.ID); err != nil {
			break
		}
		en.reg[n.art.ID] = heReg{kind: n.kind, name: n.art.Name, contentHash: n.art.ContentHash, bytes: n.art.Size}
		en.bytes += n.art.Size
		grown += n.art.Size
	}
	ev := en.ev
	en.mu.Unlock()
	if grown != 0 {
		c.grow(en, grown)
	}
	if err != nil {
		return nil, err
	}
	return ev, nil
}

// heNamesErr is an error of the evaluator with the artifact ids under which
// the service registered adapters or models replaced by their names.
type heNamesErr struct {
	err error
	r   *strings.Replacer
}

func (e *heNamesErr) Error() string { return e.r.Replace(e.err.Error()) }
func (e *heNamesErr) Unwrap() error { return e.err }

// renameHEErr rewrites artifact ids to names (pairs: id, name, ...) in err.
func renameHEErr(err error, pairs ...string) error {
	if err == nil || len(pairs) == 0 {
		return err
	}
	return &heNamesErr{err: err, r: strings.NewReplacer(pairs...)}
}

// heFullEntry returns the cached evaluator (with the key bundle) of key k.
func (s *Service) heFullEntry(ctx context.Context, k heKey) (*heEntry, error) {
	key := heCacheKey{tenant: k.art.TenantID, keyID: k.info.ID, artifactID: k.art.ID, contentHash: k.art.ContentHash, full: true}
	return s.heCache.entry(key, func() (func() (*he.Evaluator, error), int64, error) {
		raw, err := s.readHEArtifact(ctx, k.art, he.DefaultMaxKeyBytes)
		if err != nil {
			return nil, 0, err
		}
		evk, err := he.UnmarshalEvaluationKeys(raw, 0)
		if err != nil {
			return nil, 0, fmt.Errorf("service: HE key %s: %w", k.info.ID, err)
		}
		if evk.ID != k.info.ID {
			return nil, 0, fmt.Errorf("service: HE key artifact %s holds key %s, not %s", k.art.ID, evk.ID, k.info.ID)
		}
		return func() (*he.Evaluator, error) {
			ev, err := he.NewEvaluator(evk)
			if err != nil {
				return nil, fmt.Errorf("service: HE key %s: %w", k.info.ID, err)
			}
			return ev, nil
		}, int64(len(raw)), nil
	})
}

// heThroughputEntry returns the cached keyless evaluator of key k for the
// feature-major packing: the key bundle is not even unsealed for it.
func (s *Service) heThroughputEntry(k heKey) (*heEntry, error) {
	key := heCacheKey{tenant: k.art.TenantID, keyID: k.info.ID, artifactID: k.art.ID, contentHash: k.art.ContentHash}
	return s.heCache.entry(key, func() (func() (*he.Evaluator, error), int64, error) {
		p, err := he.Preset(k.info.Params)
		if err != nil {
			return nil, 0, fmt.Errorf("service: HE key %s: %w", k.info.ID, err)
		}
		return func() (*he.Evaluator, error) { return he.NewThroughputEvaluator(p, k.info.ID) }, 0, nil
	})
}
