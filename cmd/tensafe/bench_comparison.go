package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"github.com/tensafe/tensafe/audit"
	"github.com/tensafe/tensafe/benchsuite"
	"github.com/tensafe/tensafe/engine"
	"github.com/tensafe/tensafe/keys"
	"github.com/tensafe/tensafe/loss"
	"github.com/tensafe/tensafe/privacy"
	"github.com/tensafe/tensafe/seal"
	"github.com/tensafe/tensafe/store"
)

type comparisonOptions struct {
	suiteOptions
	steps, checkpoints int
}

func newBenchComparisonCmd() *cobra.Command {
	o := comparisonOptions{}
	cmd := &cobra.Command{
		Use:   "comparison [--out DIR] [--quick]",
		Short: "Train with every privacy feature and without, alternating, and report the ratios",
		Long: `comparison runs the same training workload twice over, step by step in alternation so
that the machine's load hits both arms alike:

  private:  DP-SGD (per-example clipping, Gaussian noise), the RDP budget checked and
            recorded every step, every operation appended to a signed, hash-chained
            audit log (SQLite, durable), checkpoints encrypted under the tenant's key
  baseline: the same engine, model and batches with plain AdamW, no accounting, no
            audit, plaintext checkpoints

Both arms write checkpoints to disk with fsync. It reports each operation for both
arms, the ratios DP step / plain step and encrypted checkpoint / plaintext checkpoint,
and the throughput of each arm, as JSON and Markdown under <out>/<id>/.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := runComparison(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), o)
			return err
		},
	}
	addSuiteFlags(cmd, &o.suiteOptions)
	addEngineShapeFlags(cmd, &o.suiteOptions)
	cmd.Flags().IntVar(&o.steps, "steps", 0, "training steps per arm (0: 10 with --quick, 100 otherwise)")
	cmd.Flags().IntVar(&o.checkpoints, "checkpoints", 0, "checkpoints per arm (0: 10 with --quick, 50 otherwise)")
	return cmd
}

// comparisonArm is one side of the comparison.
type comparisonArm struct {
	name       string
	e          *engine.Engine
	budget     *privacy.Budget // nil: no accounting
	log        *audit.Log      // nil: no audit
	kr         *keys.Keyring   // nil: plaintext checkpoints
	fb, opt    []float64
	acct, aud  []float64
	step, ckpt []float64
	total      time.Duration
}

const comparisonQ, comparisonSigma = 0.01, 1.0

func (a *comparisonArm) trainStep(ctx context.Context, b engine.Batch, step int) error {
	t0 := time.Now()
	var acct, aud float64
	appendAudit := func(op string) error {
		if a.log == nil {
			return nil
		}
		ms, err := timeMS(func() error {
			_, err := a.log.Append(ctx, audit.Record{TenantID: "bench", Actor: "key_bench", Operation: op, Resource: "tc_" + a.name,
				Outcome: audit.OutcomeSuccess, Details: map[string]string{"step": strconv.Itoa(step)}})
			return err
		})
		aud += ms
		return err
	}
	fb, err := timeMS(func() error { _, err := a.e.ForwardBackward(ctx, b, loss.Spec{}); return err })
	if err != nil {
		return err
	}
	if err := appendAudit("training.forward_backward"); err != nil {
		return err
	}
	if a.budget != nil {
		ms, err := timeMS(func() error {
			d, err := a.budget.CanStep(comparisonQ, comparisonSigma)
			if err != nil {
				return err
			}
			if !d.Allowed {
				return fmt.Errorf("the budget refused step %d", step)
			}
			return nil
		})
		if err != nil {
			return err
		}
		acct += ms
	}
	opt, err := timeMS(func() error { _, err := a.e.OptimStep(ctx); return err })
	if err != nil {
		return err
	}
	if a.budget != nil {
		ms, err := timeMS(func() error { return a.budget.RecordStep(comparisonQ, comparisonSigma) })
		if err != nil {
			return err
		}
		acct += ms
	}
	if err := appendAudit("training.optim_step"); err != nil {
		return err
	}
	el := time.Since(t0)
	a.total += el
	a.fb, a.opt, a.step = append(a.fb, fb), append(a.opt, opt), append(a.step, float64(el.Nanoseconds())/1e6)
	if a.budget != nil {
		a.acct = append(a.acct, acct)
	}
	if a.log != nil {
		a.aud = append(a.aud, aud)
	}
	return nil
}

// checkpoint writes the engine state to dir: sealed under the tenant key
// (and audited) or in plaintext, fsynced either way, like the service.
func (a *comparisonArm) checkpoint(ctx context.Context, dir string, i int) error {
	ms, err := timeMS(func() error {
		var state bytes.Buffer
		if err := a.e.Save(&state); err != nil {
			return err
		}
		id := fmt.Sprintf("ckpt-%s-%d", a.name, i)
		f, err := os.Create(filepath.Join(dir, id))
		if err != nil {
			return err
		}
		defer f.Close()
		if a.kr == nil {
			if _, err := f.Write(state.Bytes()); err != nil {
				return err
			}
		} else {
			w, err := keys.SealTo(ctx, a.kr, f, seal.Binding{TenantID: "bench", ArtifactID: id})
			if err != nil {
				return err
			}
			if _, err := w.Write(state.Bytes()); err != nil {
				return err
			}
			if err := w.Close(); err != nil {
				return err
			}
		}
		if err := f.Sync(); err != nil {
			return err
		}
		if a.log != nil {
			_, err := a.log.Append(ctx, audit.Record{TenantID: "bench", Actor: "key_bench", Operation: "training.save_state",
				Resource: id, Outcome: audit.OutcomeSuccess})
			return err
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("%s checkpoint: %w", a.name, err)
	}
	a.ckpt = append(a.ckpt, ms)
	os.Remove(filepath.Join(dir, fmt.Sprintf("ckpt-%s-%d", a.name, i)))
	return nil
}

func runComparison(ctx context.Context, stdout, progress io.Writer, o comparisonOptions) (string, error) {
	if o.shape == "" {
		o.shape, o.batch, o.seq = "tiny", 8, 64
	}
	if _, ok := benchShapes()[o.shape]; !ok {
		return "", usageError("--shape: unknown shape %q (tiny, tiny-llama, small, llama-1b)", o.shape)
	}
	if o.batch <= 0 || o.seq < 2 || o.steps < 0 || o.checkpoints < 0 {
		return "", usageError("--batch, --seq, --steps and --checkpoints must be positive")
	}
	if o.steps == 0 {
		o.steps = iters(o.suiteOptions, 10, 100)
	}
	if o.checkpoints == 0 {
		o.checkpoints = iters(o.suiteOptions, 10, 50)
	}
	dir, err := os.MkdirTemp("", "tensafe-bench-comparison-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	m, cfg := benchModel(o.shape)
	if o.seq > cfg.MaxPositions {
		return "", usageError("--seq: at most %d for shape %s", cfg.MaxPositions, o.shape)
	}
	command := "tensafe bench comparison" + quickFlag(o.quick)
	id := time.Now().UTC().Format("20060102T150405Z") + "-comparison"
	mach := benchsuite.ReadMachine(mlBackend())
	mach.Note = o.note
	r := benchsuite.NewRunner(id, command, o.quick, mach, progress)
	r.Param("workload", fmt.Sprintf("%s, B=%d T=%d random tokens, LoRA r=8 on q,k,v,o, %d steps and %d checkpoints per arm, alternating",
		o.shape, o.batch, o.seq, o.steps, o.checkpoints))
	r.Param("private arm", fmt.Sprintf("DP-SGD σ=%g C=1, RDP budget (q=%g) checked and recorded per step, SQLite audit log (durable, signed checkpoints), checkpoints AES-256-GCM under the tenant KEK", comparisonSigma, comparisonQ))
	r.Param("baseline arm", "same engine and batches, plain AdamW, no accounting, no audit, plaintext checkpoints")
	fmt.Fprintf(progress, "tensafe bench comparison: %s on %s (%d cores), load average %.2f %.2f %.2f\n",
		o.shape, mach.CPUModel, mach.Cores, mach.LoadAvg[0], mach.LoadAvg[1], mach.LoadAvg[2])

	mk, err := keys.GenerateMasterKey()
	if err != nil {
		return "", err
	}
	master, err := keys.ParseMasterKey(mk)
	if err != nil {
		return "", err
	}
	kr, err := keys.CreateKeyring(ctx, filepath.Join(dir, "keyring"), master, nil)
	if err != nil {
		return "", err
	}
	defer kr.Close()
	if err := kr.AddTenant(ctx, "bench"); err != nil {
		return "", err
	}
	st, err := store.Open(ctx, filepath.Join(dir, "meta.db"))
	if err != nil {
		return "", err
	}
	defer st.Close()
	as, err := st.AuditStore(ctx, "audit")
	if err != nil {
		return "", err
	}
	signer, err := seal.GenerateSigningKey(nil)
	if err != nil {
		return "", err
	}
	lg, err := audit.Open(ctx, as, audit.Options{Origin: "bench.tensafe.local/audit", Signer: signer})
	if err != nil {
		return "", err
	}
	defer lg.Close()
	budget, err := privacy.NewBudget(privacy.BudgetConfig{TargetEpsilon: 1e6, Delta: 1e-5})
	if err != nil {
		return "", err
	}
	dpE, err := engine.New(m, benchEngineConfig(true, o.batch))
	if err != nil {
		return "", err
	}
	plainE, err := engine.New(m, benchEngineConfig(false, o.batch))
	if err != nil {
		return "", err
	}
	priv := &comparisonArm{name: "private", e: dpE, budget: budget, log: lg, kr: kr}
	base := &comparisonArm{name: "baseline", e: plainE}
	batch := randomBatch(cfg.VocabSize, o.batch, o.seq, 7)
	// One untimed step each compiles the graphs.
	for _, a := range []*comparisonArm{priv, base} {
		if err := a.trainStep(ctx, batch, 0); err != nil {
			return "", err
		}
		a.fb, a.opt, a.acct, a.aud, a.step, a.total = nil, nil, nil, nil, nil, 0
	}
	tick, done := r.Progress("comparison: training steps, alternating", o.steps)
	for i := 1; i <= o.steps; i++ {
		arms := []*comparisonArm{priv, base}
		if i%2 == 0 {
			arms[0], arms[1] = base, priv
		}
		for _, a := range arms {
			if err := a.trainStep(ctx, batch, i); err != nil {
				return "", fmt.Errorf("%s arm: %w", a.name, err)
			}
		}
		tick()
	}
	done()
	tick, done = r.Progress("comparison: checkpoints, alternating", o.checkpoints)
	for i := 0; i <= o.checkpoints; i++ {
		arms := []*comparisonArm{priv, base}
		if i%2 == 1 {
			arms[0], arms[1] = base, priv
		}
		for _, a := range arms {
			if err := a.checkpoint(ctx, dir, i); err != nil {
				return "", err
			}
		}
		if i == 0 { // warm-up
			priv.ckpt, base.ckpt = nil, nil
			continue
		}
		tick()
	}
	done()
	var state bytes.Buffer
	if err := dpE.Save(&state); err != nil {
		return "", err
	}
	unit := fmt.Sprintf("batch of %d × %d tokens", o.batch, o.seq)
	add := func(name, original, unit, note string, s []float64) *benchsuite.Result {
		return r.Add(benchsuite.Spec{Group: "comparison", Name: name, Original: original, Unit: unit, Note: note}, s)
	}
	pfb := add("forward_backward (private)", "forward_backward", unit, "per-example clipping", priv.fb)
	bfb := add("forward_backward (baseline)", "forward_backward_base", unit, "", base.fb)
	popt := add("optim_step (private)", "optim_step", "step", "noise + AdamW", priv.opt)
	bopt := add("optim_step (baseline)", "optim_step_base", "step", "AdamW", base.opt)
	add("budget check + record (private)", "rdp_accounting", "step", "CanStep before, RecordStep after", priv.acct)
	paud := add("audit appends (private)", "", "step", "2 durable appends (forward_backward, optim_step)", priv.aud)
	pstep := add("training step (private)", "", unit, "everything above", priv.step)
	bstep := add("training step (baseline)", "", unit, "forward_backward + optim_step", base.step)
	pck := add("checkpoint (encrypted + audited)", "", fmt.Sprintf("%d-byte engine state", state.Len()), "seal under a fresh DEK wrapped by the tenant KEK, fsync, audit append", priv.ckpt)
	bck := add("checkpoint (plaintext)", "", fmt.Sprintf("%d-byte engine state", state.Len()), "write + fsync", base.ckpt)
	r.AddRatio("DP step / plain step", pstep.P50, bstep.P50, "training step p50, private / baseline", "training step DP / plain (p50 fb + optim)")
	r.AddRatio("forward_backward DP / plain", pfb.P50, bfb.P50, "p50 / p50", "forward_backward DP / plain (p50)")
	r.AddRatio("optim_step DP / plain", popt.P50, bopt.P50, "p50 / p50", "optim_step DP / plain (p50)")
	r.AddRatio("throughput baseline / private", priv.total.Seconds(), base.total.Seconds(),
		fmt.Sprintf("steps/s: baseline %.2f, private %.2f", float64(o.steps)/base.total.Seconds(), float64(o.steps)/priv.total.Seconds()),
		"throughput plain / DP (steps in 300 s)")
	r.AddRatio("checkpoint encrypted / plaintext", pck.P50, bck.P50, "p50 / p50, both fsynced", "checkpoint encrypted / plain")
	r.AddRatio("audit share of the private step", paud.P50, pstep.P50, "audit appends p50 / private step p50", "")
	rep := r.Finish()
	out := filepath.Join(o.out, id)
	jp, mp, err := benchsuite.WriteFiles(out, rep)
	if err != nil {
		return "", err
	}
	v, err := lg.Verify(ctx, 0, 0)
	if err != nil {
		return "", fmt.Errorf("the private arm's audit log does not verify: %w", err)
	}
	fmt.Fprintf(stdout, "audit log of the private arm verified: %d entries\n", v.Size)
	fmt.Fprintf(stdout, "wrote %s and %s (%.0f s)\n", jp, mp, rep.DurationS)
	return out, nil
}
