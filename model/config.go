package model

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
)

// Config is a Llama-family decoder's shape, read from a Hugging Face
// config.json.
type Config struct {
	ModelType        string  `json:"model_type"`
	VocabSize        int     `json:"vocab_size"`
	Hidden           int     `json:"hidden_size"`
	Intermediate     int     `json:"intermediate_size"`
	Layers           int     `json:"num_hidden_layers"`
	Heads            int     `json:"num_attention_heads"`
	KVHeads          int     `json:"num_key_value_heads"`
	HeadDim          int     `json:"head_dim"`
	RMSNormEps       float64 `json:"rms_norm_eps"`
	MaxPositions     int     `json:"max_position_embeddings"`
	TieEmbeddings    bool    `json:"tie_word_embeddings"`
	AttentionBias    bool    `json:"attention_bias"` // q, k, v (and o for Llama) projections carry biases
	OutputProjBias   bool    `json:"-"`              // o_proj has a bias (Llama attention_bias; not Qwen2)
	BOS              int     `json:"bos_token_id"`
	EOS              []int   `json:"-"`
	Rope             Rope    `json:"-"`
	TorchDType       string  `json:"-"`
	ArchitectureName string  `json:"-"`
}

// Rope holds the rotary embedding parameters, including Llama 3 scaling.
type Rope struct {
	Theta float64
	Type  string // "default" or "llama3"
	// Llama 3 scaling.
	Factor                        float64
	LowFreqFactor, HighFreqFactor float64
	OriginalMaxPositions          int
}

// Parameters returns the number of parameters of the base model.
func (c Config) Parameters() int64 {
	h, q, kv := int64(c.Hidden), int64(c.Heads*c.HeadDim), int64(c.KVHeads*c.HeadDim)
	attn := h*q + 2*h*kv + q*h
	if c.AttentionBias {
		attn += q + 2*kv
	}
	if c.OutputProjBias {
		attn += h
	}
	mlp := 3 * h * int64(c.Intermediate)
	per := attn + mlp + 2*h
	n := int64(c.Layers)*per + int64(c.VocabSize)*h + h
	if !c.TieEmbeddings {
		n += int64(c.VocabSize) * h
	}
	return n
}

// Validate checks that the shape is consistent.
func (c Config) Validate() error {
	pos := []struct {
		name string
		v    int
	}{
		{"vocab_size", c.VocabSize}, {"hidden_size", c.Hidden}, {"intermediate_size", c.Intermediate},
		{"num_hidden_layers", c.Layers}, {"num_attention_heads", c.Heads}, {"num_key_value_heads", c.KVHeads},
		{"head_dim", c.HeadDim},
	}
	for _, p := range pos {
		if p.v <= 0 {
			return fmt.Errorf("model: config: %s must be positive, got %d", p.name, p.v)
		}
	}
	if c.Heads%c.KVHeads != 0 {
		return fmt.Errorf("model: config: num_attention_heads (%d) must be a multiple of num_key_value_heads (%d)", c.Heads, c.KVHeads)
	}
	if c.HeadDim%2 != 0 {
		return fmt.Errorf("model: config: head_dim must be even for rotary embeddings, got %d", c.HeadDim)
	}
	if !(c.RMSNormEps > 0) {
		return fmt.Errorf("model: config: rms_norm_eps must be positive, got %v", c.RMSNormEps)
	}
	if !(c.Rope.Theta > 0) {
		return fmt.Errorf("model: config: rope_theta must be positive, got %v", c.Rope.Theta)
	}
	if c.Rope.Type == "llama3" && (c.Rope.Factor <= 0 || c.Rope.OriginalMaxPositions <= 0 || c.Rope.HighFreqFactor <= c.Rope.LowFreqFactor) {
		return fmt.Errorf("model: config: llama3 rope scaling needs factor > 0, original_max_position_embeddings > 0 and high_freq_factor > low_freq_factor")
	}
	return nil
}

