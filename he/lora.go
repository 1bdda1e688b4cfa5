package he

import (
	"context"
	"errors"
	"fmt"
	"math"
	"regexp"
	"runtime"
	"sync"

	"github.com/tuneinsight/lattigo/v6/circuits/ckks/lintrans"
	"github.com/tuneinsight/lattigo/v6/core/rlwe"
	"github.com/tuneinsight/lattigo/v6/schemes/ckks"
)

// Errors callers may need to tell apart.
var (
	// ErrUnknownAdapter: no adapter is registered under the module name.
	ErrUnknownAdapter = errors.New("he: unknown adapter")
	// ErrUnknownModel: no model is registered under the name.
	ErrUnknownModel = errors.New("he: unknown model")
	// ErrMissingKeys: the evaluation keys lack what the operation needs
	// (Galois keys for a shape or width, or a relinearization key).
	ErrMissingKeys = errors.New("he: evaluation keys lack the required keys")
	// ErrKeyMismatch: the input was encrypted under other keys.
	ErrKeyMismatch = errors.New("he: input encrypted under other keys")
)

// Adapter is a LoRA adapter in plaintext: delta(x) = Scale·B(Ax).
type Adapter struct {
	A     [][]float64 // Rank×DIn
	B     [][]float64 // DOut×Rank
	Scale float64
}

// Shape validates the adapter and returns its shape.
func (a Adapter) Shape() (LoRAShape, error) {
	if len(a.A) == 0 || len(a.A[0]) == 0 {
		return LoRAShape{}, fieldErrorf("a", "he: adapter: A must be non-empty (rank×d_in)")
	}
	if len(a.B) == 0 {
		return LoRAShape{}, fieldErrorf("b", "he: adapter: B must be non-empty (d_out×rank)")
	}
	s := LoRAShape{DIn: len(a.A[0]), DOut: len(a.B), Rank: len(a.A)}
	for j, row := range a.A {
		if len(row) != s.DIn {
			return LoRAShape{}, fieldErrorf(fmt.Sprintf("a[%d]", j), "he: adapter: A row %d has %d columns, want %d", j, len(row), s.DIn)
		}
		if err := finite(row); err != nil {
			return LoRAShape{}, fieldErrorf(fmt.Sprintf("a[%d]", j), "he: adapter: A row %d: %w", j, err)
		}
	}
	for i, row := range a.B {
		if len(row) != s.Rank {
			return LoRAShape{}, fieldErrorf(fmt.Sprintf("b[%d]", i), "he: adapter: B row %d has %d columns, want rank %d", i, len(row), s.Rank)
		}
		if err := finite(row); err != nil {
			return LoRAShape{}, fieldErrorf(fmt.Sprintf("b[%d]", i), "he: adapter: B row %d: %w", i, err)
		}
	}
	if math.IsNaN(a.Scale) || math.IsInf(a.Scale, 0) || a.Scale == 0 {
		return LoRAShape{}, fieldErrorf("scale", "he: adapter: scale must be finite and non-zero, got %v", a.Scale)
	}
	if err := s.validate(); err != nil {
		return LoRAShape{}, &FieldError{Field: "a", Err: err}
	}
	return s, nil
}

// Apply computes Scale·B(Ax) in plaintext: the reference for the encrypted path.
func (a Adapter) Apply(x []float64) []float64 {
	y := make([]float64, len(a.A))
	for j, row := range a.A {
		var s float64
		for i, w := range row {
			s += w * x[i]
		}
		y[j] = s
	}
	out := make([]float64, len(a.B))
	for i, row := range a.B {
		var s float64
		for j, w := range row {
			s += w * y[j]
		}
		out[i] = a.Scale * s
	}
	return out
}

func finite(v []float64) error {
	for i, x := range v {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return fmt.Errorf("element %d is not finite", i)
		}
		if math.Abs(x) > 1<<20 {
			return fmt.Errorf("element %d has magnitude %g > 2^20", i, x)
		}
	}
	return nil
}

