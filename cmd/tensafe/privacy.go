package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/tensafe/tensafe/privacy"
)

// newPrivacyCmd is `tensafe privacy`: the accountant on the command line.
func newPrivacyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "privacy",
		Short: "Privacy accounting: ε, δ, noise calibration and step budgets for DP-SGD",
		Long: `Privacy accounting for DP-SGD (the Poisson-subsampled Gaussian mechanism).

The rdp accountant (default) is Rényi DP with the improved (Balle et al. 2020)
or classic conversion; the prv accountant (Gopi et al. 2021, as Opacus) is
tighter and reports its error bounds. See docs/PRIVACY_ACCOUNTING.md.`,
		Args: cobra.NoArgs,
	}
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError("%w", err) })
	cmd.AddCommand(newPrivacyEpsilonCmd(), newPrivacyDeltaCmd(), newPrivacySigmaCmd(), newPrivacyStepsCmd())
	return cmd
}

// privacyFlags are the flags shared by the privacy subcommands.
type privacyFlags struct {
	q, sigma, delta, epsilon, epochs float64
	steps                            int64
	accountant, conversion, orders   string
	epsError, deltaError, tolerance  float64
	json                             bool
}

// flagNames maps privacy.InputError fields to the flags that set them.
var flagNames = map[string]string{
	"q": "--q", "sigma": "--sigma", "steps": "--steps", "count": "--steps", "delta": "--delta",
	"epsilon": "--epsilon", "target_epsilon": "--epsilon", "epochs": "--epochs", "orders": "--orders",
	"accountant": "--accountant", "conversion": "--conversion", "eps_error": "--eps-error",
	"delta_error": "--delta-error", "tolerance": "--tolerance",
}

// usageError is a bad flag: exit status 2, the message naming the flag.
func usageError(format string, args ...any) error {
	return &exitError{code: 2, err: fmt.Errorf(format, args...)}
}

// privacyError turns a privacy.InputError into a message that names the flag.
func privacyError(err error) error {
	var ie *privacy.InputError
	if errors.As(err, &ie) {
		if flag, ok := flagNames[ie.Field]; ok {
			return usageError("%s: %s", flag, ie.Reason)
		}
		return usageError("%s: %s", ie.Field, ie.Reason)
	}
	return err
}

func (f *privacyFlags) addCommon(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.accountant, "accountant", "rdp", "accountant: rdp or prv")
	fl.StringVar(&f.conversion, "conversion", "improved", "RDP to (ε, δ) conversion: improved or classic (rdp only)")
	fl.StringVar(&f.orders, "orders", "default", "RDP orders (rdp only): numbers and ranges like 1.5,2,12..63, or default, opacus, tfp-legacy")
	fl.Float64Var(&f.epsError, "eps-error", privacy.DefaultEpsError, "allowed error in ε (prv only)")
	fl.Float64Var(&f.deltaError, "delta-error", 0, "allowed error in δ (prv only; 0: δ/1000)")
	fl.BoolVar(&f.json, "json", false, "print a JSON object")
}

// options builds the accountant options, rejecting flags that do not apply.
func (f *privacyFlags) options(cmd *cobra.Command) (privacy.Options, error) {
	acc, err := privacy.ParseAccountant(f.accountant)
	if err != nil {
		return privacy.Options{}, privacyError(err)
	}
	opt := privacy.Options{Accountant: acc}
	changed := cmd.Flags().Changed
	switch acc {
	case privacy.AccountantRDP:
		if changed("eps-error") || changed("delta-error") {
			return opt, usageError("--eps-error and --delta-error apply to --accountant prv only")
		}
		if opt.Conversion, err = privacy.ParseConversion(f.conversion); err != nil {
			return opt, privacyError(err)
		}
		if opt.Orders, err = privacy.ParseOrders(f.orders); err != nil {
			return opt, privacyError(err)
		}
	case privacy.AccountantPRV:
		if changed("conversion") || changed("orders") {
			return opt, usageError("--conversion and --orders apply to --accountant rdp only")
		}
		opt.EpsError, opt.DeltaError = f.epsError, f.deltaError
	}
	return opt, nil
}

// singleRun validates q, σ and steps and returns the history of one run.
func singleRun(q, sigma float64, steps int64) ([]privacy.Run, error) {
	if _, err := privacy.RDP(q, sigma, 2); err != nil {
		return nil, privacyError(err)
	}
	if steps < 0 {
		return nil, usageError("--steps: must be ≥ 0, got %d", steps)
	}
	if steps == 0 {
		return nil, nil
	}
	return []privacy.Run{{Q: q, Sigma: sigma, Count: steps}}, nil
}

func require(cmd *cobra.Command, names ...string) error {
	for _, n := range names {
		if !cmd.Flags().Changed(n) {
			return usageError("--%s is required", n)
		}
	}
	return nil
}

