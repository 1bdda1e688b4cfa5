package he

import (
	"fmt"
	"sort"

	"github.com/tuneinsight/lattigo/v6/examples"
	"github.com/tuneinsight/lattigo/v6/ring"
	"github.com/tuneinsight/lattigo/v6/schemes/ckks"
)

// Parameter preset names. Each is one of Lattigo's own 128-bit parameter
// literals; the name records ring degree and modulus size.
const (
	// PresetN13 is Lattigo's CKKSComplexParamsN13QP218: N=2^13, log QP=218,
	// 4096 complex slots, 5 levels, scale 2^30. The default.
	PresetN13 = "CKKS-N13-QP218"
	// PresetN14 is Lattigo's ExampleParameters128BitLogN14LogQP438 (log QP
	// is 435): N=2^14, 8192 slots, 6 levels, scale 2^45.
	PresetN14 = "CKKS-N14-QP435"
	// PresetN15 is Lattigo's CKKSComplexParamsN15QP881: N=2^15, 16384
	// slots, 17 levels, scale 2^40, for deeper models.
	PresetN15 = "CKKS-N15-QP881"
)

// DefaultPreset is the preset used when none is named.
const DefaultPreset = PresetN13

var presetLiterals = map[string]func() ckks.ParametersLiteral{
	PresetN13: func() ckks.ParametersLiteral { return examples.CKKSComplexParamsN13QP218 },
	PresetN14: func() ckks.ParametersLiteral { return ckks.ExampleParameters128BitLogN14LogQP438 },
	PresetN15: func() ckks.ParametersLiteral { return examples.CKKSComplexParamsN15QP881 },
}

// maxLogQP128 is the largest log2(QP) for which a ring of degree 2^logN keeps
// 128-bit classical security with a ternary secret and error σ=3.2, from the
// Homomorphic Encryption Standard (Albrecht et al., 2018, Table 1).
var maxLogQP128 = map[int]float64{
	10: 27, 11: 54, 12: 109, 13: 218, 14: 438, 15: 881,
}

// Params is a validated CKKS parameter set known by name.
type Params struct {
	name string
	p    ckks.Parameters
}

// Presets lists the preset names, sorted.
func Presets() []string {
	names := make([]string, 0, len(presetLiterals))
	for n := range presetLiterals {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Preset returns the named parameter set. It fails for unknown names and for
// any set that does not meet the 128-bit bound.
func Preset(name string) (Params, error) {
	lit, ok := presetLiterals[name]
	if !ok {
		return Params{}, fmt.Errorf("he: params: unknown preset %q (known: %v)", name, Presets())
	}
	p, err := newParams(name, lit())
	if err != nil {
		return Params{}, err
	}
	if err := CheckSecurity(p); err != nil {
		return Params{}, err
	}
	return p, nil
}

func newParams(name string, lit ckks.ParametersLiteral) (Params, error) {
	p, err := ckks.NewParametersFromLiteral(lit)
	if err != nil {
		return Params{}, fmt.Errorf("he: params %s: %w", name, err)
	}
	return Params{name: name, p: p}, nil
}

// CheckSecurity reports whether p meets the Homomorphic Encryption Standard's
// 128-bit bound on log2(QP) for its ring degree with Lattigo's default
// ternary secret and σ=3.2 error.
func CheckSecurity(p Params) error {
	bound, ok := maxLogQP128[p.p.LogN()]
	if !ok {
		return fmt.Errorf("he: params %s: logN=%d has no 128-bit bound", p.name, p.p.LogN())
	}
	if got := p.p.LogQP(); got > bound {
		return fmt.Errorf("he: params %s: log2(QP)=%.4f exceeds the 128-bit bound %.0f for logN=%d", p.name, got, bound, p.p.LogN())
	}
	// The bound assumes a ternary (or sparser-free uniform ternary) secret and
	// a discrete Gaussian error with σ≈3.2.
	if xe, ok := p.p.Xe().(ring.DiscreteGaussian); !ok || xe.Sigma < 3.19 {
		return fmt.Errorf("he: params %s: error distribution %v is not a discrete Gaussian with σ≥3.2", p.name, p.p.Xe())
	}
	if xs, ok := p.p.Xs().(ring.Ternary); !ok || xs.H != 0 {
		return fmt.Errorf("he: params %s: secret distribution %v is not uniform ternary", p.name, p.p.Xs())
	}
	return nil
}

// Name is the preset name.
func (p Params) Name() string { return p.name }

// CKKS exposes the underlying Lattigo parameters.
func (p Params) CKKS() ckks.Parameters { return p.p }

// Slots is the number of complex plaintext slots per ciphertext.
func (p Params) Slots() int { return p.p.MaxSlots() }

// MaxLevel is the number of rescalings a fresh ciphertext supports.
func (p Params) MaxLevel() int { return p.p.MaxLevel() }

// LogN is log2 of the ring degree.
func (p Params) LogN() int { return p.p.LogN() }

// LogQP is log2 of the full modulus, the quantity the security bound limits.
func (p Params) LogQP() float64 { return p.p.LogQP() }

// String describes the parameter set.
func (p Params) String() string {
	return fmt.Sprintf("%s (logN=%d, logQP=%.1f, levels=%d, slots=%d, scale=2^%d)",
		p.name, p.p.LogN(), p.p.LogQP(), p.p.MaxLevel(), p.p.MaxSlots(), p.p.LogDefaultScale())
}
