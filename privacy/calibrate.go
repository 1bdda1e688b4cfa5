package privacy

import (
	"context"
	"errors"
	"fmt"
	"math"
)

// Calibration limits.
const (
	// MaxSigma is the largest noise multiplier CalibrateSigma tries
	// (Opacus MAX_SIGMA).
	MaxSigma = 1e6
	// DefaultSigmaTolerance is Opacus get_noise_multiplier's
	// epsilon_tolerance: the returned σ spends at most the target ε and at
	// least the target minus this.
	DefaultSigmaTolerance = 0.01
	maxBisections         = 200
)

// SigmaRequest asks for the noise multiplier that a target (ε, δ) needs.
type SigmaRequest struct {
	TargetEpsilon float64
	Delta         float64
	Q             float64
	// Exactly one of Steps and Epochs: Epochs becomes
	// Steps = floor(Epochs/Q), as Opacus int(epochs / sample_rate).
	Steps  int64
	Epochs float64
	// Tolerance on ε; 0 means DefaultSigmaTolerance.
	Tolerance float64
}

// SigmaResult is the calibrated σ and the ε it spends.
type SigmaResult struct {
	Sigma  float64
	Steps  int64
	Result Result
}

// StepsFromEpochs is floor(epochs/q), Opacus's int(epochs / sample_rate).
func StepsFromEpochs(epochs, q float64) (int64, error) {
	if err := validateQSigma(q, 1); err != nil {
		return 0, err
	}
	if !finite(epochs) || !(epochs > 0) {
		return 0, inputErr("epochs", "must be positive and finite, got %v", epochs)
	}
	s := math.Floor(epochs / q)
	if s > float64(MaxSteps) {
		return 0, inputErr("epochs", "%v epochs at q = %v exceed 2^53 steps", epochs, q)
	}
	return int64(s), nil
}

// CalibrateSigma finds the smallest noise multiplier σ (to the tolerance)
// such that Steps steps at sampling rate Q spend at most TargetEpsilon at
// Delta, by Opacus's get_noise_multiplier: double σ from 20 until ε ≤ target,
// then bisect [0, σ] until target - ε(σ) ≤ tolerance. The returned σ always
// satisfies ε(σ) ≤ target.
func CalibrateSigma(ctx context.Context, req SigmaRequest, opt Options) (SigmaResult, error) {
	opt, err := opt.normalize()
	if err != nil {
		return SigmaResult{}, err
	}
	if !finite(req.TargetEpsilon) || !(req.TargetEpsilon > 0) {
		return SigmaResult{}, inputErr("epsilon", "target must be positive and finite, got %v", req.TargetEpsilon)
	}
	if err := validateDelta(req.Delta); err != nil {
		return SigmaResult{}, err
	}
	if err := validateQSigma(req.Q, 1); err != nil {
		return SigmaResult{}, err
	}
	steps := req.Steps
	switch {
	case req.Epochs != 0 && req.Steps != 0:
		return SigmaResult{}, inputErr("steps", "give steps or epochs, not both")
	case req.Epochs != 0:
		if steps, err = StepsFromEpochs(req.Epochs, req.Q); err != nil {
			return SigmaResult{}, err
		}
	}
	if err := validateSteps(steps); err != nil {
		return SigmaResult{}, err
	}
	if steps == 0 {
		return SigmaResult{}, inputErr("steps", "must be at least 1 (or epochs ≥ q)")
	}
	tol := req.Tolerance
	if tol == 0 {
		tol = DefaultSigmaTolerance
	}
	if !finite(tol) || !(tol > 0) {
		return SigmaResult{}, inputErr("tolerance", "must be positive, got %v", tol)
	}
	eval := func(sigma float64) (Result, error) {
		if err := ctx.Err(); err != nil {
			return Result{}, err
		}
		r, err := epsilon([]Run{{Q: req.Q, Sigma: sigma, Count: steps}}, steps, req.Delta, opt, nil)
		if err != nil && !isUnbounded(err) {
			return Result{}, fmt.Errorf("privacy: calibrate sigma at %v: %w", sigma, err)
		}
		if err != nil {
			r.Epsilon = math.Inf(1)
		}
		return r, nil
	}
	sigmaLow, sigmaHigh := 0.0, 10.0
	var high Result
	high.Epsilon = math.Inf(1)
	for high.Epsilon > req.TargetEpsilon {
		sigmaHigh *= 2
		if sigmaHigh > MaxSigma {
			return SigmaResult{}, fmt.Errorf("privacy: calibrate sigma: %w: ε = %v needs σ > %v", ErrBudgetTooSmall, req.TargetEpsilon, MaxSigma)
		}
		if high, err = eval(sigmaHigh); err != nil {
			return SigmaResult{}, err
		}
	}
	for i := 0; i < maxBisections && req.TargetEpsilon-high.Epsilon > tol; i++ {
		sigma := (sigmaLow + sigmaHigh) / 2
		if sigma == sigmaLow || sigma == sigmaHigh {
			break // the bracket is one ulp wide
		}
		r, err := eval(sigma)
		if err != nil {
			return SigmaResult{}, err
		}
		if r.Epsilon < req.TargetEpsilon {
			sigmaHigh, high = sigma, r
		} else {
			sigmaLow = sigma
		}
	}
	return SigmaResult{Sigma: sigmaHigh, Steps: steps, Result: high}, nil
}

