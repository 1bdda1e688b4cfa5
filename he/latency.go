package he

import (
	"errors"
	"fmt"
	"math/big"
	"math/bits"
	"slices"
	"sync"

	"github.com/tuneinsight/lattigo/v6/circuits/ckks/lintrans"
	commonlt "github.com/tuneinsight/lattigo/v6/circuits/common/lintrans"
	"github.com/tuneinsight/lattigo/v6/core/rlwe"
	"github.com/tuneinsight/lattigo/v6/ring"
	"github.com/tuneinsight/lattigo/v6/ring/ringqp"
	"github.com/tuneinsight/lattigo/v6/schemes/ckks"
)

// The latency packing's evaluation, on as many cores as it is given.
//
// Lattigo evaluates a linear transformation or a rotation of one ciphertext
// on one core, so a request with one ciphertext (two tokens at d = 4096)
// left the other cores idle. This file evaluates loraLatencyOne's circuit
// itself, on Lattigo's ring primitives and with w evaluators (Lattigo
// ShallowCopy()s, each with its own buffers), and computes the same
// ciphertext bit for bit (the tests compare the polynomials), with the same
// Galois keys and formats:
//
//   - Key switching (keySwitch, decomposeRows): c1's digits (one RNS prime
//     each with one auxiliary prime P) are extended to every prime of QP
//     and multiplied with the key row by row, each worker taking its rows
//     of every digit; with several auxiliary primes the workers take whole
//     digits (keySwitchDigits) and their partial sums are added. The two
//     output polynomials are brought back to Q (ModDown) by two workers.
//   - A BSGS product (bsgs) decomposes its input once (hoisting), computes
//     the baby-step rotations modulo QP and every giant step's diagonal
//     products by rows, brings the giant steps' groups back to Q in
//     parallel, key-switches each group as above and adds them.
//   - Products summed over three or four terms are accumulated in 128 bits
//     and reduced once (mredDot3, mredDot4), which makes the one-worker case
//     faster than Lattigo's evaluation too.

// runWorkers runs fn(0) … fn(w-1) concurrently, fn(0) on the caller's
// goroutine, and returns when all are done.
func runWorkers(w int, fn func(w int)) {
	if w <= 1 {
		fn(0)
		return
	}
	var wg sync.WaitGroup
	wg.Add(w - 1)
	for i := 1; i < w; i++ {
		go func() {
			defer wg.Done()
			fn(i)
		}()
	}
	fn(0)
	wg.Wait()
}

// parWork is the scratch space of one multi-worker evaluation: the
// evaluators and buffers shared by the workers.
type parWork struct {
	evs    []*ckks.Evaluator
	params rlwe.Parameters
	// acc[w] is worker w's key-switching accumulator (two polynomials mod QP).
	acc [][2]ringqp.Poly
	// rowBuf[w] is two rows of scratch space for worker w.
	rowBuf [][2][]uint64
	// Buffers of bsgs: baby-step rotations (by rotation), the giant
	// steps' groups modulo QP and their c1 modulo Q (by giant step), the
	// output modulo QP.
	preRot map[int]*[2]ringqp.Poly
	grp    map[int]*[2]ringqp.Poly
	grpC1  map[int]ring.Poly
	out    [2]ringqp.Poly
	// bufQ[w] is worker w's buffer for rescaling.
	bufQ []ring.Poly
}

func newParWork(evs []*ckks.Evaluator) *parWork {
	params := *evs[0].GetRLWEParameters()
	rqp := params.RingQP()
	pw := &parWork{
		evs: evs, params: params, acc: make([][2]ringqp.Poly, len(evs)),
		preRot: map[int]*[2]ringqp.Poly{},
		grp:    map[int]*[2]ringqp.Poly{},
		grpC1:  map[int]ring.Poly{},
		out:    [2]ringqp.Poly{rqp.NewPoly(), rqp.NewPoly()},
	}
	for w := range pw.acc {
		pw.acc[w] = [2]ringqp.Poly{rqp.NewPoly(), rqp.NewPoly()}
		pw.rowBuf = append(pw.rowBuf, [2][]uint64{make([]uint64, params.N()), make([]uint64, params.N())})
		pw.bufQ = append(pw.bufQ, params.RingQ().NewPoly())
	}
	return pw
}

