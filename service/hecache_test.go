package service

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/tensafe/tensafe/he"
	"github.com/tensafe/tensafe/store"
)

var cacheShape = he.LoRAShape{DIn: 24, DOut: 16, Rank: 2}

func cacheAdapter(seed uint64, scale float64) he.Adapter {
	r := rand.New(rand.NewPCG(seed, 7))
	mat := func(rows, cols int) [][]float64 {
		m := make([][]float64, rows)
		for i := range m {
			m[i] = make([]float64, cols)
			for j := range m[i] {
				m[i][j] = r.NormFloat64() * 0.05
			}
		}
		return m
	}
	return he.Adapter{A: mat(cacheShape.Rank, cacheShape.DIn), B: mat(cacheShape.DOut, cacheShape.Rank), Scale: scale}
}

func cacheKeys(t *testing.T) (*he.Client, *he.EvaluationKeys) {
	t.Helper()
	p, err := he.Preset(he.DefaultPreset)
	if err != nil {
		t.Fatal(err)
	}
	ck, evk, err := he.GenerateKeys(context.Background(), p, he.Capabilities{LoRA: []he.LoRAShape{cacheShape}})
	if err != nil {
		t.Fatal(err)
	}
	return he.NewClient(ck), evk
}

func registerKeys(t *testing.T, s *Service, tenant string, evk *he.EvaluationKeys) {
	t.Helper()
	raw, err := evk.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.RegisterHEKeys(context.Background(), tenant, he.RegisterKeysRequest{EvaluationKeys: raw}); err != nil {
		t.Fatal(err)
	}
}

func registerAdapter(t *testing.T, s *Service, tenant, module string, a he.Adapter) {
	t.Helper()
	if _, err := s.RegisterHEAdapter(context.Background(), tenant, he.RegisterAdapterRequest{Module: module, A: a.A, B: a.B, Scale: a.Scale}); err != nil {
		t.Fatal(err)
	}
}

