package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"github.com/tensafe/tensafe/api"
	"github.com/tensafe/tensafe/client"
	"github.com/tensafe/tensafe/privacy"
	"github.com/tensafe/tensafe/rlvr"
)

// trainKeyFile holds the embedded server's trainer API key under
// --data-dir (mode 0600).
const trainKeyFile = "train.key"

// Training modes of a config (docs/TRAINING_CONFIG.md).
const (
	modeSFT  = "sft"
	modeRLVR = "rlvr"
	modeDPO  = "dpo"
)

// trainConfig is the YAML training config. Every key is listed here; an
// unknown key is an error naming it and its line.
type trainConfig struct {
	Mode       string          `yaml:"mode"`
	Model      string          `yaml:"model"`
	Seed       uint64          `yaml:"seed"`
	LoRA       trainLoRA       `yaml:"lora"`
	DP         trainDP         `yaml:"dp"`
	Optimizer  trainOptimizer  `yaml:"optimizer"`
	Loss       *trainLoss      `yaml:"loss"`
	Data       trainData       `yaml:"data"`
	Schedule   trainSchedule   `yaml:"schedule"`
	Evaluation trainEvaluation `yaml:"evaluation"`
	RLVR       *trainRLVR      `yaml:"rlvr"`
	Output     trainOutput     `yaml:"output"`
}

type trainLoRA struct {
	Rank          int      `yaml:"rank"`
	Alpha         float64  `yaml:"alpha"`
	Dropout       float64  `yaml:"dropout"`
	TargetModules []string `yaml:"target_modules"`
	UseRSLoRA     bool     `yaml:"use_rslora"`
}

type trainDP struct {
	NoiseMultiplier float64 `yaml:"noise_multiplier"`
	MaxGradNorm     float64 `yaml:"max_grad_norm"`
	TargetEpsilon   float64 `yaml:"target_epsilon"`
	TargetDelta     float64 `yaml:"target_delta"`
	Accountant      string  `yaml:"accountant"`
	// Sampling is "client" (default: this command Poisson-samples each
	// batch and declares q) or "server" (sft only: the training rows are
	// uploaded as a dataset and every step is a train_step, drawn by the
	// server; the certificate says server-poisson).
	Sampling string `yaml:"sampling"`
}

type trainOptimizer struct {
	LearningRate *float64 `yaml:"learning_rate"`
	Beta1        *float64 `yaml:"beta1"`
	Beta2        *float64 `yaml:"beta2"`
	Eps          *float64 `yaml:"eps"`
	WeightDecay  *float64 `yaml:"weight_decay"`
	WarmupSteps  int      `yaml:"warmup_steps"`
	Schedule     string   `yaml:"schedule"`
}

type trainLoss struct {
	Type   string         `yaml:"type"`
	Kwargs map[string]any `yaml:"kwargs"`
}

type trainData struct {
	Train string `yaml:"train"`
	Eval  string `yaml:"eval"`
	// TrainOnPrompt also trains on the prompt of {prompt, completion}
	// records (sft).
	TrainOnPrompt bool `yaml:"train_on_prompt"`
	// MaxLength truncates rows to this many tokens (0: the model's limit
	// applies and longer rows are refused by the server).
	MaxLength int `yaml:"max_length"`
}

type trainSchedule struct {
	Steps  int     `yaml:"steps"`
	Epochs float64 `yaml:"epochs"`
	// BatchSize is the expected batch size: Poisson sampling with rate
	// batch_size / dataset size (examples; pairs for dpo).
	BatchSize int `yaml:"batch_size"`
	SaveEvery int `yaml:"save_every"`
}

type trainEvaluation struct {
	Every       int `yaml:"every"`
	MaxExamples int `yaml:"max_examples"`
}

type trainRLVR struct {
	Algorithm           string            `yaml:"algorithm"`
	Rewards             []rlvr.RewardSpec `yaml:"rewards"`
	PromptsPerStep      int               `yaml:"prompts_per_step"`
	SamplesPerPrompt    int               `yaml:"samples_per_prompt"`
	MaxTokens           int               `yaml:"max_tokens"`
	Temperature         float64           `yaml:"temperature"`
	TopK                int               `yaml:"top_k"`
	TopP                float64           `yaml:"top_p"`
	Stop                []string          `yaml:"stop"`
	Baseline            string            `yaml:"baseline"`
	BaselineDecay       float64           `yaml:"baseline_decay"`
	NormalizeAdvantages *bool             `yaml:"normalize_advantages"`
	EntropyCoef         float64           `yaml:"entropy_coef"`
	Epochs              int               `yaml:"epochs"`
	ClipLow             float64           `yaml:"clip_low_threshold"`
	ClipHigh            float64           `yaml:"clip_high_threshold"`
	KLCoef              float64           `yaml:"kl_coef"`
	PrivacyUnit         string            `yaml:"privacy_unit"` // prompt (default) or completion (weaker)
}

type trainOutput struct {
	Dir            string `yaml:"dir"`
	CheckpointName string `yaml:"checkpoint_name"`
	// IncludeOptimizer (default true) keeps the AdamW moments in the
	// checkpoints; false saves the adapter and counters only.
	IncludeOptimizer *bool `yaml:"include_optimizer"`
}

// configError is a bad config: the key (dotted path), its line, why.
type configError struct {
	file string
	line int
	key  string
	msg  string
}

func (e *configError) Error() string {
	if e.line > 0 {
		return fmt.Sprintf("%s:%d: %s: %s", e.file, e.line, e.key, e.msg)
	}
	return fmt.Sprintf("%s: %s: %s", e.file, e.key, e.msg)
}

// parsedConfig is a validated config with the positions of its keys.
type parsedConfig struct {
	trainConfig
	file string
	dir  string // the config's folder: data paths are relative to it
	root *yaml.Node
}

func (p *parsedConfig) errorf(key, format string, args ...any) error {
	return &configError{file: p.file, line: lineOf(p.root, key), key: key, msg: fmt.Sprintf(format, args...)}
}

// lineOf returns the line of a dotted key ("lora.rank", "rlvr.rewards[1].type")
// in a YAML document, or of its deepest existing parent; 0 if none.
func lineOf(root *yaml.Node, key string) int {
	n := root
	if n == nil {
		return 0
	}
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	line := 0
	for _, part := range strings.Split(key, ".") {
		name, idx := part, -1
		if i := strings.IndexByte(part, '['); i >= 0 && strings.HasSuffix(part, "]") {
			fmt.Sscanf(part[i+1:len(part)-1], "%d", &idx)
			name = part[:i]
		}
		found := false
		if n.Kind == yaml.MappingNode {
			for j := 0; j+1 < len(n.Content); j += 2 {
				if n.Content[j].Value == name {
					line, n, found = n.Content[j].Line, n.Content[j+1], true
					break
				}
			}
		}
		if !found {
			return line
		}
		if idx >= 0 {
			if n.Kind != yaml.SequenceNode || idx >= len(n.Content) {
				return line
			}
			n = n.Content[idx]
			line = n.Line
		}
	}
	return line
}