// digitRange returns the RNS residues [lo, hi) that digit i of a
// decomposition at levelQ with nbPi primes per digit covers.
func digitRange(i, nbPi, levelQ int) (lo, hi int) {
	return i * nbPi, min((i+1)*nbPi, levelQ+1)
}

// decomposeDigits writes the RNS decomposition of c1 (NTT form, levelQ)
// into the first evaluator's BuffDecompQP, digits split across the workers.
// It is what Lattigo's DecomposeNTT computes.
func (pw *parWork) decomposeDigits(levelQ, levelP int, c1 *rlwe.Ciphertext) []ringqp.Poly {
	decomp := pw.evs[0].GetBuffDecompQP()
	inv := pw.evs[0].BuffInvNTT
	nbPi := levelP + 1
	digits := pw.params.BaseRNSDecompositionVectorSize(levelQ, levelP)
	ringQ := pw.params.RingQ()
	w := min(len(pw.evs), digits)
	runWorkers(w, func(k int) {
		for i := k; i < digits; i += w {
			lo, hi := digitRange(i, nbPi, levelQ)
			for x := lo; x < hi; x++ {
				ringQ.SubRings[x].INTT(c1.Value[1].Coeffs[x], inv.Coeffs[x])
			}
			pw.evs[k].DecomposeSingleNTT(levelQ, levelP, nbPi, i, c1.Value[1], inv, decomp[i].Q, decomp[i].P)
		}
	})
	return decomp
}

// decompose writes the RNS decomposition of ct's c1 into the first
// evaluator's BuffDecompQP (what Lattigo's DecomposeNTT computes).
func (pw *parWork) decompose(levelQ, levelP int, ct *rlwe.Ciphertext) []ringqp.Poly {
	d, _ := pw.decomposeRows(levelQ, levelP, ct.Value[1], nil)
	return d
}

// keySwitch decomposes c1 and multiplies it with the gadget ciphertext; the
// partial sums are in pw.acc[:n].
func (pw *parWork) keySwitch(levelQ, levelP int, c1 ring.Poly, gadget *rlwe.GadgetCiphertext) (n int) {
	_, n = pw.decomposeRows(levelQ, levelP, c1, gadget)
	return n
}

// rotateAddInPlace sets ct ← ct + rot(ct, k) on the workers: the key switch
// split across them (keySwitch), then the two polynomials (ModDown,
// automorphism, add) one per worker. The rotation is the one
// ckks.Evaluator.Rotate computes, bit for bit.
func (pw *parWork) rotateAddInPlace(ct *rlwe.Ciphertext, k int) error {
	ev0 := pw.evs[0]
	galEl := pw.params.GaloisElement(k)
	evk, err := ev0.CheckAndGetGaloisKey(galEl)
	if err != nil {
		return fmt.Errorf("rotate %d: %w", k, err)
	}
	if !ct.IsNTT || ct.Degree() != 1 {
		return fmt.Errorf("rotate %d: ciphertext must be of degree 1 in NTT form", k)
	}
	if evk.BaseTwoDecomposition != 0 {
		return fmt.Errorf("rotate %d: base-2 decomposition of Galois keys is not supported", k)
	}
	levelQ, levelP := ct.Level(), evk.LevelP()
	ringQ := pw.params.RingQ().AtLevel(levelQ)
	rqp := pw.params.RingQP().AtLevel(levelQ, levelP)
	w := pw.keySwitch(levelQ, levelP, ct.Value[1], &evk.GadgetCiphertext)
	// Both polynomials: sum the partial products, bring them back to Q,
	// add c0 (polynomial 0), permute and add to ct.
	runWorkers(min(2, len(pw.evs)), func(k int) {
		for p := k; p < 2; p += min(2, len(pw.evs)) {
			dst := pw.acc[0][p]
			for j := 1; j < w; j++ {
				rqp.Add(dst, pw.acc[j][p], dst)
			}
			ev := pw.evs[k]
			ev.ModDownQPtoQNTT(levelQ, levelP, dst.Q, dst.P, dst.Q)
			if p == 0 {
				ringQ.Add(dst.Q, ct.Value[0], dst.Q)
			}
			ringQ.AutomorphismNTTWithIndexThenAddLazy(dst.Q, ev.AutomorphismIndex(galEl), ct.Value[p])
			ringQ.Reduce(ct.Value[p], ct.Value[p])
		}
	})
	return nil
}

