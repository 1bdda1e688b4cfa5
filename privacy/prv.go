package privacy

import (
	"fmt"
	"math"
	"math/cmplx"
	"sort"
)

// The PRV accountant, following Opacus opacus/accountants/prv.py and
// opacus/accountants/analysis/prv/{domain,prvs,compose}.py (itself after
// Microsoft's prv_accountant, Gopi, Lee, Wutschitz 2021): each (q, σ) step
// is a privacy loss random variable; it is truncated to a safe domain
// [-L, L], discretised on a grid of mesh eps_error/sqrt(n·log(12/δ_err)/2),
// composed with itself by an FFT (and across different (q, σ) by linear
// convolution), and ε is read off the composed distribution with
// guaranteed error bounds ±eps_error (at δ ∓ delta_error).

// MaxPRVDomainSize bounds the discretisation grid (and so the memory of one
// PRV computation: about 200 MB at the limit). The grid grows with the
// square root of the number of steps; at δ = 1e-5 the limit is reached after
// some tens of thousands of steps.
const MaxPRVDomainSize = 1 << 21

// prvDomain is Opacus's Domain: a grid of size points from tMin to tMax,
// shifted by shifts in total.
type prvDomain struct {
	tMin, tMax float64
	size       int
	shifts     float64
}

func (d prvDomain) dt() float64 { return (d.tMax - d.tMin) / float64(d.size-1) }

// ts is numpy.linspace(tMin, tMax, size).
func (d prvDomain) ts() []float64 {
	t := make([]float64, d.size)
	step := (d.tMax - d.tMin) / float64(d.size-1)
	for i := range t {
		t[i] = float64(i)*step + d.tMin
	}
	t[d.size-1] = d.tMax
	return t
}

func (d prvDomain) shiftRight(x float64) prvDomain {
	return prvDomain{tMin: d.tMin + x, tMax: d.tMax + x, size: d.size, shifts: d.shifts + x}
}

// createAligned is Domain.create_aligned.
func createAligned(tMin, tMax, dt float64) (prvDomain, error) {
	tMin = math.Floor(tMin/dt) * dt
	tMax = math.Ceil(tMax/dt) * dt
	fsize := math.RoundToEven((tMax-tMin)/dt) + 1
	if !(fsize <= MaxPRVDomainSize) {
		return prvDomain{}, fmt.Errorf("privacy: %w: %.0f points (limit %d); use the rdp accountant or a larger eps_error",
			ErrDomainTooLarge, fsize, MaxPRVDomainSize)
	}
	size := int(fsize)
	if size%2 == 1 {
		size++
		tMax += dt
	}
	d := prvDomain{tMin: tMin, tMax: tMax, size: size}
	if math.Abs(d.dt()-dt)/dt >= 1e-8 {
		return prvDomain{}, fmt.Errorf("privacy: prv: grid mesh %v does not match %v", d.dt(), dt)
	}
	return d, nil
}

// safeDomainSize is compute_safe_domain_size (Gopi et al., Remark 5.6, as
// implemented by Opacus): L from the RDP accountant at δ_err/4 for the whole
// history and at δ_err/(8n) for one step of each mechanism.
func safeDomainSize(agg []Run, total int64, epsErr, deltaErr float64, cache rdpCache) float64 {
	orders := OpacusOrders()
	lMax, _ := epsilonFromRDP(orders, totalRDP(agg, orders, cache), deltaErr/4, ConversionImproved)
	for _, r := range agg {
		one := cache.vector(pair{r.Q, r.Sigma}, orders)
		e, _ := epsilonFromRDP(orders, one, deltaErr/(8*float64(total)), ConversionImproved)
		lMax = math.Max(lMax, e)
	}
	return math.Max(lMax, epsErr) + 3
}

// prvCDF is PoissonSubsampledGaussianPRV.cdf (Gopi et al., Proposition B4).
func prvCDF(q, sigma, t float64) float64 {
	if !(t > math.Log(1-q)) {
		return 0
	}
	z := math.Log((math.Exp(t) + q - 1) / q)
	s2 := sigma * sigma
	den := 2 * math.Sqrt2 * sigma
	return -q*math.Erfc((2*z*s2-1)/den)/2 - (1-q)*math.Erfc((2*z*s2+1)/den)/2 + 1.0
}

