package he

import (
	"context"
	"errors"
	"fmt"
	"math/bits"

	"github.com/tuneinsight/lattigo/v6/circuits/ckks/lintrans"
	"github.com/tuneinsight/lattigo/v6/circuits/ckks/polynomial"
	"github.com/tuneinsight/lattigo/v6/core/rlwe"
	"github.com/tuneinsight/lattigo/v6/schemes/ckks"
	"github.com/tuneinsight/lattigo/v6/utils/bignum"
)

// Activation kinds for HE-friendly models.
const (
	ActNone   = "none"   // identity
	ActSquare = "square" // x², one level
	ActPoly   = "poly"   // Σ Coeffs[i]·x^i, ceil(log2(degree+1)) levels
)

// Activation is a polynomial activation.
type Activation struct {
	Kind   string    `json:"kind"`
	Coeffs []float64 `json:"coeffs,omitempty"` // monomial basis, ActPoly only
}

// Layer is a dense layer out = act(W·in + Bias).
type Layer struct {
	W    [][]float64 `json:"w"` // out×in
	Bias []float64   `json:"bias,omitempty"`
	Act  Activation  `json:"act"`
}

// MLP is an HE-friendly multilayer perceptron.
type MLP struct {
	Layers []Layer `json:"layers"`
}

// maxPolyDegree bounds polynomial activations.
const maxPolyDegree = 15

// Validate checks dimensions, finiteness and activations.
func (m *MLP) Validate() error {
	if m == nil || len(m.Layers) == 0 {
		return errors.New("he: mlp: no layers")
	}
	prev := 0
	for l, ly := range m.Layers {
		if len(ly.W) == 0 || len(ly.W[0]) == 0 {
			return fmt.Errorf("he: mlp: layer %d: w must be non-empty", l)
		}
		in := len(ly.W[0])
		if l > 0 && in != prev {
			return fmt.Errorf("he: mlp: layer %d: takes %d inputs, layer %d gives %d", l, in, l-1, prev)
		}
		for i, row := range ly.W {
			if len(row) != in {
				return fmt.Errorf("he: mlp: layer %d: w row %d has %d columns, want %d", l, i, len(row), in)
			}
			if err := finite(row); err != nil {
				return fmt.Errorf("he: mlp: layer %d: w row %d: %w", l, i, err)
			}
		}
		if ly.Bias != nil && len(ly.Bias) != len(ly.W) {
			return fmt.Errorf("he: mlp: layer %d: bias has %d entries, want %d", l, len(ly.Bias), len(ly.W))
		}
		if err := finite(ly.Bias); err != nil {
			return fmt.Errorf("he: mlp: layer %d: bias: %w", l, err)
		}
		switch ly.Act.Kind {
		case ActNone, ActSquare:
			if len(ly.Act.Coeffs) != 0 {
				return fmt.Errorf("he: mlp: layer %d: act %q takes no coeffs", l, ly.Act.Kind)
			}
		case ActPoly:
			if len(ly.Act.Coeffs) < 2 || len(ly.Act.Coeffs) > maxPolyDegree+1 {
				return fmt.Errorf("he: mlp: layer %d: poly needs 2..%d coeffs, got %d", l, maxPolyDegree+1, len(ly.Act.Coeffs))
			}
			if err := finite(ly.Act.Coeffs); err != nil {
				return fmt.Errorf("he: mlp: layer %d: coeffs: %w", l, err)
			}
		default:
			return fmt.Errorf("he: mlp: layer %d: unknown activation %q (want none, square or poly)", l, ly.Act.Kind)
		}
		prev = len(ly.W)
	}
	return nil
}

// InputDim is the model's input width.
func (m *MLP) InputDim() int { return len(m.Layers[0].W[0]) }

// Forward is the plaintext reference.
func (m *MLP) Forward(x []float64) []float64 { return m.ForwardFrom(0, x) }

// ForwardFrom runs layers from..end in plaintext: the client finishes a
// hybrid inference with it after decrypting the HE layers' output.
func (m *MLP) ForwardFrom(from int, x []float64) []float64 {
	h := x
	for _, ly := range m.Layers[from:] {
		out := make([]float64, len(ly.W))
		for i, row := range ly.W {
			var s float64
			for j, w := range row {
				s += w * h[j]
			}
			if ly.Bias != nil {
				s += ly.Bias[i]
			}
			out[i] = ly.Act.apply(s)
		}
		h = out
	}
	return h
}

func (a Activation) apply(x float64) float64 {
	switch a.Kind {
	case ActSquare:
		return x * x
	case ActPoly:
		var s float64
		for i := len(a.Coeffs) - 1; i >= 0; i-- {
			s = s*x + a.Coeffs[i]
		}
		return s
	}
	return x
}

// depth is the number of levels the activation consumes.
func (a Activation) depth() int {
	switch a.Kind {
	case ActSquare:
		return 1
	case ActPoly:
		return bits.Len(uint(len(a.Coeffs) - 1))
	}
	return 0
}

