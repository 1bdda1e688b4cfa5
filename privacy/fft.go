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
	tw  []complex128 // tw[k] = exp(-2πik/n), k < n/2
	rev []uint32
}

func newFFT2(n int) *fft2 {
	f := &fft2{n: n, tw: make([]complex128, n/2), rev: make([]uint32, n)}
	for k := range f.tw {
		s, c := math.Sincos(-2 * math.Pi * float64(k) / float64(n))
		f.tw[k] = complex(c, s)
	}
	if n > 1 {
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
	for i := 0; i < n; i++ {
		if j := int(f.rev[i]); i < j {
			x[i], x[j] = x[j], x[i]
		}
	}
	for size := 2; size <= n; size <<= 1 {
		half, step := size/2, n/size
		for start := 0; start < n; start += size {
			for k := 0; k < half; k++ {
				w := f.tw[k*step]
				if inverse {
					w = complex(real(w), -imag(w))
				}
				u, v := x[start+k], x[start+k+half]*w
				x[start+k], x[start+k+half] = u+v, u-v
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
