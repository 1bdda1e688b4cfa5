package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/tensafe/tensafe/benchsuite"
	"github.com/tensafe/tensafe/compute"
	"github.com/tensafe/tensafe/engine"
	"github.com/tensafe/tensafe/loss"
	"github.com/tensafe/tensafe/model"
)

// suiteOptions are the flags shared by the suite's subcommands.
type suiteOptions struct {
	out        string // reports root; a run writes <out>/<id>/
	quick      bool
	shape      string
	batch, seq int
	note       string // machine note recorded in the report
}

// benchGroup is one part of the suite: a name (the subcommand) and the
// function that measures it.
type benchGroup struct {
	name, short string
	run         func(ctx context.Context, r *benchsuite.Runner, o suiteOptions) error
}

// suiteGroups lists the suite's parts in the order `bench all` runs them.
func suiteGroups() []benchGroup {
	return []benchGroup{
		{"engine", "training step (DP and plain), sampling, derived clipping and noise cost", benchEngineGroup},
		{"privacy", "RDP/PRV accounting, (ε, δ) conversion, σ calibration", benchPrivacyGroup},
		{"crypto", "KEK/DEK, AES-KWP, encrypted store, Ed25519, ML-DSA-65, hybrid signatures, X-Wing", benchCryptoGroup},
		{"audit", "hash-chained audit log: append and verify (file and SQLite stores)", benchAuditGroup},
		{"tssp", "secure packages: create, sign, verify, open", benchTSSPGroup},
		{"he", "CKKS: keys, encrypt, decrypt, LoRA delta, private inference, serialization", benchHEGroup},
		{"loss", "loss computation for every registered loss", benchLossGroup},
		{"rlvr", "rewards, REINFORCE and PPO updates", benchRLVRGroup},
		{"api", "the HTTP API in process: client SDK against the real server", benchAPIGroup},
	}
}

// addSuiteFlags registers the shared flags on a bench subcommand.
func addSuiteFlags(cmd *cobra.Command, o *suiteOptions) {
	f := cmd.Flags()
	f.StringVar(&o.out, "out", filepath.Join("reports", "bench"), "reports folder; the run writes <out>/<id>/report.json and report.md")
	f.BoolVar(&o.quick, "quick", false, "fewer iterations (the whole suite in a few minutes)")
	f.StringVar(&o.note, "note", "", "a note on the machine recorded in the report (e.g. \"shared with other builds\")")
}

func addEngineShapeFlags(cmd *cobra.Command, o *suiteOptions) {
	f := cmd.Flags()
	f.StringVar(&o.shape, "shape", "tiny", "tiny | tiny-llama | small | llama-1b")
	f.IntVar(&o.batch, "batch", 8, "batch size")
	f.IntVar(&o.seq, "seq", 64, "sequence length")
}