// rescale divides ct by its last prime(s) in place, what
// ckks.Evaluator.Rescale computes, the two polynomials on two workers.
func (pw *parWork) rescale(ct *rlwe.Ciphertext) error {
	nb := pw.evs[0].GetParameters().LevelsConsumedPerRescaling()
	if ct.Level() < nb || ct.Degree() != 1 {
		return fmt.Errorf("rescale: ciphertext of degree %d at level %d", ct.Degree(), ct.Level())
	}
	ringQ := pw.params.RingQ().AtLevel(ct.Level())
	for i := range nb {
		ct.Scale = ct.Scale.Div(rlwe.NewScale(ringQ.SubRings[ct.Level()-i].Modulus))
	}
	w := min(2, len(pw.evs))
	runWorkers(w, func(k int) {
		for p := k; p < 2; p += w {
			ringQ.DivRoundByLastModulusManyNTT(nb, ct.Value[p], pw.bufQ[k], ct.Value[p])
		}
	})
	ct.Resize(1, ct.Level()-nb)
	return nil
}

// loraLatencyPar computes what loraLatencyOne computes, bit for bit, on
// len(pw.evs) workers (one is fine: the products summed in 128 bits make it
// faster than Lattigo's evaluation on one core too).
func loraLatencyPar(pw *parWork, ad *loraAdapter, P int, ct *rlwe.Ciphertext) (*rlwe.Ciphertext, error) {
	z, err := pw.bsgs(ct, ad.ltA)
	if err != nil {
		return nil, fmt.Errorf("A: %w", err)
	}
	if err := pw.rescale(z); err != nil {
		return nil, fmt.Errorf("A: %w", err)
	}
	for step := ad.rp; step < ad.width; step <<= 1 {
		if err := pw.rotateAddInPlace(z, step*P); err != nil {
			return nil, fmt.Errorf("inner sum: %w", err)
		}
	}
	o, err := pw.bsgs(z, ad.ltB)
	if err != nil {
		return nil, fmt.Errorf("B: %w", err)
	}
	if err := pw.rescale(o); err != nil {
		return nil, fmt.Errorf("B: %w", err)
	}
	return o, nil
}

// qpRow is one RNS residue of a polynomial modulo QP: row i of the Q part
// or of the P part, with its modulus.
type qpRow struct {
	s *ring.SubRing
	p bool
	i int
}

func (r qpRow) of(x ringqp.Poly) []uint64 {
	if r.p {
		return x.P.Coeffs[r.i]
	}
	return x.Q.Coeffs[r.i]
}

func qpRows(params rlwe.Parameters, levelQ, levelP int) []qpRow {
	rows := make([]qpRow, 0, levelQ+levelP+2)
	for i, s := range params.RingQ().SubRings[:levelQ+1] {
		rows = append(rows, qpRow{s: s, i: i})
	}
	if levelP >= 0 {
		for i, s := range params.RingP().SubRings[:levelP+1] {
			rows = append(rows, qpRow{s: s, p: true, i: i})
		}
	}
	return rows
}