// Profile selects which layers run under encryption.
type Profile string

const (
	// ProfileEncryptedInput evaluates the first layer under HE; the client
	// decrypts its output and runs the rest in plaintext.
	ProfileEncryptedInput Profile = "encrypted_input"
	// ProfileFull evaluates every layer under HE (small models).
	ProfileFull Profile = "full"
	// ProfileHybrid evaluates the first N layers under HE.
	ProfileHybrid Profile = "hybrid"
)

// HELayers resolves how many layers a profile runs under HE for a model of
// total layers; hybridN is used by ProfileHybrid only.
func (p Profile) HELayers(total, hybridN int) (int, error) {
	switch p {
	case ProfileEncryptedInput:
		return 1, nil
	case ProfileFull:
		return total, nil
	case ProfileHybrid:
		if hybridN < 1 || hybridN > total {
			return 0, fmt.Errorf("he: profile hybrid: layers must be in [1, %d], got %d", total, hybridN)
		}
		return hybridN, nil
	}
	return 0, fmt.Errorf("he: unknown profile %q (want encrypted_input, full or hybrid)", p)
}

// Width is the padded interleave width for the first heLayers layers: the
// width to declare in Capabilities.MLPWidths and to encrypt inputs with.
func (m *MLP) Width(heLayers int) int {
	w := m.InputDim()
	for _, ly := range m.Layers[:heLayers] {
		w = max(w, len(ly.W), len(ly.W[0]))
	}
	return nextPow2(w)
}

// Depth is the number of levels the first heLayers layers consume.
func (m *MLP) Depth(heLayers int) int {
	d := 0
	for _, ly := range m.Layers[:heLayers] {
		d += 1 + ly.Act.depth()
	}
	return d
}

// ModelInfo describes a registered model.
type ModelInfo struct {
	Profile   Profile `json:"profile"`
	HELayers  int     `json:"he_layers"`
	Layers    int     `json:"layers"`
	Width     int     `json:"width"`
	InputDim  int     `json:"input_dim"`
	OutputDim int     `json:"output_dim"` // of the last HE layer
}

type heLayer struct {
	lt    *lintrans.LinearTransformation
	level int       // input level of the linear step
	bias  []float64 // slot vector, nil if none
	act   Activation
	poly  *polynomial.Polynomial
}

type registeredModel struct {
	info   ModelInfo
	layers []heLayer
}

// RegisterModel registers (or replaces) a model for private inference under
// a profile. It fails if the evaluation keys lack the width's Galois keys or
// a needed relinearization key, or the parameters lack the depth.
func (e *Evaluator) RegisterModel(name string, m *MLP, profile Profile, hybridLayers int) error {
	if !namePattern.MatchString(name) {
		return fmt.Errorf("he: register model: name %q must match %s", name, namePattern)
	}
	if err := m.Validate(); err != nil {
		return fmt.Errorf("he: register model %s: %w", name, err)
	}
	k, err := profile.HELayers(len(m.Layers), hybridLayers)
	if err != nil {
		return fmt.Errorf("he: register model %s: %w", name, err)
	}
	p := e.params
	n := m.Width(k)
	if n > p.Slots() {
		return fmt.Errorf("he: register model %s: width %d exceeds %d slots", name, n, p.Slots())
	}
	if d := m.Depth(k); d > p.MaxLevel() {
		return fmt.Errorf("he: register model %s: %d HE layers need depth %d, %s has %d levels", name, k, d, p.name, p.MaxLevel())
	}
	gal, err := mlpGalois(p, n)
	if err != nil {
		return fmt.Errorf("he: register model %s: %w", name, err)
	}
	if !e.hasGalois(gal) {
		return fmt.Errorf("he: register model %s: %w: width %d is not among the capabilities", name, ErrMissingKeys, n)
	}
	needRelin := false
	for _, ly := range m.Layers[:k] {
		needRelin = needRelin || ly.Act.depth() > 0
	}
	if needRelin && e.keys.Relin == nil {
		return fmt.Errorf("he: register model %s: %w: relinearization key", name, ErrMissingKeys)
	}
	slots := p.Slots()
	P := slots / n
	rm := &registeredModel{info: ModelInfo{Profile: profile, HELayers: k, Layers: len(m.Layers), Width: n,
		InputDim: m.InputDim(), OutputDim: len(m.Layers[k-1].W)}}
	level := p.MaxLevel()
	for l, ly := range m.Layers[:k] {
		out, in := len(ly.W), len(ly.W[0])
		diag := lintrans.Diagonals[float64]{}
		for kk := range n {
			d := make([]float64, slots)
			for c := range out {
				col := (c + kk) % n
				if col >= in {
					continue
				}
				for t := range P {
					d[c*P+t] = ly.W[c][col]
				}
			}
			diag[kk*P] = d
		}
		lt := lintrans.NewTransformation(p.p, lintrans.Parameters{
			DiagonalsIndexList:        diag.DiagonalsIndexList(),
			LevelQ:                    level,
			LevelP:                    p.p.MaxLevelP(),
			Scale:                     rlwe.NewScale(p.p.Q()[level]),
			LogDimensions:             p.p.LogMaxDimensions(),
			LogBabyStepGiantStepRatio: logBSGSRatio,
		})
		if err := lintrans.Encode(e.ecd.ShallowCopy(), diag, lt); err != nil {
			return fmt.Errorf("he: register model %s: layer %d: %w", name, l, err)
		}
		hl := heLayer{lt: &lt, level: level, act: ly.Act}
		if ly.Bias != nil {
			hl.bias = make([]float64, slots)
			for c, b := range ly.Bias {
				for t := range P {
					hl.bias[c*P+t] = b
				}
			}
		}
		if ly.Act.Kind == ActPoly {
			pp := polynomial.NewPolynomial(bignum.NewPolynomial(bignum.Monomial, ly.Act.Coeffs, nil))
			hl.poly = &pp
		}
		rm.layers = append(rm.layers, hl)
		level -= 1 + ly.Act.depth()
	}
	e.mu.Lock()
	e.models[name] = rm
	e.mu.Unlock()
	return nil
}