// newBenchSuiteCmd makes `tensafe bench <group>` (and `all`).
func newBenchSuiteCmd(g benchGroup, groups []benchGroup) *cobra.Command {
	o := suiteOptions{}
	use, short := g.name, "Measure "+g.short
	if g.run == nil {
		short = "Run every part of the suite: " + names(groups)
	}
	cmd := &cobra.Command{
		Use:   use + " [--out DIR] [--quick]",
		Short: short,
		Long: short + `.

Each operation gets one untimed warm-up and then N timed runs; the report gives
p50, p95 and mean in milliseconds, the original TenSafe's published figure
beside ours where it published one, and the machine (CPU, cores, Go, ML
backend, load average at the start and the end). It is written as JSON and
Markdown under <out>/<id>/.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			run := groups
			if g.run != nil {
				run = []benchGroup{g}
			}
			_, err := runSuite(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), "tensafe bench "+g.name+quickFlag(o.quick), run, o)
			return err
		},
	}
	addSuiteFlags(cmd, &o)
	addEngineShapeFlags(cmd, &o)
	return cmd
}

func names(groups []benchGroup) string {
	var s []string
	for _, g := range groups {
		s = append(s, g.name)
	}
	return strings.Join(s, ", ")
}

func quickFlag(q bool) string {
	if q {
		return " --quick"
	}
	return ""
}

func mlBackend() string {
	if b := os.Getenv("GOMLX_BACKEND"); b != "" {
		return b
	}
	return compute.DefaultConfig
}

// runSuite runs groups and writes the report; it returns the report folder.
func runSuite(ctx context.Context, stdout, progress io.Writer, command string, groups []benchGroup, o suiteOptions) (string, error) {
	if o.shape == "" {
		o.shape, o.batch, o.seq = "tiny", 8, 64
	}
	if _, ok := benchShapes()[o.shape]; !ok {
		return "", usageError("--shape: unknown shape %q (tiny, tiny-llama, small, llama-1b)", o.shape)
	}
	if o.batch <= 0 || o.seq < 2 {
		return "", usageError("--batch must be positive and --seq at least 2")
	}
	id := time.Now().UTC().Format("20060102T150405Z") + "-" + strings.ReplaceAll(strings.TrimPrefix(command, "tensafe bench "), " ", "")
	id = strings.ReplaceAll(id, "--", "-")
	m := benchsuite.ReadMachine(mlBackend())
	m.Note = o.note
	r := benchsuite.NewRunner(id, command, o.quick, m, progress)
	fmt.Fprintf(progress, "tensafe bench: %s on %s (%d cores), %s, load average %.2f %.2f %.2f\n",
		command, m.CPUModel, m.Cores, m.GoVersion, m.LoadAvg[0], m.LoadAvg[1], m.LoadAvg[2])
	for _, g := range groups {
		if err := ctx.Err(); err != nil {
			return "", err
		}
		start := time.Now()
		if err := g.run(ctx, r, o); err != nil {
			return "", fmt.Errorf("bench %s: %w", g.name, err)
		}
		r.Logf("%-8s done in %s", g.name, time.Since(start).Round(time.Millisecond))
	}
	rep := r.Finish()
	dir := filepath.Join(o.out, id)
	jp, mp, err := benchsuite.WriteFiles(dir, rep)
	if err != nil {
		return "", err
	}
	fmt.Fprintf(stdout, "wrote %s and %s (%.0f s)\n", jp, mp, rep.DurationS)
	return dir, nil
}

// iters picks an iteration count for quick and full runs.
func iters(o suiteOptions, quick, full int) int {
	if o.quick {
		return quick
	}
	return full
}

// randomBatch is B rows of T random token ids, labels equal to inputs.
func randomBatch(vocab, b, t int, seed uint64) engine.Batch {
	rng := rand.New(rand.NewPCG(seed, 2))
	var batch engine.Batch
	for range b {
		row := make([]int, t)
		for j := range row {
			row[j] = rng.IntN(vocab)
		}
		batch.InputIDs = append(batch.InputIDs, row)
		batch.Labels = append(batch.Labels, row)
	}
	return batch
}

// benchModel is the model of a shape: the real tensafe-tiny for "tiny",
// random weights of the shape otherwise.
func benchModel(shape string) (*model.Model, model.Config) {
	if shape == "tiny" {
		m := model.Tiny()
		return m, model.TinyConfig()
	}
	cfg := benchShapes()[shape]
	return model.Random(shape, cfg, 1), cfg
}

func benchEngineConfig(dp bool, batch int) engine.Config {
	c := engine.Config{LoRA: model.LoRAConfig{Rank: 8, Alpha: 16, TargetModules: []string{"q_proj", "k_proj", "v_proj", "o_proj"}},
		Optimizer: engine.DefaultOptimizer(), Seed: 1}
	if dp {
		c.DP = engine.DPConfig{Enabled: true, NoiseMultiplier: 1, MaxGradNorm: 1, ExpectedBatch: batch}
	}
	return c
}

func timeMS(f func() error) (float64, error) {
	t0 := time.Now()
	err := f()
	return float64(time.Since(t0).Nanoseconds()) / 1e6, err
}

// benchEngineGroup times forward_backward and optim_step with DP-SGD and
// without on the same model and batch, alternating step by step so that
// machine noise hits both alike; clipping and noise costs are the paired
// differences (they run inside the real step, not as separable calls).
func benchEngineGroup(ctx context.Context, r *benchsuite.Runner, o suiteOptions) error {
	if o.shape == "" {
		o.shape, o.batch, o.seq = "tiny", 8, 64
	}
	m, cfg := benchModel(o.shape)
	if o.seq > cfg.MaxPositions {
		return usageError("--seq: at most %d for shape %s", cfg.MaxPositions, o.shape)
	}
	r.Param("engine.shape", fmt.Sprintf("%s (%d parameters)", o.shape, cfg.Parameters()))
	r.Param("engine.batch", fmt.Sprintf("B=%d T=%d, LoRA r=8 on q,k,v,o; DP σ=1 C=1", o.batch, o.seq))
	batch := randomBatch(cfg.VocabSize, o.batch, o.seq, 1)
	dpE, err := engine.New(m, benchEngineConfig(true, o.batch))
	if err != nil {
		return err
	}
	plainE, err := engine.New(m, benchEngineConfig(false, o.batch))
	if err != nil {
		return err
	}
	n := iters(o, 40, 100)
	var fbDP, fbPlain, optDP, optPlain []float64
	tick, done := r.Progress("engine: DP and plain steps, alternating", n+1)
	for i := 0; i <= n; i++ { // step 0 compiles the graphs: untimed
		for _, dp := range []bool{true, false} {
			e := map[bool]*engine.Engine{true: dpE, false: plainE}[dp]
			fb, err := timeMS(func() error { _, err := e.ForwardBackward(ctx, batch, loss.Spec{}); return err })
			if err != nil {
				return err
			}
			opt, err := timeMS(func() error { _, err := e.OptimStep(ctx); return err })
			if err != nil {
				return err
			}
			if i == 0 {
				continue
			}
			if dp {
				fbDP, optDP = append(fbDP, fb), append(optDP, opt)
			} else {
				fbPlain, optPlain = append(fbPlain, fb), append(optPlain, opt)
			}
		}
		tick()
	}
	done()
	unit := fmt.Sprintf("batch of %d × %d tokens", o.batch, o.seq)
	a := r.Add(benchsuite.Spec{Group: "engine", Name: "forward_backward (DP)", Original: "forward_backward", Unit: unit,
		Note: "per-example gradients, per-example clipping"}, fbDP)
	b := r.Add(benchsuite.Spec{Group: "engine", Name: "forward_backward (plain)", Original: "forward_backward_base", Unit: unit,
		Note: "same engine, no DP"}, fbPlain)
	c := r.Add(benchsuite.Spec{Group: "engine", Name: "optim_step (DP)", Original: "optim_step", Unit: "step",
		Note: "Gaussian noise on the clipped sum, AdamW"}, optDP)
	d := r.Add(benchsuite.Spec{Group: "engine", Name: "optim_step (plain)", Original: "optim_step_base", Unit: "step", Note: "AdamW"}, optPlain)
	r.Derive(benchsuite.Spec{Group: "dp-sgd", Name: "gradient_clipping", Original: "gradient_clipping", Unit: unit,
		Note: "forward_backward DP − plain: per-example gradients + clipping"}, a, b)
	r.Derive(benchsuite.Spec{Group: "dp-sgd", Name: "noise_injection", Original: "noise_injection", Unit: "step",
		Note: "optim_step DP − plain: CSPRNG Gaussian noise over every LoRA weight"}, c, d)
	step := func(x, y []float64) []float64 {
		s := make([]float64, len(x))
		for i := range x {
			s[i] = x[i] + y[i]
		}
		return s
	}
	sd := benchsuite.Summarize(step(fbDP, optDP))
	sp := benchsuite.Summarize(step(fbPlain, optPlain))
	r.AddRatio("forward_backward DP / plain", a.P50, b.P50, "p50 / p50", "forward_backward DP / plain (p50)")
	r.AddRatio("optim_step DP / plain", c.P50, d.P50, "p50 / p50", "optim_step DP / plain (p50)")
	r.AddRatio("training step DP / plain", sd.P50, sp.P50, "p50 of fb+optim / p50 of fb+optim", "training step DP / plain (p50 fb + optim)")

	prompt := batch.InputIDs[0][:min(8, o.seq)]
	const gen = 16
	_, err = r.Measure(ctx, benchsuite.Spec{Group: "engine", Name: fmt.Sprintf("sample (%d tokens, greedy, KV cache)", gen), Original: "sample",
		N: iters(o, 5, 20), Unit: fmt.Sprintf("%d-token prompt, %d new tokens", len(prompt), gen), MaxTime: 20 * time.Second},
		func(ctx context.Context) error {
			_, err := dpE.Sample(ctx, engine.SampleRequest{Prompt: prompt, MaxTokens: gen}, nil)
			return err
		})
	return err
}