// autRow sets out = in ∘ index (the NTT-domain automorphism of one row), or
// adds it to out (lazily) when add is set.
func autRow(in, out []uint64, index []uint64, add bool) {
	if add {
		for j, x := range index {
			out[j] += in[x]
		}
		return
	}
	for j, x := range index {
		out[j] = in[x]
	}
}

// keySwitchDigits decomposes c1 (NTT form, levelQ) and multiplies the digits
// with the gadget ciphertext, digits split across the workers: worker k's
// partial sums (reduced) are in pw.acc[k]. It returns how many workers hold
// partial sums.
func (pw *parWork) keySwitchDigits(levelQ, levelP int, c1 ring.Poly, gadget *rlwe.GadgetCiphertext) int {
	nbPi := levelP + 1
	digits := pw.params.BaseRNSDecompositionVectorSize(levelQ, levelP)
	rqp := pw.params.RingQP().AtLevel(levelQ, levelP)
	ringQ, ringP := rqp.RingQ, rqp.RingP
	qOverF := max(1, pw.params.QiOverflowMargin(levelQ)>>1)
	pOverF := max(1, pw.params.PiOverflowMargin(levelP)>>1)
	decomp := pw.evs[0].GetBuffDecompQP()
	inv := pw.evs[0].BuffInvNTT
	w := min(len(pw.evs), digits)
	runWorkers(w, func(k int) {
		acc := &pw.acc[k]
		n := 0
		for i := k; i < digits; i += w {
			lo, hi := digitRange(i, nbPi, levelQ)
			for x := lo; x < hi; x++ {
				ringQ.SubRings[x].INTT(c1.Coeffs[x], inv.Coeffs[x])
			}
			pw.evs[k].DecomposeSingleNTT(levelQ, levelP, nbPi, i, c1, inv, decomp[i].Q, decomp[i].P)
			g := gadget.Value[i][0]
			if n == 0 {
				rqp.MulCoeffsMontgomeryLazy(g[0], decomp[i], acc[0])
				rqp.MulCoeffsMontgomeryLazy(g[1], decomp[i], acc[1])
			} else {
				rqp.MulCoeffsMontgomeryLazyThenAddLazy(g[0], decomp[i], acc[0])
				rqp.MulCoeffsMontgomeryLazyThenAddLazy(g[1], decomp[i], acc[1])
			}
			if n%qOverF == qOverF-1 {
				ringQ.Reduce(acc[0].Q, acc[0].Q)
				ringQ.Reduce(acc[1].Q, acc[1].Q)
			}
			if n%pOverF == pOverF-1 {
				ringP.Reduce(acc[0].P, acc[0].P)
				ringP.Reduce(acc[1].P, acc[1].P)
			}
			n++
		}
		ringQ.Reduce(acc[0].Q, acc[0].Q)
		ringQ.Reduce(acc[1].Q, acc[1].Q)
		ringP.Reduce(acc[0].P, acc[0].P)
		ringP.Reduce(acc[1].P, acc[1].P)
	})
	return w
}