// resultJSON is the --json object of the privacy subcommands.
type resultJSON struct {
	Accountant    privacy.Accountant `json:"accountant"`
	Epsilon       float64            `json:"epsilon"`
	Delta         float64            `json:"delta"`
	Conversion    privacy.Conversion `json:"conversion,omitempty"`
	Order         float64            `json:"order,omitempty"`
	Estimate      *float64           `json:"estimate,omitempty"`
	Lower         *float64           `json:"lower,omitempty"`
	EpsError      float64            `json:"eps_error,omitempty"`
	DeltaError    float64            `json:"delta_error,omitempty"`
	Q             float64            `json:"q"`
	Sigma         float64            `json:"sigma"`
	Steps         int64              `json:"steps"`
	TargetEpsilon float64            `json:"target_epsilon,omitempty"`
	Capped        bool               `json:"capped,omitempty"`
	Warnings      []string           `json:"warnings,omitempty"`
}

func newResultJSON(r privacy.Result, q, sigma float64) resultJSON {
	out := resultJSON{Accountant: r.Accountant, Epsilon: r.Epsilon, Delta: r.Delta, Conversion: r.Conversion,
		Order: r.Order, EpsError: r.EpsError, DeltaError: r.DeltaError, Q: q, Sigma: sigma, Steps: r.Steps, Warnings: r.Warnings}
	if r.Accountant == privacy.AccountantPRV && r.Steps > 0 {
		est, lo := r.Estimate, r.Lower
		out.Estimate, out.Lower = &est, &lo
	}
	return out
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// describe is the human-readable note on how a result was obtained.
func describe(r privacy.Result, quantity string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s accountant", r.Accountant)
	switch r.Accountant {
	case privacy.AccountantRDP:
		fmt.Fprintf(&b, ", %s conversion", r.Conversion)
		if r.Steps > 0 {
			fmt.Fprintf(&b, ", optimal order %g", r.Order)
		}
	case privacy.AccountantPRV:
		if r.Steps > 0 {
			fmt.Fprintf(&b, "; %s estimate %.6g, lower bound %.6g (eps_error %g, delta_error %g)",
				quantity, r.Estimate, r.Lower, r.EpsError, r.DeltaError)
		}
	}
	return b.String()
}

func warn(cmd *cobra.Command, r privacy.Result) {
	for _, w := range r.Warnings {
		fmt.Fprintln(cmd.ErrOrStderr(), "warning:", w)
	}
}

func newPrivacyEpsilonCmd() *cobra.Command {
	var f privacyFlags
	cmd := &cobra.Command{
		Use:   "epsilon --q Q --sigma S --steps N --delta D",
		Short: "The ε that N steps at sampling rate q and noise multiplier σ spend at δ",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := require(cmd, "q", "sigma", "steps", "delta"); err != nil {
				return err
			}
			opt, err := f.options(cmd)
			if err != nil {
				return err
			}
			hist, err := singleRun(f.q, f.sigma, f.steps)
			if err != nil {
				return err
			}
			r, err := privacy.Epsilon(hist, f.delta, opt)
			if err != nil {
				return privacyError(err)
			}
			warn(cmd, r)
			if f.json {
				return printJSON(cmd.OutOrStdout(), newResultJSON(r, f.q, f.sigma))
			}
			fmt.Fprintf(cmd.OutOrStdout(), "ε = %.6g at δ = %g after %d steps (q = %g, σ = %g; %s)\n",
				r.Epsilon, r.Delta, r.Steps, f.q, f.sigma, describe(r, "ε"))
			return nil
		},
	}
	fl := cmd.Flags()
	fl.Float64Var(&f.q, "q", 0, "sampling rate (expected batch size / dataset size), in (0, 1]")
	fl.Float64Var(&f.sigma, "sigma", 0, "noise multiplier (noise std / clipping norm), > 0")
	fl.Int64Var(&f.steps, "steps", 0, "number of steps, ≥ 0")
	fl.Float64Var(&f.delta, "delta", 0, "δ, in (0, 1)")
	f.addCommon(cmd)
	return cmd
}

func newPrivacyDeltaCmd() *cobra.Command {
	var f privacyFlags
	cmd := &cobra.Command{
		Use:   "delta --q Q --sigma S --steps N --epsilon E",
		Short: "The δ at which N steps at sampling rate q and noise multiplier σ are ε-DP",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := require(cmd, "q", "sigma", "steps", "epsilon"); err != nil {
				return err
			}
			opt, err := f.options(cmd)
			if err != nil {
				return err
			}
			hist, err := singleRun(f.q, f.sigma, f.steps)
			if err != nil {
				return err
			}
			r, err := privacy.Delta(hist, f.epsilon, opt)
			if err != nil {
				return privacyError(err)
			}
			warn(cmd, r)
			if f.json {
				return printJSON(cmd.OutOrStdout(), newResultJSON(r, f.q, f.sigma))
			}
			fmt.Fprintf(cmd.OutOrStdout(), "δ = %.6g at ε = %g after %d steps (q = %g, σ = %g; %s)\n",
				r.Delta, r.Epsilon, r.Steps, f.q, f.sigma, describe(r, "δ"))
			return nil
		},
	}
	fl := cmd.Flags()
	fl.Float64Var(&f.q, "q", 0, "sampling rate, in (0, 1]")
	fl.Float64Var(&f.sigma, "sigma", 0, "noise multiplier, > 0")
	fl.Int64Var(&f.steps, "steps", 0, "number of steps, ≥ 0")
	fl.Float64Var(&f.epsilon, "epsilon", 0, "ε, ≥ 0")
	f.addCommon(cmd)
	return cmd
}

