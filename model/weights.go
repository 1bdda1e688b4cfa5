package model

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/tensafe/tensafe/compute"
	"github.com/tensafe/tensafe/safetensors"
)

// Model is a loaded base model: its config and its frozen weights, held as
// GoMLX tensors so that a backend keeps them on the device between calls.
// A Model is read-only after loading and safe to share between training
// clients.
type Model struct {
	Name   string
	Config Config
	// names of the base parameters in graph-input order, and their tensors.
	names   []string
	weights []*tensors.Tensor

	materialize sync.Once
}

// ParamNames returns the base parameter names (Hugging Face names) in the
// order the graph takes them.
func (m *Model) ParamNames() []string { return slices.Clone(m.names) }

// Weights returns the base weight tensors in ParamNames order. The first
// call copies them onto the process's compute backend: GoMLX otherwise does
// so on first use inside an execution, a write that would race when several
// engines share the model.
func (m *Model) Weights() []*tensors.Tensor {
	m.materialize.Do(func() {
		b, err := compute.Backend()
		if err != nil {
			return // the execution that needs the weights reports the error
		}
		for _, w := range m.weights {
			_ = w.MaterializeOnDevice(b, false, 0) // idem
		}
	})
	return m.weights
}

// paramShapes lists the base parameters of cfg with their HF names and shapes.
func paramShapes(c Config) ([]string, map[string][]int) {
	shapes := map[string][]int{}
	var names []string
	add := func(name string, dims ...int) {
		names = append(names, name)
		shapes[name] = dims
	}
	q, kv := c.Heads*c.HeadDim, c.KVHeads*c.HeadDim
	add("model.embed_tokens.weight", c.VocabSize, c.Hidden)
	for i := 0; i < c.Layers; i++ {
		p := fmt.Sprintf("model.layers.%d.", i)
		add(p+"input_layernorm.weight", c.Hidden)
		add(p+"self_attn.q_proj.weight", q, c.Hidden)
		add(p+"self_attn.k_proj.weight", kv, c.Hidden)
		add(p+"self_attn.v_proj.weight", kv, c.Hidden)
		add(p+"self_attn.o_proj.weight", c.Hidden, q)
		if c.AttentionBias {
			add(p+"self_attn.q_proj.bias", q)
			add(p+"self_attn.k_proj.bias", kv)
			add(p+"self_attn.v_proj.bias", kv)
		}
		if c.OutputProjBias {
			add(p+"self_attn.o_proj.bias", c.Hidden)
		}
		add(p+"post_attention_layernorm.weight", c.Hidden)
		add(p+"mlp.gate_proj.weight", c.Intermediate, c.Hidden)
		add(p+"mlp.up_proj.weight", c.Intermediate, c.Hidden)
		add(p+"mlp.down_proj.weight", c.Hidden, c.Intermediate)
	}
	add("model.norm.weight", c.Hidden)
	if !c.TieEmbeddings {
		add("lm_head.weight", c.VocabSize, c.Hidden)
	}
	return names, shapes
}

// MaxWeightFileSize bounds one safetensors shard TenSafe reads into memory.
const MaxWeightFileSize = 64 << 30

// Load reads a Hugging Face model folder: config.json and model.safetensors,
// or shards listed in model.safetensors.index.json. Weights in F32, BF16 or
// F16 are converted to float32.
func Load(dir string) (*Model, error) {
	cfg, err := LoadConfig(dir)
	if err != nil {
		return nil, err
	}
	files, err := weightFiles(dir)
	if err != nil {
		return nil, err
	}
	names, shapes := paramShapes(cfg)
	values := make(map[string][]float32, len(names))
	for _, path := range files {
		st, err := os.Stat(path)
		if err != nil {
			return nil, fmt.Errorf("model: %w", err)
		}
		if st.Size() > MaxWeightFileSize {
			return nil, fmt.Errorf("model: %s is larger than %d bytes", path, int64(MaxWeightFileSize))
		}
		f, err := safetensors.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("model: %w", err)
		}
		for _, name := range f.Names() {
			want, ok := shapes[name]
			if !ok {
				if cfg.TieEmbeddings && name == "lm_head.weight" {
					continue // some tied checkpoints still carry the copy
				}
				if strings.HasSuffix(name, "rotary_emb.inv_freq") {
					continue // a buffer older transformers saved; recomputed from the config
				}
				return nil, fmt.Errorf("model: %s: unexpected tensor %q for %s", filepath.Base(path), name, cfg.ArchitectureName)
			}
			t := f.Tensors[name]
			if !slices.Equal(t.Shape, want) {
				return nil, fmt.Errorf("model: tensor %q has shape %v, config implies %v", name, t.Shape, want)
			}
			v, err := t.Float32()
			if err != nil {
				return nil, fmt.Errorf("model: tensor %q: %w", name, err)
			}
			values[name] = v
		}
	}
	for _, n := range names {
		if _, ok := values[n]; !ok {
			return nil, fmt.Errorf("model: weights lack tensor %q", n)
		}
	}
	return newModel(filepath.Base(filepath.Clean(dir)), cfg, names, shapes, values), nil
}