// bsgs computes lt(ct) (not rescaled), what Lattigo's EvaluateMany computes
// with one BSGS transformation, with every step split across the workers:
// the input's decomposition by digits, the baby-step rotations (hoisted,
// kept modulo QP) and the diagonal products by RNS rows, each giant step's
// key switch by digits (after one ModDown of its c1), and the final ModDown
// of the two output polynomials one per worker.
func (pw *parWork) bsgs(ct *rlwe.Ciphertext, lt *lintrans.LinearTransformation) (*rlwe.Ciphertext, error) {
	full := commonlt.LinearTransformation(*lt)
	if full.N1 == 0 {
		return nil, errors.New("linear transformation: not a baby-step giant-step transformation")
	}
	if !ct.IsNTT || ct.Degree() != 1 {
		return nil, errors.New("linear transformation: ciphertext must be of degree 1 in NTT form")
	}
	params := pw.params
	levelQ, levelP := min(ct.Level(), full.LevelQ), full.LevelP
	if levelP < 0 {
		return nil, errors.New("linear transformation: parameters without an auxiliary modulus P")
	}
	index, _, babies := full.BSGSIndex()
	giants := make([]int, 0, len(index))
	for j := range index {
		giants = append(giants, j)
	}
	slices.Sort(giants)
	type galois struct {
		key   *rlwe.GaloisKey
		index []uint64
	}
	gal := map[int]galois{}
	for _, r := range slices.Concat(babies, giants) {
		if r == 0 {
			continue
		}
		el := params.GaloisElement(r)
		key, err := pw.evs[0].CheckAndGetGaloisKey(el)
		if err != nil {
			return nil, fmt.Errorf("linear transformation: rotation %d: %w", r, err)
		}
		if key.LevelP() != levelP || key.BaseTwoDecomposition != 0 {
			return nil, fmt.Errorf("linear transformation: rotation %d: Galois key with P level %d and base-2 decomposition %d, want %d and 0", r, key.LevelP(), key.BaseTwoDecomposition, levelP)
		}
		gal[r] = galois{key: key, index: pw.evs[0].AutomorphismIndex(el)}
	}
	rows := qpRows(params, levelQ, levelP)
	wr := min(len(pw.evs), len(rows))
	digits := params.BaseRNSDecompositionVectorSize(levelQ, levelP)
	// P mod q_i, Montgomery form, for P·c0 and P·c1 on the Q rows.
	pBig := params.RingP().AtLevel(levelP).ModulusAtLevel[levelP]
	pMont := make([]uint64, levelQ+1)
	for i, s := range params.RingQ().SubRings[:levelQ+1] {
		pMont[i] = ring.MForm(new(big.Int).Mod(pBig, new(big.Int).SetUint64(s.Modulus)).Uint64(), s.Modulus, s.BRedConstant)
	}
	rqp := params.RingQP()
	preRot := make(map[int]*[2]ringqp.Poly, len(babies)+1)
	for _, i := range append([]int{0}, babies...) {
		if pw.preRot[i] == nil {
			pw.preRot[i] = &[2]ringqp.Poly{rqp.NewPoly(), rqp.NewPoly()}
		}
		preRot[i] = pw.preRot[i]
	}
	decomp := pw.decompose(levelQ, levelP, ct)
	// Baby steps: preRot[i] = φ_i(P·c0 + <g_i0, decomp>, <g_i1, decomp>)
	// modulo QP; preRot[0] = (P·c0, P·c1) on the Q rows.
	runWorkers(wr, func(k int) {
		t0, t1 := pw.rowBuf[k][0], pw.rowBuf[k][1]
		for ri := k; ri < len(rows); ri += wr {
			r := rows[ri]
			if !r.p {
				r.s.MulScalarMontgomery(ct.Value[0].Coeffs[r.i], pMont[r.i], preRot[0][0].Q.Coeffs[r.i])
				r.s.MulScalarMontgomery(ct.Value[1].Coeffs[r.i], pMont[r.i], preRot[0][1].Q.Coeffs[r.i])
			}
			for _, b := range babies {
				if b == 0 {
					continue
				}
				g := gal[b].key.GadgetCiphertext.Value
				x0, x1, y := make([][]uint64, digits), make([][]uint64, digits), make([][]uint64, digits)
				for d := range digits {
					x0[d], x1[d], y[d] = r.of(g[d][0][0]), r.of(g[d][0][1]), r.of(decomp[d])
				}
				rowDot(r, x0, x1, y, t0, t1)
				if !r.p {
					r.s.Add(t0, preRot[0][0].Q.Coeffs[r.i], t0)
				}
				autRow(t0, r.of(preRot[b][0]), gal[b].index, false)
				autRow(t1, r.of(preRot[b][1]), gal[b].index, false)
			}
		}
	})
	out := pw.out
	var rot []int // giant steps other than 0
	for _, j := range giants {
		if j == 0 {
			continue
		}
		rot = append(rot, j)
		if pw.grp[j] == nil {
			pw.grp[j] = &[2]ringqp.Poly{rqp.NewPoly(), rqp.NewPoly()}
			pw.grpC1[j] = params.RingQ().NewPoly()
		}
	}
	// Every group's inner sum Σ_i diag_{j+i} ⊙ preRot[i], by rows; the
	// group of giant step 0 goes straight to the output.
	runWorkers(wr, func(k int) {
		for ri := k; ri < len(rows); ri += wr {
			r := rows[ri]
			for _, j := range giants {
				var a0, a1 []uint64
				if j == 0 {
					a0, a1 = r.of(out[0]), r.of(out[1])
				} else {
					a0, a1 = r.of(pw.grp[j][0]), r.of(pw.grp[j][1])
				}
				var x0, x1, y [][]uint64
				for _, i := range index[j] {
					if i == 0 && r.p {
						continue // P·c ≡ 0 mod p
					}
					x0 = append(x0, r.of(preRot[i][0]))
					x1 = append(x1, r.of(preRot[i][1]))
					y = append(y, r.of(full.Vec[j+i]))
				}
				rowDot(r, x0, x1, y, a0, a1)
			}
		}
	})
	// Each group's c1 back to Q, the groups split across the workers.
	wg := min(len(pw.evs), len(rot))
	runWorkers(wg, func(k int) {
		for g := k; g < len(rot); g += wg {
			j := rot[g]
			pw.evs[k].ModDownQPtoQNTT(levelQ, levelP, pw.grp[j][1].Q, pw.grp[j][1].P, pw.grpC1[j])
		}
	})
	// Rotate each group by j: key switch of its c1, then φ_j of
	// (c0 + ks0, ks1) added to the output, by rows.
	first := len(giants) == len(rot) // no giant step 0 wrote the output
	for _, j := range rot {
		nacc := pw.keySwitch(levelQ, levelP, pw.grpC1[j], &gal[j].key.GadgetCiphertext)
		runWorkers(wr, func(k int) {
			for ri := k; ri < len(rows); ri += wr {
				r := rows[ri]
				s0, s1 := r.of(pw.acc[0][0]), r.of(pw.acc[0][1])
				for a := 1; a < nacc; a++ {
					r.s.Add(s0, r.of(pw.acc[a][0]), s0)
					r.s.Add(s1, r.of(pw.acc[a][1]), s1)
				}
				r.s.Add(s0, r.of(pw.grp[j][0]), s0)
				o0, o1 := r.of(out[0]), r.of(out[1])
				autRow(s0, o0, gal[j].index, !first)
				autRow(s1, o1, gal[j].index, !first)
				if !first {
					r.s.Reduce(o0, o0)
					r.s.Reduce(o1, o1)
				}
			}
		})
		first = false
	}
	opOut := rlwe.NewCiphertext(params, 1, levelQ)
	*opOut.MetaData = *ct.MetaData
	opOut.Scale = ct.Scale.Mul(full.Scale)
	runWorkers(min(2, len(pw.evs)), func(k int) {
		for p := k; p < 2; p += min(2, len(pw.evs)) {
			pw.evs[k].ModDownQPtoQNTT(levelQ, levelP, out[p].Q, out[p].P, opOut.Value[p])
		}
	})
	return opOut, nil
}

