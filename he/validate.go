package he

import (
	"errors"
	"fmt"
	"math"

	"github.com/tuneinsight/lattigo/v6/core/rlwe"
	"github.com/tuneinsight/lattigo/v6/ring"
	"github.com/tuneinsight/lattigo/v6/ring/ringqp"
	"github.com/tuneinsight/lattigo/v6/schemes/ckks"
)

// checkPoly checks that a polynomial has one row of N coefficients per
// modulus and that every coefficient is reduced.
func checkPoly(what string, p ring.Poly, moduli []uint64, n int) error {
	if len(p.Coeffs) != len(moduli) {
		return fmt.Errorf("%s: %d moduli, want %d", what, len(p.Coeffs), len(moduli))
	}
	for i, row := range p.Coeffs {
		if len(row) != n {
			return fmt.Errorf("%s: modulus %d has %d coefficients, want %d", what, i, len(row), n)
		}
		q := moduli[i]
		for _, c := range row {
			if c >= q {
				return fmt.Errorf("%s: coefficient not reduced modulo q_%d", what, i)
			}
		}
	}
	return nil
}

func checkQPPoly(p Params, what string, v ringqp.Poly, levelQ, levelP int) error {
	n := p.p.N()
	if err := checkPoly(what+" (Q)", v.Q, p.p.Q()[:levelQ+1], n); err != nil {
		return err
	}
	if levelP < 0 {
		return nil
	}
	return checkPoly(what+" (P)", v.P, p.p.P()[:levelP+1], n)
}

// checkQPElement checks a two-component vector over Q·P (a public key).
func checkQPElement(p Params, what string, v rlwe.VectorQP, levelQ int) error {
	if len(v) != 2 {
		return fmt.Errorf("%s: %d components, want 2", what, len(v))
	}
	for i := range v {
		if err := checkQPPoly(p, fmt.Sprintf("%s[%d]", what, i), v[i], levelQ, p.p.MaxLevelP()); err != nil {
			return err
		}
	}
	return nil
}

// checkGadget checks an evaluation key's gadget ciphertext: no base-2
// decomposition, not seed-compressed, the RNS decomposition of levelQ, and
// reduced coefficients.
func checkGadget(p Params, what string, g *rlwe.GadgetCiphertext, levelQ int) error {
	if g.BaseTwoDecomposition != 0 {
		return fmt.Errorf("%s: base-two decomposition %d not supported", what, g.BaseTwoDecomposition)
	}
	levelP := p.p.MaxLevelP()
	rows := p.p.BaseRNSDecompositionVectorSize(levelQ, levelP)
	if len(g.Value) != rows {
		return fmt.Errorf("%s: %d decomposition rows, want %d", what, len(g.Value), rows)
	}
	for i, row := range g.Value {
		if len(row) != 1 {
			return fmt.Errorf("%s: row %d has %d columns, want 1", what, i, len(row))
		}
		if len(row[0]) != 2 {
			return fmt.Errorf("%s: row %d has degree %d, want 1", what, i, len(row[0])-1)
		}
		for j := range row[0] {
			if err := checkQPPoly(p, fmt.Sprintf("%s[%d][%d]", what, i, j), row[0][j], levelQ, levelP); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkCiphertext checks a decoded ciphertext against the parameters: degree
// 1, a level the parameters have, reduced coefficients, NTT and batched
// metadata with the parameters' slot dimensions, and a sane scale.
func checkCiphertext(p Params, ct *rlwe.Ciphertext) error {
	if ct.MetaData == nil {
		return errors.New("missing metadata")
	}
	if len(ct.Value) != 2 {
		return fmt.Errorf("degree %d, want 1", len(ct.Value)-1)
	}
	level := len(ct.Value[0].Coeffs) - 1
	if level < 0 || level > p.MaxLevel() {
		return fmt.Errorf("level %d outside [0, %d]", level, p.MaxLevel())
	}
	for i := range ct.Value {
		if err := checkPoly(fmt.Sprintf("component %d", i), ct.Value[i], p.p.Q()[:level+1], p.p.N()); err != nil {
			return err
		}
	}
	md := ct.MetaData
	if !md.IsNTT || md.IsMontgomery || !md.IsBatched || md.IsBitReversed {
		return errors.New("metadata flags: want NTT, batched, not Montgomery, not bit-reversed")
	}
	if md.LogDimensions != p.p.LogMaxDimensions() {
		return fmt.Errorf("slot dimensions %v, want %v", md.LogDimensions, p.p.LogMaxDimensions())
	}
	if md.Scale.Mod != nil {
		return errors.New("modular scale not valid for CKKS")
	}
	if md.Scale.Value.Sign() <= 0 || md.Scale.Value.IsInf() {
		return errors.New("scale must be positive and finite")
	}
	if l := md.Scale.Log2(); math.IsNaN(l) || l < 1 || l > p.p.LogQ() {
		return fmt.Errorf("scale 2^%.1f outside [2^1, 2^%.0f]", l, p.p.LogQ())
	}
	return nil
}

// checkKeyPair encrypts a known vector under pk and decrypts it under sk.
func checkKeyPair(p Params, sk *rlwe.SecretKey, pk *rlwe.PublicKey) error {
	ecd := ckks.NewEncoder(p.p)
	enc := rlwe.NewEncryptor(p.p, pk)
	dec := rlwe.NewDecryptor(p.p, sk)
	want := make([]float64, p.Slots())
	for i := range want {
		want[i] = float64(i%7) - 3
	}
	pt := ckks.NewPlaintext(p.p, 0)
	if err := ecd.Encode(want, pt); err != nil {
		return fmt.Errorf("key pair check: %w", err)
	}
	ct, err := enc.EncryptNew(pt)
	if err != nil {
		return fmt.Errorf("key pair check: %w", err)
	}
	got := make([]float64, p.Slots())
	if err := ecd.Decode(dec.DecryptNew(ct), got); err != nil {
		return fmt.Errorf("key pair check: %w", err)
	}
	for i := range got {
		if math.Abs(got[i]-want[i]) > 1e-2 {
			return errors.New("secret and public key do not belong together")
		}
	}
	return nil
}