// cacheDelta runs one delta request of module under c's key and returns
// the decrypted result, or the service's error.
func cacheDelta(t *testing.T, s *Service, tenant string, c *he.Client, module string, x [][]float64, packing he.Packing) ([][]float64, error) {
	t.Helper()
	ctx := context.Background()
	b, err := c.EncryptLoRAInput(ctx, x, packing, cacheShape)
	if err != nil {
		t.Fatal(err)
	}
	in, err := he.NewBundle(he.KindLoRAInput, b, he.CompressionNone)
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.HEDeltas(ctx, tenant, he.DeltaRequest{KeyID: c.Keys().ID(), Modules: []string{module}, Input: *in})
	if err != nil {
		return nil, err
	}
	out, err := res.Deltas[0].Batch(b.Params, he.DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	y, err := c.Decrypt(ctx, out)
	if err != nil {
		t.Fatal(err)
	}
	return y, nil
}

func closeTo(t *testing.T, got [][]float64, a he.Adapter, x [][]float64) bool {
	t.Helper()
	for i := range x {
		want := a.Apply(x[i])
		for j := range want {
			if math.Abs(got[i][j]-want[j]) > 1e-3 {
				return false
			}
		}
	}
	return true
}

func (c *heCache) has(tenant, keyID string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.m {
		if k.tenant == tenant && k.keyID == keyID {
			return true
		}
	}
	return false
}

// TestHECacheInvalidation: a warm cache serves the second call without a
// key load and gives the same results; a replaced adapter is used at once;
// rotation and deletion of the key answer 409 and 404 as without a cache
// and drop the key's evaluators; another tenant naming the key or the
// adapter gets 404 with the cache warm.
func TestHECacheInvalidation(t *testing.T) {
	f := newFixture(t)
	s, ctx := f.svc, context.Background()
	c1, evk1 := cacheKeys(t)
	registerKeys(t, s, f.tenA, evk1)
	v1, v2 := cacheAdapter(1, 2), cacheAdapter(2, 0.5)
	registerAdapter(t, s, f.tenA, "q", v1)
	x := [][]float64{make([]float64, cacheShape.DIn), make([]float64, cacheShape.DIn)}
	for i := range x {
		for j := range x[i] {
			x[i][j] = math.Sin(float64(i*31 + j))
		}
	}

	for _, p := range []he.Packing{he.PackingLatency, he.PackingThroughput} {
		for range 2 {
			y, err := cacheDelta(t, s, f.tenA, c1, "q", x, p)
			if err != nil {
				t.Fatalf("%s: %v", p, err)
			}
			if !closeTo(t, y, v1, x) {
				t.Fatalf("%s: delta differs from the plaintext one", p)
			}
		}
	}
	st := s.heCache.stats()
	// One miss each for the full and the keyless evaluator, then hits.
	if st.Misses != 2 || st.Hits != 2 || st.Entries != 2 {
		t.Fatalf("cache after 4 calls: %+v, want 2 misses, 2 hits, 2 entries", st)
	}

	// Replacement: the next call uses v2.
	registerAdapter(t, s, f.tenA, "q", v2)
	for _, p := range []he.Packing{he.PackingLatency, he.PackingThroughput} {
		y, err := cacheDelta(t, s, f.tenA, c1, "q", x, p)
		if err != nil {
			t.Fatal(err)
		}
		if !closeTo(t, y, v2, x) {
			t.Fatalf("%s: after replacing the adapter the delta is not the new adapter's", p)
		}
	}
	if st := s.heCache.stats(); st.Misses != 2 {
		t.Fatalf("replacing an adapter reloaded the key: %+v", st)
	}

	// Tenant B, cache warm: A's key id and A's adapter are not found.
	if _, err := cacheDelta(t, s, f.tenB, c1, "q", x, he.PackingLatency); !errors.Is(err, ErrNotFound) {
		t.Fatalf("tenant B under A's key: %v, want not found", err)
	}
	cB, evkB := cacheKeys(t)
	registerKeys(t, s, f.tenB, evkB)
	if _, err := cacheDelta(t, s, f.tenB, cB, "q", x, he.PackingLatency); !errors.Is(err, ErrNotFound) {
		t.Fatalf("tenant B asking for A's adapter: %v, want not found", err)
	}

	// Rotation retires key 1: 409, and its evaluators are gone.
	c2, evk2 := cacheKeys(t)
	registerKeys(t, s, f.tenA, evk2)
	if s.heCache.has(f.tenA, c1.Keys().ID()) {
		t.Fatal("the retired key's evaluator is still cached")
	}
	if _, err := cacheDelta(t, s, f.tenA, c1, "q", x, he.PackingLatency); !errors.Is(err, ErrFailedPrecondition) {
		t.Fatalf("retired key: %v, want failed precondition", err)
	}
	if y, err := cacheDelta(t, s, f.tenA, c2, "q", x, he.PackingLatency); err != nil || !closeTo(t, y, v2, x) {
		t.Fatalf("new key: %v", err)
	}
	// Deleting the retired key: 404.
	if err := s.DeleteHEKey(ctx, f.tenA, c1.Keys().ID()); err != nil {
		t.Fatal(err)
	}
	if _, err := cacheDelta(t, s, f.tenA, c1, "q", x, he.PackingLatency); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted key: %v, want not found", err)
	}
	// Deleting the adapter: 404 with the evaluator warm.
	if err := s.DeleteHEAdapter(ctx, f.tenA, "q"); err != nil {
		t.Fatal(err)
	}
	if _, err := cacheDelta(t, s, f.tenA, c2, "q", x, he.PackingLatency); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted adapter: %v, want not found", err)
	}
}

