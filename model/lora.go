package model

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"

	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:revive
	"github.com/tensafe/tensafe/safetensors"
)

// Projection modules LoRA can target, in canonical order.
var (
	AttnModules = []string{"q_proj", "k_proj", "v_proj", "o_proj"}
	MLPModules  = []string{"gate_proj", "up_proj", "down_proj"}
	AllModules  = append(slices.Clone(AttnModules), MLPModules...)
)

// LoRAConfig configures low-rank adapters (Hu et al. 2021) as PEFT does.
type LoRAConfig struct {
	Rank    int     `json:"rank"`
	Alpha   float64 `json:"alpha"`
	Dropout float64 `json:"dropout"`
	// TargetModules lists projections (q_proj … down_proj). Empty means
	// the attention projections, or what TrainAttn/TrainMLP select.
	TargetModules []string `json:"target_modules,omitempty"`
	TrainAttn     *bool    `json:"train_attn,omitempty"` // Tinker-style switch: all attention projections
	TrainMLP      *bool    `json:"train_mlp,omitempty"`  // Tinker-style switch: all MLP projections
	RSLoRA        bool     `json:"use_rslora,omitempty"` // scale alpha/sqrt(r) instead of alpha/r
}

// Modules resolves the target modules in canonical order.
func (c LoRAConfig) Modules() []string {
	set := map[string]bool{}
	for _, m := range c.TargetModules {
		set[m] = true
	}
	if c.TrainAttn != nil && *c.TrainAttn {
		for _, m := range AttnModules {
			set[m] = true
		}
	}
	if c.TrainMLP != nil && *c.TrainMLP {
		for _, m := range MLPModules {
			set[m] = true
		}
	}
	if len(set) == 0 {
		for _, m := range AttnModules {
			set[m] = true
		}
	}
	var out []string
	for _, m := range AllModules {
		if set[m] {
			out = append(out, m)
		}
	}
	return out
}

// Scale is the factor applied to B·A: alpha/r, or alpha/√r with rsLoRA.
func (c LoRAConfig) Scale() float64 {
	if c.RSLoRA {
		return c.Alpha / math.Sqrt(float64(c.Rank))
	}
	return c.Alpha / float64(c.Rank)
}

// Validate checks the configuration, naming the offending field.
func (c LoRAConfig) Validate() error {
	if c.Rank <= 0 || c.Rank > 1024 {
		return fmt.Errorf("lora: rank must be in [1, 1024], got %d", c.Rank)
	}
	if !(c.Alpha > 0) || math.IsInf(c.Alpha, 0) {
		return fmt.Errorf("lora: alpha must be positive and finite, got %v", c.Alpha)
	}
	if !(c.Dropout >= 0 && c.Dropout < 1) {
		return fmt.Errorf("lora: dropout must be in [0, 1), got %v", c.Dropout)
	}
	for _, m := range c.TargetModules {
		if !slices.Contains(AllModules, m) {
			return fmt.Errorf("lora: target_modules: unknown module %q (known: %v)", m, AllModules)
		}
	}
	if c.TrainAttn != nil && c.TrainMLP != nil && !*c.TrainAttn && !*c.TrainMLP && len(c.TargetModules) == 0 {
		return fmt.Errorf("lora: train_attn and train_mlp are both false: nothing to train")
	}
	return nil
}

// LoRA holds the adapter weights of one model: for each targeted projection
// of each layer, A [r, in] and B [out, r], keyed by PEFT's saved tensor
// names ("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight").
type LoRA struct {
	Config LoRAConfig
	Names  []string // canonical order: layer, module, A then B
	Shapes map[string][]int
	Values map[string][]float32
}

func moduleGroup(module string) string {
	if slices.Contains(AttnModules, module) {
		return "self_attn"
	}
	return "mlp"
}

// LoRAName returns PEFT's saved name of a LoRA tensor; ab is "A" or "B".
func LoRAName(layer int, module, ab string) string {
	return fmt.Sprintf("base_model.model.model.layers.%d.%s.%s.lora_%s.weight", layer, moduleGroup(module), module, ab)
}

func projShape(c Config, module string) (out, in int) {
	q, kv := c.Heads*c.HeadDim, c.KVHeads*c.HeadDim
	switch module {
	case "q_proj":
		return q, c.Hidden
	case "k_proj", "v_proj":
		return kv, c.Hidden
	case "o_proj":
		return c.Hidden, q
	case "gate_proj", "up_proj":
		return c.Intermediate, c.Hidden
	default: // down_proj
		return c.Hidden, c.Intermediate
	}
}

func newLoRALayout(mc Config, lc LoRAConfig) *LoRA {
	l := &LoRA{Config: lc, Shapes: map[string][]int{}, Values: map[string][]float32{}}
	for layer := 0; layer < mc.Layers; layer++ {
		for _, m := range lc.Modules() {
			out, in := projShape(mc, m)
			a, b := LoRAName(layer, m, "A"), LoRAName(layer, m, "B")
			l.Names = append(l.Names, a, b)
			l.Shapes[a] = []int{lc.Rank, in}
			l.Shapes[b] = []int{out, lc.Rank}
		}
	}
	return l
}

