package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/tensafe/tensafe/compute"
	"github.com/tensafe/tensafe/engine"
	"github.com/tensafe/tensafe/loss"
	"github.com/tensafe/tensafe/model"
)

func newBenchCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure TenSafe's components on this machine",
		Long: `bench measures TenSafe's components with the real packages and writes p50, p95 and
mean for each, with the machine's description, as JSON and Markdown under
reports/bench/<id>/ (--out). 'bench all --quick' runs the whole suite in a few
minutes; 'bench comparison' runs the same training with and without the privacy
features, alternating, and reports the ratios.`,
	}
	groups := suiteGroups()
	cmd.AddCommand(newBenchEngineCmd())
	for _, g := range groups {
		if g.name != "engine" {
			cmd.AddCommand(newBenchSuiteCmd(g, groups))
		}
	}
	cmd.AddCommand(newBenchSuiteCmd(benchGroup{name: "all"}, groups), newBenchComparisonCmd())
	return cmd
}

// benchShapes are the model shapes `tensafe bench engine` knows.
func benchShapes() map[string]model.Config {
	tiny := model.TinyConfig()
	tl := tiny
	tl.VocabSize, tl.Hidden, tl.Intermediate, tl.Layers, tl.Heads, tl.KVHeads, tl.HeadDim, tl.TieEmbeddings = 512, 64, 176, 2, 4, 2, 16, false
	small := tiny
	small.VocabSize, small.Hidden, small.Intermediate, small.Layers, small.Heads, small.KVHeads, small.HeadDim, small.TieEmbeddings = 32000, 1024, 2816, 8, 16, 16, 64, false
	small.MaxPositions = 4096
	l1b := tiny
	l1b.VocabSize, l1b.Hidden, l1b.Intermediate, l1b.Layers, l1b.Heads, l1b.KVHeads, l1b.HeadDim, l1b.TieEmbeddings = 128256, 2048, 8192, 16, 32, 8, 64, true
	l1b.MaxPositions = 4096
	l1b.Rope = model.Rope{Theta: 500000, Type: "llama3", Factor: 32, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPositions: 8192}
	return map[string]model.Config{"tiny": tiny, "tiny-llama": tl, "small": small, "llama-1b": l1b}
}

type engineBenchOptions struct {
	shape                 string
	batch, seq, steps     int
	rank                  int
	targets               string
	genTokens             int
	matmulCompare, asJSON bool
}

type engineBenchReport struct {
	Shape           string             `json:"shape"`
	Backend         string             `json:"backend"`
	Parameters      int64              `json:"parameters"`
	Batch           int                `json:"batch"`
	Seq             int                `json:"seq"`
	LoRARank        int                `json:"lora_rank"`
	Targets         []string           `json:"lora_targets"`
	FirstStepMS     map[string]float64 `json:"first_step_ms"` // includes graph compilation
	StepMS          map[string]stats   `json:"step_ms"`
	DPOverPlain     float64            `json:"dp_over_plain"`
	StockOverFixed  float64            `json:"stock_gradient_over_fixed,omitempty"`
	GenTokensPerSec map[string]float64 `json:"generation_tokens_per_s,omitempty"`
	KVCacheSpeedup  float64            `json:"kv_cache_speedup,omitempty"`
	PeakRSSMiB      float64            `json:"peak_rss_mib"`
	GoVersion       string             `json:"go_version"`
	CPUs            int                `json:"cpus"`
}

type stats struct {
	P50  float64 `json:"p50"`
	P95  float64 `json:"p95"`
	Mean float64 `json:"mean"`
}

func summarize(ms []float64) stats {
	s := append([]float64(nil), ms...)
	sort.Float64s(s)
	var sum float64
	for _, v := range s {
		sum += v
	}
	idx := func(p float64) float64 { return s[min(len(s)-1, int(p*float64(len(s))))] }
	return stats{P50: idx(0.5), P95: idx(0.95), Mean: sum / float64(len(s))}
}

