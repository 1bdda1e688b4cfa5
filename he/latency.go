package he

import (
	"fmt"
	"slices"
	"sync"

	"github.com/tuneinsight/lattigo/v6/circuits/ckks/lintrans"
	commonlt "github.com/tuneinsight/lattigo/v6/circuits/common/lintrans"
	"github.com/tuneinsight/lattigo/v6/core/rlwe"
	"github.com/tuneinsight/lattigo/v6/ring/ringqp"
	"github.com/tuneinsight/lattigo/v6/schemes/ckks"
)

// One ciphertext of the latency packing on several cores.
//
// Lattigo evaluates a linear transformation or a rotation of one ciphertext
// on one core, so a request with one ciphertext (two tokens at d = 4096)
// left the other cores idle. The functions here split the work of one
// ciphertext across w evaluators (Lattigo ShallowCopy()s, each with its own
// buffers) without changing what is computed, the Galois keys needed or the
// output format:
//
//   - Key switching decomposes c1 into one digit per group of RNS primes
//     (one prime per digit with one auxiliary prime P); each digit's basis
//     extension (ModUp: NTTs into every prime of QP) and its products with
//     the key are independent, so workers take digits and the partial sums
//     are added. The two output polynomials are then brought back to Q
//     (ModDown) and permuted by two workers. A rotation computed this way is
//     bit-for-bit the one Lattigo's Rotate computes (the test checks it).
//   - A baby-step giant-step product shares one decomposition of the input
//     (hoisting) among its baby-step rotations; the workers decompose the
//     digits, compute the baby-step rotations, then each evaluates a group
//     of giant steps (the diagonals are pre-rotated per giant step, so a
//     group is the full transformation restricted to its giant steps, with
//     the same encoded plaintexts); the group results are added.