// NewLoRA initialises adapters as PEFT does: A Kaiming-uniform with
// a = √5 (uniform in ±1/√in), B zero, so the adapted model starts equal to
// the base model. seed makes the initialisation reproducible.
func NewLoRA(mc Config, lc LoRAConfig, seed uint64) (*LoRA, error) {
	if err := lc.Validate(); err != nil {
		return nil, err
	}
	l := newLoRALayout(mc, lc)
	rng := rand.New(rand.NewPCG(seed, seed^0x6a09e667f3bcc909))
	for _, n := range l.Names {
		s := l.Shapes[n]
		v := make([]float32, s[0]*s[1])
		if strings.Contains(n, ".lora_A.") {
			bound := 1 / math.Sqrt(float64(s[1]))
			for i := range v {
				v[i] = float32((2*rng.Float64() - 1) * bound)
			}
		}
		l.Values[n] = v
	}
	return l, nil
}

// Clone returns a deep copy.
func (l *LoRA) Clone() *LoRA {
	c := &LoRA{Config: l.Config, Names: slices.Clone(l.Names), Shapes: map[string][]int{}, Values: map[string][]float32{}}
	for _, n := range l.Names {
		c.Shapes[n] = slices.Clone(l.Shapes[n])
		c.Values[n] = slices.Clone(l.Values[n])
	}
	return c
}

// NumParams returns the number of trainable parameters.
func (l *LoRA) NumParams() int {
	n := 0
	for _, name := range l.Names {
		n += len(l.Values[name])
	}
	return n
}

// Adapter returns the model.Adapter for LoRA weight nodes bound by name.
// With perExample the nodes carry a leading batch axis ([B, r, in] and
// [B, out, r]): each example uses its own copy, so the gradient with
// respect to those nodes is the per-example gradient. With rng (a GoMLX
// RNG state) and a positive Config.Dropout, the adapter's input is dropped
// element-wise as PEFT does in training (inverted dropout: kept values
// scaled by 1/(1-p)); pass nil for evaluation and sampling.
func (l *LoRA) Adapter(nodes map[string]*Node, perExample bool, rng *Node) Adapter {
	scale := l.Config.Scale()
	p := l.Config.Dropout
	return func(layer int, module string, x *Node) *Node {
		a, ok := nodes[LoRAName(layer, module, "A")]
		if !ok {
			return nil
		}
		b := nodes[LoRAName(layer, module, "B")]
		if rng != nil && p > 0 {
			var u *Node
			rng, u = RandomUniform(rng, x.Shape())
			keep := ConvertDType(GreaterOrEqual(u, Scalar(x.Graph(), x.DType(), p)), x.DType())
			x = MulScalar(Mul(x, keep), 1/(1-p))
		}
		var ax, bax *Node
		if perExample {
			ax = Einsum("bti,bri->btr", x, a)
			bax = Einsum("btr,bor->bto", ax, b)
		} else {
			ax = Einsum("bti,ri->btr", x, a)
			bax = Einsum("btr,or->bto", ax, b)
		}
		return MulScalar(bax, scale)
	}
}

// SavePEFT writes the adapter as PEFT does: adapter_config.json and
// adapter_model.safetensors, so Hugging Face peft and vLLM can load it.
func (l *LoRA) SavePEFT(dir string, baseModel string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("lora: save: %w", err)
	}
	cfg, err := l.PEFTConfigJSON(baseModel)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "adapter_config.json"), cfg, 0o644); err != nil {
		return fmt.Errorf("lora: save: %w", err)
	}
	f, err := os.Create(filepath.Join(dir, "adapter_model.safetensors"))
	if err != nil {
		return fmt.Errorf("lora: save: %w", err)
	}
	if err := l.WriteSafetensors(f); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("lora: save: %w", err)
	}
	return nil
}

// WriteSafetensors writes the adapter tensors under PEFT's names.
func (l *LoRA) WriteSafetensors(w interface{ Write([]byte) (int, error) }) error {
	ts := make(map[string]*safetensors.Tensor, len(l.Names))
	for _, n := range l.Names {
		ts[n] = safetensors.FromFloat32(l.Shapes[n], l.Values[n])
	}
	if err := safetensors.Write(w, ts, map[string]string{"format": "pt"}); err != nil {
		return fmt.Errorf("lora: %w", err)
	}
	return nil
}

// PEFTConfigJSON renders adapter_config.json.
func (l *LoRA) PEFTConfigJSON(baseModel string) ([]byte, error) {
	c := map[string]any{
		"peft_type":               "LORA",
		"task_type":               "CAUSAL_LM",
		"base_model_name_or_path": baseModel,
		"r":                       l.Config.Rank,
		"lora_alpha":              l.Config.Alpha,
		"lora_dropout":            l.Config.Dropout,
		"target_modules":          l.Config.Modules(),
		"use_rslora":              l.Config.RSLoRA,
		"use_dora":                false,
		"bias":                    "none",
		"fan_in_fan_out":          false,
		"inference_mode":          true,
		"init_lora_weights":       true,
		"modules_to_save":         nil,
		"layers_to_transform":     nil,
		"layers_pattern":          nil,
		"rank_pattern":            map[string]any{},
		"alpha_pattern":           map[string]any{},
		"revision":                nil,
	}
	out, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("lora: %w", err)
	}
	return append(out, '\n'), nil
}