// checkKeys refuses keys the config types do not name, with their line.
func checkKeys(file string, n *yaml.Node, t reflect.Type, path string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yaml.DocumentNode {
		for _, c := range n.Content {
			if err := checkKeys(file, c, t, path); err != nil {
				return err
			}
		}
		return nil
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			if n.Tag == "!!null" {
				return nil
			}
			return &configError{file: file, line: n.Line, key: orRoot(path), msg: "must be a mapping of keys"}
		}
		fields := map[string]reflect.Type{}
		var names []string
		for i := range t.NumField() {
			f := t.Field(i)
			tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if tag == "" || tag == "-" {
				continue
			}
			fields[tag] = f.Type
			names = append(names, tag)
		}
		seen := map[string]bool{}
		for j := 0; j+1 < len(n.Content); j += 2 {
			k := n.Content[j]
			key := joinKey(path, k.Value)
			ft, ok := fields[k.Value]
			if !ok {
				return &configError{file: file, line: k.Line, key: key, msg: fmt.Sprintf("unknown key (known here: %s)", strings.Join(names, ", "))}
			}
			if seen[k.Value] {
				return &configError{file: file, line: k.Line, key: key, msg: "given twice"}
			}
			seen[k.Value] = true
			if err := checkKeys(file, n.Content[j+1], ft, key); err != nil {
				return err
			}
		}
	case reflect.Slice:
		if n.Kind == yaml.SequenceNode && t.Elem().Kind() == reflect.Struct {
			for i, c := range n.Content {
				if err := checkKeys(file, c, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// typeError turns yaml.v3's "line N: cannot unmarshal …" into an error
// naming the key at that line.
func typeError(file string, root *yaml.Node, err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) || len(te.Errors) == 0 {
		return fmt.Errorf("train: config %s: %w", file, err)
	}
	msg := te.Errors[0]
	var line int
	if _, serr := fmt.Sscanf(msg, "line %d:", &line); serr != nil {
		return fmt.Errorf("train: config %s: %s", file, msg)
	}
	_, rest, _ := strings.Cut(msg, ": ")
	collection := strings.Contains(rest, "!!seq") || strings.Contains(rest, "!!map")
	key := keyAtLine(root, line, "", collection)
	if key == "" {
		key = "(document)"
	}
	return &configError{file: file, line: line, key: key, msg: strings.TrimPrefix(rest, "cannot unmarshal ")}
}

// keyAtLine returns the dotted key of the innermost node on line: a
// collection (mapping or sequence) value starting there when collection is
// set, else a scalar value there.
func keyAtLine(n *yaml.Node, line int, path string, collection bool) string {
	match := func(v *yaml.Node) bool {
		return v.Line == line && (v.Kind == yaml.ScalarNode) != collection
	}
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			if k := keyAtLine(c, line, path, collection); k != "" {
				return k
			}
		}
	case yaml.MappingNode:
		for j := 0; j+1 < len(n.Content); j += 2 {
			key, v := joinKey(path, n.Content[j].Value), n.Content[j+1]
			if k := keyAtLine(v, line, key, collection); k != "" {
				return k
			}
			if match(v) {
				return key
			}
		}
	case yaml.SequenceNode:
		for i, v := range n.Content {
			key := fmt.Sprintf("%s[%d]", path, i)
			if k := keyAtLine(v, line, key, collection); k != "" {
				return k
			}
			if match(v) {
				return key
			}
		}
	}
	return ""
}

func joinKey(path, k string) string {
	if path == "" {
		return k
	}
	return path + "." + k
}

func orRoot(p string) string {
	if p == "" {
		return "(document)"
	}
	return p
}

// loadTrainConfig reads, checks and validates a config file.
func loadTrainConfig(path string) (*parsedConfig, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("train: config: %w", err)
	}
	return parseTrainConfig(path, data)
}

func parseTrainConfig(path string, data []byte) (*parsedConfig, error) {
	file := filepath.Base(path)
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, fmt.Errorf("train: config %s: %w", file, err)
	}
	if root.Kind == 0 {
		return nil, &configError{file: file, key: "(document)", msg: "empty config"}
	}
	if err := checkKeys(file, &root, reflect.TypeOf(trainConfig{}), ""); err != nil {
		return nil, err
	}
	p := &parsedConfig{file: file, dir: filepath.Dir(path), root: &root}
	if err := root.Decode(&p.trainConfig); err != nil {
		return nil, typeError(file, &root, err)
	}
	if err := p.validate(); err != nil {
		return nil, err
	}
	return p, nil
}

