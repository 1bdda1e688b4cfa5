package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/tensafe/tensafe/client"
	"github.com/tensafe/tensafe/he"
)

func newHECmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "he",
		Short: "Homomorphic encryption (CKKS): encrypted LoRA deltas and private inference",
	}
	cmd.AddCommand(newHEBenchCmd(), newHEParamsCmd(), newHEKeygenCmd(), newHERegisterCmd(), newHEAdapterCmd(), newHEDeltaCmd(), newHEModelCmd(), newHEInferCmd())
	return cmd
}

// heKeyringTenant is the keyring tenant whose KEK seals HE client keys on
// the client's machine (a local keyring, not the server's).
const heKeyringTenant = "he-client"

// heServerFlags say which server and API key the HE client commands use.
type heServerFlags struct {
	server, apiKey, apiKeyFile string
}

func (f *heServerFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.server, "server", "", "TenSafe server base URL, e.g. http://127.0.0.1:8080 (required)")
	cmd.Flags().StringVar(&f.apiKey, "api-key", "", "trainer API key (default $TENSAFE_API_KEY)")
	cmd.Flags().StringVar(&f.apiKeyFile, "api-key-file", "", "file holding the API key")
}

func (f *heServerFlags) client() (*client.ServiceClient, error) {
	if f.server == "" {
		return nil, &exitError{code: 2, err: errors.New("--server is required")}
	}
	key := f.apiKey
	switch {
	case key != "":
	case f.apiKeyFile != "":
		b, err := os.ReadFile(f.apiKeyFile)
		if err != nil {
			return nil, fmt.Errorf("--api-key-file: %w", err)
		}
		key = strings.TrimSpace(string(b))
	default:
		key = os.Getenv("TENSAFE_API_KEY")
	}
	if key == "" {
		return nil, &exitError{code: 2, err: errors.New("no API key: give --api-key or --api-key-file, or set $TENSAFE_API_KEY")}
	}
	return client.New(f.server, key)
}

// parseShape reads "d_in,d_out,rank".
func parseShape(s string) (he.LoRAShape, error) {
	var sh he.LoRAShape
	parts := strings.Split(s, ",")
	if len(parts) != 3 {
		return sh, fmt.Errorf("shape %q: want d_in,d_out,rank", s)
	}
	for i, dst := range []*int{&sh.DIn, &sh.DOut, &sh.Rank} {
		n, err := strconv.Atoi(strings.TrimSpace(parts[i]))
		if err != nil || n < 1 {
			return sh, fmt.Errorf("shape %q: %q is not a positive integer", s, parts[i])
		}
		*dst = n
	}
	return sh, nil
}

// readMatrixFile reads a JSON matrix (rows of numbers) from path; a file
// that is not one is a usage error.
func readMatrixFile(path string) ([][]float64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var x [][]float64
	if err := json.Unmarshal(data, &x); err != nil {
		return nil, &exitError{code: 2, err: fmt.Errorf("%s: %w", path, err)}
	}
	return x, nil
}

// heStart is how he delta and he infer begin: it reads the JSON matrix in,
// opens the sealed client keys in keyFile (tensafe he keygen) with the
// local keyring kf names (closed again once they are unwrapped), and
// returns a client of the server sf names and an HE session of the keys.
func heStart(cmd *cobra.Command, kf *keyringFlags, sf *heServerFlags, keyFile, in string) (x [][]float64, c *client.ServiceClient, sess *client.HESession, err error) {
	if x, err = readMatrixFile(in); err != nil {
		return nil, nil, nil, err
	}
	sealed, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, nil, nil, err
	}
	kr, err := kf.open(cmd)
	if err != nil {
		return nil, nil, nil, err
	}
	ck, err := he.OpenClientKeys(cmd.Context(), he.KEKWrapper{Provider: kr, Tenant: heKeyringTenant}, sealed)
	kr.Close()
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%s: %w", keyFile, err)
	}
	if c, err = sf.client(); err != nil {
		return nil, nil, nil, err
	}
	return x, c, c.HE(ck), nil
}

// writeJSONResult writes v as a line of JSON to the file out (never over an
// existing one; mode 0600: decrypted results) or, when out is "" or "-", to
// the command's output.
func writeJSONResult(cmd *cobra.Command, out string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	data = append(data, '\n')
	if out == "" || out == "-" {
		_, err = cmd.OutOrStdout().Write(data)
		return err
	}
	return writeNewFile(out, data, 0o600)
}