// LoadPEFT reads a PEFT LoRA adapter folder for a model of config mc. It
// refuses PEFT features it does not implement, naming the field.
func LoadPEFT(dir string, mc Config) (*LoRA, error) {
	data, err := os.ReadFile(filepath.Join(dir, "adapter_config.json"))
	if err != nil {
		return nil, fmt.Errorf("lora: %w", err)
	}
	f, err := safetensors.ReadFile(filepath.Join(dir, "adapter_model.safetensors"))
	if err != nil {
		return nil, fmt.Errorf("lora: %w", err)
	}
	return ParsePEFT(data, f, mc)
}

// ParsePEFT builds adapters from adapter_config.json and the parsed weights.
func ParsePEFT(configJSON []byte, f *safetensors.File, mc Config) (*LoRA, error) {
	var pc struct {
		PEFTType      string          `json:"peft_type"`
		R             int             `json:"r"`
		Alpha         float64         `json:"lora_alpha"`
		Dropout       float64         `json:"lora_dropout"`
		TargetModules json.RawMessage `json:"target_modules"`
		RSLoRA        bool            `json:"use_rslora"`
		DoRA          bool            `json:"use_dora"`
		Bias          string          `json:"bias"`
		FanInFanOut   bool            `json:"fan_in_fan_out"`
		ModulesToSave []string        `json:"modules_to_save"`
		Layers        json.RawMessage `json:"layers_to_transform"`
		RankPattern   map[string]any  `json:"rank_pattern"`
		AlphaPattern  map[string]any  `json:"alpha_pattern"`
		LoRABias      bool            `json:"lora_bias"`
	}
	if err := json.Unmarshal(configJSON, &pc); err != nil {
		return nil, fmt.Errorf("lora: adapter_config.json: %w", err)
	}
	switch {
	case pc.PEFTType != "LORA":
		return nil, fmt.Errorf("lora: adapter_config.json: peft_type %q is not supported (only LORA)", pc.PEFTType)
	case pc.DoRA:
		return nil, fmt.Errorf("lora: adapter_config.json: use_dora=true is not supported")
	case pc.Bias != "" && pc.Bias != "none":
		return nil, fmt.Errorf("lora: adapter_config.json: bias %q is not supported (only none)", pc.Bias)
	case pc.LoRABias:
		return nil, fmt.Errorf("lora: adapter_config.json: lora_bias=true is not supported")
	case pc.FanInFanOut:
		return nil, fmt.Errorf("lora: adapter_config.json: fan_in_fan_out=true is not supported")
	case len(pc.ModulesToSave) > 0:
		return nil, fmt.Errorf("lora: adapter_config.json: modules_to_save is not supported")
	case len(pc.Layers) > 0 && string(pc.Layers) != "null":
		return nil, fmt.Errorf("lora: adapter_config.json: layers_to_transform is not supported")
	case len(pc.RankPattern) > 0:
		return nil, fmt.Errorf("lora: adapter_config.json: rank_pattern is not supported")
	case len(pc.AlphaPattern) > 0:
		return nil, fmt.Errorf("lora: adapter_config.json: alpha_pattern is not supported")
	}
	lc := LoRAConfig{Rank: pc.R, Alpha: pc.Alpha, RSLoRA: pc.RSLoRA}
	// Which modules: from the tensors present (target_modules may be a regex).
	present := map[string]bool{}
	for _, n := range f.Names() {
		found := false
		for _, m := range AllModules {
			if strings.Contains(n, "."+m+".lora_") {
				present[m], found = true, true
			}
		}
		if !found {
			return nil, fmt.Errorf("lora: adapter tensor %q is not a LoRA weight of a known projection", n)
		}
	}
	for _, m := range AllModules {
		if present[m] {
			lc.TargetModules = append(lc.TargetModules, m)
		}
	}
	if err := lc.Validate(); err != nil {
		return nil, fmt.Errorf("lora: adapter_config.json: %w", err)
	}
	l := newLoRALayout(mc, lc)
	if len(f.Tensors) != len(l.Names) {
		return nil, fmt.Errorf("lora: adapter has %d tensors, expected %d for %d layers × %v", len(f.Tensors), len(l.Names), mc.Layers, lc.Modules())
	}
	for _, n := range l.Names {
		t, ok := f.Tensors[n]
		if !ok {
			return nil, fmt.Errorf("lora: adapter lacks tensor %q", n)
		}
		if !slices.Equal(t.Shape, l.Shapes[n]) {
			return nil, fmt.Errorf("lora: tensor %q has shape %v, expected %v", n, t.Shape, l.Shapes[n])
		}
		v, err := t.Float32()
		if err != nil {
			return nil, fmt.Errorf("lora: tensor %q: %w", n, err)
		}
		l.Values[n] = v
	}
	return l, nil
}