func newBenchEngineCmd() *cobra.Command {
	var o engineBenchOptions
	var so suiteOptions
	cmd := &cobra.Command{
		Use:   "engine",
		Short: "Time DP and plain training steps, the matmul-gradient fix and KV-cache generation",
		Long: `engine times a full training step (forward_backward + optim_step) with DP-SGD and without,
on a model shape (tiny = tensafe-tiny, tiny-llama = the fixture's shape, small = h1024/8 layers,
llama-1b = Llama-3.2-1B's shape), with random weights. Set GOMLX_BACKEND=xla:cuda in a -tags xla
build to run on a GPU.

With --out or --quick it runs the suite's engine part instead (forward_backward,
optim_step and sample with and without DP, alternating, the derived clipping
and noise costs) and writes the report under <out>/<id>/.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cmd.Flags().Changed("out") || so.quick {
				so.shape, so.batch, so.seq = o.shape, o.batch, o.seq
				groups := suiteGroups()
				_, err := runSuite(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), "tensafe bench engine"+quickFlag(so.quick), groups[:1], so)
				return err
			}
			rep, err := runEngineBench(cmd.Context(), cmd.ErrOrStderr(), o)
			if err != nil {
				return err
			}
			if o.asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(rep)
			}
			printEngineBench(cmd.OutOrStdout(), rep)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.shape, "shape", "tiny", "tiny | tiny-llama | small | llama-1b")
	f.IntVar(&o.batch, "batch", 8, "batch size")
	f.IntVar(&o.seq, "seq", 64, "sequence length")
	f.IntVar(&o.steps, "steps", 5, "timed steps per mode (after one untimed compile step)")
	f.IntVar(&o.rank, "lora-rank", 8, "LoRA rank")
	f.StringVar(&o.targets, "targets", "q_proj,k_proj,v_proj,o_proj", "LoRA target modules")
	f.IntVar(&o.genTokens, "gen-tokens", 0, "also time generation of this many tokens with and without the KV cache (0: skip)")
	f.BoolVar(&o.matmulCompare, "matmul-compare", false, "also time the DP step with GoMLX v0.26.0's stock DotGeneral gradient")
	f.BoolVar(&o.asJSON, "json", false, "print JSON")
	addSuiteFlags(cmd, &so)
	return cmd
}

func runEngineBench(ctx context.Context, progress io.Writer, o engineBenchOptions) (*engineBenchReport, error) {
	cfg, ok := benchShapes()[o.shape]
	if !ok {
		return nil, fmt.Errorf("--shape: unknown shape %q (tiny, tiny-llama, small, llama-1b)", o.shape)
	}
	if o.batch <= 0 || o.seq <= 1 || o.steps <= 0 || o.seq > cfg.MaxPositions {
		return nil, fmt.Errorf("--batch, --seq and --steps must be positive (seq in [2, %d])", cfg.MaxPositions)
	}
	targets := strings.Split(o.targets, ",")
	m := model.Random(o.shape, cfg, 1)
	backendName := os.Getenv("GOMLX_BACKEND")
	if backendName == "" {
		backendName = compute.DefaultConfig
	}
	rep := &engineBenchReport{
		Shape: o.shape, Backend: backendName, Parameters: cfg.Parameters(), Batch: o.batch, Seq: o.seq,
		LoRARank: o.rank, Targets: targets, FirstStepMS: map[string]float64{}, StepMS: map[string]stats{},
		GoVersion: runtime.Version(), CPUs: runtime.NumCPU(),
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var batch engine.Batch
	for i := 0; i < o.batch; i++ {
		row := make([]int, o.seq)
		for j := range row {
			row[j] = rng.IntN(cfg.VocabSize)
		}
		batch.InputIDs = append(batch.InputIDs, row)
		batch.Labels = append(batch.Labels, row)
	}
	timeMode := func(name string, dp bool) ([]float64, error) {
		ecfg := engine.Config{LoRA: model.LoRAConfig{Rank: o.rank, Alpha: float64(2 * o.rank), TargetModules: targets}, Optimizer: engine.DefaultOptimizer()}
		if dp {
			ecfg.DP = engine.DPConfig{Enabled: true, NoiseMultiplier: 1, MaxGradNorm: 1, ExpectedBatch: o.batch}
		}
		e, err := engine.New(m, ecfg)
		if err != nil {
			return nil, err
		}
		var times []float64
		for i := 0; i <= o.steps; i++ {
			start := time.Now()
			if _, err := e.ForwardBackward(ctx, batch, loss.Spec{}); err != nil {
				return nil, err
			}
			if _, err := e.OptimStep(ctx); err != nil {
				return nil, err
			}
			ms := float64(time.Since(start).Microseconds()) / 1000
			if i == 0 {
				rep.FirstStepMS[name] = ms
			} else {
				times = append(times, ms)
			}
			fmt.Fprintf(progress, "\r%s step %d/%d: %.1f ms   ", name, i, o.steps, ms)
		}
		fmt.Fprintln(progress)
		return times, nil
	}
	// Alternate plain and DP so that machine noise hits both.
	var plain, dp []float64
	for _, mode := range []string{"plain", "dp"} {
		t, err := timeMode(mode, mode == "dp")
		if err != nil {
			return nil, err
		}
		rep.StepMS[mode] = summarize(t)
		if mode == "plain" {
			plain = t
		} else {
			dp = t
		}
	}
	rep.DPOverPlain = summarize(dp).P50 / summarize(plain).P50
	if o.matmulCompare {
		compute.UseStockDotGeneralGradient(true)
		t, err := timeMode("dp-stock-gradient", true)
		compute.UseStockDotGeneralGradient(false)
		if err != nil {
			return nil, err
		}
		rep.StepMS["dp-stock-gradient"] = summarize(t)
		rep.StockOverFixed = summarize(t).P50 / summarize(dp).P50
	}
	if o.genTokens > 0 {
		e, err := engine.New(m, engine.Config{LoRA: model.LoRAConfig{Rank: o.rank, Alpha: float64(2 * o.rank), TargetModules: targets}, Optimizer: engine.DefaultOptimizer()})
		if err != nil {
			return nil, err
		}
		rep.GenTokensPerSec = map[string]float64{}
		for _, noCache := range []bool{false, true} {
			name := map[bool]string{false: "kv_cache", true: "no_cache"}[noCache]
			req := engine.SampleRequest{Prompt: batch.InputIDs[0][:min(8, o.seq)], MaxTokens: o.genTokens, NoCache: noCache, StopTokens: nil}
			if _, err := e.Sample(ctx, engine.SampleRequest{Prompt: req.Prompt, MaxTokens: 2, NoCache: noCache}, nil); err != nil {
				return nil, err
			}
			start := time.Now()
			seqs, err := e.Sample(ctx, req, nil)
			if err != nil {
				return nil, err
			}
			rep.GenTokensPerSec[name] = float64(len(seqs[0].Tokens)) / time.Since(start).Seconds()
			fmt.Fprintf(progress, "generation %s: %.1f tokens/s\n", name, rep.GenTokensPerSec[name])
		}
		rep.KVCacheSpeedup = rep.GenTokensPerSec["kv_cache"] / rep.GenTokensPerSec["no_cache"]
	}
	rep.PeakRSSMiB = peakRSSMiB()
	return rep, nil
}

// peakRSSMiB reads the process's peak resident set (VmHWM) on Linux.
func peakRSSMiB() float64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			var kb float64
			fmt.Sscanf(strings.TrimSpace(strings.TrimPrefix(line, "VmHWM:")), "%f", &kb)
			return kb / 1024
		}
	}
	return 0
}

func printEngineBench(w io.Writer, r *engineBenchReport) {
	fmt.Fprintf(w, "shape %s (%d parameters), backend %s, B=%d T=%d, LoRA r=%d on %v, %s, %d CPUs\n",
		r.Shape, r.Parameters, r.Backend, r.Batch, r.Seq, r.LoRARank, r.Targets, r.GoVersion, r.CPUs)
	for _, k := range []string{"plain", "dp", "dp-stock-gradient"} {
		if s, ok := r.StepMS[k]; ok {
			fmt.Fprintf(w, "  %-18s step p50 %8.1f ms  p95 %8.1f ms  mean %8.1f ms  (first step with compile %.0f ms)\n", k, s.P50, s.P95, s.Mean, r.FirstStepMS[k])
		}
	}
	fmt.Fprintf(w, "  DP step / plain step: %.2f×\n", r.DPOverPlain)
	if r.StockOverFixed > 0 {
		fmt.Fprintf(w, "  stock gradient / fixed gradient (DP step): %.2f×\n", r.StockOverFixed)
	}
	if r.GenTokensPerSec != nil {
		fmt.Fprintf(w, "  generation: %.1f tokens/s with KV cache, %.1f without (%.1f×)\n", r.GenTokensPerSec["kv_cache"], r.GenTokensPerSec["no_cache"], r.KVCacheSpeedup)
	}
	fmt.Fprintf(w, "  peak RSS %.0f MiB\n", r.PeakRSSMiB)
}