func newHEKeygenCmd() *cobra.Command {
	var (
		kf     keyringFlags
		out    string
		preset string
		lora   []string
		widths []int
	)
	cmd := &cobra.Command{
		Use:   "keygen --out PREFIX",
		Short: "Generate a CKKS key pair: PREFIX.hek (client keys, sealed) and PREFIX.evk (evaluation keys)",
		Long: `keygen generates a tenant's CKKS key pair with Lattigo. The secret key is written
only sealed, to PREFIX.hek (mode 0600), under the KEK of tenant "` + heKeyringTenant + `" of a local
keyring (tensafe keys init; --keyring, --master-key-file or --passphrase-file). PREFIX.evk holds
the evaluation keys (public, relinearization and Galois keys) to register with the server
(tensafe he register). --lora d_in,d_out,rank (repeatable) adds the Galois keys of the
interleaved packing for that adapter shape; --mlp-width N (repeatable) those of private
inference at padded width N, with a relinearization key. Existing files are never overwritten.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return &exitError{code: 2, err: errors.New("--out is required")}
			}
			p, err := he.Preset(preset)
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			var caps he.Capabilities
			for _, s := range lora {
				sh, err := parseShape(s)
				if err != nil {
					return &exitError{code: 2, err: fmt.Errorf("--lora: %w", err)}
				}
				caps.LoRA = append(caps.LoRA, sh)
			}
			caps.MLPWidths = widths
			kr, err := kf.open(cmd)
			if err != nil {
				return err
			}
			defer kr.Close()
			ck, evk, err := he.GenerateKeys(cmd.Context(), p, caps)
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			sealed, err := ck.Seal(cmd.Context(), he.KEKWrapper{Provider: kr, Tenant: heKeyringTenant})
			if err != nil {
				return err
			}
			raw, err := evk.MarshalBinary()
			if err != nil {
				return err
			}
			if err := writeNewFile(out+".hek", sealed, 0o600); err != nil {
				return fmt.Errorf("client keys: %w", err)
			}
			if err := writeNewFile(out+".evk", raw, 0o644); err != nil {
				return fmt.Errorf("evaluation keys: %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "key id %s (%s)\nclient keys (sealed): %s.hek\nevaluation keys: %s.evk (%d bytes, %d Galois keys)\n",
				ck.ID(), p.Name(), out, out, len(raw), len(evk.Galois))
			return nil
		},
	}
	kf.register(cmd)
	f := cmd.Flags()
	f.StringVar(&out, "out", "", "path prefix of the two files written (required)")
	f.StringVar(&preset, "params", he.DefaultPreset, "CKKS parameter preset (see tensafe he params)")
	f.StringArrayVar(&lora, "lora", nil, "adapter shape d_in,d_out,rank for the interleaved packing (repeatable)")
	f.IntSliceVar(&widths, "mlp-width", nil, "padded model width for private inference (repeatable)")
	return cmd
}

func newHERegisterCmd() *cobra.Command {
	var (
		sf  heServerFlags
		evk string
	)
	cmd := &cobra.Command{
		Use:   "register --evk PREFIX.evk --server URL",
		Short: "Register evaluation keys with the server (the new key becomes active, the previous one retired)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if evk == "" {
				return &exitError{code: 2, err: errors.New("--evk is required")}
			}
			data, err := os.ReadFile(evk)
			if err != nil {
				return err
			}
			k, err := he.UnmarshalEvaluationKeys(data, 0)
			if err != nil {
				return &exitError{code: 2, err: fmt.Errorf("%s: %w", evk, err)}
			}
			c, err := sf.client()
			if err != nil {
				return err
			}
			info, err := c.RegisterHEKeys(cmd.Context(), k)
			if err != nil {
				return err
			}
			return heJSON(cmd, info)
		},
	}
	sf.register(cmd)
	cmd.Flags().StringVar(&evk, "evk", "", "evaluation keys file written by tensafe he keygen (required)")
	return cmd
}

func heJSON(cmd *cobra.Command, v any) error {
	enc := json.NewEncoder(cmd.OutOrStdout())
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func newHEAdapterCmd() *cobra.Command {
	var (
		sf     heServerFlags
		module string
		in     string
		src    he.AdapterSource
	)
	cmd := &cobra.Command{
		Use:   "adapter --module NAME (--in ADAPTER.json | --client ID | --artifact ID) --server URL",
		Short: "Register a plaintext LoRA adapter for encrypted deltas",
		Long: `adapter registers (or replaces) the LoRA adapter of a module: from a JSON file
{"a": rank×d_in, "b": d_out×rank, "scale": s} (--in), or from one projection (--layer,
--proj) of a training client's current adapter (--client) or of a checkpoint artifact
(--artifact) of the same tenant.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if module == "" {
				return &exitError{code: 2, err: errors.New("--module is required")}
			}
			n := 0
			for _, s := range []string{in, src.TrainingClientID, src.ArtifactID} {
				if s != "" {
					n++
				}
			}
			if n != 1 {
				return &exitError{code: 2, err: errors.New("give exactly one of --in, --client and --artifact")}
			}
			c, err := sf.client()
			if err != nil {
				return err
			}
			var res *he.RegisterAdapterResponse
			if in != "" {
				data, err := os.ReadFile(in)
				if err != nil {
					return err
				}
				var a struct {
					A     [][]float64 `json:"a"`
					B     [][]float64 `json:"b"`
					Scale float64     `json:"scale"`
				}
				dec := json.NewDecoder(bytes.NewReader(data))
				dec.DisallowUnknownFields()
				if err := dec.Decode(&a); err != nil {
					return &exitError{code: 2, err: fmt.Errorf("%s: %w", in, err)}
				}
				res, err = c.RegisterHEAdapter(cmd.Context(), module, he.Adapter{A: a.A, B: a.B, Scale: a.Scale})
				if err != nil {
					return err
				}
			} else if res, err = c.RegisterHEAdapterFrom(cmd.Context(), module, src); err != nil {
				return err
			}
			return heJSON(cmd, res)
		},
	}
	sf.register(cmd)
	f := cmd.Flags()
	f.StringVar(&module, "module", "", "name the adapter is registered under (required)")
	f.StringVar(&in, "in", "", `JSON file {"a", "b", "scale"}`)
	f.StringVar(&src.TrainingClientID, "client", "", "training client whose current adapter to take")
	f.StringVar(&src.ArtifactID, "artifact", "", "checkpoint artifact to take the adapter from")
	f.IntVar(&src.Layer, "layer", 0, "layer of the projection (with --client or --artifact)")
	f.StringVar(&src.Module, "proj", "q_proj", "projection (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj)")
	return cmd
}