func newPrivacySigmaCmd() *cobra.Command {
	var f privacyFlags
	cmd := &cobra.Command{
		Use:   "sigma --epsilon E --delta D --q Q (--steps N | --epochs K)",
		Short: "The noise multiplier σ that keeps a run within (ε, δ)",
		Long: `The smallest noise multiplier σ (to --tolerance in ε) such that the run spends at
most ε at δ, by Opacus's get_noise_multiplier bisection. --epochs K means
floor(K/q) steps. The σ printed always satisfies ε(σ) ≤ E.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := require(cmd, "epsilon", "delta", "q"); err != nil {
				return err
			}
			hasSteps, hasEpochs := cmd.Flags().Changed("steps"), cmd.Flags().Changed("epochs")
			if hasSteps == hasEpochs {
				return usageError("give exactly one of --steps and --epochs")
			}
			opt, err := f.options(cmd)
			if err != nil {
				return err
			}
			req := privacy.SigmaRequest{TargetEpsilon: f.epsilon, Delta: f.delta, Q: f.q, Tolerance: f.tolerance}
			if hasSteps {
				if f.steps < 1 {
					return usageError("--steps: must be ≥ 1, got %d", f.steps)
				}
				req.Steps = f.steps
			} else {
				if !(f.epochs > 0) {
					return usageError("--epochs: must be positive, got %v", f.epochs)
				}
				req.Epochs = f.epochs
			}
			s, err := privacy.CalibrateSigma(cmd.Context(), req, opt)
			if err != nil {
				return privacyError(err)
			}
			warn(cmd, s.Result)
			if f.json {
				out := newResultJSON(s.Result, f.q, s.Sigma)
				out.TargetEpsilon = f.epsilon
				return printJSON(cmd.OutOrStdout(), out)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "σ = %g for ε ≤ %g at δ = %g over %d steps (q = %g): spends ε = %.6g (%s)\n",
				s.Sigma, f.epsilon, f.delta, s.Steps, f.q, s.Result.Epsilon, describe(s.Result, "ε"))
			return nil
		},
	}
	fl := cmd.Flags()
	fl.Float64Var(&f.epsilon, "epsilon", 0, "target ε, > 0")
	fl.Float64Var(&f.delta, "delta", 0, "δ, in (0, 1)")
	fl.Float64Var(&f.q, "q", 0, "sampling rate, in (0, 1]")
	fl.Int64Var(&f.steps, "steps", 0, "number of steps")
	fl.Float64Var(&f.epochs, "epochs", 0, "number of epochs (steps = floor(epochs/q))")
	fl.Float64Var(&f.tolerance, "tolerance", privacy.DefaultSigmaTolerance, "stop when the spent ε is within this of the target")
	f.addCommon(cmd)
	return cmd
}

func newPrivacyStepsCmd() *cobra.Command {
	var f privacyFlags
	cmd := &cobra.Command{
		Use:   "steps --epsilon E --delta D --q Q --sigma S",
		Short: "How many steps at sampling rate q and noise multiplier σ fit in (ε, δ)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := require(cmd, "epsilon", "delta", "q", "sigma"); err != nil {
				return err
			}
			opt, err := f.options(cmd)
			if err != nil {
				return err
			}
			s, err := privacy.MaxStepsFor(cmd.Context(), f.epsilon, f.delta, f.q, f.sigma, opt)
			if err != nil {
				return privacyError(err)
			}
			warn(cmd, s.Result)
			if f.json {
				out := newResultJSON(s.Result, f.q, f.sigma)
				out.Steps, out.TargetEpsilon, out.Capped = s.Steps, f.epsilon, s.Capped
				return printJSON(cmd.OutOrStdout(), out)
			}
			more := ""
			if s.Capped {
				more = " (the limit, 2^53; the budget is not exhausted)"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%d steps%s fit ε ≤ %g at δ = %g (q = %g, σ = %g): they spend ε = %.6g (%s)\n",
				s.Steps, more, f.epsilon, f.delta, f.q, f.sigma, s.Result.Epsilon, describe(s.Result, "ε"))
			return nil
		},
	}
	fl := cmd.Flags()
	fl.Float64Var(&f.epsilon, "epsilon", 0, "target ε, > 0")
	fl.Float64Var(&f.delta, "delta", 0, "δ, in (0, 1)")
	fl.Float64Var(&f.q, "q", 0, "sampling rate, in (0, 1]")
	fl.Float64Var(&f.sigma, "sigma", 0, "noise multiplier, > 0")
	f.addCommon(cmd)
	return cmd
}