// truncatedPRV is TruncatedPrivacyRandomVariable.
type truncatedPRV struct {
	q, sigma, tMin, tMax float64
	cdfMin, mass         float64
}

func newTruncatedPRV(q, sigma, tMin, tMax float64) truncatedPRV {
	lo, hi := prvCDF(q, sigma, tMin), prvCDF(q, sigma, tMax)
	return truncatedPRV{q: q, sigma: sigma, tMin: tMin, tMax: tMax, cdfMin: lo, mass: hi - lo}
}

func (p truncatedPRV) cdf(t float64) float64 {
	switch {
	case t < p.tMin:
		return 0
	case t < p.tMax:
		return (prvCDF(p.q, p.sigma, t) - p.cdfMin) / p.mass
	default:
		return 1
	}
}

// mean is TruncatedPrivacyRandomVariable.mean: E[X] = Σ over the pieces of
// [r·F(r) - l·F(l) - ∫_l^r F], split at ±10^-5..±10^-1 where F bends.
func (p truncatedPRV) mean() float64 {
	points := []float64{p.tMin, -1e-1, -1e-2, -1e-3, -1e-4, -1e-5, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, p.tMax}
	mean := 0.0
	for i := 0; i+1 < len(points); i++ {
		l, r := points[i], points[i+1]
		integral := integrate(p.cdf, l, r, 1e-14, 1e-13, 500)
		mean += r*p.cdf(r) - l*p.cdf(l) - integral
	}
	return mean
}

// discretePRV is Opacus's DiscretePRV: a probability mass function on a
// domain.
type discretePRV struct {
	pmf    []float64
	domain prvDomain
}

// discretize is Opacus's discretize: the mass of each grid cell, then the
// grid shifted so that the discrete mean equals the continuous one.
func discretize(p truncatedPRV, dom prvDomain) (discretePRV, error) {
	ts := dom.ts()
	dt := dom.dt()
	pmf := make([]float64, len(ts))
	meanD := 0.0
	for i, tc := range ts {
		pmf[i] = p.cdf(tc+dt/2) - p.cdf(tc-dt/2)
		meanD += tc * pmf[i]
	}
	shift := p.mean() - meanD
	if !(math.Abs(shift) < dt/2) {
		return discretePRV{}, fmt.Errorf("privacy: prv: discrete mean differs from the continuous mean by %v (mesh %v)", shift, dt)
	}
	return discretePRV{pmf: pmf, domain: dom.shiftRight(shift)}, nil
}

// composeFourier is _compose_fourier: n-fold self-composition by raising the
// DFT to the n-th power, then rolling the cyclic result so that index ↔ t
// matches the (shifted) domain again.
func composeFourier(d discretePRV, n int64) discretePRV {
	size := len(d.pmf)
	f := newRealDFT(size) // size is even (createAligned)
	spec := f.forward(d.pmf)
	pow := complex(float64(n), 0)
	for k, z := range spec {
		spec[k] = cmplx.Pow(z, pow)
	}
	out := f.inverse(spec)
	m := (n - 1) % int64(size)
	if n%2 == 0 {
		m = (m + int64(size/2)) % int64(size)
	}
	pmf := make([]float64, size)
	for i, v := range out {
		pmf[(int64(i)+m)%int64(size)] = v
	}
	return discretePRV{pmf: pmf, domain: d.domain.shiftRight(d.domain.shifts * float64(n-1))}
}

// composeTwo is _compose_two.
func composeTwo(l, r discretePRV) discretePRV {
	return discretePRV{pmf: convolveSame(l.pmf, r.pmf), domain: l.domain.shiftRight(r.domain.shifts)}
}

// composeTree is _compose_convolution_tree.
func composeTree(ds []discretePRV) discretePRV {
	for len(ds) > 1 {
		var next []discretePRV
		if len(ds)%2 == 1 {
			next = append(next, ds[len(ds)-1])
			ds = ds[:len(ds)-1]
		}
		for i := 0; i+1 < len(ds); i += 2 {
			next = append(next, composeTwo(ds[i], ds[i+1]))
		}
		ds = next
	}
	return ds[0]
}