// validate checks what the server does not (or not before work starts);
// the server still validates the training config itself.
func (p *parsedConfig) validate() error {
	c := &p.trainConfig
	switch c.Mode {
	case modeSFT, modeRLVR, modeDPO:
	case "":
		return p.errorf("mode", "is required: sft, rlvr or dpo")
	default:
		return p.errorf("mode", "%q, want sft, rlvr or dpo", c.Mode)
	}
	if c.Model == "" {
		c.Model = "tensafe-tiny"
	}
	switch {
	case c.LoRA.Rank < 1:
		return p.errorf("lora.rank", "must be ≥ 1, got %d", c.LoRA.Rank)
	case !(c.LoRA.Alpha > 0):
		return p.errorf("lora.alpha", "must be > 0, got %v", c.LoRA.Alpha)
	case !(c.DP.NoiseMultiplier > 0):
		return p.errorf("dp.noise_multiplier", "must be > 0 (every TenSafe run is private), got %v", c.DP.NoiseMultiplier)
	case !(c.DP.MaxGradNorm > 0):
		return p.errorf("dp.max_grad_norm", "must be > 0, got %v", c.DP.MaxGradNorm)
	case !(c.DP.TargetEpsilon > 0):
		return p.errorf("dp.target_epsilon", "must be > 0, got %v", c.DP.TargetEpsilon)
	case !(c.DP.TargetDelta > 0 && c.DP.TargetDelta < 1):
		return p.errorf("dp.target_delta", "must be in (0, 1), got %v", c.DP.TargetDelta)
	case c.Data.Train == "":
		return p.errorf("data.train", "is required (a JSONL file, relative to the config)")
	case c.Data.MaxLength < 0:
		return p.errorf("data.max_length", "must be ≥ 0")
	case c.Schedule.Steps < 0:
		return p.errorf("schedule.steps", "must be ≥ 0")
	case c.Schedule.Epochs < 0 || math.IsNaN(c.Schedule.Epochs):
		return p.errorf("schedule.epochs", "must be ≥ 0")
	case c.Schedule.Steps > 0 && c.Schedule.Epochs > 0:
		return p.errorf("schedule.epochs", "give steps or epochs, not both")
	case c.Schedule.Steps == 0 && c.Schedule.Epochs == 0:
		return p.errorf("schedule.steps", "is required (or schedule.epochs)")
	case c.Schedule.SaveEvery < 0:
		return p.errorf("schedule.save_every", "must be ≥ 0")
	case c.Evaluation.Every < 0:
		return p.errorf("evaluation.every", "must be ≥ 0")
	case c.Evaluation.Every > 0 && c.Data.Eval == "":
		return p.errorf("evaluation.every", "needs data.eval")
	case c.Evaluation.MaxExamples < 0:
		return p.errorf("evaluation.max_examples", "must be ≥ 0")
	}
	switch c.DP.Sampling {
	case "", api.SamplingClient:
	case api.SamplingServer:
		switch c.Mode {
		case modeRLVR:
			return p.errorf("dp.sampling", "server sampling draws rows of a registered dataset; rlvr samples completions of its prompts on the client each step: use client")
		case modeDPO:
			return p.errorf("dp.sampling", "server sampling works in sft mode only: dpo trains (chosen, rejected) pairs with reference log-probabilities, and the server's Poisson draw takes single dataset rows")
		}
	default:
		return p.errorf("dp.sampling", "%q, want client (default) or server", c.DP.Sampling)
	}
	if c.Mode == modeRLVR {
		if c.Loss != nil {
			return p.errorf("loss", "is not used in rlvr mode: rlvr.algorithm chooses importance_sampling or ppo")
		}
		if c.Schedule.BatchSize != 0 {
			return p.errorf("schedule.batch_size", "is not used in rlvr mode: each step Poisson-samples prompts at rate rlvr.prompts_per_step / prompts")
		}
		if c.RLVR == nil {
			return p.errorf("rlvr", "is required in rlvr mode (algorithm, rewards, …)")
		}
		r := c.RLVR
		if len(r.Rewards) == 0 {
			return p.errorf("rlvr.rewards", "at least one reward is required")
		}
		for i, s := range r.Rewards {
			if _, err := rlvr.Resolve(s); err != nil {
				return p.errorf(fmt.Sprintf("rlvr.rewards[%d]", i), "%v", err)
			}
		}
		if r.PromptsPerStep < 0 || r.SamplesPerPrompt < 0 || r.MaxTokens < 0 || r.Epochs < 0 {
			return p.errorf("rlvr", "prompts_per_step, samples_per_prompt, max_tokens and epochs must be ≥ 0")
		}
		if u := r.PrivacyUnit; u != "" && u != rlvr.UnitPrompt && u != rlvr.UnitCompletion {
			return p.errorf("rlvr.privacy_unit", "%q, want %s (default) or %s", u, rlvr.UnitPrompt, rlvr.UnitCompletion)
		}
		return nil
	}
	if c.RLVR != nil {
		return p.errorf("rlvr", "is only used in rlvr mode")
	}
	if c.Schedule.BatchSize < 1 {
		return p.errorf("schedule.batch_size", "must be ≥ 1, got %d", c.Schedule.BatchSize)
	}
	if c.Mode == modeDPO && c.Loss != nil && c.Loss.Type != "dpo" {
		return p.errorf("loss.type", "%q: dpo mode trains the dpo loss", c.Loss.Type)
	}
	return nil
}

// record is one line of a data file.
type record struct {
	Prompt     string  `json:"prompt"`
	Completion *string `json:"completion"`
	Text       *string `json:"text"`
	Chosen     *string `json:"chosen"`
	Rejected   *string `json:"rejected"`
	Answer     string  `json:"answer"`
	line       int
}

// readRecords reads a JSONL file for mode: sft wants {prompt, completion}
// or {text}; dpo {prompt, chosen, rejected}; rlvr {prompt, answer?}.
// Unknown fields and records of the wrong shape are errors naming the line.
func readRecords(path, mode string) ([]record, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("train: data: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	var out []record
	name := filepath.Base(path)
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var r record
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&r); err != nil {
			return nil, fmt.Errorf("train: data %s:%d: %w", name, n, err)
		}
		r.line = n
		bad := func(msg string) error { return fmt.Errorf("train: data %s:%d: %s", name, n, msg) }
		switch mode {
		case modeSFT:
			switch {
			case r.Text != nil && (r.Completion != nil || r.Prompt != ""):
				return nil, bad("give {text} or {prompt, completion}, not both")
			case r.Text == nil && r.Completion == nil:
				return nil, bad("sft records are {\"prompt\", \"completion\"} or {\"text\"}")
			case r.Chosen != nil || r.Rejected != nil || r.Answer != "":
				return nil, bad("chosen, rejected and answer are not sft fields")
			case r.Text != nil && *r.Text == "", r.Completion != nil && *r.Completion == "":
				return nil, bad("empty text or completion")
			}
		case modeDPO:
			if r.Chosen == nil || r.Rejected == nil || r.Text != nil || r.Completion != nil || r.Answer != "" {
				return nil, bad("dpo records are {\"prompt\", \"chosen\", \"rejected\"}")
			}
			if *r.Chosen == "" || *r.Rejected == "" {
				return nil, bad("empty chosen or rejected")
			}
		case modeRLVR:
			if r.Prompt == "" || r.Text != nil || r.Completion != nil || r.Chosen != nil || r.Rejected != nil {
				return nil, bad("rlvr records are {\"prompt\", \"answer\"} (answer optional)")
			}
		}
		out = append(out, r)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("train: data %s: %w", name, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("train: data %s: no records", name)
	}
	return out, nil
}

// example is one tokenized training example: one row (sft) or a pair of
// rows (dpo: chosen, rejected).
type example struct {
	ids    [][]int
	labels [][]int
	ref    [][]float64 // reference log-probabilities per row (dpo)
}

type trainOptions struct {
	config, server, apiKey, dataDir, out string
	// steps, when > 0, replaces the schedule (a smoke run).
	steps int
	// resume is a checkpoint artifact to continue from.
	resume string
}