func newHEDeltaCmd() *cobra.Command {
	var (
		sf      heServerFlags
		kf      keyringFlags
		keyFile string
		modules []string
		shape   string
		packing string
		in, out string
	)
	cmd := &cobra.Command{
		Use:   "delta --keys PREFIX.hek --module NAME --shape d_in,d_out,rank --in X.json --server URL",
		Short: "Encrypted LoRA deltas: encrypt activations here, compute on the server, decrypt here",
		Long: `delta reads activations X (JSON, tokens×d_in), encrypts them under the client keys
(PREFIX.hek, opened with the local keyring), asks the server for the deltas scale·B(Ax) of the
modules, decrypts them and writes {"module": tokens×d_out, ...} as JSON (--out, default stdout).
The server never sees X or the deltas. --packing auto (default) chooses by batch size.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if keyFile == "" || len(modules) == 0 || shape == "" || in == "" {
				return &exitError{code: 2, err: errors.New("--keys, --module, --shape and --in are required")}
			}
			sh, err := parseShape(shape)
			if err != nil {
				return &exitError{code: 2, err: fmt.Errorf("--shape: %w", err)}
			}
			var pk he.Packing
			switch packing {
			case "auto", "":
				pk = client.PackingAuto
			case string(he.PackingThroughput), string(he.PackingLatency):
				pk = he.Packing(packing)
			default:
				return &exitError{code: 2, err: fmt.Errorf("--packing %q: want auto, %s or %s", packing, he.PackingThroughput, he.PackingLatency)}
			}
			x, _, sess, err := heStart(cmd, &kf, &sf, keyFile, in)
			if err != nil {
				return err
			}
			deltas, err := sess.Deltas(cmd.Context(), modules, sh, x, pk)
			if err != nil {
				return err
			}
			res := make(map[string][][]float64, len(modules))
			for i, m := range modules {
				res[m] = deltas[i]
			}
			return writeJSONResult(cmd, out, res)
		},
	}
	sf.register(cmd)
	kf.register(cmd)
	f := cmd.Flags()
	f.StringVar(&keyFile, "keys", "", "sealed client keys written by tensafe he keygen (required)")
	f.StringArrayVar(&modules, "module", nil, "registered module (repeatable; same d_in)")
	f.StringVar(&shape, "shape", "", "adapter shape d_in,d_out,rank (required)")
	f.StringVar(&packing, "packing", "auto", "auto, feature_major or interleaved")
	f.StringVar(&in, "in", "", "activations, JSON tokens×d_in (required)")
	f.StringVar(&out, "out", "", "output file (default stdout; never overwritten)")
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
worker, with one ciphertext split across all workers (latency:
delta_interleaved_one) and with several ciphertexts on all workers
(throughput).`,
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

// readMLP reads a model file: JSON {"layers": [{"w", "bias", "act": {"kind", "coeffs"}}]}.
func readMLP(path string) (*he.MLP, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var m he.MLP
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &m, nil
}

func newHEModelCmd() *cobra.Command {
	var (
		sf      heServerFlags
		name    string
		in      string
		profile string
		hybrid  int
	)
	cmd := &cobra.Command{
		Use:   "model --name NAME --in MODEL.json --profile full|encrypted_input|hybrid --server URL",
		Short: "Register an HE-friendly model (MLP with x² or polynomial activations) for private inference",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if name == "" || in == "" {
				return &exitError{code: 2, err: errors.New("--name and --in are required")}
			}
			m, err := readMLP(in)
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			c, err := sf.client()
			if err != nil {
				return err
			}
			info, err := c.RegisterHEModel(cmd.Context(), name, m, he.Profile(profile), hybrid)
			if err != nil {
				return err
			}
			return heJSON(cmd, info)
		},
	}
	sf.register(cmd)
	f := cmd.Flags()
	f.StringVar(&name, "name", "", "model name (required)")
	f.StringVar(&in, "in", "", `model JSON {"layers": [{"w", "bias", "act": {"kind", "coeffs"}}]} (required)`)
	f.StringVar(&profile, "profile", string(he.ProfileFull), "full, encrypted_input or hybrid")
	f.IntVar(&hybrid, "hybrid-layers", 0, "layers under HE for profile hybrid")
	return cmd
}

func newHEInferCmd() *cobra.Command {
	var (
		sf      heServerFlags
		kf      keyringFlags
		keyFile string
		name    string
		model   string
		in, out string
	)
	cmd := &cobra.Command{
		Use:   "infer --keys PREFIX.hek --name NAME --in X.json --server URL [--model MODEL.json]",
		Short: "Private inference: encrypt inputs here, evaluate the HE layers on the server, decrypt and finish here",
		Long: `infer encrypts X (JSON, tokens×input_dim) under the client keys, has the server run the
HE layers of registered model NAME, decrypts their output and, for the profiles encrypted_input
and hybrid, runs the remaining layers here with --model (the same model file). It writes the
outputs (JSON, tokens×output_dim) to --out or stdout.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if keyFile == "" || name == "" || in == "" {
				return &exitError{code: 2, err: errors.New("--keys, --name and --in are required")}
			}
			var m *he.MLP
			if model != "" {
				var err error
				if m, err = readMLP(model); err != nil {
					return &exitError{code: 2, err: err}
				}
			}
			x, c, sess, err := heStart(cmd, &kf, &sf, keyFile, in)
			if err != nil {
				return err
			}
			models, err := c.HEModels(cmd.Context())
			if err != nil {
				return err
			}
			var info *he.ModelInfo
			for _, e := range models {
				if e.Name == name {
					info = &e.Model
				}
			}
			if info == nil {
				return &exitError{code: 1, err: fmt.Errorf("model %q is not registered", name)}
			}
			y, err := sess.Infer(cmd.Context(), name, *info, x, m)
			if err != nil {
				return err
			}
			return writeJSONResult(cmd, out, y)
		},
	}
	sf.register(cmd)
	kf.register(cmd)
	f := cmd.Flags()
	f.StringVar(&keyFile, "keys", "", "sealed client keys written by tensafe he keygen (required)")
	f.StringVar(&name, "name", "", "registered model (required)")
	f.StringVar(&model, "model", "", "the model file, to run the plaintext layers (profiles encrypted_input, hybrid)")
	f.StringVar(&in, "in", "", "inputs, JSON tokens×input_dim (required)")
	f.StringVar(&out, "out", "", "output file (default stdout; never overwritten)")
	return cmd
}