// composePRV is PRVAccountant._get_dprv for an aggregated history.
func composePRV(agg []Run, epsErr, deltaErr float64, cache rdpCache) (discretePRV, error) {
	var total int64
	for _, r := range agg {
		total += r.Count
	}
	L := safeDomainSize(agg, total, epsErr, deltaErr, cache)
	mesh := epsErr / math.Sqrt(float64(total)*math.Log(12/deltaErr)/2)
	dom, err := createAligned(-L, L, mesh)
	if err != nil {
		return discretePRV{}, err
	}
	ds := make([]discretePRV, 0, len(agg))
	for _, r := range agg {
		d, err := discretize(newTruncatedPRV(r.Q, r.Sigma, dom.tMin, dom.tMax), dom)
		if err != nil {
			return discretePRV{}, err
		}
		ds = append(ds, composeFourier(d, r.Count))
	}
	return composeTree(ds), nil
}

// tails returns d1[i] = Σ_{j≥i} p_j and d2[i] = Σ_{j≥i} p_j e^{-t_j},
// accumulated from the top as numpy's flip(cumsum(flip(·))).
func (d discretePRV) tails() (ts, d1, d2 []float64) {
	ts = d.domain.ts()
	n := len(d.pmf)
	d1, d2 = make([]float64, n), make([]float64, n)
	s1, s2 := 0.0, 0.0
	for i := n - 1; i >= 0; i-- {
		s1 += d.pmf[i]
		s2 += d.pmf[i] * math.Exp(-ts[i])
		d1[i], d2[i] = s1, s2
	}
	return ts, d1, d2
}

// epsilon is DiscretePRV.compute_epsilon: (lower, estimate, upper).
func (d discretePRV) epsilon(delta, deltaErr, epsErr float64) (float64, float64, float64, error) {
	// Opacus compares against numpy.longdouble's epsilon; the sums here are
	// float64, so float64's epsilon is the honest threshold.
	if 0x1p-52*float64(d.domain.size) > delta-deltaErr {
		return 0, 0, 0, fmt.Errorf("privacy: prv: floating point errors dominate at delta %v with %d grid points; increase delta", delta, d.domain.size)
	}
	ts, d1, d2 := d.tails()
	ndelta := make([]float64, len(ts))
	for i := range ts {
		ndelta[i] = math.Exp(ts[i])*d2[i] - d1[i]
	}
	find := func(target float64) (float64, error) {
		// numpy.searchsorted(ndelta, -target, side="left")
		i := sort.Search(len(ndelta), func(i int) bool { return !(ndelta[i] < -target) })
		if i <= 0 || i >= len(ndelta) {
			return 0, fmt.Errorf("privacy: prv: cannot compute epsilon at delta %v (outside the discretised range)", target)
		}
		return math.Log((d1[i] - target) / d2[i]), nil
	}
	up, err := find(delta - deltaErr)
	if err != nil {
		return 0, 0, 0, err
	}
	lo, err := find(delta + deltaErr)
	if err != nil {
		return 0, 0, 0, err
	}
	est, err := find(delta)
	if err != nil {
		return 0, 0, 0, err
	}
	return lo - epsErr, est, up + epsErr, nil
}

// deltaEstimate is DiscretePRV.compute_delta_estimate:
// Σ_{t ≥ ε} p(t)(1 - e^{ε - t}).
func (d discretePRV) deltaEstimate(eps float64) float64 {
	ts := d.domain.ts()
	s := 0.0
	for i, t := range ts {
		if t >= eps {
			s += d.pmf[i] * (1 - math.Exp(eps)*math.Exp(-t))
		}
	}
	return s
}

// delta returns (lower, estimate, upper) as prv_accountant's compute_delta:
// δ(ε ± eps_error) ∓ delta_error.
func (d discretePRV) delta(eps, epsErr, deltaErr float64) (float64, float64, float64) {
	return d.deltaEstimate(eps+epsErr) - deltaErr, d.deltaEstimate(eps), d.deltaEstimate(eps-epsErr) + deltaErr
}