// Supported architectures.
var supportedArchitectures = []string{"LlamaForCausalLM", "Qwen2ForCausalLM", "MistralForCausalLM"}

// LoadConfig reads dir/config.json.
func LoadConfig(dir string) (Config, error) {
	data, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		return Config{}, fmt.Errorf("model: %w", err)
	}
	return ParseConfig(data)
}

// ParseConfig parses a Hugging Face config.json. It refuses architectures
// and settings it does not implement, naming them, rather than computing
// something different from the reference.
func ParseConfig(data []byte) (Config, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return Config{}, fmt.Errorf("model: config.json: %w", err)
	}
	var c Config
	if err := json.Unmarshal(data, &c); err != nil {
		return Config{}, fmt.Errorf("model: config.json: %w", err)
	}
	var archs []string
	if r, ok := raw["architectures"]; ok {
		if err := json.Unmarshal(r, &archs); err != nil {
			return Config{}, fmt.Errorf("model: config.json: architectures: %w", err)
		}
	}
	if len(archs) != 1 || !slices.Contains(supportedArchitectures, archs[0]) {
		return Config{}, fmt.Errorf("model: config.json: architectures %v is not supported (supported: %v)", archs, supportedArchitectures)
	}
	c.ArchitectureName = archs[0]
	switch c.ModelType {
	case "llama", "mistral":
		c.OutputProjBias = c.AttentionBias
	case "qwen2":
		// Qwen2 always has q/k/v biases and no o_proj bias.
		c.AttentionBias, c.OutputProjBias = true, false
	default:
		return Config{}, fmt.Errorf("model: config.json: model_type %q is not supported", c.ModelType)
	}
	var s struct {
		Act         *string         `json:"hidden_act"`
		MLPBias     bool            `json:"mlp_bias"`
		TP          *int            `json:"pretraining_tp"`
		SlidingWin  *int            `json:"sliding_window"`
		UseSliding  bool            `json:"use_sliding_window"`
		DType       string          `json:"torch_dtype"`
		DType5      string          `json:"dtype"`
		RopeTheta   *float64        `json:"rope_theta"`
		RopeScaling json.RawMessage `json:"rope_scaling"`
		RopeParams  json.RawMessage `json:"rope_parameters"`
		EOS         json.RawMessage `json:"eos_token_id"`
	}
	if err := json.Unmarshal(data, &s); err != nil {
		return Config{}, fmt.Errorf("model: config.json: %w", err)
	}
	if s.Act != nil && *s.Act != "silu" {
		return Config{}, fmt.Errorf("model: config.json: hidden_act %q is not supported (only silu)", *s.Act)
	}
	if s.MLPBias {
		return Config{}, fmt.Errorf("model: config.json: mlp_bias=true is not supported")
	}
	if s.TP != nil && *s.TP != 1 {
		return Config{}, fmt.Errorf("model: config.json: pretraining_tp=%d is not supported (only 1)", *s.TP)
	}
	if s.UseSliding {
		return Config{}, fmt.Errorf("model: config.json: use_sliding_window=true is not supported")
	}
	if c.ModelType == "mistral" && s.SlidingWin != nil && *s.SlidingWin > 0 && *s.SlidingWin < c.MaxPositions {
		return Config{}, fmt.Errorf("model: config.json: sliding_window=%d is not supported", *s.SlidingWin)
	}
	c.TorchDType = s.DType
	if c.TorchDType == "" {
		c.TorchDType = s.DType5
	}
	if c.KVHeads == 0 {
		c.KVHeads = c.Heads
	}
	if c.HeadDim == 0 && c.Heads > 0 {
		c.HeadDim = c.Hidden / c.Heads
	}
	if len(s.EOS) > 0 && string(s.EOS) != "null" {
		var one int
		if err := json.Unmarshal(s.EOS, &one); err == nil {
			c.EOS = []int{one}
		} else if err := json.Unmarshal(s.EOS, &c.EOS); err != nil {
			return Config{}, fmt.Errorf("model: config.json: eos_token_id: %w", err)
		}
	}
	// RoPE: transformers 5 writes rope_parameters (with rope_theta inside);
	// older checkpoints use rope_theta + rope_scaling.
	c.Rope = Rope{Theta: 10000, Type: "default"}
	if s.RopeTheta != nil {
		c.Rope.Theta = *s.RopeTheta
	}
	ropeRaw := s.RopeParams
	if len(ropeRaw) == 0 || string(ropeRaw) == "null" {
		ropeRaw = s.RopeScaling
	}
	if len(ropeRaw) > 0 && string(ropeRaw) != "null" {
		if err := parseRope(ropeRaw, &c.Rope); err != nil {
			return Config{}, err
		}
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

func parseRope(raw json.RawMessage, r *Rope) error {
	var p map[string]any
	if err := json.Unmarshal(raw, &p); err != nil {
		return fmt.Errorf("model: config.json: rope parameters: %w", err)
	}
	num := func(key string) (float64, bool, error) {
		v, ok := p[key]
		if !ok || v == nil {
			return 0, false, nil
		}
		f, ok := v.(float64)
		if !ok || math.IsNaN(f) || math.IsInf(f, 0) {
			return 0, false, fmt.Errorf("model: config.json: rope parameter %s must be a number", key)
		}
		return f, true, nil
	}
	if th, ok, err := num("rope_theta"); err != nil {
		return err
	} else if ok {
		r.Theta = th
	}
	typ, _ := p["rope_type"].(string)
	if typ == "" {
		typ, _ = p["type"].(string)
	}
	if typ == "" {
		typ = "default"
	}
	for key := range p {
		switch key {
		case "rope_theta", "rope_type", "type", "factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings":
		default:
			return fmt.Errorf("model: config.json: rope parameter %q is not supported", key)
		}
	}
	switch typ {
	case "default":
		r.Type = "default"
	case "llama3":
		r.Type = "llama3"
		var err error
		var ok bool
		for _, f := range []struct {
			key string
			dst *float64
		}{{"factor", &r.Factor}, {"low_freq_factor", &r.LowFreqFactor}, {"high_freq_factor", &r.HighFreqFactor}} {
			if *f.dst, ok, err = num(f.key); err != nil {
				return err
			} else if !ok {
				return fmt.Errorf("model: config.json: llama3 rope scaling needs %s", f.key)
			}
		}
		om, ok, err := num("original_max_position_embeddings")
		if err != nil {
			return err
		} else if !ok {
			return fmt.Errorf("model: config.json: llama3 rope scaling needs original_max_position_embeddings")
		}
		r.OriginalMaxPositions = int(om)
	default:
		return fmt.Errorf("model: config.json: rope_type %q is not supported (supported: default, llama3)", typ)
	}
	return nil
}

// InvFrequencies returns the rotary inverse frequencies (head_dim/2 of
// them), with Llama 3 scaling applied as transformers'
// _compute_llama3_parameters does.
func (c Config) InvFrequencies() []float64 {
	half := c.HeadDim / 2
	inv := make([]float64, half)
	for i := range inv {
		// transformers computes this in float32.
		inv[i] = float64(float32(1.0 / math.Pow(c.Rope.Theta, float64(float32(2*i)/float32(c.HeadDim)))))
	}
	if c.Rope.Type != "llama3" {
		return inv
	}
	r := c.Rope
	lowWavelen := float64(r.OriginalMaxPositions) / r.LowFreqFactor
	highWavelen := float64(r.OriginalMaxPositions) / r.HighFreqFactor
	for i, f := range inv {
		wavelen := 2 * math.Pi / f
		switch {
		case wavelen > lowWavelen:
			inv[i] = f / r.Factor
		case wavelen < highWavelen:
			// unchanged
		default:
			smooth := (float64(r.OriginalMaxPositions)/wavelen - r.LowFreqFactor) / (r.HighFreqFactor - r.LowFreqFactor)
			inv[i] = (1-smooth)*f/r.Factor + smooth*f
		}
	}
	return inv
}