// TestHECacheConcurrent: requests sharing one warm evaluator while the
// adapter is replaced each get the delta of one of the two versions (never
// an error or a mix); run with -race.
func TestHECacheConcurrent(t *testing.T) {
	f := newFixture(t)
	s := f.svc
	c, evk := cacheKeys(t)
	registerKeys(t, s, f.tenA, evk)
	v1, v2 := cacheAdapter(3, 1), cacheAdapter(4, 1.5)
	registerAdapter(t, s, f.tenA, "q", v1)
	x := [][]float64{make([]float64, cacheShape.DIn)}
	for j := range x[0] {
		x[0][j] = math.Cos(float64(j))
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 4 {
		wg.Go(func() {
			for i := range 3 {
				if g == 0 && i == 1 {
					registerAdapter(t, s, f.tenA, "q", v2)
				}
				y, err := cacheDelta(t, s, f.tenA, c, "q", x, he.PackingLatency)
				if err != nil {
					errs <- err
					return
				}
				if !closeTo(t, y, v1, x) && !closeTo(t, y, v2, x) {
					errs <- errors.New("delta of neither adapter version")
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// TestHECacheBounds: the LRU keeps at most maxEntries evaluators and
// maxBytes, evicting the least recently used; registrations beyond
// maxRegs start a fresh evaluator.
func TestHECacheBounds(t *testing.T) {
	p, err := he.Preset(he.DefaultPreset)
	if err != nil {
		t.Fatal(err)
	}
	c := newHECache()
	c.maxEntries, c.maxBytes, c.maxRegs = 2, 1000, 2
	loads := 0
	get := func(id string, n int64) *heEntry {
		t.Helper()
		keyID := "hek_" + id
		en, err := c.entry(heCacheKey{tenant: "tn", keyID: keyID, artifactID: "art_" + id}, func() (func() (*he.Evaluator, error), int64, error) {
			loads++
			return func() (*he.Evaluator, error) { return he.NewThroughputEvaluator(p, keyID) }, n, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return en
	}
	const a, b, d = "0123456789abcdef0123456789abcdef", "1123456789abcdef0123456789abcdef", "2123456789abcdef0123456789abcdef"
	get(a, 100)
	get(b, 100)
	get(a, 100) // a is now the most recent
	get(d, 100) // evicts b
	if loads != 3 || !c.has("tn", "hek_"+a) || c.has("tn", "hek_"+b) || !c.has("tn", "hek_"+d) {
		t.Fatalf("after a, b, a, d: %d loads, entries %v", loads, c.m)
	}
	get(b, 950) // 1150 bytes with a and d: evicts both
	if st := c.stats(); st.Entries != 1 || st.Bytes != 950 || st.Evicted != 3 {
		t.Fatalf("byte bound: %+v", st)
	}

	// Registrations: the third distinct one resets the evaluator.
	en := get(b, 950)
	reg := func(id string) *he.Evaluator {
		ev, err := c.prepare(en, []heNeed{{kind: ArtifactHEAdapter, art: store.Artifact{ID: id, Name: "m" + id, ContentHash: "h" + id, Size: 10},
			register: func(ev *he.Evaluator, name string) error { return ev.RegisterAdapter(name, cacheAdapter(1, 1)) }}})
		if err != nil {
			t.Fatal(err)
		}
		return ev
	}
	ev1 := reg("art_1")
	if reg("art_2") != ev1 || reg("art_1") != ev1 {
		t.Fatal("registrations within the bound replaced the evaluator")
	}
	if len(ev1.Adapters()) != 2 || c.stats().Bytes != 970 {
		t.Fatalf("two registrations: %v adapters, %d bytes", ev1.Adapters(), c.stats().Bytes)
	}
	ev3 := reg("art_3")
	if ev3 == ev1 || len(ev3.Adapters()) != 1 || c.stats().Bytes != 960 {
		t.Fatalf("third registration: same evaluator %v, %d adapters, %d bytes", ev3 == ev1, len(ev3.Adapters()), c.stats().Bytes)
	}
	// dropNamed frees the registration of that name only where held.
	c.dropNamed("tn", ArtifactHEAdapter, "mart_3")
	if c.stats().Bytes != 950 || en.evaluator() == ev3 {
		t.Fatalf("after dropNamed: %+v", c.stats())
	}
}
