package he

import (
	"fmt"
	"github.com/tuneinsight/lattigo/v6/core/rlwe"
	"math"
	"math/bits"
	"slices"

	"github.com/tuneinsight/lattigo/v6/circuits/ckks/lintrans"
)

// Packing names how token activations are laid out in ciphertext slots.
type Packing string

const (
	// PackingThroughput is the feature-major packing: ciphertext (g, i)
	// holds feature i of tokens g·2S … g·2S+2S-1 (S slots; the first S
	// tokens in the real parts, the next S in the imaginary parts). LoRA
	// over it needs no rotations and no evaluation keys.
	PackingThroughput Packing = "feature_major"
	// PackingLatency is the token-interleaved packing: with width n (a power
	// of two ≥ every dimension) and P = S/n, feature c of token p sits in
	// slot c·P+p, so a rotation by k·P shifts every token's features
	// cyclically by k. A ciphertext holds 2P tokens (real and imaginary).
	PackingLatency Packing = "interleaved"
	// PackingInterleavedReal is PackingLatency with real parts only (P
	// tokens per ciphertext), used where the circuit is not complex-linear
	// (polynomial activations in private inference).
	PackingInterleavedReal Packing = "interleaved_real"
)

// Layout describes a set of ciphertexts carrying a tokens×dim matrix.
type Layout struct {
	Packing Packing `json:"packing" cbor:"packing"`
	// Dim is the number of features per token carried.
	Dim int `json:"dim" cbor:"dim"`
	// Width is the padded interleave width n (interleaved packings only;
	// 0 for feature_major).
	Width int `json:"width,omitempty" cbor:"width,omitempty"`
	// Tokens is the number of tokens carried.
	Tokens int `json:"tokens" cbor:"tokens"`
}

// Bounds on layouts, far above real use, that keep counts from overflowing.
const (
	maxDim    = 1 << 20
	maxTokens = 1 << 32
)

// tokensPerCiphertext is how many tokens one ciphertext carries.
func (l Layout) tokensPerCiphertext(slots int) int {
	switch l.Packing {
	case PackingThroughput:
		return 2 * slots
	case PackingLatency:
		return 2 * (slots / l.Width)
	case PackingInterleavedReal:
		return slots / l.Width
	}
	return 0
}

// Ciphertexts is the number of ciphertexts the layout needs.
func (l Layout) Ciphertexts(slots int) int {
	tpc := l.tokensPerCiphertext(slots)
	if tpc == 0 {
		return 0
	}
	groups := (l.Tokens + tpc - 1) / tpc
	if l.Packing == PackingThroughput {
		return groups * l.Dim
	}
	return groups
}

// validate checks the layout against the parameters.
func (l Layout) validate(slots int) error {
	if l.Dim < 1 {
		return fmt.Errorf("he: layout: dim must be ≥ 1, got %d", l.Dim)
	}
	if l.Dim > maxDim {
		return fmt.Errorf("he: layout: dim %d exceeds %d", l.Dim, maxDim)
	}
	if l.Tokens < 1 || l.Tokens > maxTokens {
		return fmt.Errorf("he: layout: tokens must be in [1, %d], got %d", maxTokens, l.Tokens)
	}
	switch l.Packing {
	case PackingThroughput:
		if l.Width != 0 {
			return fmt.Errorf("he: layout: width must be 0 for %s, got %d", l.Packing, l.Width)
		}
	case PackingLatency, PackingInterleavedReal:
		if !isPow2(l.Width) || l.Width > slots {
			return fmt.Errorf("he: layout: width must be a power of two ≤ %d slots, got %d", slots, l.Width)
		}
		if l.Dim > l.Width {
			return fmt.Errorf("he: layout: dim %d exceeds width %d", l.Dim, l.Width)
		}
	default:
		return fmt.Errorf("he: layout: unknown packing %q", l.Packing)
	}
	return nil
}

func isPow2(n int) bool { return n > 0 && n&(n-1) == 0 }

func nextPow2(n int) int {
	if n <= 1 {
		return 1
	}
	return 1 << bits.Len(uint(n-1))
}

// LoRAShape is the shape of a LoRA adapter: A is Rank×DIn, B is DOut×Rank.
type LoRAShape struct {
	DIn  int `json:"d_in" cbor:"d_in"`
	DOut int `json:"d_out" cbor:"d_out"`
	Rank int `json:"rank" cbor:"rank"`
}

func (s LoRAShape) validate() error {
	if s.DIn < 1 || s.DOut < 1 || s.Rank < 1 {
		return fmt.Errorf("he: lora shape: d_in, d_out and rank must be ≥ 1, got %d, %d, %d", s.DIn, s.DOut, s.Rank)
	}
	if s.Rank > s.DIn || s.Rank > s.DOut {
		return fmt.Errorf("he: lora shape: rank %d exceeds d_in %d or d_out %d", s.Rank, s.DIn, s.DOut)
	}
	return nil
}

// latencyWidth is the interleave width n and padded rank r' for the latency
// packing of s.
func (s LoRAShape) latencyWidth() (n, rp int) {
	rp = nextPow2(s.Rank)
	n = nextPow2(max(s.DIn, s.DOut, rp))
	return n, rp
}

