package he

import (
	"context"
	"fmt"
	"math"
	"math/bits"

	"github.com/tuneinsight/lattigo/v6/core/rlwe"
	"github.com/tuneinsight/lattigo/v6/schemes/ckks"
)

// The feature-major (throughput) LoRA delta, y = A·x then delta = Scale·B·y,
// where every ciphertext holds one feature of up to 2·slots tokens:
//
//   - Inputs arrive at level loraThroughputLevel (3 primes with the default
//     preset) and scale Δ_in.
//   - Weights are integers: round(w·2^s) with s chosen per matrix so the
//     largest |weight| uses fmMaxBits bits. Multiplying by an integer needs
//     no encoding and no NTT, and it raises the scale by exactly 2^s.
//   - y_j = Σ_i A_int[j][i]·x_i is accumulated per coefficient without any
//     modular reduction (int64 when the bound allows, else 128 bits), reduced
//     once, and rescaled once (dropping a prime: rank rescales in all).
//   - delta_c = Σ_j B_int[c][j]·y_j at the level below (2 primes), reduced
//     once per output and not rescaled: the output keeps scale
//     Δ_in·2^sA/q_L·2^sB, which its metadata records.
//
// Compared with round(w·q_L) weights and a rescale per output this halves
// the residue products (3 + 2 primes instead of 4 + 3), replaces 128-bit
// multiply-accumulates by 64-bit ones, and removes d_out rescales (each an
// inverse NTT and an NTT per prime).

// Largest weight magnitudes in bits (before the int64 bound lowers them).
// A: 2^-20 relative quantization; B: 2^-16 relative, which keeps the output
// (2 primes, no second rescale) more than 2^16 above the default preset's
// typical |delta| (docs/HE.md §3.1).
const (
	fmMaxBitsA = 20
	fmMaxBitsB = 16
	// fmWideBits is the weight size when products cannot be accumulated
	// in int64 (presets with primes above ~40 bits).
	fmWideBits = 24
	// fmMinNarrowBits is the least weight size accepted for int64
	// accumulation; below it the 128-bit path is used.
	fmMinNarrowBits = 12
)

// fmWeights is a matrix quantized to integers round(w·2^shift) for the
// feature-major packing, row-major with `terms` columns.
type fmWeights struct {
	shift  int
	narrow bool       // int64 accumulation of the products
	ints   []int64    // narrow: the integers
	res    [][]uint64 // wide: residues per prime [k][m]
	red    []barrett  // per prime
}

// quantizeFM quantizes scale·w (rows × terms) for accumulation over the
// given primes.
func quantizeFM(w [][]float64, scale float64, terms int, moduli []uint64, maxBits int) (fmWeights, error) {
	var maxAbs float64
	for _, row := range w {
		for _, v := range row {
			maxAbs = math.Max(maxAbs, math.Abs(scale*v))
		}
	}
	b := 0
	for _, q := range moduli {
		b = max(b, bits.Len64(q))
	}
	out := fmWeights{red: make([]barrett, len(moduli))}
	for m, q := range moduli {
		out.red[m] = newBarrett(q)
	}
	wbits := min(maxBits, 62-b-bits.Len(uint(terms-1)))
	if wbits >= fmMinNarrowBits {
		out.narrow = true
	} else {
		if terms > maxWideTerms(moduli) {
			return fmWeights{}, fmt.Errorf("%d terms exceed the %d a 128-bit accumulator holds", terms, maxWideTerms(moduli))
		}
		wbits = fmWideBits
	}
	_, e := math.Frexp(maxAbs) // maxAbs < 2^e
	if maxAbs == 0 {
		e = 0
	}
	out.shift = wbits - e
	n := len(w) * terms
	if out.narrow {
		out.ints = make([]int64, n)
	} else {
		out.res = make([][]uint64, n)
	}
	for r, row := range w {
		for t, v := range row {
			x := int64(math.Round(math.Ldexp(scale*v, out.shift))) // |x| ≤ 2^wbits
			k := r*terms + t
			if out.narrow {
				out.ints[k] = x
				continue
			}
			res := make([]uint64, len(moduli))
			for m, q := range moduli {
				if x >= 0 {
					res[m] = uint64(x) % q
				} else if rm := uint64(-x) % q; rm != 0 {
					res[m] = q - rm
				}
			}
			out.res[k] = res
		}
	}
	return out, nil
}