// runWorkers runs fn(0) … fn(w-1) concurrently, fn(0) on the caller's
// goroutine, and returns when all are done.
func runWorkers(w int, fn func(w int)) {
	if w == 1 {
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

// splitLT partitions the giant steps of a BSGS linear transformation into at
// most w groups of about equal cost (a giant step other than 0 costs one key
// switch, weighted as four plaintext products, plus one product per
// diagonal). The groups share lt's encoded diagonals.
func splitLT(lt *lintrans.LinearTransformation, w int) []commonlt.LinearTransformation {
	full := commonlt.LinearTransformation(*lt)
	if w < 2 || full.N1 == 0 {
		return []commonlt.LinearTransformation{full}
	}
	index, _, _ := full.BSGSIndex()
	giants := make([]int, 0, len(index))
	for j := range index {
		giants = append(giants, j)
	}
	cost := func(j int) int {
		c := len(index[j])
		if j != 0 {
			c += 4
		}
		return c
	}
	// Longest processing time first: costliest group to the least loaded.
	slices.SortFunc(giants, func(a, b int) int {
		if ca, cb := cost(a), cost(b); ca != cb {
			return cb - ca
		}
		return a - b
	})
	w = min(w, len(giants))
	load := make([]int, w)
	vecs := make([]map[int]ringqp.Poly, w)
	for i := range vecs {
		vecs[i] = map[int]ringqp.Poly{}
	}
	for _, j := range giants {
		k := 0
		for i := range load {
			if load[i] < load[k] {
				k = i
			}
		}
		load[k] += cost(j)
		for _, i := range index[j] {
			vecs[k][j+i] = full.Vec[j+i]
		}
	}
	parts := make([]commonlt.LinearTransformation, 0, w)
	for _, v := range vecs {
		if len(v) == 0 {
			continue
		}
		p := full
		p.Vec = v
		parts = append(parts, p)
	}
	return parts
}

// parWork is the scratch space of one multi-worker evaluation: the
// evaluators and buffers shared by the workers.
type parWork struct {
	evs    []*ckks.Evaluator
	params rlwe.Parameters
	// acc[w] is worker w's key-switching accumulator (two polynomials mod QP).
	acc [][2]ringqp.Poly
}

func newParWork(evs []*ckks.Evaluator) *parWork {
	params := *evs[0].GetRLWEParameters()
	pw := &parWork{evs: evs, params: params, acc: make([][2]ringqp.Poly, len(evs))}
	rqp := params.RingQP()
	for w := range pw.acc {
		pw.acc[w] = [2]ringqp.Poly{rqp.NewPoly(), rqp.NewPoly()}
	}
	return pw
}

// digitRange returns the RNS residues [lo, hi) that digit i of a
// decomposition at levelQ with nbPi primes per digit covers.
func digitRange(i, nbPi, levelQ int) (lo, hi int) {
	return i * nbPi, min((i+1)*nbPi, levelQ+1)
}

// decompose writes the RNS decomposition of c1 (NTT form, levelQ) into the
// first evaluator's BuffDecompQP, digits split across the workers. It is
// what Lattigo's DecomposeNTT computes.
func (pw *parWork) decompose(levelQ, levelP int, c1 *rlwe.Ciphertext) []ringqp.Poly {
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

// rotateAddInPlace sets ct ← ct + rot(ct, k) on the workers: digits of the
// key switch split across them, then the two polynomials (ModDown,
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
	nbPi := levelP + 1
	digits := pw.params.BaseRNSDecompositionVectorSize(levelQ, levelP)
	rqp := pw.params.RingQP().AtLevel(levelQ, levelP)
	ringQ, ringP := rqp.RingQ, rqp.RingP
	qOverF := max(1, pw.params.QiOverflowMargin(levelQ)>>1)
	pOverF := max(1, pw.params.PiOverflowMargin(levelP)>>1)
	decomp := ev0.GetBuffDecompQP()
	inv := ev0.BuffInvNTT
	gadget := evk.GadgetCiphertext.Value
	w := min(len(pw.evs), digits)
	runWorkers(w, func(k int) {
		acc := &pw.acc[k]
		n := 0
		for i := k; i < digits; i += w {
			lo, hi := digitRange(i, nbPi, levelQ)
			for x := lo; x < hi; x++ {
				ringQ.SubRings[x].INTT(ct.Value[1].Coeffs[x], inv.Coeffs[x])
			}
			pw.evs[k].DecomposeSingleNTT(levelQ, levelP, nbPi, i, ct.Value[1], inv, decomp[i].Q, decomp[i].P)
			g := gadget[i][0]
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

// linearTransform computes lt(ct) (not rescaled) on the workers: hoisted
// decomposition of ct, baby-step rotations and giant-step groups (parts,
// from splitLT(lt)) split across them, the groups' results added.
func (pw *parWork) linearTransform(ct *rlwe.Ciphertext, lt *lintrans.LinearTransformation, parts []commonlt.LinearTransformation) (*rlwe.Ciphertext, error) {
	levelQ := min(ct.Level(), lt.LevelQ)
	levelP := lt.LevelP
	if !ct.IsNTT || ct.Degree() != 1 {
		return nil, fmt.Errorf("linear transformation: ciphertext must be of degree 1 in NTT form")
	}
	decomp := pw.decompose(levelQ, levelP, ct)
	_, _, babies := commonlt.LinearTransformation(*lt).BSGSIndex()
	preRot := make(map[int]*rlwe.Element[ringqp.Poly], len(babies))
	var rots []int
	for _, i := range babies {
		if i != 0 {
			preRot[i] = rlwe.NewElementExtended(pw.params, 1, levelQ, levelP)
			rots = append(rots, i)
		}
	}
	errs := make([]error, len(pw.evs))
	w := len(pw.evs)
	runWorkers(min(w, max(1, len(rots))), func(k int) {
		for j := k; j < len(rots); j += min(w, len(rots)) {
			i := rots[j]
			if err := pw.evs[k].AutomorphismHoistedLazy(levelQ, ct, decomp, pw.params.GaloisElement(i), preRot[i]); err != nil {
				errs[k] = fmt.Errorf("baby step %d: %w", i, err)
				return
			}
		}
	})
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	outs := make([]*rlwe.Ciphertext, len(parts))
	runWorkers(min(w, len(parts)), func(k int) {
		lin := commonlt.Evaluator{Evaluator: pw.evs[k]}
		for j := k; j < len(parts); j += min(w, len(parts)) {
			o := rlwe.NewCiphertext(pw.params, 1, levelQ)
			if err := lin.MultiplyByDiagMatrixBSGS(ct, parts[j], preRot, o); err != nil {
				errs[k] = fmt.Errorf("giant steps: %w", err)
				return
			}
			outs[j] = o
		}
	})
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	out := outs[0]
	for _, o := range outs[1:] {
		if err := pw.evs[0].Add(out, o, out); err != nil {
			return nil, fmt.Errorf("giant steps: %w", err)
		}
	}
	return out, nil
}

// loraLatencyPar is loraLatencyOne on len(evs) workers.
func loraLatencyPar(evs []*ckks.Evaluator, ad *loraAdapter, P int, ct *rlwe.Ciphertext) (*rlwe.Ciphertext, error) {
	pw := newParWork(evs)
	ev := evs[0]
	z, err := pw.linearTransform(ct, ad.ltA, splitLT(ad.ltA, len(evs)))
	if err != nil {
		return nil, fmt.Errorf("A: %w", err)
	}
	if err := ev.Rescale(z, z); err != nil {
		return nil, fmt.Errorf("A: %w", err)
	}
	for step := ad.rp; step < ad.width; step <<= 1 {
		if err := pw.rotateAddInPlace(z, step*P); err != nil {
			return nil, fmt.Errorf("inner sum: %w", err)
		}
	}
	o, err := pw.linearTransform(z, ad.ltB, splitLT(ad.ltB, len(evs)))
	if err != nil {
		return nil, fmt.Errorf("B: %w", err)
	}
	if err := ev.Rescale(o, o); err != nil {
		return nil, fmt.Errorf("B: %w", err)
	}
	return o, nil
}