// liftRow writes digit d (row d of the input out of the NTT form, q_d) as a
// polynomial modulo the row r's modulus, centred, the way Lattigo's
// Decomposer.DecomposeAndSplit does it when a digit is one prime.
func liftRow(src []uint64, qd uint64, r qpRow, dst []uint64) {
	qu, brc := r.s.Modulus, r.s.BRedConstant
	half := qd >> 1
	for j, c := range src {
		pos, neg := uint64(1), uint64(0)
		if c >= half {
			c = qd - c
			pos, neg = 0, 1
		}
		t := ring.BRedAdd(c, qu, brc)
		dst[j] = t*pos + (qu-t)*neg
	}
}

// decomposeRows is decompose split by RNS rows instead of digits (every
// worker extends every digit to its own rows), which balances better when
// the digits do not divide evenly among the workers. It needs one prime per
// digit (one auxiliary prime P); with more, it calls decompose. Then, if
// gadget is not nil, each worker multiplies its rows of the digits with the
// gadget ciphertext into pw.acc[0]; it returns the number of accumulators
// (1 here, or keySwitchDigits' count).
func (pw *parWork) decomposeRows(levelQ, levelP int, c1 ring.Poly, gadget *rlwe.GadgetCiphertext) ([]ringqp.Poly, int) {
	if levelP != 0 {
		if gadget != nil {
			return pw.evs[0].GetBuffDecompQP(), pw.keySwitchDigits(levelQ, levelP, c1, gadget)
		}
		ct := &rlwe.Ciphertext{Element: rlwe.Element[ring.Poly]{Value: []ring.Poly{c1, c1}}}
		return pw.decomposeDigits(levelQ, levelP, ct), 0
	}
	params := pw.params
	decomp := pw.evs[0].GetBuffDecompQP()
	inv := pw.evs[0].BuffInvNTT
	ringQ := params.RingQ()
	digits := levelQ + 1
	rows := qpRows(params, levelQ, levelP)
	w := min(len(pw.evs), len(rows))
	wd := min(w, digits)
	runWorkers(wd, func(k int) {
		for d := k; d < digits; d += wd {
			ringQ.SubRings[d].INTT(c1.Coeffs[d], inv.Coeffs[d])
		}
	})
	runWorkers(w, func(k int) {
		for ri := k; ri < len(rows); ri += w {
			r := rows[ri]
			for d := range digits {
				dst := r.of(decomp[d])
				if !r.p && r.i == d {
					copy(dst, c1.Coeffs[d])
				} else {
					liftRow(inv.Coeffs[d], ringQ.SubRings[d].Modulus, r, dst)
					r.s.NTT(dst, dst)
				}
			}
			if gadget == nil {
				continue
			}
			x0, x1, y := make([][]uint64, digits), make([][]uint64, digits), make([][]uint64, digits)
			for d := range digits {
				g := gadget.Value[d][0]
				x0[d], x1[d], y[d] = r.of(g[0]), r.of(g[1]), r.of(decomp[d])
			}
			rowDot(r, x0, x1, y, r.of(pw.acc[0][0]), r.of(pw.acc[0][1]))
		}
	})
	return decomp, 1
}