// barrett reduces non-negative integers below 2^64 modulo q, and signed
// int64 sums of magnitude below 2^62 after adding off (a multiple of q at
// least 2^62).
type barrett struct {
	q, m, off uint64 // m = ⌊(2^64−1)/q⌋
}

func newBarrett(q uint64) barrett {
	k := (uint64(1)<<62 + q - 1) / q
	return barrett{q: q, m: ^uint64(0) / q, off: k * q}
}

// signed returns v mod q for |v| < 2^62.
func (b barrett) signed(v int64) uint64 {
	u := uint64(v) + b.off
	hi, _ := bits.Mul64(u, b.m)
	r := u - hi*b.q
	if r >= b.q {
		r -= b.q
	}
	if r >= b.q {
		r -= b.q
	}
	return r
}

// fmChunk is how many input ciphertexts are pulled before the accumulators
// are updated in parallel; fmBlock the coefficients an accumulator block
// (8 KiB of int64) covers; fmTile the outputs computed together while the
// intermediates' block is in cache.
const (
	fmChunk = 16
	fmBlock = 1024
	fmTile  = 8
)

// deltaFeatureMajor computes one group: next(i) supplies input feature i
// (in order) and emit(c, ct) receives output feature c (in order).
func (e *Evaluator) deltaFeatureMajor(ctx context.Context, ad *loraAdapter, next func(i int) (*rlwe.Ciphertext, error), emit func(c int, ct *rlwe.Ciphertext) error) error {
	p := e.params
	s := ad.shape
	L := ad.fmLevel
	N := p.p.N()
	workers := e.workers()

	// Phase 1: y_j = Σ_i A[j][i]·x_i, rank accumulators over d_in inputs.
	var nacc [][][][]int64 // narrow: [j][poly][prime][coeff]
	var wacc []*wideAcc    // wide
	if ad.fmA.narrow {
		nacc = make([][][][]int64, s.Rank)
		for j := range nacc {
			nacc[j] = make([][][]int64, 2)
			for pl := range 2 {
				nacc[j][pl] = make([][]int64, L+1)
				for m := range L + 1 {
					nacc[j][pl][m] = make([]int64, N)
				}
			}
		}
	} else {
		wacc = make([]*wideAcc, s.Rank)
		for j := range wacc {
			wacc[j] = newWideAcc(2, L+1, N)
		}
	}
	var first *rlwe.Ciphertext
	buf := make([]*rlwe.Ciphertext, 0, fmChunk)
	blocks := (N + fmBlock - 1) / fmBlock
	flush := func(base int) error {
		if !ad.fmA.narrow {
			return parallelFor(ctx, s.Rank, workers, func() any { return nil }, func(_ any, j int) error {
				ws := make([][]uint64, len(buf))
				for k := range buf {
					ws[k] = ad.fmA.res[j*s.DIn+base+k]
				}
				wacc[j].mulAddMany(buf, ws, L+1)
				return nil
			})
		}
		// One unit is a block of coefficients of one polynomial and prime,
		// for every accumulator: the inputs' block stays in cache while
		// the rank accumulators pass over it.
		return parallelFor(ctx, 2*(L+1)*blocks, workers, func() any { return make([][]uint64, 0, fmChunk) }, func(st any, u int) error {
			xs := st.([][]uint64)[:0]
			pl, m, blk := u/((L+1)*blocks), (u/blocks)%(L+1), u%blocks
			b0, b1 := blk*fmBlock, min((blk+1)*fmBlock, N)
			for _, ct := range buf {
				xs = append(xs, ct.Value[pl].Coeffs[m][b0:b1])
			}
			for j := range s.Rank {
				macInt64(nacc[j][pl][m][b0:b1], xs, ad.fmA.ints[j*s.DIn+base:j*s.DIn+base+len(buf)])
			}
			return nil
		})
	}
	for i := 0; i < s.DIn; i++ {
		ct, err := next(i)
		if err != nil {
			return fmt.Errorf("input %d: %w", i, err)
		}
		if ct.Level() != L {
			return fmt.Errorf("input %d at level %d, want %d", i, ct.Level(), L)
		}
		if first == nil {
			first = ct
		} else if !ct.Scale.Equal(first.Scale) {
			return fmt.Errorf("input %d scale differs from input 0", i)
		}
		buf = append(buf, ct)
		if len(buf) == fmChunk || i == s.DIn-1 {
			if err := flush(i + 1 - len(buf)); err != nil {
				return err
			}
			buf = buf[:0]
		}
	}
	q := p.p.Q()
	ys := make([]*rlwe.Ciphertext, s.Rank)
	err := parallelFor(ctx, s.Rank, workers, func() any { return e.evalPool.Get() }, func(st any, j int) error {
		ev := st.(*ckks.Evaluator)
		ct := rlwe.NewCiphertext(p.p, 1, L)
		*ct.MetaData = *first.MetaData
		ct.Scale = first.Scale.Mul(rlwe.NewScale(math.Ldexp(1, ad.fmA.shift)))
		if ad.fmA.narrow {
			for pl := range 2 {
				for m := range L + 1 {
					reduceInt64(ct.Value[pl].Coeffs[m], nacc[j][pl][m], ad.fmA.red[m])
				}
			}
			nacc[j] = nil
		} else {
			wacc[j].reduceInto(ct, q)
			wacc[j] = nil
		}
		y := rlwe.NewCiphertext(p.p, 1, L-1)
		if err := ev.Rescale(ct, y); err != nil {
			return err
		}
		ys[j] = y
		return nil
	})
	if err != nil {
		return err
	}

	// Phase 2: delta_c = Σ_j B[c][j]·y_j at level L-1, no rescale, emitted
	// in order.
	outScale := ys[0].Scale.Mul(rlwe.NewScale(math.Ldexp(1, ad.fmB.shift)))
	const outBlock = 256
	outs := make([]*rlwe.Ciphertext, outBlock)
	for base := 0; base < s.DOut; base += outBlock {
		n := min(outBlock, s.DOut-base)
		tiles := (n + fmTile - 1) / fmTile
		newState := func() any { return nil }
		if !ad.fmB.narrow {
			newState = func() any { return newWideAcc(2, L, N) }
		}
		err := parallelFor(ctx, tiles, workers, newState, func(st any, t int) error {
			k0, k1 := t*fmTile, min((t+1)*fmTile, n)
			for k := k0; k < k1; k++ {
				ct := rlwe.NewCiphertext(p.p, 1, L-1)
				*ct.MetaData = *ys[0].MetaData
				ct.Scale = outScale
				outs[k] = ct
			}
			if !ad.fmB.narrow {
				acc := st.(*wideAcc)
				for k := k0; k < k1; k++ {
					c := base + k
					acc.reset()
					acc.mulAddMany(ys, ad.fmB.res[c*s.Rank:(c+1)*s.Rank], L)
					acc.reduceInto(outs[k], q)
				}
				return nil
			}
			var acc [fmBlock]int64
			yv := make([][]uint64, s.Rank)
			for pl := range 2 {
				for m := range L {
					for b0 := 0; b0 < N; b0 += fmBlock {
						b1 := min(b0+fmBlock, N)
						for j, y := range ys {
							yv[j] = y.Value[pl].Coeffs[m][b0:b1]
						}
						a := acc[:b1-b0]
						for k := k0; k < k1; k++ {
							c := base + k
							clear(a)
							macInt64(a, yv, ad.fmB.ints[c*s.Rank:(c+1)*s.Rank])
							reduceInt64(outs[k].Value[pl].Coeffs[m][b0:b1], a, ad.fmB.red[m])
						}
					}
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		for k := range n {
			if err := emit(base+k, outs[k]); err != nil {
				return fmt.Errorf("emit %d: %w", base+k, err)
			}
			outs[k] = nil
		}
	}
	return nil
}

// macInt64 adds Σ_i xs[i]·ws[i] to acc. Every xs[i] is at least len(acc)
// long; the caller bounds the sum below 2^62 in magnitude.
func macInt64(acc []int64, xs [][]uint64, ws []int64) {
	n := len(acc)
	i := 0
	for ; i+8 <= len(xs); i += 8 {
		w0, w1, w2, w3, w4, w5, w6, w7 := ws[i], ws[i+1], ws[i+2], ws[i+3], ws[i+4], ws[i+5], ws[i+6], ws[i+7]
		x0, x1, x2, x3 := xs[i][:n], xs[i+1][:n], xs[i+2][:n], xs[i+3][:n]
		x4, x5, x6, x7 := xs[i+4][:n], xs[i+5][:n], xs[i+6][:n], xs[i+7][:n]
		for k := range acc {
			acc[k] += int64(x0[k])*w0 + int64(x1[k])*w1 + int64(x2[k])*w2 + int64(x3[k])*w3 +
				int64(x4[k])*w4 + int64(x5[k])*w5 + int64(x6[k])*w6 + int64(x7[k])*w7
		}
	}
	for ; i+4 <= len(xs); i += 4 {
		w0, w1, w2, w3 := ws[i], ws[i+1], ws[i+2], ws[i+3]
		x0, x1, x2, x3 := xs[i][:n], xs[i+1][:n], xs[i+2][:n], xs[i+3][:n]
		for k := range acc {
			acc[k] += int64(x0[k])*w0 + int64(x1[k])*w1 + int64(x2[k])*w2 + int64(x3[k])*w3
		}
	}
	for ; i < len(xs); i++ {
		w, x := ws[i], xs[i][:n]
		for k := range acc {
			acc[k] += int64(x[k]) * w
		}
	}
}

// reduceInt64 writes src mod q into dst.
func reduceInt64(dst []uint64, src []int64, b barrett) {
	dst = dst[:len(src)]
	for k, v := range src {
		dst[k] = b.signed(v)
	}
}

// wideAcc accumulates Σ c·w over residues in 128 bits per coefficient, so
// that thousands of products need one modular reduction at the end. It
// serves presets whose primes are too large for int64 accumulation.
type wideAcc struct {
	lo, hi [][][]uint64 // [poly][modulus][coeff]
}

func newWideAcc(polys, moduli, n int) *wideAcc {
	a := &wideAcc{lo: make([][][]uint64, polys), hi: make([][][]uint64, polys)}
	for p := range polys {
		a.lo[p] = make([][]uint64, moduli)
		a.hi[p] = make([][]uint64, moduli)
		for m := range moduli {
			a.lo[p][m] = make([]uint64, n)
			a.hi[p][m] = make([]uint64, n)
		}
	}
	return a
}

// maxWideTerms is how many products of residues below the moduli fit in a
// 128-bit accumulator.
func maxWideTerms(moduli []uint64) int {
	b := 0
	for _, q := range moduli {
		b = max(b, bits.Len64(q))
	}
	if 128-2*b >= 30 {
		return 1 << 30
	}
	return 1 << (128 - 2*b)
}

func (a *wideAcc) reset() {
	for p := range a.lo {
		for m := range a.lo[p] {
			clear(a.lo[p][m])
			clear(a.hi[p][m])
		}
	}
}

// mulAddMany adds Σ_i cts[i]·ws[i] (ws[i][m] the scalar's residue mod q_m)
// over the first moduli, blocked so an accumulator block stays in cache
// across the ciphertexts.
func (a *wideAcc) mulAddMany(cts []*rlwe.Ciphertext, ws [][]uint64, moduli int) {
	for p := range a.lo {
		for m := range moduli {
			lo, hi := a.lo[p][m], a.hi[p][m]
			n := len(lo)
			for b0 := 0; b0 < n; b0 += fmBlock {
				b1 := min(b0+fmBlock, n)
				lob, hib := lo[b0:b1], hi[b0:b1]
				hib = hib[:len(lob)]
				for i := range cts {
					s := ws[i][m]
					src := cts[i].Value[p].Coeffs[m][b0:b1]
					src = src[:len(lob)]
					for k, c := range src {
						h, l := bits.Mul64(c, s)
						var carry uint64
						lob[k], carry = bits.Add64(lob[k], l, 0)
						hib[k] += h + carry
					}
				}
			}
		}
	}
}

// reduceInto writes the accumulated values modulo each q_m into ct.
func (a *wideAcc) reduceInto(ct *rlwe.Ciphertext, q []uint64) {
	for p := range a.lo {
		for m := range ct.Value[p].Coeffs {
			dst := ct.Value[p].Coeffs[m]
			lo, hi := a.lo[p][m], a.hi[p][m]
			qm := q[m]
			for k := range dst {
				dst[k] = bits.Rem64(hi[k], lo[k], qm)
			}
		}
	}
}