// Model returns a registered model's description.
func (e *Evaluator) Model(name string) (ModelInfo, error) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	rm, ok := e.models[name]
	if !ok {
		return ModelInfo{}, fmt.Errorf("%w: %q", ErrUnknownModel, name)
	}
	return rm.info, nil
}

// Infer evaluates the model's HE layers on an encrypted batch laid out
// interleaved_real with the model's width; the result has the same layout
// with dim = the last HE layer's output width.
func (e *Evaluator) Infer(ctx context.Context, name string, in *Batch) (*Batch, error) {
	e.mu.RLock()
	rm, ok := e.models[name]
	e.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("he: infer: %w: %q", ErrUnknownModel, name)
	}
	if err := e.checkBatch(in); err != nil {
		return nil, fmt.Errorf("he: infer %s: %w", name, err)
	}
	if in.Layout.Packing != PackingInterleavedReal || in.Layout.Width != rm.info.Width || in.Layout.Dim != rm.info.InputDim {
		return nil, fmt.Errorf("he: infer %s: batch layout %+v, model needs packing %s, width %d, dim %d",
			name, in.Layout, PackingInterleavedReal, rm.info.Width, rm.info.InputDim)
	}
	out := &Batch{KeyID: in.KeyID, Params: e.params, Layout: in.Layout, Ciphertexts: make([]*rlwe.Ciphertext, len(in.Ciphertexts))}
	out.Layout.Dim = rm.info.OutputDim
	err := parallelFor(ctx, len(in.Ciphertexts), e.workers(), func() any { return e.eval.ShallowCopy() }, func(st any, i int) error {
		o, err := inferOne(st.(*ckks.Evaluator), e.params, rm, in.Ciphertexts[i])
		if err != nil {
			return fmt.Errorf("ciphertext %d: %w", i, err)
		}
		out.Ciphertexts[i] = o
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("he: infer %s: %w", name, err)
	}
	return out, nil
}

func inferOne(ev *ckks.Evaluator, p Params, rm *registeredModel, ct *rlwe.Ciphertext) (*rlwe.Ciphertext, error) {
	lin := lintrans.NewEvaluator(ev)
	h := ct
	for l, ly := range rm.layers {
		if h.Level() < ly.level {
			return nil, fmt.Errorf("layer %d: input at level %d, want %d", l, h.Level(), ly.level)
		}
		if h.Level() > ly.level {
			h = ev.DropLevelNew(h, h.Level()-ly.level)
		}
		z, err := lin.EvaluateNew(h, *ly.lt)
		if err != nil {
			return nil, fmt.Errorf("layer %d: linear: %w", l, err)
		}
		if err := ev.Rescale(z, z); err != nil {
			return nil, fmt.Errorf("layer %d: rescale: %w", l, err)
		}
		if ly.bias != nil {
			if err := ev.Add(z, ly.bias, z); err != nil {
				return nil, fmt.Errorf("layer %d: bias: %w", l, err)
			}
		}
		switch ly.act.Kind {
		case ActSquare:
			if err := ev.MulRelin(z, z, z); err != nil {
				return nil, fmt.Errorf("layer %d: square: %w", l, err)
			}
			if err := ev.Rescale(z, z); err != nil {
				return nil, fmt.Errorf("layer %d: square: %w", l, err)
			}
		case ActPoly:
			pe := polynomial.NewEvaluator(p.p, ev)
			if z, err = pe.Evaluate(z, *ly.poly, z.Scale); err != nil {
				return nil, fmt.Errorf("layer %d: poly: %w", l, err)
			}
		}
		h = z
	}
	return h, nil
}