func newTrainCmd() *cobra.Command {
	o := trainOptions{}
	cmd := &cobra.Command{
		Use:   "train -f CONFIG.yaml",
		Short: "Run a DP fine-tune (sft, rlvr or dpo) from a YAML config",
		Long: `train runs the training a YAML config describes (docs/TRAINING_CONFIG.md): supervised
fine-tuning (mode: sft), reinforcement learning from verifiable rewards (mode: rlvr: REINFORCE,
PPO or GRPO) or direct preference optimization (mode: dpo), always with DP-SGD. Without --server
it starts the training server in-process on loopback, like quickstart, with its data under
--data-dir (a temporary folder if not given). It shows a progress bar, appends one JSON line of
metrics per step to <output>/metrics.jsonl, saves encrypted checkpoints, and writes the final DP
certificate to <output>/dp_certificate.json. A bad config is refused before anything runs, with
the key and its line.`,
		Example: `  tensafe train -f configs/train_sft.yaml
  tensafe train -f configs/train_rlvr.yaml --out runs/rl
  tensafe train -f configs/train_dpo.yaml --server https://tensafe.example --api-key "$TENSAFE_API_KEY"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.config == "" {
				return errors.New("train: -f CONFIG is required")
			}
			if o.apiKey == "" {
				o.apiKey = os.Getenv("TENSAFE_API_KEY")
			}
			_, err := runTrain(cmd.Context(), o, cmd.OutOrStdout(), cmd.ErrOrStderr())
			return err
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.config, "file", "f", "", "training config (YAML)")
	f.StringVar(&o.server, "server", "", "TenSafe server URL (default: an embedded server)")
	f.StringVar(&o.apiKey, "api-key", "", "API key of a trainer (with --server; default $TENSAFE_API_KEY)")
	f.StringVar(&o.dataDir, "data-dir", "", "data directory of the embedded server (default: a temporary one)")
	f.StringVar(&o.resume, "resume", "", "continue from this checkpoint artifact (of the same tenant: with --server, or the same --data-dir)")
	f.IntVar(&o.steps, "steps", 0, "run this many steps instead of the config's schedule (a smoke run)")
	f.StringVar(&o.out, "out", "", "output folder (default: output.dir of the config, else ./tensafe-train-<mode>)")
	return cmd
}

// trainSummary is what a run did.
type trainSummary struct {
	OutDir       string
	Steps        int
	ArtifactID   string
	EpsilonSpent float64
	FirstMetric  float64 // first step's loss (sft, dpo) or mean reward (rlvr)
	LastMetric   float64
}

// runTrain runs a config; progress (the bar) goes to progress.
func runTrain(ctx context.Context, o trainOptions, out, progress io.Writer) (*trainSummary, error) {
	cfg, err := loadTrainConfig(o.config)
	if err != nil {
		return nil, err
	}
	if o.steps < 0 {
		return nil, fmt.Errorf("train: --steps must be ≥ 0")
	}
	if o.steps > 0 {
		cfg.Schedule.Steps, cfg.Schedule.Epochs = o.steps, 0
	}
	rel := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(cfg.dir, p)
	}
	train, err := readRecords(rel(cfg.Data.Train), cfg.Mode)
	if err != nil {
		return nil, err
	}
	var eval []record
	if cfg.Data.Eval != "" {
		if eval, err = readRecords(rel(cfg.Data.Eval), cfg.Mode); err != nil {
			return nil, err
		}
		if m := cfg.Evaluation.MaxExamples; m > 0 && len(eval) > m {
			eval = eval[:m]
		}
	}
	outDir := o.out
	if outDir == "" {
		outDir = cfg.Output.Dir
	}
	if outDir == "" {
		outDir = "tensafe-train-" + cfg.Mode
	}
	if err := os.MkdirAll(outDir, 0o700); err != nil {
		return nil, fmt.Errorf("train: output: %w", err)
	}

	svc, stop, err := connectTrain(ctx, o)
	if err != nil {
		return nil, err
	}
	defer stop()
	r := &trainRun{cfg: cfg, svc: svc, out: out, progress: progress, outDir: outDir, resume: o.resume}
	return r.run(ctx, train, eval)
}

// connectTrain returns an SDK client: of --server, or of an embedded
// server started on loopback with a fresh tenant and trainer key.
func connectTrain(ctx context.Context, o trainOptions) (*client.ServiceClient, func(), error) {
	if o.server != "" {
		if o.apiKey == "" {
			return nil, nil, errors.New("train: --server needs --api-key (or $TENSAFE_API_KEY)")
		}
		c, err := client.New(o.server, o.apiKey)
		return c, func() {}, err
	}
	dataDir := o.dataDir
	cleanup := func() {}
	if dataDir == "" {
		d, err := os.MkdirTemp("", "tensafe-train-")
		if err != nil {
			return nil, nil, fmt.Errorf("train: %w", err)
		}
		dataDir, cleanup = d, func() { os.RemoveAll(d) }
	}
	srvCtx, stopServer := context.WithCancel(context.WithoutCancel(ctx))
	addrCh := make(chan string, 1)
	srvErr := make(chan error, 1)
	go func() {
		srvErr <- runServe(srvCtx, serveOptions{dataDir: dataDir, addr: "127.0.0.1:0", rateLimit: -1, grace: 30 * time.Second,
			logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, io.Discard, func(addr string) { addrCh <- addr })
	}()
	stop := func() {
		stopServer()
		<-srvErr
		cleanup()
	}
	var base string
	select {
	case addr := <-addrCh:
		base = "http://" + addr
	case err := <-srvErr:
		cleanup()
		stopServer()
		return nil, nil, fmt.Errorf("train: embedded server: %w", err)
	}
	fail := func(err error) (*client.ServiceClient, func(), error) {
		stop()
		return nil, nil, err
	}
	adminKey, err := os.ReadFile(filepath.Join(dataDir, serveAdminKeyFile))
	if err != nil {
		return fail(fmt.Errorf("train: %w", err))
	}
	admin, err := client.New(base, strings.TrimSpace(string(adminKey)))
	if err != nil {
		return fail(err)
	}
	// One tenant per data directory: its trainer key is kept in
	// train.key (0600), so that a later run on the same --data-dir sees
	// the checkpoints of earlier ones (--resume).
	token, err := readOrCreateSecret(filepath.Join(dataDir, trainKeyFile), func() (string, error) {
		tenant, err := admin.CreateTenant(ctx, "train")
		if err != nil {
			return "", err
		}
		key, err := admin.CreateAPIKey(ctx, tenant.ID, "trainer")
		if err != nil {
			return "", err
		}
		return key.Token, nil
	})
	if err != nil {
		return fail(fmt.Errorf("train: %w", err))
	}
	c, err := client.New(base, strings.TrimSpace(token))
	if err != nil {
		return fail(err)
	}
	return c, stop, nil
}

// trainRun is one run of a config.
type trainRun struct {
	cfg      *parsedConfig
	svc      *client.ServiceClient
	out      io.Writer
	progress io.Writer
	outDir   string
	metrics  *os.File
	resume   string // checkpoint artifact to continue from
}

func (r *trainRun) trainingConfig(datasetSize int64, expectedBatch int) api.TrainingConfig {
	c := r.cfg
	return api.TrainingConfig{
		BaseModel: c.Model,
		LoRA: api.LoRAConfig{Rank: c.LoRA.Rank, Alpha: c.LoRA.Alpha, Dropout: c.LoRA.Dropout,
			TargetModules: c.LoRA.TargetModules, UseRSLoRA: c.LoRA.UseRSLoRA},
		DP: &api.DPConfig{NoiseMultiplier: c.DP.NoiseMultiplier, MaxGradNorm: c.DP.MaxGradNorm,
			TargetEpsilon: c.DP.TargetEpsilon, TargetDelta: c.DP.TargetDelta,
			DatasetSize: datasetSize, ExpectedBatchSize: expectedBatch, Accountant: c.DP.Accountant},
		Optimizer: api.OptimizerConfig{LearningRate: c.Optimizer.LearningRate, Beta1: c.Optimizer.Beta1,
			Beta2: c.Optimizer.Beta2, Eps: c.Optimizer.Eps, WeightDecay: c.Optimizer.WeightDecay,
			WarmupSteps: c.Optimizer.WarmupSteps, Schedule: c.Optimizer.Schedule},
		Seed: c.Seed,
	}
}

// planSteps turns the schedule into optimizer steps and checks them
// against the privacy budget before anything trains.
func (r *trainRun) planSteps(ctx context.Context, steps, updatesPerStep int, q float64) error {
	c := r.cfg
	opt := privacy.Options{Accountant: privacy.Accountant(c.DP.Accountant)}
	allowed, err := privacy.MaxStepsFor(ctx, c.DP.TargetEpsilon, c.DP.TargetDelta, q, c.DP.NoiseMultiplier, opt)
	if err != nil {
		return r.cfg.errorf("dp", "%v", err)
	}
	if int64(steps*updatesPerStep) > allowed.Steps {
		key := "schedule.steps"
		if c.Schedule.Epochs > 0 {
			key = "schedule.epochs"
		}
		return r.cfg.errorf(key, "%d optimizer steps exceed the privacy budget: (ε = %g, δ = %g) allows %d at q = %.4g, σ = %g",
			steps*updatesPerStep, c.DP.TargetEpsilon, c.DP.TargetDelta, allowed.Steps, q, c.DP.NoiseMultiplier)
	}
	return nil
}

func (r *trainRun) stepsFor(datasetSize, batch int) int {
	if s := r.cfg.Schedule.Steps; s > 0 {
		return s
	}
	return max(1, int(math.Ceil(r.cfg.Schedule.Epochs*float64(datasetSize)/float64(batch))))
}

// metricLine is one line of metrics.jsonl.
type metricLine struct {
	Step         int                `json:"step"`
	Time         string             `json:"time"`
	Examples     int                `json:"examples"`
	Loss         *float64           `json:"loss,omitempty"`
	MeanReward   *float64           `json:"mean_reward,omitempty"`
	Metrics      map[string]float64 `json:"metrics,omitempty"`
	LearningRate float64            `json:"learning_rate"`
	NoiseStd     float64            `json:"noise_std"`
	EpsilonSpent float64            `json:"epsilon_spent"`
	Delta        float64            `json:"delta"`
	EvalLoss     *float64           `json:"eval_loss,omitempty"`
	EvalReward   *float64           `json:"eval_mean_reward,omitempty"`
	EvalMetrics  map[string]float64 `json:"eval_metrics,omitempty"`
	Checkpoint   string             `json:"checkpoint,omitempty"`
}

func (r *trainRun) writeMetric(m metricLine) error {
	m.Time = time.Now().UTC().Format(time.RFC3339Nano)
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if _, err := r.metrics.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("train: metrics: %w", err)
	}
	return nil
}

func (r *trainRun) bar(steps int) *progressbar.ProgressBar {
	return progressbar.NewOptions(steps,
		progressbar.OptionSetWriter(r.progress),
		progressbar.OptionSetDescription(r.cfg.Mode),
		progressbar.OptionSetWidth(30),
		progressbar.OptionShowCount(),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionOnCompletion(func() { fmt.Fprintln(r.progress) }),
	)
}

func (r *trainRun) run(ctx context.Context, train, eval []record) (*trainSummary, error) {
	flags := os.O_CREATE | os.O_WRONLY | os.O_TRUNC
	if r.resume != "" {
		flags = os.O_CREATE | os.O_WRONLY | os.O_APPEND // a resumed run continues the file
	}
	f, err := os.OpenFile(filepath.Join(r.outDir, "metrics.jsonl"), flags, 0o600)
	if err != nil {
		return nil, fmt.Errorf("train: metrics: %w", err)
	}
	defer f.Close()
	r.metrics = f
	var sum *trainSummary
	switch r.cfg.Mode {
	case modeRLVR:
		sum, err = r.runRLVR(ctx, train, eval)
	default:
		sum, err = r.runSupervised(ctx, train, eval)
	}
	if err != nil {
		return nil, err
	}
	sum.OutDir = r.outDir
	return sum, nil
}

// tokenize encodes texts through the server (the model's own tokenizer,
// special tokens never read from the text), in chunks the API accepts.
func (r *trainRun) tokenize(ctx context.Context, texts []string, bos bool) ([][]int, int, error) {
	var out [][]int
	eos := -1
	for i := 0; i < len(texts); i += api.MaxTokenizeTexts {
		chunk := texts[i:min(len(texts), i+api.MaxTokenizeTexts)]
		res, err := r.svc.TokenizeRequest(ctx, api.TokenizeRequest{Model: r.cfg.Model, Texts: chunk, AddSpecialTokens: bos})
		if err != nil {
			return nil, 0, fmt.Errorf("train: tokenize: %w", err)
		}
		out = append(out, res.InputIDs...)
		eos = res.EOSTokenID
	}
	return out, eos, nil
}

// examples tokenizes sft or dpo records into rows with labels.
func (r *trainRun) examples(ctx context.Context, recs []record) ([]example, error) {
	c := r.cfg
	var prompts, seconds, thirds []string
	for _, rec := range recs {
		switch {
		case rec.Text != nil:
			prompts = append(prompts, *rec.Text)
			seconds = append(seconds, "")
		case c.Mode == modeDPO:
			prompts, seconds, thirds = append(prompts, rec.Prompt), append(seconds, *rec.Chosen), append(thirds, *rec.Rejected)
		default:
			prompts, seconds = append(prompts, rec.Prompt), append(seconds, *rec.Completion)
		}
	}
	pIDs, eos, err := r.tokenize(ctx, prompts, true)
	if err != nil {
		return nil, err
	}
	sIDs, _, err := r.tokenize(ctx, seconds, false)
	if err != nil {
		return nil, err
	}
	var tIDs [][]int
	if c.Mode == modeDPO {
		if tIDs, _, err = r.tokenize(ctx, thirds, false); err != nil {
			return nil, err
		}
	}
	row := func(prompt, completion []int, trainPrompt bool) ([]int, []int) {
		ids := append(slices.Clone(prompt), completion...)
		if eos >= 0 {
			ids = append(ids, eos)
		}
		labels := slices.Clone(ids)
		if !trainPrompt {
			for j := range prompt {
				labels[j] = -100
			}
		}
		if m := c.Data.MaxLength; m > 0 && len(ids) > m {
			ids, labels = ids[:m], labels[:m]
		}
		return ids, labels
	}
	out := make([]example, len(recs))
	for i, rec := range recs {
		var e example
		if c.Mode == modeDPO {
			ci, cl := row(pIDs[i], sIDs[i], false)
			ri, rl := row(pIDs[i], tIDs[i], false)
			e.ids, e.labels = [][]int{ci, ri}, [][]int{cl, rl}
		} else {
			ids, labels := row(pIDs[i], sIDs[i], rec.Text != nil || c.Data.TrainOnPrompt)
			e.ids, e.labels = [][]int{ids}, [][]int{labels}
		}
		out[i] = e
	}
	return out, nil
}

func batchOf(exs []example, withRef bool) api.Batch {
	var b api.Batch
	for _, e := range exs {
		b.InputIDs = append(b.InputIDs, e.ids...)
		b.Labels = append(b.Labels, e.labels...)
		if withRef {
			b.ReferenceLogprobs = append(b.ReferenceLogprobs, e.ref...)
		}
	}
	return b
}

// poissonSample includes each example independently with probability q,
// drawing from crypto/rand: the sampling the accountant's q assumes.
func poissonSample(exs []example, q float64) ([]example, error) {
	var out []example
	var buf [8]byte
	for _, e := range exs {
		if _, err := rand.Read(buf[:]); err != nil {
			return nil, err
		}
		if float64(binary.LittleEndian.Uint64(buf[:])>>11)/(1<<53) < q {
			out = append(out, e)
		}
	}
	return out, nil
}

// referenceLogprobs fills each example's reference log-probabilities from
// a client that is never trained (same base, seed and LoRA init as the
// policy, so it equals the policy before its first step).
func (r *trainRun) referenceLogprobs(ctx context.Context, ref *client.TrainingClient, sets ...[]example) error {
	for _, exs := range sets {
		for i := 0; i < len(exs); i += 64 {
			chunk := exs[i:min(len(exs), i+64)]
			f, err := ref.Forward(ctx, batchOf(chunk, false), nil)
			if err != nil {
				return fmt.Errorf("train: reference forward: %w", err)
			}
			res, err := f.Result(ctx)
			if err != nil {
				return fmt.Errorf("train: reference forward: %w", err)
			}
			k := 0
			for j := range chunk {
				chunk[j].ref = res.LogProbs[k : k+len(chunk[j].ids)]
				k += len(chunk[j].ids)
			}
		}
	}
	return nil
}

func (r *trainRun) lossSpec() *api.LossSpec {
	c := r.cfg
	switch {
	case c.Loss != nil:
		return &api.LossSpec{Type: c.Loss.Type, Kwargs: c.Loss.Kwargs}
	case c.Mode == modeDPO:
		return &api.LossSpec{Type: "dpo"}
	}
	return &api.LossSpec{Type: "token_ce"}
}

// runSupervised trains sft or dpo: Poisson-sampled batches of examples,
// forward_backward + optim_step per step.
func (r *trainRun) runSupervised(ctx context.Context, trainRecs, evalRecs []record) (*trainSummary, error) {
	c := r.cfg
	train, err := r.examples(ctx, trainRecs)
	if err != nil {
		return nil, err
	}
	var eval []example
	if len(evalRecs) > 0 {
		if eval, err = r.examples(ctx, evalRecs); err != nil {
			return nil, err
		}
	}
	if c.Schedule.BatchSize > len(train) {
		return nil, c.errorf("schedule.batch_size", "%d is more than the %d training examples", c.Schedule.BatchSize, len(train))
	}
	q := float64(c.Schedule.BatchSize) / float64(len(train))
	steps := r.stepsFor(len(train), c.Schedule.BatchSize)
	if err := r.planSteps(ctx, steps, 1, q); err != nil {
		return nil, err
	}
	tcfg := r.trainingConfig(int64(len(train)), c.Schedule.BatchSize)
	server := c.DP.Sampling == api.SamplingServer
	var ds *api.Dataset
	if server {
		if ds, err = r.uploadDataset(ctx, train); err != nil {
			return nil, err
		}
		// The dataset's rows are the dataset size; the server draws.
		tcfg.DP.DatasetSize, tcfg.DP.Sampling, tcfg.DP.DatasetID = 0, api.SamplingServer, ds.ID
	}
	tc, err := r.svc.CreateTrainingClient(ctx, tcfg)
	if err != nil {
		return nil, fmt.Errorf("train: create client: %w", err)
	}
	loss := r.lossSpec()
	dpo := c.Mode == modeDPO
	if dpo {
		ref, err := r.svc.CreateTrainingClient(ctx, r.trainingConfig(int64(len(train)), c.Schedule.BatchSize))
		if err != nil {
			return nil, fmt.Errorf("train: create reference client: %w", err)
		}
		err = r.referenceLogprobs(ctx, ref, train, eval)
		if derr := ref.Delete(ctx); err == nil && derr != nil {
			err = fmt.Errorf("train: delete reference client: %w", derr)
		}
		if err != nil {
			return nil, err
		}
	}
	fmt.Fprintf(r.out, "tensafe train: %s on %s, client %s: %d examples, %d steps, expected batch %d (q = %.4g), σ = %g, C = %g, budget ε = %g at δ = %g\n",
		c.Mode, c.Model, tc.ID, len(train), steps, c.Schedule.BatchSize, q, c.DP.NoiseMultiplier, c.DP.MaxGradNorm, c.DP.TargetEpsilon, c.DP.TargetDelta)
	if server {
		fmt.Fprintf(r.out, "server-sampled: dataset %s (%d rows, %s); every step is a train_step drawn by the server\n", ds.ID, ds.Rows, ds.ContentHash)
	}
	start, err := r.resumeInto(ctx, tc, steps)
	if err != nil {
		return nil, err
	}
	sum := &trainSummary{Steps: steps}
	bar := r.bar(steps)
	bar.Set(start)
	name := c.checkpointName()
	firstSet := false
	for step := start + 1; step <= steps; step++ {
		m := metricLine{Step: step}
		if err := r.supervisedStep(ctx, tc, train, q, loss, dpo, server, &m); err != nil {
			return nil, fmt.Errorf("train: step %d: %w", step, err)
		}
		if m.Loss != nil {
			if !firstSet {
				sum.FirstMetric, firstSet = *m.Loss, true
			}
			sum.LastMetric = *m.Loss
		}
		if c.Evaluation.Every > 0 && (step%c.Evaluation.Every == 0 || step == steps) {
			if err := r.evalLoss(ctx, tc, eval, loss, dpo, &m); err != nil {
				return nil, err
			}
		}
		if c.Schedule.SaveEvery > 0 && step%c.Schedule.SaveEvery == 0 && step != steps {
			if m.Checkpoint, err = r.save(ctx, tc, fmt.Sprintf("%s-step-%d", name, step), nil); err != nil {
				return nil, err
			}
		}
		if err := r.writeMetric(m); err != nil {
			return nil, err
		}
		sum.EpsilonSpent = m.EpsilonSpent
		desc := fmt.Sprintf("%s ε %.3f", c.Mode, m.EpsilonSpent)
		if m.Loss != nil {
			desc += fmt.Sprintf(" loss %.4f", *m.Loss)
		}
		bar.Describe(desc)
		bar.Add(1)
	}
	return r.finish(ctx, tc, name, nil, sum)
}

// supervisedStep runs one step: with server sampling a train_step (the
// server draws the batch from the uploaded dataset), otherwise a Poisson
// batch drawn here, forward_backward and optim_step. An empty draw is
// still a step (noise alone).
func (r *trainRun) supervisedStep(ctx context.Context, tc *client.TrainingClient, train []example, q float64, loss *api.LossSpec, dpo, server bool, m *metricLine) error {
	if server {
		f, err := tc.TrainStep(ctx, loss)
		if err != nil {
			return fmt.Errorf("train_step: %w", err)
		}
		res, err := f.Result(ctx)
		if err != nil {
			return fmt.Errorf("train_step: %w", err)
		}
		m.Examples = res.Examples
		if res.Examples > 0 {
			l := res.Loss
			m.Loss = &l
		}
		m.LearningRate, m.NoiseStd, m.EpsilonSpent, m.Delta = res.LearningRate, res.NoiseStd, res.EpsilonSpent, res.Delta
		return nil
	}
	picked, err := poissonSample(train, q)
	if err != nil {
		return err
	}
	m.Examples = len(picked)
	if len(picked) > 0 {
		f, err := tc.ForwardBackward(ctx, batchOf(picked, dpo), loss)
		if err != nil {
			return fmt.Errorf("forward_backward: %w", err)
		}
		fb, err := f.Result(ctx)
		if err != nil {
			return fmt.Errorf("forward_backward: %w", err)
		}
		m.Loss, m.Metrics = &fb.Loss, fb.Metrics
	}
	return r.optimStep(ctx, tc, m)
}

// uploadDataset registers the tokenized training examples as a dataset
// for server-sampled training: one row per example, with the labels as
// tokenized here (the prompt masked unless data.train_on_prompt), so that
// a drawn row trains exactly as the same example in a client batch.
func (r *trainRun) uploadDataset(ctx context.Context, train []example) (*api.Dataset, error) {
	rows := make([]api.DatasetExample, len(train))
	for i, e := range train {
		rows[i] = api.DatasetExample{InputIDs: e.ids[0], Labels: e.labels[0]}
	}
	ds, err := r.svc.CreateDataset(ctx, api.CreateDatasetRequest{Name: r.cfg.checkpointName() + "-train", Examples: rows})
	if err != nil {
		return nil, fmt.Errorf("train: upload the dataset (dp.sampling: server): %w", err)
	}
	return ds, nil
}

// resumeInto loads the --resume checkpoint into tc and returns the step
// it is at (0 without --resume).
func (r *trainRun) resumeInto(ctx context.Context, tc *client.TrainingClient, steps int) (int, error) {
	if r.resume == "" {
		return 0, nil
	}
	f, err := tc.LoadState(ctx, r.resume)
	if err != nil {
		return 0, fmt.Errorf("train: resume from %s: %w", r.resume, err)
	}
	res, err := f.Result(ctx)
	if err != nil {
		return 0, fmt.Errorf("train: resume from %s: %w", r.resume, err)
	}
	if int(res.Step) >= steps {
		return 0, r.cfg.errorf("schedule.steps", "the checkpoint %s is at step %d; the schedule has %d steps", r.resume, res.Step, steps)
	}
	fmt.Fprintf(r.out, "resumed from %s at step %d (ε spent %.4f)\n", r.resume, res.Step, res.EpsilonSpent)
	return int(res.Step), nil
}

func (r *trainRun) optimStep(ctx context.Context, tc *client.TrainingClient, m *metricLine) error {
	f, err := tc.OptimStep(ctx)
	if err != nil {
		return fmt.Errorf("optim_step: %w", err)
	}
	os, err := f.Result(ctx)
	if err != nil {
		return fmt.Errorf("optim_step: %w", err)
	}
	m.LearningRate, m.NoiseStd, m.EpsilonSpent, m.Delta = os.LearningRate, os.NoiseStd, os.EpsilonSpent, os.Delta
	return nil
}

// evalLoss is the held-out loss: forward (no gradient, no privacy cost)
// over the eval examples, the mean per-example loss.
func (r *trainRun) evalLoss(ctx context.Context, tc *client.TrainingClient, eval []example, loss *api.LossSpec, dpo bool, m *metricLine) error {
	var total float64
	n := 0
	for i := 0; i < len(eval); i += 64 {
		chunk := eval[i:min(len(eval), i+64)]
		f, err := tc.Forward(ctx, batchOf(chunk, dpo), loss)
		if err != nil {
			return fmt.Errorf("train: eval: %w", err)
		}
		res, err := f.Result(ctx)
		if err != nil {
			return fmt.Errorf("train: eval: %w", err)
		}
		for _, l := range res.PerExampleLoss {
			total += l
			n++
		}
	}
	if n > 0 {
		v := total / float64(n)
		m.EvalLoss = &v
	}
	return nil
}

func (c *parsedConfig) checkpointName() string {
	if c.Output.CheckpointName != "" {
		return c.Output.CheckpointName
	}
	return "train-" + c.Mode
}

func (r *trainRun) save(ctx context.Context, tc *client.TrainingClient, name string, tr *rlvr.Trainer) (string, error) {
	req := api.SaveStateRequest{Name: name, IncludeOptimizer: r.cfg.Output.IncludeOptimizer}
	if tr != nil {
		res, err := tr.SaveWith(ctx, req)
		if err != nil {
			return "", fmt.Errorf("train: save: %w", err)
		}
		return res.ArtifactID, nil
	}
	f, err := tc.SaveStateWith(ctx, req)
	if err != nil {
		return "", fmt.Errorf("train: save: %w", err)
	}
	res, err := f.Result(ctx)
	if err != nil {
		return "", fmt.Errorf("train: save: %w", err)
	}
	return res.ArtifactID, nil
}

// finish saves the final checkpoint and writes the DP certificate.
func (r *trainRun) finish(ctx context.Context, tc *client.TrainingClient, name string, tr *rlvr.Trainer, sum *trainSummary) (*trainSummary, error) {
	id, err := r.save(ctx, tc, name, tr)
	if err != nil {
		return nil, err
	}
	sum.ArtifactID = id
	cert, err := tc.DPCertificate(ctx)
	if err != nil {
		return nil, fmt.Errorf("train: dp certificate: %w", err)
	}
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, cert, "", "  "); err != nil {
		return nil, fmt.Errorf("train: dp certificate: %w", err)
	}
	pretty.WriteByte('\n')
	certPath := filepath.Join(r.outDir, "dp_certificate.json")
	if err := os.WriteFile(certPath, pretty.Bytes(), 0o600); err != nil {
		return nil, fmt.Errorf("train: dp certificate: %w", err)
	}
	m, err := tc.DPMetrics(ctx)
	if err != nil {
		return nil, err
	}
	sum.EpsilonSpent = m.EpsilonSpent
	fmt.Fprintf(r.out, "done: %d steps, ε = %.4f at δ = %g (%s accountant); encrypted checkpoint %s\n", sum.Steps, m.EpsilonSpent, m.Delta, m.Accountant, id)
	fmt.Fprintf(r.out, "metrics: %s\nDP certificate: %s\n", filepath.Join(r.outDir, "metrics.jsonl"), certPath)
	return sum, nil
}

// runRLVR trains with rlvr.Trainer.
func (r *trainRun) runRLVR(ctx context.Context, trainRecs, evalRecs []record) (*trainSummary, error) {
	c := r.cfg
	rc := *c.RLVR
	reward, err := rlvr.ResolveAll(rc.Rewards)
	if err != nil {
		return nil, c.errorf("rlvr.rewards", "%v", err)
	}
	prompts := make([]rlvr.Prompt, len(trainRecs))
	for i, rec := range trainRecs {
		prompts[i] = rlvr.Prompt{Text: rec.Prompt, Answer: rec.Answer}
	}
	if rc.SamplesPerPrompt == 0 {
		rc.SamplesPerPrompt = 4
	}
	if rc.PromptsPerStep == 0 {
		rc.PromptsPerStep = min(4, len(prompts))
	}
	if rc.PromptsPerStep > len(prompts) {
		return nil, c.errorf("rlvr.prompts_per_step", "%d is more than the %d prompts", rc.PromptsPerStep, len(prompts))
	}
	normalize := rc.NormalizeAdvantages == nil || *rc.NormalizeAdvantages
	cfg := rlvr.Config{Algorithm: rc.Algorithm, Model: c.Model, Prompts: prompts, PromptsPerStep: rc.PromptsPerStep,
		Sampling: rlvr.SamplingParams{N: rc.SamplesPerPrompt, MaxTokens: rc.MaxTokens, Temperature: rc.Temperature,
			TopK: rc.TopK, TopP: rc.TopP, Stop: rc.Stop},
		Advantage:   rlvr.AdvantageConfig{Baseline: rc.Baseline, Decay: rc.BaselineDecay, Normalize: normalize},
		EntropyCoef: rc.EntropyCoef, Epochs: rc.Epochs, ClipLow: rc.ClipLow, ClipHigh: rc.ClipHigh, KLCoef: rc.KLCoef,
		Seed: c.Seed, PrivacyUnit: rc.PrivacyUnit}
	if cfg.PrivacyUnit == "" {
		cfg.PrivacyUnit = rlvr.UnitPrompt
	}
	// Each step Poisson-samples the prompts at q = prompts_per_step /
	// prompts, so the DP config counts privacy units: prompts (a prompt's
	// completions are one example), or completions with the weaker
	// per-completion unit. Either way q is the trainer's true rate.
	dataset, perStep := int64(len(prompts)), rc.PromptsPerStep
	if cfg.PrivacyUnit == rlvr.UnitCompletion {
		dataset, perStep = dataset*int64(rc.SamplesPerPrompt), perStep*rc.SamplesPerPrompt
	}
	q := float64(perStep) / float64(dataset)
	steps := c.Schedule.Steps
	if steps == 0 {
		steps = max(1, int(math.Ceil(c.Schedule.Epochs*float64(len(prompts))/float64(rc.PromptsPerStep))))
	}
	tc, err := r.svc.CreateTrainingClient(ctx, r.trainingConfig(dataset, perStep))
	if err != nil {
		return nil, fmt.Errorf("train: create client: %w", err)
	}
	if cfg.KLCoef > 0 {
		ref, err := r.svc.CreateTrainingClient(ctx, r.trainingConfig(dataset, perStep))
		if err != nil {
			return nil, fmt.Errorf("train: create reference client: %w", err)
		}
		defer ref.Delete(context.WithoutCancel(ctx))
		cfg.Reference = ref
	}
	tr, err := rlvr.NewTrainer(r.svc, tc, reward, cfg)
	if err != nil {
		return nil, c.errorf("rlvr", "%v", err)
	}
	epochs := tr.Config().Epochs
	if err := r.planSteps(ctx, steps, epochs, q); err != nil {
		return nil, err
	}
	fmt.Fprintf(r.out, "tensafe train: rlvr (%s) on %s, client %s: %d prompts Poisson-sampled at q = %.4g (%d per step on average) × %d samples, privacy unit: %s; %d steps × %d update(s), σ = %g, C = %g, budget ε = %g at δ = %g\n",
		tr.Config().Algorithm, c.Model, tc.ID, len(prompts), q, rc.PromptsPerStep, rc.SamplesPerPrompt, cfg.PrivacyUnit, steps, epochs,
		c.DP.NoiseMultiplier, c.DP.MaxGradNorm, c.DP.TargetEpsilon, c.DP.TargetDelta)
	start := 0
	if r.resume != "" {
		if err := tr.Load(ctx, r.resume); err != nil {
			return nil, fmt.Errorf("train: resume from %s: %w", r.resume, err)
		}
		st, err := tr.State()
		if err != nil {
			return nil, err
		}
		if start = st.Step; start >= steps {
			return nil, c.errorf("schedule.steps", "the checkpoint %s is at step %d; the schedule has %d steps", r.resume, start, steps)
		}
		fmt.Fprintf(r.out, "resumed from %s at step %d\n", r.resume, start)
	}
	sum := &trainSummary{Steps: steps}
	bar := r.bar(steps)
	bar.Set(start)
	name := c.checkpointName()
	sawReward := false
	for step := start + 1; step <= steps; step++ {
		res, err := tr.Step(ctx)
		if err != nil {
			return nil, fmt.Errorf("train: %w", err)
		}
		mr := res.MeanReward
		m := metricLine{Step: step, Examples: res.Examples}
		if len(res.Prompts) > 0 { // an empty Poisson draw is a noise-only step: no reward
			m.MeanReward = &mr
		}
		last := res.Updates[len(res.Updates)-1]
		if fb := last.ForwardBackward; fb != nil {
			m.Loss, m.Metrics = &fb.Loss, fb.Metrics
		}
		os := last.OptimStep
		m.LearningRate, m.NoiseStd, m.EpsilonSpent, m.Delta = os.LearningRate, os.NoiseStd, os.EpsilonSpent, os.Delta
		if m.MeanReward != nil {
			if !sawReward {
				sum.FirstMetric, sawReward = mr, true
			}
			sum.LastMetric = mr
		}
		if c.Evaluation.Every > 0 && (step%c.Evaluation.Every == 0 || step == steps) {
			v, err := r.evalReward(ctx, tc, evalRecs, reward, rc)
			if err != nil {
				return nil, err
			}
			m.EvalReward = &v
		}
		if c.Schedule.SaveEvery > 0 && step%c.Schedule.SaveEvery == 0 && step != steps {
			if m.Checkpoint, err = r.save(ctx, tc, fmt.Sprintf("%s-step-%d", name, step), tr); err != nil {
				return nil, err
			}
		}
		if err := r.writeMetric(m); err != nil {
			return nil, err
		}
		bar.Describe(fmt.Sprintf("rlvr ε %.3f reward %.3f", m.EpsilonSpent, mr))
		bar.Add(1)
	}
	return r.finish(ctx, tc, name, tr, sum)
}

// evalReward is the mean reward of greedy completions of the eval prompts
// (sampling only: no privacy cost).
func (r *trainRun) evalReward(ctx context.Context, tc *client.TrainingClient, eval []record, reward rlvr.RewardFunc, rc trainRLVR) (float64, error) {
	var total float64
	maxTokens := rc.MaxTokens
	if maxTokens == 0 {
		maxTokens = 32
	}
	for _, rec := range eval {
		f, err := tc.Sample(ctx, api.SampleRequest{Prompt: rec.Prompt, MaxTokens: maxTokens, Temperature: 0, Stop: rc.Stop})
		if err != nil {
			return 0, fmt.Errorf("train: eval: %w", err)
		}
		res, err := f.Result(ctx)
		if err != nil {
			return 0, fmt.Errorf("train: eval: %w", err)
		}
		v, err := reward(rlvr.Sample{Prompt: rec.Prompt, Completion: res.Sequences[0].Text, Answer: rec.Answer})
		if err != nil {
			return 0, fmt.Errorf("train: eval: %w", err)
		}
		total += v
	}
	return total / float64(len(eval)), nil
}
