package privacy

import (
	"math"
	"math/bits"
)

// A discrete Fourier transform of any length, for the PRV accountant: Opacus
// composes on a grid whose size is set by the error parameters, not a power
// of two, and the cyclic wrap of its composition depends on that exact size.
// Power-of-two lengths use an iterative radix-2 Cooley–Tukey FFT; other
// lengths use Bluestein's chirp-z algorithm on top of it.

// fft2 is a radix-2 FFT of length n (a power of two).
type fft2 struct {
	n   int
	fwd []complex128 // twiddles of every stage, contiguous: stage of size s at [s/2-1, s-1)
	inv []complex128 // their conjugates
	rev []uint32
}

func newFFT2(n int) *fft2 {
	f := &fft2{n: n, rev: make([]uint32, n)}
	if n > 1 {
		f.fwd = make([]complex128, n-1)
		f.inv = make([]complex128, n-1)
		for size := 2; size <= n; size <<= 1 {
			half := size / 2
			for k := 0; k < half; k++ {
				s, c := math.Sincos(-2 * math.Pi * float64(k) / float64(size))
				f.fwd[half-1+k] = complex(c, s)
				f.inv[half-1+k] = complex(c, -s)
			}
		}
		shift := 32 - uint(bits.TrailingZeros(uint(n)))
		for i := range f.rev {
			f.rev[i] = bits.Reverse32(uint32(i)) >> shift
		}
	}
	return f
}

// transform replaces x by its unscaled DFT (inverse: with exp(+2πik/n)).
func (f *fft2) transform(x []complex128, inverse bool) {
	n := f.n
	x = x[:n]
	for i := 0; i < n; i++ {
		if j := int(f.rev[i]); i < j {
			x[i], x[j] = x[j], x[i]
		}
	}
	tw := f.fwd
	if inverse {
		tw = f.inv
	}
	// The first stage has only the twiddle 1.
	for i := 0; i+1 < n; i += 2 {
		u, v := x[i], x[i+1]
		x[i], x[i+1] = u+v, u-v
	}
	for size := 4; size <= n; size <<= 1 {
		half := size / 2
		w := tw[half-1 : size-1]
		for start := 0; start < n; start += size {
			a := x[start : start+half]
			b := x[start+half : start+size]
			for k := range a {
				u, v := a[k], b[k]*w[k]
				a[k], b[k] = u+v, u-v
			}
		}
	}
}

// dft is a DFT of any length n ≥ 1.
type dft struct {
	n     int
	f     *fft2
	chirp []complex128 // Bluestein: chirp[k] = exp(-iπk²/n)
	bhat  []complex128 // Bluestein: FFT of the conjugate chirp filter
}

func isPow2(n int) bool { return n > 0 && n&(n-1) == 0 }

func nextPow2(n int) int {
	m := 1
	for m < n {
		m <<= 1
	}
	return m
}

func newDFT(n int) *dft {
	if isPow2(n) {
		return &dft{n: n, f: newFFT2(n)}
	}
	m := nextPow2(2*n - 1)
	d := &dft{n: n, f: newFFT2(m), chirp: make([]complex128, n), bhat: make([]complex128, m)}
	mod := uint64(2 * n)
	for k := 0; k < n; k++ {
		kk := uint64(k) * uint64(k) % mod // exp(-iπk²/n) has period 2n in k²
		s, c := math.Sincos(-math.Pi * float64(kk) / float64(n))
		d.chirp[k] = complex(c, s)
	}
	d.bhat[0] = conj(d.chirp[0])
	for k := 1; k < n; k++ {
		d.bhat[k] = conj(d.chirp[k])
		d.bhat[m-k] = conj(d.chirp[k])
	}
	d.f.transform(d.bhat, false)
	return d
}

func conj(z complex128) complex128 { return complex(real(z), -imag(z)) }

