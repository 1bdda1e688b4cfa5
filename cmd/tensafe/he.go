package main

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/tensafe/tensafe/he"
)

func newHECmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "he",
		Short: "Homomorphic encryption (CKKS): encrypted LoRA deltas and private inference",
	}
	cmd.AddCommand(newHEBenchCmd(), newHEParamsCmd())
	return cmd
}

func newHEParamsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "params",
		Short: "List the CKKS parameter presets and their security bound check",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			for _, name := range he.Presets() {
				p, err := he.Preset(name)
				if err != nil {
					return err
				}
				fmt.Fprintf(out, "%s  128-bit: ok\n", p)
			}
			return nil
		},
	}
}

func newHEBenchCmd() *cobra.Command {
	var (
		cfg     he.BenchConfig
		asJSON  bool
		noProgr bool
	)
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure key generation, encryption, LoRA deltas (both packings), private inference and serialization",
		Long: `Runs the HE operations with real keys and ciphertexts and prints a table
(or JSON with --json). Defaults are the issue's size: d=4096, r=16 with
the CKKS-N13-QP218 preset. The feature-major delta is timed over one full
group of 2·slots tokens; the interleaved delta per ciphertext with one
worker (latency) and with all workers (throughput).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			progress := func(s string) { fmt.Fprintln(cmd.ErrOrStderr(), "he bench:", s) }
			if noProgr || asJSON {
				progress = nil
			}
			rep, err := he.Bench(cmd.Context(), cfg, progress)
			if err != nil {
				return &exitError{code: 1, err: fmt.Errorf("he bench: %w", err)}
			}
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(rep)
			}
			fmt.Fprintf(out, "params: %s\nd=%d rank=%d workers=%d GOMAXPROCS=%d\n\n", rep.Params, rep.D, rep.Rank, rep.Workers, rep.GOMAXPROCS)
			tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', tabwriter.AlignRight)
			fmt.Fprintln(tw, "operation\tcount\ttotal ms\tms per op\tper\tbytes\t\tnote")
			for _, r := range rep.Results {
				bytes := ""
				if r.Bytes > 0 {
					bytes = fmt.Sprint(r.Bytes)
				}
				fmt.Fprintf(tw, "%s\t%d\t%.1f\t%.4g\t%s\t%s\t\t%s\n", r.Name, r.Count, r.TotalMS, r.PerOpMS, r.Unit, bytes, r.Note)
			}
			return tw.Flush()
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Preset, "preset", he.DefaultPreset, "CKKS parameter preset (see tensafe he params)")
	f.IntVar(&cfg.D, "d", 4096, "LoRA input/output dimension")
	f.IntVar(&cfg.Rank, "rank", 16, "LoRA rank")
	f.IntVar(&cfg.LatencyCiphertexts, "latency-ciphertexts", 4, "ciphertexts for the interleaved (low-latency) delta")
	f.IntVar(&cfg.Workers, "workers", 0, "parallel workers (0: GOMAXPROCS)")
	f.BoolVar(&asJSON, "json", false, "print the report as JSON")
	f.BoolVar(&noProgr, "quiet", false, "no progress lines on stderr")
	return cmd
}
