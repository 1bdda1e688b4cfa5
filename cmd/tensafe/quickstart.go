package main

import (
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/binary"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/tensafe/tensafe/engine"
	"github.com/tensafe/tensafe/loss"
	"github.com/tensafe/tensafe/model"
	"github.com/tensafe/tensafe/privacy"
	"github.com/tensafe/tensafe/tokenizer"
)

//go:embed quickstart_data.txt
var quickstartData string

// quickstartRecords returns the bundled synthetic dataset, one record a line.
func quickstartRecords() []string {
	var out []string
	for _, line := range strings.Split(quickstartData, "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			out = append(out, line)
		}
	}
	return out
}

type quickstartOptions struct {
	steps, expectedBatch int
	sigma, clip, lr      float64
	targetEps, delta     float64
}

func newQuickstartCmd() *cobra.Command {
	o := quickstartOptions{}
	cmd := &cobra.Command{
		Use:   "quickstart",
		Short: "DP fine-tune a LoRA adapter on tensafe-tiny over a bundled synthetic dataset, then sample",
		Long: `quickstart runs TenSafe end to end on embedded defaults, with no external service:
it DP-fine-tunes a LoRA adapter of the built-in model tensafe-tiny on a small bundled synthetic
dataset (Poisson-sampled batches, per-example clipping, Gaussian noise from a CSPRNG, an RDP
accountant enforcing the (ε, δ) budget), prints the loss step by step and ends with a sample.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runQuickstart(cmd.Context(), cmd.OutOrStdout(), o)
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.steps, "steps", 40, "optimizer steps")
	f.IntVar(&o.expectedBatch, "batch", 16, "expected batch size (Poisson sampling rate = batch / dataset size)")
	f.Float64Var(&o.sigma, "noise-multiplier", 1.0, "DP noise multiplier σ")
	f.Float64Var(&o.clip, "max-grad-norm", 1.0, "per-example clipping norm C")
	f.Float64Var(&o.lr, "lr", 5e-3, "AdamW learning rate")
	f.Float64Var(&o.targetEps, "target-epsilon", 8, "privacy budget ε")
	f.Float64Var(&o.delta, "delta", 1e-5, "privacy budget δ")
	return cmd
}

func runQuickstart(ctx context.Context, out io.Writer, o quickstartOptions) error {
	start := time.Now()
	records := quickstartRecords()
	tok := tokenizer.NewByte()
	var examples [][]int
	for _, r := range records {
		ids, err := tok.Encode(r, true)
		if err != nil {
			return err
		}
		examples = append(examples, append(ids, tokenizer.ByteEOS))
	}
	if o.expectedBatch <= 0 || o.expectedBatch > len(examples) {
		return fmt.Errorf("--batch must be in [1, %d], got %d", len(examples), o.expectedBatch)
	}
	q := float64(o.expectedBatch) / float64(len(examples))
	opt := engine.DefaultOptimizer()
	opt.LR = o.lr
	opt.WeightDecay = 0
	m := model.Tiny()
	e, err := engine.New(m, engine.Config{
		LoRA:      model.LoRAConfig{Rank: 8, Alpha: 16, TargetModules: model.AllModules},
		DP:        engine.DPConfig{Enabled: true, NoiseMultiplier: o.sigma, MaxGradNorm: o.clip, ExpectedBatch: o.expectedBatch},
		Optimizer: opt,
		Seed:      1,
	})
	if err != nil {
		return err
	}
	budget, err := privacy.NewBudget(privacy.BudgetConfig{TargetEpsilon: o.targetEps, Delta: o.delta, Accountant: privacy.AccountantRDP})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "TenSafe quickstart: DP-SGD LoRA fine-tune of %s (%d parameters, LoRA r=8 on all projections: %d trainable)\n",
		m.Name, m.Config.Parameters(), e.Adapter().NumParams())
	fmt.Fprintf(out, "dataset: %d synthetic clinical notes (bundled); Poisson sampling q = %.4f (expected batch %d)\n", len(examples), q, o.expectedBatch)
	fmt.Fprintf(out, "DP: σ = %g, C = %g, budget (ε = %g, δ = %g), RDP accountant\n\n", o.sigma, o.clip, o.targetEps, o.delta)

	for step := 1; step <= o.steps; step++ {
		d, err := budget.CanStep(q, o.sigma)
		if err != nil {
			return err
		}
		if !d.Allowed {
			fmt.Fprintf(out, "step %d refused: it would spend ε = %.3f > %g\n", step, d.Epsilon, o.targetEps)
			break
		}
		batch, err := poissonBatch(examples, q)
		if err != nil {
			return err
		}
		res := &engine.ForwardBackwardResult{}
		if len(batch.InputIDs) > 0 {
			if res, err = e.ForwardBackward(ctx, batch, loss.Spec{Type: "token_ce"}); err != nil {
				return err
			}
		}
		// An empty Poisson batch is still a step (noise alone): skipping it
		// would reveal that no example was sampled.
		if _, err := e.OptimStep(ctx); err != nil {
			return err
		}
		if err := budget.RecordStep(q, o.sigma); err != nil {
			return err
		}
		spent, err := budget.Spent()
		if err != nil {
			return err
		}
		if len(batch.InputIDs) == 0 {
			fmt.Fprintf(out, "step %3d/%d  batch  0  (noise-only step)      ε %.3f\n", step, o.steps, spent.Epsilon)
			continue
		}
		fmt.Fprintf(out, "step %3d/%d  batch %2d  loss %7.4f  clipped %3.0f%%  ε %.3f\n",
			step, o.steps, len(batch.InputIDs), res.Loss, 100*res.FractionClipped, spent.Epsilon)
	}
	spent, err := budget.Spent()
	if err != nil {
		return err
	}
	prompt := "patient reports "
	ids, _ := tok.Encode(prompt, true)
	seqs, err := e.Sample(ctx, engine.SampleRequest{Prompt: ids, MaxTokens: 48, Temperature: 0}, tok)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "\nsample (greedy): %q\n", prompt+seqs[0].Text)
	fmt.Fprintf(out, "privacy spent: ε = %.4f at δ = %g over %d steps (%s accountant, order %g)\n",
		spent.Epsilon, spent.Delta, spent.Steps, spent.Accountant, spent.Order)
	fmt.Fprintf(out, "done in %s\n", time.Since(start).Round(time.Millisecond))
	return nil
}

// poissonBatch includes each example independently with probability q,
// drawing from crypto/rand: the sampling that the accountant's q assumes.
func poissonBatch(examples [][]int, q float64) (engine.Batch, error) {
	var b engine.Batch
	var buf [8]byte
	for _, ex := range examples {
		if _, err := rand.Read(buf[:]); err != nil {
			return b, err
		}
		u := float64(binary.LittleEndian.Uint64(buf[:])>>11) / (1 << 53)
		if u < q {
			b.InputIDs = append(b.InputIDs, ex)
			b.Labels = append(b.Labels, ex)
		}
	}
	return b, nil
}