// Evaluator is the server side: it holds evaluation keys and plaintext
// weights and computes on ciphertexts. It has no way to hold a secret key.
// Its methods are safe for concurrent use.
type Evaluator struct {
	keys   *EvaluationKeys
	params Params
	eval   *ckks.Evaluator
	ecd    *ckks.Encoder
	gal    map[uint64]bool
	// Workers bounds internal parallelism; ≤ 0 means GOMAXPROCS. Set it
	// before first use.
	Workers int

	mu       sync.RWMutex
	adapters map[string]*loraAdapter
	models   map[string]*registeredModel
	evalPool sync.Pool
	// parPool holds *parWork (evaluators and buffers of the latency
	// packing, latency.go) for reuse across calls.
	parPool sync.Pool
}

// NewEvaluator returns an evaluator for the tenant's evaluation keys.
func NewEvaluator(k *EvaluationKeys) (*Evaluator, error) {
	if k == nil || k.Public == nil || k.Params.name == "" {
		return nil, errors.New("he: new evaluator: evaluation keys are incomplete")
	}
	return newEvaluator(k), nil
}

func newEvaluator(k *EvaluationKeys) *Evaluator {
	e := &Evaluator{
		keys:     k,
		params:   k.Params,
		eval:     ckks.NewEvaluator(k.Params.p, k.evaluationKeySet()),
		ecd:      ckks.NewEncoder(k.Params.p),
		gal:      map[uint64]bool{},
		adapters: map[string]*loraAdapter{},
		models:   map[string]*registeredModel{},
	}
	for _, g := range k.Galois {
		e.gal[g.GaloisElement] = true
	}
	e.evalPool.New = func() any { return e.eval.ShallowCopy() }
	return e
}

// NewThroughputEvaluator returns an evaluator without evaluation keys for
// inputs encrypted under key id: it serves the feature-major LoRA packing,
// which needs none (no rotations, no relinearization), and refuses the
// latency packing and models with ErrMissingKeys. It spares a server the
// loading of a key bundle (tens of MB with Galois keys) for such requests.
func NewThroughputEvaluator(p Params, id string) (*Evaluator, error) {
	if p.name == "" {
		return nil, errors.New("he: new evaluator: params not set")
	}
	if !ValidKeyID(id) {
		return nil, fmt.Errorf("he: new evaluator: key id %q is malformed", id)
	}
	return newEvaluator(&EvaluationKeys{ID: id, Params: p}), nil
}

// KeyID is the id of the evaluation keys in use.
func (e *Evaluator) KeyID() string { return e.keys.ID }

// Params is the parameter set in use.
func (e *Evaluator) Params() Params { return e.params }

func (e *Evaluator) workers() int {
	if e.Workers > 0 {
		return e.Workers
	}
	return runtime.GOMAXPROCS(0)
}

func (e *Evaluator) hasGalois(els []uint64) bool {
	for _, g := range els {
		if !e.gal[g] {
			return false
		}
	}
	return true
}

var namePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/-]{0,127}$`)

// ValidName reports whether s may name an adapter (module) or a model: 1 to
// 128 letters, digits and . _ / -, starting with a letter or digit.
func ValidName(s string) bool { return namePattern.MatchString(s) }

// loraAdapter is a registered adapter with its weights pre-encoded.
type loraAdapter struct {
	shape LoRAShape
	level int // input level of the latency packing
	// Throughput (feature-major): A quantized at fmLevel, Scale·B at
	// fmLevel-1 (see featuremajor.go).
	fmLevel int
	fmA     fmWeights // [j*DIn+i]
	fmB     fmWeights // [c*Rank+j]
	// Latency: diagonal-form plaintext matrices; nil without Galois keys.
	ltA, ltB  *lintrans.LinearTransformation
	width, rp int
}

// RegisterAdapter registers (or replaces) the adapter for a module. The
// throughput packing is always available; the latency packing also needs
// the shape among the evaluation keys' capabilities.
func (e *Evaluator) RegisterAdapter(module string, a Adapter) error {
	if !namePattern.MatchString(module) {
		return fmt.Errorf("he: register adapter: module name %q must match %s", module, namePattern)
	}
	s, err := a.Shape()
	if err != nil {
		return fmt.Errorf("he: register adapter %s: %w", module, err)
	}
	p := e.params
	L := loraInputLevel(p)
	if L < 2 {
		return fmt.Errorf("he: register adapter %s: %s has %d levels, LoRA needs 2", module, p.name, L)
	}
	ad := &loraAdapter{shape: s, level: L, fmLevel: loraThroughputLevel(p)}
	if ad.fmLevel < 2 {
		return fmt.Errorf("he: register adapter %s: %s has %d levels, LoRA needs 2", module, p.name, ad.fmLevel)
	}
	if ad.fmA, err = quantizeFM(a.A, 1, s.DIn, p.p.Q()[:ad.fmLevel+1], fmMaxBitsA); err != nil {
		return fmt.Errorf("he: register adapter %s: A: %w", module, err)
	}
	if ad.fmB, err = quantizeFM(a.B, a.Scale, s.Rank, p.p.Q()[:ad.fmLevel], fmMaxBitsB); err != nil {
		return fmt.Errorf("he: register adapter %s: B: %w", module, err)
	}
	if gal, err := loraLatencyGalois(p, s); err == nil && e.hasGalois(gal) {
		if err := e.encodeLatency(ad, a); err != nil {
			return fmt.Errorf("he: register adapter %s: %w", module, err)
		}
	}
	e.mu.Lock()
	e.adapters[module] = ad
	e.mu.Unlock()
	return nil
}

func (e *Evaluator) encodeLatency(ad *loraAdapter, a Adapter) error {
	p := e.params
	s := ad.shape
	slots := p.Slots()
	n, rp := s.latencyWidth()
	P := slots / n
	ad.width, ad.rp = n, rp
	L := ad.level
	q := p.p.Q()
	diagA := lintrans.Diagonals[float64]{}
	diagB := lintrans.Diagonals[float64]{}
	for k := range rp {
		da := make([]float64, slots)
		db := make([]float64, slots)
		for c := range n {
			j, col := c%rp, (c+k)%n
			var va, vb float64
			if j < s.Rank && col < s.DIn {
				va = a.A[j][col]
			}
			if jb := (c + k) % rp; c < s.DOut && jb < s.Rank {
				vb = a.Scale * a.B[c][jb]
			}
			for t := range P {
				da[c*P+t] = va
				db[c*P+t] = vb
			}
		}
		diagA[k*P] = da
		diagB[k*P] = db
	}
	mk := func(level int, diag lintrans.Diagonals[float64]) (*lintrans.LinearTransformation, error) {
		lt := lintrans.NewTransformation(p.p, lintrans.Parameters{
			DiagonalsIndexList:        diag.DiagonalsIndexList(),
			LevelQ:                    level,
			LevelP:                    p.p.MaxLevelP(),
			Scale:                     rlwe.NewScale(q[level]),
			LogDimensions:             p.p.LogMaxDimensions(),
			LogBabyStepGiantStepRatio: logBSGSRatio,
		})
		if err := lintrans.Encode(e.ecd.ShallowCopy(), diag, lt); err != nil {
			return nil, err
		}
		return &lt, nil
	}
	var err error
	if ad.ltA, err = mk(L, diagA); err != nil {
		return fmt.Errorf("encode A: %w", err)
	}
	if ad.ltB, err = mk(L-1, diagB); err != nil {
		return fmt.Errorf("encode B: %w", err)
	}
	return nil
}

// Adapters lists the registered module names with their shapes.
func (e *Evaluator) Adapters() map[string]LoRAShape {
	e.mu.RLock()
	defer e.mu.RUnlock()
	out := make(map[string]LoRAShape, len(e.adapters))
	for m, a := range e.adapters {
		out[m] = a.shape
	}
	return out
}

func (e *Evaluator) adapter(module string) (*loraAdapter, error) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	ad, ok := e.adapters[module]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownAdapter, module)
	}
	return ad, nil
}

// Delta computes the encrypted LoRA delta of module for the batch, in the
// batch's packing. The result has the same packing with dim = d_out.
func (e *Evaluator) Delta(ctx context.Context, module string, in *Batch) (*Batch, error) {
	out, err := e.DeltaMany(ctx, []string{module}, in)
	if err != nil {
		return nil, err
	}
	return out[0], nil
}

// DeltaMany computes the deltas of several adapters over the same encrypted
// input (a forward over several adapters sharing one activation).
func (e *Evaluator) DeltaMany(ctx context.Context, modules []string, in *Batch) ([]*Batch, error) {
	if err := e.checkBatch(in); err != nil {
		return nil, fmt.Errorf("he: delta: %w", err)
	}
	ads := make([]*loraAdapter, len(modules))
	for i, m := range modules {
		ad, err := e.adapter(m)
		if err != nil {
			return nil, fmt.Errorf("he: delta: %w", err)
		}
		if ad.shape.DIn != in.Layout.Dim {
			return nil, fmt.Errorf("he: delta: adapter %q takes d_in=%d, batch has dim %d", m, ad.shape.DIn, in.Layout.Dim)
		}
		ads[i] = ad
	}
	outs := make([]*Batch, len(ads))
	for i, ad := range ads {
		var err error
		switch in.Layout.Packing {
		case PackingThroughput:
			outs[i], err = e.deltaThroughput(ctx, ad, in)
		case PackingLatency:
			outs[i], err = e.deltaLatency(ctx, ad, in)
		default:
			err = fmt.Errorf("packing %q is not a LoRA packing", in.Layout.Packing)
		}
		if err != nil {
			return nil, fmt.Errorf("he: delta %s: %w", modules[i], err)
		}
	}
	return outs, nil
}

func (e *Evaluator) checkBatch(in *Batch) error {
	if in == nil {
		return errors.New("batch is nil")
	}
	if in.KeyID != e.keys.ID {
		return fmt.Errorf("%w: batch key %q, evaluator key %q", ErrKeyMismatch, in.KeyID, e.keys.ID)
	}
	if err := in.Layout.validate(e.params.Slots()); err != nil {
		return err
	}
	if want := in.Layout.Ciphertexts(e.params.Slots()); len(in.Ciphertexts) != want {
		return fmt.Errorf("%d ciphertexts, layout needs %d", len(in.Ciphertexts), want)
	}
	for i, ct := range in.Ciphertexts {
		if ct == nil {
			return fmt.Errorf("ciphertext %d is missing", i)
		}
		if err := checkCiphertext(e.params, ct); err != nil {
			return fmt.Errorf("ciphertext %d: %w", i, err)
		}
	}
	return nil
}

func (e *Evaluator) deltaThroughput(ctx context.Context, ad *loraAdapter, in *Batch) (*Batch, error) {
	s := ad.shape
	groups := len(in.Ciphertexts) / s.DIn
	out := &Batch{KeyID: in.KeyID, Params: e.params, Layout: in.Layout, Ciphertexts: make([]*rlwe.Ciphertext, groups*s.DOut)}
	out.Layout.Dim = s.DOut
	for g := range groups {
		err := e.deltaFeatureMajor(ctx, ad,
			func(i int) (*rlwe.Ciphertext, error) { return in.Ciphertexts[g*s.DIn+i], nil },
			func(c int, ct *rlwe.Ciphertext) error { out.Ciphertexts[g*s.DOut+c] = ct; return nil })
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// DeltaStream computes one feature-major group of the throughput packing as
// a stream, holding only rank accumulators in memory: next(i) supplies the
// ciphertext of input feature i (in order, i < d_in) and emit(c, ct)
// receives the delta of output feature c (in order). Inputs are validated.
func (e *Evaluator) DeltaStream(ctx context.Context, module string, next func(i int) (*rlwe.Ciphertext, error), emit func(c int, ct *rlwe.Ciphertext) error) error {
	ad, err := e.adapter(module)
	if err != nil {
		return fmt.Errorf("he: delta stream: %w", err)
	}
	checked := func(i int) (*rlwe.Ciphertext, error) {
		ct, err := next(i)
		if err != nil {
			return nil, err
		}
		if ct == nil {
			return nil, fmt.Errorf("ciphertext %d is missing", i)
		}
		if err := checkCiphertext(e.params, ct); err != nil {
			return nil, fmt.Errorf("ciphertext %d: %w", i, err)
		}
		return ct, nil
	}
	if err := e.deltaFeatureMajor(ctx, ad, checked, emit); err != nil {
		return fmt.Errorf("he: delta stream %s: %w", module, err)
	}
	return nil
}

func (e *Evaluator) deltaLatency(ctx context.Context, ad *loraAdapter, in *Batch) (*Batch, error) {
	s := ad.shape
	if ad.ltA == nil {
		return nil, fmt.Errorf("%w: latency packing of shape %+v", ErrMissingKeys, s)
	}
	if in.Layout.Width != ad.width {
		return nil, fmt.Errorf("batch width %d, adapter needs %d", in.Layout.Width, ad.width)
	}
	P := e.params.Slots() / ad.width
	out := &Batch{KeyID: in.KeyID, Params: e.params, Layout: in.Layout, Ciphertexts: make([]*rlwe.Ciphertext, len(in.Ciphertexts))}
	out.Layout.Dim = s.DOut
	// Fewer ciphertexts than workers: each ciphertext gets workers/n
	// evaluators of its own and is split across them (latency.go);
	// otherwise ciphertexts run side by side, one core each.
	n := len(in.Ciphertexts)
	per := max(1, e.workers()/max(1, n))
	var (
		mu    sync.Mutex
		works []*parWork
	)
	defer func() {
		for _, pw := range works {
			e.parPool.Put(pw)
		}
	}()
	err := parallelFor(ctx, n, e.workers(), func() any {
		pw, _ := e.parPool.Get().(*parWork)
		if pw == nil || len(pw.evs) != per {
			evs := make([]*ckks.Evaluator, per)
			for i := range evs {
				evs[i] = e.eval.ShallowCopy()
			}
			pw = newParWork(evs)
		}
		mu.Lock()
		works = append(works, pw)
		mu.Unlock()
		return pw
	}, func(st any, i int) error {
		ct := in.Ciphertexts[i]
		if ct.Level() != ad.level {
			return fmt.Errorf("input %d at level %d, want %d", i, ct.Level(), ad.level)
		}
		o, err := loraLatencyPar(st.(*parWork), ad, P, ct)
		if err != nil {
			return fmt.Errorf("input %d: %w", i, err)
		}
		out.Ciphertexts[i] = o
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// loraLatencyOne is the latency packing with Lattigo's evaluators on one
// core, the reference that loraLatencyPar (latency.go) reproduces bit for
// bit: z = diag-A product (rank' diagonals, BSGS, hoisted), rescale;
// inner sum with stride rank'·P (so every slot holds (Ax)_{c mod rank'});
// diag-B product (rank' diagonals), rescale.
func loraLatencyOne(ev *ckks.Evaluator, ad *loraAdapter, P int, ct *rlwe.Ciphertext) (*rlwe.Ciphertext, error) {
	lin := lintrans.NewEvaluator(ev)
	z, err := lin.EvaluateNew(ct, *ad.ltA)
	if err != nil {
		return nil, fmt.Errorf("A: %w", err)
	}
	if err := ev.Rescale(z, z); err != nil {
		return nil, fmt.Errorf("A: %w", err)
	}
	tmp := rlwe.NewCiphertext(ev.GetParameters(), 1, z.Level())
	for step := ad.rp; step < ad.width; step <<= 1 {
		if err := ev.Rotate(z, step*P, tmp); err != nil {
			return nil, fmt.Errorf("inner sum: %w", err)
		}
		if err := ev.Add(z, tmp, z); err != nil {
			return nil, fmt.Errorf("inner sum: %w", err)
		}
	}
	o, err := lin.EvaluateNew(z, *ad.ltB)
	if err != nil {
		return nil, fmt.Errorf("B: %w", err)
	}
	if err := ev.Rescale(o, o); err != nil {
		return nil, fmt.Errorf("B: %w", err)
	}
	return o, nil
}