// dotFits reports whether terms products of residues below 2q sum to less
// than q·2^64, so that the sum may be reduced once (mredDot3, mredDot4).
func dotFits(terms int, q uint64) bool {
	return terms > 0 && uint64(terms) <= (^uint64(0)/q)/4
}

// mulAdd returns (hi, lo) + a·b in 128 bits.
func mulAdd(hi, lo, a, b uint64) (uint64, uint64) {
	h, l := bits.Mul64(a, b)
	lo, c := bits.Add64(lo, l, 0)
	return hi + h + c, lo
}

// mredWide returns (hi·2^64 + lo)·2^-64 mod q, reduced, for hi < q: the
// Montgomery reduction of Lattigo's ring.MRed applied to a 128-bit sum.
func mredWide(hi, lo, q, mredConst uint64) uint64 {
	h, _ := bits.Mul64(lo*mredConst, q)
	r := hi - h + q
	if r >= q {
		r -= q
	}
	return r
}

// mredDot4 sets out0 = Σ_t x0[t]⊙y[t] and out1 = Σ_t x1[t]⊙y[t] (four
// terms) modulo q, divided by 2^64 (Montgomery), reduced. The products are
// summed in 128 bits and reduced once per coefficient rather than once per
// term (Lattigo's MulCoeffsMontgomeryLazyThenAddLazy): 1.3× faster for the
// key switching and diagonal products here, and the same residues. The
// caller checks dotFits(4, q).
func mredDot4(x0, x1, y [][]uint64, out0, out1 []uint64, q, mredConst uint64) {
	n := len(out0)
	o0, o1 := out0[:n], out1[:n]
	a0, a1, a2, a3 := x0[0][:n], x0[1][:n], x0[2][:n], x0[3][:n]
	c0, c1, c2, c3 := x1[0][:n], x1[1][:n], x1[2][:n], x1[3][:n]
	b0, b1, b2, b3 := y[0][:n], y[1][:n], y[2][:n], y[3][:n]
	for j := range n {
		hi, lo := bits.Mul64(a0[j], b0[j])
		hi, lo = mulAdd(hi, lo, a1[j], b1[j])
		hi, lo = mulAdd(hi, lo, a2[j], b2[j])
		hi, lo = mulAdd(hi, lo, a3[j], b3[j])
		o0[j] = mredWide(hi, lo, q, mredConst)
		hi, lo = bits.Mul64(c0[j], b0[j])
		hi, lo = mulAdd(hi, lo, c1[j], b1[j])
		hi, lo = mulAdd(hi, lo, c2[j], b2[j])
		hi, lo = mulAdd(hi, lo, c3[j], b3[j])
		o1[j] = mredWide(hi, lo, q, mredConst)
	}
}