func isUnbounded(err error) bool { return errors.Is(err, ErrUnbounded) }

// StepsResult is the number of steps a budget allows.
type StepsResult struct {
	// Steps is the largest n with ε(n steps) ≤ target (0 if even one step
	// overspends).
	Steps int64
	// Result is the guarantee after Steps steps.
	Result Result
	// Capped is true when MaxSteps steps still fit the budget.
	Capped bool
}

// MaxStepsFor returns how many steps of (q, σ) fit in (targetEpsilon, δ):
// an exponential search then bisection on the accountant's own ε, so the
// answer n always satisfies ε(n) ≤ target and ε(n+1) > target at the
// searched point. For PRV every probe is a full PRV computation; the RDP
// answer (nearly always smaller) seeds the search.
func MaxStepsFor(ctx context.Context, targetEpsilon, delta, q, sigma float64, opt Options) (StepsResult, error) {
	opt, err := opt.normalize()
	if err != nil {
		return StepsResult{}, err
	}
	if !finite(targetEpsilon) || !(targetEpsilon > 0) {
		return StepsResult{}, inputErr("epsilon", "target must be positive and finite, got %v", targetEpsilon)
	}
	if err := validateDelta(delta); err != nil {
		return StepsResult{}, err
	}
	if err := validateQSigma(q, sigma); err != nil {
		return StepsResult{}, err
	}
	cache := rdpCache{}
	rdpOpt := opt
	rdpOpt.Accountant = AccountantRDP
	eval := func(o Options, n int64) (Result, bool, error) {
		if err := ctx.Err(); err != nil {
			return Result{}, false, err
		}
		c := cache
		if o.Accountant == AccountantPRV {
			c = nil // the PRV domain uses its own orders
		}
		r, err := epsilon([]Run{{Q: q, Sigma: sigma, Count: n}}, n, delta, o, c)
		if isUnbounded(err) || errors.Is(err, ErrDomainTooLarge) {
			// Not certifiable at n steps: treat as over budget (conservative).
			return r, false, nil
		}
		if err != nil {
			return r, false, err
		}
		return r, r.Epsilon <= targetEpsilon, nil
	}
	search := func(o Options, lo int64, loRes Result) (StepsResult, error) {
		// Invariant: ε(lo) ≤ target (lo = 0 trivially); find hi with ε(hi) > target.
		hi := lo*2 + 1
		for {
			if hi > MaxSteps {
				hi = MaxSteps
			}
			r, ok, err := eval(o, hi)
			if err != nil {
				return StepsResult{}, err
			}
			if !ok {
				break
			}
			lo, loRes = hi, r
			if hi == MaxSteps {
				return StepsResult{Steps: lo, Result: loRes, Capped: true}, nil
			}
			hi = hi*2 + 1
		}
		for hi-lo > 1 {
			mid := lo + (hi-lo)/2
			r, ok, err := eval(o, mid)
			if err != nil {
				return StepsResult{}, err
			}
			if ok {
				lo, loRes = mid, r
			} else {
				hi = mid
			}
		}
		return StepsResult{Steps: lo, Result: loRes}, nil
	}
	zero := Result{Delta: delta, Accountant: opt.Accountant}
	if opt.Accountant == AccountantRDP {
		zero.Conversion = opt.Conversion
		return search(opt, 0, zero)
	}
	// PRV: start from the RDP answer when PRV confirms it.
	rdp, err := search(rdpOpt, 0, Result{Delta: delta, Accountant: AccountantRDP})
	if err != nil {
		return StepsResult{}, err
	}
	if rdp.Steps > 0 {
		r, ok, err := eval(opt, rdp.Steps)
		if err != nil {
			return StepsResult{}, err
		}
		if ok {
			return search(opt, rdp.Steps, r)
		}
	}
	return search(opt, 0, zero)
}