// forward returns the DFT X[k] = Σ x[j] exp(-2πijk/n).
func (d *dft) forward(x []complex128) []complex128 {
	if d.chirp == nil {
		out := make([]complex128, d.n)
		copy(out, x)
		d.f.transform(out, false)
		return out
	}
	m := d.f.n
	a := make([]complex128, m)
	for k := 0; k < d.n; k++ {
		a[k] = x[k] * d.chirp[k]
	}
	d.f.transform(a, false)
	for k := range a {
		a[k] *= d.bhat[k]
	}
	d.f.transform(a, true)
	scale := complex(1/float64(m), 0)
	out := make([]complex128, d.n)
	for k := range out {
		out[k] = a[k] * scale * d.chirp[k]
	}
	return out
}

// inverse returns x[j] = (1/n) Σ X[k] exp(+2πijk/n).
func (d *dft) inverse(X []complex128) []complex128 {
	c := make([]complex128, d.n)
	for k, v := range X {
		c[k] = conj(v)
	}
	out := d.forward(c)
	inv := 1 / float64(d.n)
	for k, v := range out {
		out[k] = complex(real(v)*inv, -imag(v)*inv)
	}
	return out
}

// realDFT transforms real sequences of an even length n through a complex
// DFT of length n/2 (even samples as real parts, odd as imaginary), which
// halves the work of the composition.
type realDFT struct {
	n    int
	half *dft
	w    []complex128 // w[k] = exp(-2πik/n), k ≤ n/2
}

func newRealDFT(n int) *realDFT {
	m := n / 2
	r := &realDFT{n: n, half: newDFT(m), w: make([]complex128, m+1)}
	for k := range r.w {
		s, c := math.Sincos(-2 * math.Pi * float64(k) / float64(n))
		r.w[k] = complex(c, s)
	}
	return r
}

// forward returns X[0..n/2] of the real sequence x (the rest is conj(X[n-k])).
func (r *realDFT) forward(x []float64) []complex128 {
	m := r.n / 2
	z := make([]complex128, m)
	for j := range z {
		z[j] = complex(x[2*j], x[2*j+1])
	}
	Z := r.half.forward(z)
	X := make([]complex128, m+1)
	for k := 0; k <= m; k++ {
		zk, zc := Z[k%m], conj(Z[(m-k)%m])
		e := (zk + zc) / 2             // DFT of the even samples
		o := (zk - zc) / complex(0, 2) // DFT of the odd samples
		X[k] = e + r.w[k]*o
	}
	return X
}

// inverse returns the real sequence whose spectrum is X[0..n/2] (Hermitian).
func (r *realDFT) inverse(X []complex128) []float64 {
	m := r.n / 2
	Z := make([]complex128, m)
	for k := 0; k < m; k++ {
		hi := conj(X[m-k]) // X[k+m]
		e := (X[k] + hi) / 2
		o := (X[k] - hi) / (2 * r.w[k])
		Z[k] = e + complex(0, 1)*o
	}
	z := r.half.inverse(Z)
	x := make([]float64, r.n)
	for j, v := range z {
		x[2*j], x[2*j+1] = real(v), imag(v)
	}
	return x
}

// convolveSame is scipy.signal.convolve(a, b, mode="same") for equal
// lengths: the centre len(a) entries of the full linear convolution.
func convolveSame(a, b []float64) []float64 {
	n := len(a)
	m := nextPow2(2*n - 1)
	f := newFFT2(m)
	x := make([]complex128, m)
	y := make([]complex128, m)
	for i := 0; i < n; i++ {
		x[i] = complex(a[i], 0)
		y[i] = complex(b[i], 0)
	}
	f.transform(x, false)
	f.transform(y, false)
	for k := range x {
		x[k] *= y[k]
	}
	f.transform(x, true)
	start := (n - 1) / 2 // scipy's _centered: (2n-1 - n) // 2
	out := make([]float64, n)
	inv := 1 / float64(m)
	for j := range out {
		out[j] = real(x[start+j]) * inv
	}
	return out
}