func newModel(name string, cfg Config, names []string, shapes map[string][]int, values map[string][]float32) *Model {
	m := &Model{Name: name, Config: cfg, names: names}
	for _, n := range names {
		m.weights = append(m.weights, tensors.FromFlatDataAndDimensions(values[n], shapes[n]...))
	}
	return m
}

func weightFiles(dir string) ([]string, error) {
	single := filepath.Join(dir, "model.safetensors")
	if _, err := os.Stat(single); err == nil {
		return []string{single}, nil
	}
	indexPath := filepath.Join(dir, "model.safetensors.index.json")
	data, err := os.ReadFile(indexPath)
	if err != nil {
		return nil, fmt.Errorf("model: %s has neither model.safetensors nor model.safetensors.index.json", dir)
	}
	var index struct {
		WeightMap map[string]string `json:"weight_map"`
	}
	if err := json.Unmarshal(data, &index); err != nil {
		return nil, fmt.Errorf("model: %s: %w", indexPath, err)
	}
	seen := map[string]bool{}
	var files []string
	for _, f := range index.WeightMap {
		if f != filepath.Base(f) || !strings.HasSuffix(f, ".safetensors") {
			return nil, fmt.Errorf("model: %s: shard name %q must be a .safetensors file in the same folder", indexPath, f)
		}
		if !seen[f] {
			seen[f] = true
			files = append(files, filepath.Join(dir, f))
		}
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("model: %s lists no shards", indexPath)
	}
	sort.Strings(files)
	return files, nil
}

// TinyName names the built-in model.
const TinyName = "tensafe-tiny"

// TinySeed is the fixed seed of tensafe-tiny's deterministic initialisation.
const TinySeed = 20261127

// TinyConfig is the shape of tensafe-tiny: a Llama-style decoder over a
// byte-level vocabulary (256 bytes + <bos>, <eos>, <pad> and padding to 264).
func TinyConfig() Config {
	return Config{
		ModelType: "llama", ArchitectureName: "LlamaForCausalLM",
		VocabSize: 264, Hidden: 128, Intermediate: 352, Layers: 2, Heads: 4, KVHeads: 2, HeadDim: 32,
		RMSNormEps: 1e-5, MaxPositions: 512, TieEmbeddings: true,
		BOS: 256, EOS: []int{257},
		Rope:       Rope{Theta: 10000, Type: "default"},
		TorchDType: "float32",
	}
}

// Tiny builds tensafe-tiny with weights drawn from a fixed seed. It is
// untrained: it exists for demos and tests, where a fine-tune must visibly
// lower the loss.
func Tiny() *Model { return Random(TinyName, TinyConfig(), TinySeed) }

// Random builds a model of shape cfg with deterministic random weights from
// seed: normal with std 0.02 as transformers initialises Llama (embeddings
// 1/√hidden), norms at 1. For tests and benchmarks of a shape without its
// checkpoint.
func Random(name string, cfg Config, seed uint64) *Model {
	names, shapes := paramShapes(cfg)
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	values := make(map[string][]float32, len(names))
	for _, n := range names {
		size := 1
		for _, d := range shapes[n] {
			size *= d
		}
		v := make([]float32, size)
		if strings.HasSuffix(n, "norm.weight") {
			for i := range v {
				v[i] = 1
			}
		} else {
			std := 0.02
			if strings.HasSuffix(n, "embed_tokens.weight") {
				// Larger embeddings give the untrained model a strong
				// residual signal that LoRA fine-tunes visibly.
				std = 1 / math.Sqrt(float64(cfg.Hidden))
			}
			for i := range v {
				v[i] = float32(rng.NormFloat64() * std)
			}
		}
		values[n] = v
	}
	return newModel(name, cfg, names, shapes, values)
}

// Resolve loads the built-in model for TinyName, or a Hugging Face folder.
func Resolve(nameOrDir string) (*Model, error) {
	if nameOrDir == TinyName {
		return Tiny(), nil
	}
	return Load(nameOrDir)
}
