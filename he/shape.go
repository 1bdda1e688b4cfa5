package he

import (
	"encoding/binary"
	"fmt"

	"github.com/tuneinsight/lattigo/v6/core/rlwe"
)

// Lattigo's binary decoders trust their length prefixes: a truncated input
// can recurse without end (a fatal stack overflow, not a recoverable panic)
// and a large prefix allocates before failing. So every untrusted Lattigo
// encoding is first walked here, against the parameters, and handed to
// Lattigo only if its structure and total length are exactly right.
//
// The encodings (Lattigo v6.1.1, little-endian):
//
//	poly       = u64 rows, rows × (u64 n, n × u64)        (ring.Poly)
//	qpPoly     = poly(Q) poly(P)                          (ringqp.Poly)
//	ciphertext = u8 1, metadata (fixed-size JSON), u64 2, 2 × poly
//	publicKey  = u64 2, 2 × qpPoly
//	secretKey  = qpPoly
//	gadget     = u64 base2, u64 rows, rows × (u64 1, u64 2, 2 × qpPoly)
//	galoisKey  = u64 galEl, u64 nthRoot, gadget
//	relinKey   = gadget

type shapeReader struct {
	b   []byte
	off int
	err error
}

func (r *shapeReader) fail(format string, a ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("at byte %d: %s", r.off, fmt.Sprintf(format, a...))
	}
}

func (r *shapeReader) u64() uint64 {
	if r.err != nil {
		return 0
	}
	if len(r.b)-r.off < 8 {
		r.fail("truncated")
		return 0
	}
	v := binary.LittleEndian.Uint64(r.b[r.off:])
	r.off += 8
	return v
}

func (r *shapeReader) u8() uint8 {
	if r.err != nil {
		return 0
	}
	if len(r.b)-r.off < 1 {
		r.fail("truncated")
		return 0
	}
	v := r.b[r.off]
	r.off++
	return v
}

func (r *shapeReader) skip(n int) {
	if r.err != nil {
		return
	}
	if len(r.b)-r.off < n {
		r.fail("truncated")
		return
	}
	r.off += n
}

func (r *shapeReader) expect(what string, want uint64) {
	if got := r.u64(); r.err == nil && got != want {
		r.fail("%s is %d, want %d", what, got, want)
	}
}

// poly walks a ring.Poly of rows in [minRows, maxRows] rows of n
// coefficients and returns its row count.
func (r *shapeReader) poly(n, minRows, maxRows int) int {
	rows := r.u64()
	if r.err != nil {
		return 0
	}
	if rows < uint64(minRows) || rows > uint64(maxRows) {
		r.fail("polynomial has %d moduli, want %d..%d", rows, minRows, maxRows)
		return 0
	}
	for range rows {
		r.expect("polynomial degree", uint64(n))
		r.skip(8 * n)
	}
	return int(rows)
}

func (r *shapeReader) end() error {
	if r.err == nil && r.off != len(r.b) {
		r.fail("%d trailing bytes", len(r.b)-r.off)
	}
	return r.err
}

var metaDataSize = new(rlwe.MetaData).BinarySize()

func shapeCiphertext(p Params, b []byte) error {
	r := &shapeReader{b: b}
	if r.u8() != 1 && r.err == nil {
		r.fail("metadata missing")
	}
	r.skip(metaDataSize)
	r.expect("ciphertext degree+1", 2)
	n := p.p.N()
	rows := r.poly(n, 1, p.MaxLevel()+1)
	r.poly(n, rows, rows)
	return r.end()
}

func shapeQPPoly(r *shapeReader, p Params, qRows int) {
	n := p.p.N()
	r.poly(n, qRows, qRows)
	r.poly(n, p.p.PCount(), p.p.PCount())
}

func shapePublicKey(p Params, b []byte) error {
	r := &shapeReader{b: b}
	r.expect("public key components", 2)
	shapeQPPoly(r, p, p.MaxLevel()+1)
	shapeQPPoly(r, p, p.MaxLevel()+1)
	return r.end()
}

func shapeSecretKey(p Params, b []byte) error {
	r := &shapeReader{b: b}
	shapeQPPoly(r, p, p.MaxLevel()+1)
	return r.end()
}

// shapeGadget walks a gadget ciphertext whose Q polynomials have levelQ+1
// moduli.
func shapeGadget(r *shapeReader, p Params, levelQ int) {
	r.expect("base-two decomposition", 0)
	rows := p.p.BaseRNSDecompositionVectorSize(levelQ, p.p.MaxLevelP())
	r.expect("decomposition rows", uint64(rows))
	for range rows {
		r.expect("decomposition columns", 1)
		r.expect("gadget degree+1", 2)
		shapeQPPoly(r, p, levelQ+1)
		shapeQPPoly(r, p, levelQ+1)
	}
}

func shapeGaloisKey(p Params, b []byte, levelQ int) error {
	r := &shapeReader{b: b}
	r.u64()
	r.u64()
	shapeGadget(r, p, levelQ)
	return r.end()
}

func shapeRelinKey(p Params, b []byte, levelQ int) error {
	r := &shapeReader{b: b}
	shapeGadget(r, p, levelQ)
	return r.end()
}