// mredDot3 is mredDot4 for three terms.
func mredDot3(x0, x1, y [][]uint64, out0, out1 []uint64, q, mredConst uint64) {
	n := len(out0)
	o0, o1 := out0[:n], out1[:n]
	a0, a1, a2 := x0[0][:n], x0[1][:n], x0[2][:n]
	c0, c1, c2 := x1[0][:n], x1[1][:n], x1[2][:n]
	b0, b1, b2 := y[0][:n], y[1][:n], y[2][:n]
	for j := range n {
		hi, lo := bits.Mul64(a0[j], b0[j])
		hi, lo = mulAdd(hi, lo, a1[j], b1[j])
		hi, lo = mulAdd(hi, lo, a2[j], b2[j])
		o0[j] = mredWide(hi, lo, q, mredConst)
		hi, lo = bits.Mul64(c0[j], b0[j])
		hi, lo = mulAdd(hi, lo, c1[j], b1[j])
		hi, lo = mulAdd(hi, lo, c2[j], b2[j])
		o1[j] = mredWide(hi, lo, q, mredConst)
	}
}

// rowDot sets out0 = Σ_t x0[t]⊙y[t] and out1 = Σ_t x1[t]⊙y[t] on row r
// (Montgomery products, reduced).
func rowDot(r qpRow, x0, x1, y [][]uint64, out0, out1 []uint64) {
	if len(y) == 0 {
		clear(out0)
		clear(out1)
		return
	}
	if dotFits(len(y), r.s.Modulus) {
		switch len(y) {
		case 3:
			mredDot3(x0, x1, y, out0, out1, r.s.Modulus, r.s.MRedConstant)
			return
		case 4:
			mredDot4(x0, x1, y, out0, out1, r.s.Modulus, r.s.MRedConstant)
			return
		}
	}
	for t := range y {
		if t == 0 {
			r.s.MulCoeffsMontgomeryLazy(x0[t], y[t], out0)
			r.s.MulCoeffsMontgomeryLazy(x1[t], y[t], out1)
		} else {
			r.s.MulCoeffsMontgomeryLazyThenAddLazy(x0[t], y[t], out0)
			r.s.MulCoeffsMontgomeryLazyThenAddLazy(x1[t], y[t], out1)
		}
		if t%4 == 3 { // < 2q per term: 4 terms stay below 2^64 for q < 2^61
			r.s.Reduce(out0, out0)
			r.s.Reduce(out1, out1)
		}
	}
	r.s.Reduce(out0, out0)
	r.s.Reduce(out1, out1)
}