// logBSGSRatio is the baby-step giant-step ratio used for every linear
// transformation in the package (Lattigo's recommended 1 for few keys).
const logBSGSRatio = 1

// diagIndices returns the rotation indices k·P for k in [0, count).
func diagIndices(count, p int) []int {
	idx := make([]int, count)
	for k := range idx {
		idx[k] = k * p
	}
	return idx
}

// loraLatencyGalois returns the Galois elements the latency packing of s
// needs, or an error if s does not fit the parameters.
func loraLatencyGalois(p Params, s LoRAShape) ([]uint64, error) {
	if err := s.validate(); err != nil {
		return nil, err
	}
	slots := p.Slots()
	n, rp := s.latencyWidth()
	if n > slots {
		return nil, fmt.Errorf("he: lora shape: width %d exceeds %d slots of %s", n, slots, p.name)
	}
	P := slots / n
	var els []uint64
	diag := diagIndices(rp, P)
	els = append(els, lintrans.GaloisElements(p.p, lintrans.Parameters{
		DiagonalsIndexList:        diag,
		LogDimensions:             p.p.LogMaxDimensions(),
		LogBabyStepGiantStepRatio: logBSGSRatio,
	})...)
	for step := rp; step < n; step <<= 1 {
		els = append(els, p.p.GaloisElementForRotation(step*P))
	}
	return sortedUnique(els), nil
}

// mlpGalois returns the Galois elements a dense layer of padded width n needs.
func mlpGalois(p Params, n int) ([]uint64, error) {
	slots := p.Slots()
	if !isPow2(n) || n > slots {
		return nil, fmt.Errorf("he: mlp width must be a power of two ≤ %d, got %d", slots, n)
	}
	return sortedUnique(lintrans.GaloisElements(p.p, lintrans.Parameters{
		DiagonalsIndexList:        diagIndices(n, slots/n),
		LogDimensions:             p.p.LogMaxDimensions(),
		LogBabyStepGiantStepRatio: logBSGSRatio,
	})), nil
}

func sortedUnique(els []uint64) []uint64 {
	slices.Sort(els)
	return slices.Compact(els)
}

// loraThroughputLevel is the level at which feature-major LoRA inputs are
// encrypted: A is applied with integer weights at this level (three primes
// with the default preset), one rescale drops a prime, and B is applied with
// integer weights at the level below without a second rescale, so the
// result sits over two primes. Fewer primes mean fewer residue products.
func loraThroughputLevel(p Params) int { return min(2, p.MaxLevel()) }

// loraThroughputScale is the plaintext scale of feature-major LoRA inputs:
// 2^4 above the default, so that after A (integer weights of about 2^20 for
// the default preset) and one rescale the intermediate sits a few bits
// below the default scale: its rescaling noise stays far below 1e-4 after B,
// and the two primes of the output keep more headroom for |delta|.
func loraThroughputScale(p Params) rlwe.Scale {
	return rlwe.NewScale(math.Exp2(float64(p.p.LogDefaultScale() + 8)))
}

// loraLevel and loraScale are the input level and scale of a LoRA packing.
func loraLevel(p Params, packing Packing) int {
	if packing == PackingThroughput {
		return loraThroughputLevel(p)
	}
	return loraInputLevel(p)
}

func loraScale(p Params, packing Packing) rlwe.Scale {
	if packing == PackingThroughput {
		return loraThroughputScale(p)
	}
	return loraInputScale(p)
}

// loraInputLevel is the level at which LoRA inputs are encrypted: two levels
// are consumed (A, then B) and one is kept so the result sits over a modulus
// of at least two primes, leaving ample room for the delta's magnitude.
func loraInputLevel(p Params) int { return min(3, p.MaxLevel()) }

// loraInputScale is the plaintext scale of LoRA inputs: 2^10 above the
// default, so that key-switching noise from the latency packing's rotations
// and the fresh encryption noise are 2^10 smaller relative to the message,
// while the result (at level 1) still has over 20 bits of headroom.
func loraInputScale(p Params) rlwe.Scale {
	return rlwe.NewScale(math.Exp2(float64(p.p.LogDefaultScale() + 8)))
}

// LatencyWidth is the interleave width n of the latency (interleaved)
// packing for an adapter of shape s: the next power of two at least d_in,
// d_out and the rank rounded up to a power of two.
func LatencyWidth(s LoRAShape) int {
	n, _ := s.latencyWidth()
	return n
}

// InputBytes is about how many bytes the LoRA input ciphertexts of layout l
// take in binary form (at the packing's input level): what a client can
// compare to choose a packing by batch size.
func InputBytes(p Params, l Layout) int {
	per := 2 * (loraLevel(p, l.Packing) + 1) * p.p.N() * 8
	return l.Ciphertexts(p.Slots()) * per
}

// GroupTokens is how many tokens one group of ciphertexts of the layout
// carries: 2·slots for feature_major (a group is dim ciphertexts), 2·slots/width
// for interleaved and slots/width for interleaved_real (a group is one
// ciphertext). A batch can be split into requests at multiples of it.
func (l Layout) GroupTokens(slots int) int { return l.tokensPerCiphertext(slots) }
