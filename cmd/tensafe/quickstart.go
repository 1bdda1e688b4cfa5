package main

import (
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/tensafe/tensafe/api"
	"github.com/tensafe/tensafe/client"
	"github.com/tensafe/tensafe/engine"
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
	dataDir              string
}

func newQuickstartCmd() *cobra.Command {
	o := quickstartOptions{}
	cmd := &cobra.Command{
		Use:   "quickstart",
		Short: "Start an embedded server and DP fine-tune a LoRA adapter on tensafe-tiny through the API",
		Long: `quickstart runs TenSafe end to end on embedded defaults, with no external service: it
starts the training server in-process on loopback (SQLite, encrypted artifacts, local keyring,
signed audit log under --data-dir), creates a tenant and a trainer key, and through the Go SDK
DP-fine-tunes a LoRA adapter of the built-in model tensafe-tiny on a small bundled synthetic
dataset (Poisson-sampled batches, per-example clipping, Gaussian noise from a CSPRNG, an RDP
accountant that refuses the step that would exceed the budget). It prints the loss and ε step by
step, samples, saves an encrypted checkpoint, verifies the audit chain and says where
everything is.`,
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
	f.StringVar(&o.dataDir, "data-dir", "tensafe-data", "where the embedded server keeps its database, keys, artifacts and audit log")
	return cmd
}

func runQuickstart(ctx context.Context, out io.Writer, o quickstartOptions) (err error) {
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

	// The embedded server, on a loopback port of the kernel's choosing.
	srvCtx, stopServer := context.WithCancel(ctx)
	addrCh := make(chan string, 1)
	srvErr := make(chan error, 1)
	go func() {
		srvErr <- runServe(srvCtx, serveOptions{dataDir: o.dataDir, addr: "127.0.0.1:0", rateLimit: -1, grace: 30 * time.Second,
			logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, io.Discard, func(addr string) { addrCh <- addr })
	}()
	defer func() {
		stopServer()
		if serr := <-srvErr; serr != nil && err == nil {
			err = serr
		}
	}()
	var base string
	select {
	case addr := <-addrCh:
		base = "http://" + addr
	case err := <-srvErr:
		srvErr <- err
		return fmt.Errorf("quickstart: server: %w", err)
	}
	adminKey, err := os.ReadFile(filepath.Join(o.dataDir, serveAdminKeyFile))
	if err != nil {
		return fmt.Errorf("quickstart: %w", err)
	}
	admin, err := client.New(base, strings.TrimSpace(string(adminKey)))
	if err != nil {
		return err
	}
	tenant, err := admin.CreateTenant(ctx, "quickstart-"+time.Now().UTC().Format("20060102-150405"))
	if err != nil {
		return err
	}
	key, err := admin.CreateAPIKey(ctx, tenant.ID, "trainer")
	if err != nil {
		return err
	}
	svc, err := client.New(base, key.Token)
	if err != nil {
		return err
	}
	lr := o.lr
	wd := 0.0
	tc, err := svc.CreateTrainingClient(ctx, api.TrainingConfig{
		BaseModel: model.TinyName,
		LoRA:      api.LoRAConfig{Rank: 8, Alpha: 16, TargetModules: model.AllModules},
		DP: &api.DPConfig{NoiseMultiplier: o.sigma, MaxGradNorm: o.clip, TargetEpsilon: o.targetEps, TargetDelta: o.delta,
			DatasetSize: int64(len(examples)), ExpectedBatchSize: o.expectedBatch},
		Optimizer: api.OptimizerConfig{LearningRate: &lr, WeightDecay: &wd},
		Seed:      1,
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "TenSafe quickstart: embedded server at %s, data in %s\n", base, o.dataDir)
	fmt.Fprintf(out, "tenant %s, training client %s: DP-SGD LoRA (r=8, all projections) on %s\n", tenant.ID, tc.ID, model.TinyName)
	fmt.Fprintf(out, "dataset: %d synthetic clinical notes (bundled); Poisson sampling q = %.4f (expected batch %d)\n", len(examples), q, o.expectedBatch)
	fmt.Fprintf(out, "DP: σ = %g, C = %g, budget (ε = %g, δ = %g), RDP accountant\n", o.sigma, o.clip, o.targetEps, o.delta)
	// Plan within the budget: a refused optim_step would leave the last
	// batch's gradients pending (never saved un-noised). The server still
	// enforces the budget on every step.
	allowed, err := privacy.MaxStepsFor(ctx, o.targetEps, o.delta, q, o.sigma, privacy.Options{})
	if err != nil {
		return err
	}
	steps := o.steps
	if int64(steps) > allowed.Steps {
		steps = int(allowed.Steps)
		fmt.Fprintf(out, "the budget allows %d steps of this (q, σ): training %d of the %d asked\n", allowed.Steps, steps, o.steps)
	}
	fmt.Fprintln(out)
	o.steps = steps

	for step := 1; step <= o.steps; step++ {
		batch, err := poissonBatch(examples, q)
		if err != nil {
			return err
		}
		var fb *api.ForwardBackwardResult
		if len(batch.InputIDs) > 0 {
			fut, err := tc.ForwardBackward(ctx, api.Batch{InputIDs: batch.InputIDs, Labels: batch.Labels}, &api.LossSpec{Type: "token_ce"})
			if err != nil {
				return err
			}
			if fb, err = fut.Result(ctx); err != nil {
				return err
			}
		}
		// An empty Poisson batch is still a step (noise alone): skipping it
		// would reveal that no example was sampled.
		fut, err := tc.OptimStep(ctx)
		if err == nil {
			_, err = fut.Result(ctx)
		}
		if client.IsBudgetExceeded(err) {
			fmt.Fprintf(out, "step %d refused by the privacy budget: %v\n", step, err)
			break
		}
		if err != nil {
			return err
		}
		m, err := tc.DPMetrics(ctx)
		if err != nil {
			return err
		}
		bar := strings.Repeat("█", step*20/o.steps) + strings.Repeat("░", 20-step*20/o.steps)
		if fb == nil {
			fmt.Fprintf(out, "%s step %3d/%d  batch  0  (noise-only step)      ε %.3f\n", bar, step, o.steps, m.EpsilonSpent)
			continue
		}
		fmt.Fprintf(out, "%s step %3d/%d  batch %2d  loss %7.4f  clipped %3.0f%%  ε %.3f\n",
			bar, step, o.steps, len(batch.InputIDs), fb.Loss, 100*fb.FractionClipped, m.EpsilonSpent)
	}
	prompt := "patient reports "
	ids, _ := tok.Encode(prompt, true)
	sfut, err := tc.Sample(ctx, api.SampleRequest{PromptTokens: ids, MaxTokens: 48, Temperature: 0})
	if err != nil {
		return err
	}
	sample, err := sfut.Result(ctx)
	if err != nil {
		return err
	}
	text := ""
	if len(sample.Sequences) > 0 {
		text = sample.Sequences[0].Text
	}
	fmt.Fprintf(out, "\nsample (greedy): %q\n", prompt+text)
	save, err := tc.SaveState(ctx, "quickstart")
	if err != nil {
		return err
	}
	saved, err := save.Result(ctx)
	if err != nil {
		return err
	}
	m, err := tc.DPMetrics(ctx)
	if err != nil {
		return err
	}
	v, err := svc.VerifyAudit(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "privacy spent: ε = %.4f at δ = %g over %d steps (%s accountant; %.4f remaining)\n",
		m.EpsilonSpent, m.Delta, m.Steps, m.Accountant, m.EpsilonRemaining)
	fmt.Fprintf(out, "encrypted checkpoint: artifact %s, %d bytes, %s (AES-256-GCM under the tenant's key)\n", saved.ArtifactID, saved.Size, saved.ContentHash)
	fmt.Fprintf(out, "audit chain verified: %v (%d entries, %d signed checkpoints)\n", v.Verified, v.Size, v.Checkpoints)
	fmt.Fprintf(out, "everything is under %s: database, keyring, artifacts, audit log; admin key in %s\n", o.dataDir, filepath.Join(o.dataDir, serveAdminKeyFile))
	fmt.Fprintf(out, "done in %s\n", time.Since(start).Round(time.Millisecond))
	if !v.Verified {
		return fmt.Errorf("quickstart: the audit chain did not verify: %s", v.Error)
	}
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
