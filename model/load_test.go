package model

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tensafe/tensafe/safetensors"
)

func copyConfig(t *testing.T, dir string) {
	t.Helper()
	data, err := os.ReadFile(fixture("tiny-llama", "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func writeST(t *testing.T, path string, ts map[string]*safetensors.Tensor) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := safetensors.Write(f, ts, nil); err != nil {
		t.Fatal(err)
	}
}

// TestLoadBF16AndSharded converts the tiny-llama fixture to bf16, and
// separately splits it into two shards with an index, and checks both load
// and agree with the original.
func TestLoadBF16AndSharded(t *testing.T) {
	orig, err := Load(fixture("tiny-llama"))
	if err != nil {
		t.Fatal(err)
	}
	src, err := safetensors.ReadFile(fixture("tiny-llama", "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	ids := []int{1, 5, 9, 200, 3, 17}
	want, _, err := orig.ComputeLogits(ids)
	if err != nil {
		t.Fatal(err)
	}
	maxDiff := func(got [][]float32) float64 {
		var d float64
		for i := range want {
			for j := range want[i] {
				d = math.Max(d, math.Abs(float64(got[i][j]-want[i][j])))
			}
		}
		return d
	}

	// bf16: truncate each f32 to its top 16 bits (round to nearest even).
	bfDir := t.TempDir()
	copyConfig(t, bfDir)
	bf := map[string]*safetensors.Tensor{}
	for _, name := range src.Names() {
		v, _ := src.Tensors[name].Float32()
		data := make([]byte, 2*len(v))
		for i, x := range v {
			bits := math.Float32bits(x)
			bits += 0x7fff + (bits>>16)&1
			binary.LittleEndian.PutUint16(data[2*i:], uint16(bits>>16))
		}
		bf[name] = &safetensors.Tensor{DType: safetensors.BF16, Shape: src.Tensors[name].Shape, Data: data}
	}
	writeST(t, filepath.Join(bfDir, "model.safetensors"), bf)
	mbf, err := Load(bfDir)
	if err != nil {
		t.Fatal(err)
	}
	got, _, err := mbf.ComputeLogits(ids)
	if err != nil {
		t.Fatal(err)
	}
	if d := maxDiff(got); d > 0.05 || d == 0 {
		t.Errorf("bf16 logits differ from f32 by %.3g (want small but non-zero)", d)
	}

	// Sharded.
	shDir := t.TempDir()
	copyConfig(t, shDir)
	shards := [2]map[string]*safetensors.Tensor{{}, {}}
	index := map[string]string{}
	for i, name := range src.Names() {
		k := i % 2
		shards[k][name] = src.Tensors[name]
		index[name] = []string{"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"}[k]
	}
	writeST(t, filepath.Join(shDir, "model-00001-of-00002.safetensors"), shards[0])
	writeST(t, filepath.Join(shDir, "model-00002-of-00002.safetensors"), shards[1])
	idx, _ := json.Marshal(map[string]any{"metadata": map[string]any{}, "weight_map": index})
	if err := os.WriteFile(filepath.Join(shDir, "model.safetensors.index.json"), idx, 0o644); err != nil {
		t.Fatal(err)
	}
	msh, err := Load(shDir)
	if err != nil {
		t.Fatal(err)
	}
	got, _, err = msh.ComputeLogits(ids)
	if err != nil {
		t.Fatal(err)
	}
	if d := maxDiff(got); d != 0 {
		t.Errorf("sharded logits differ by %.3g", d)
	}
}

// TestQwen2 parses a Qwen2 config in the older rope_theta layout and runs a
// random model with q/k/v biases.
func TestQwen2(t *testing.T) {
	cfg, err := ParseConfig([]byte(`{"architectures":["Qwen2ForCausalLM"],"model_type":"qwen2","vocab_size":300,
		"hidden_size":32,"intermediate_size":64,"num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,
		"rms_norm_eps":1e-6,"rope_theta":1000000.0,"rope_scaling":null,"tie_word_embeddings":true,
		"max_position_embeddings":128,"hidden_act":"silu","sliding_window":131072,"use_sliding_window":false,
		"eos_token_id":[3,4],"torch_dtype":"bfloat16"}`))
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.AttentionBias || cfg.OutputProjBias || cfg.HeadDim != 8 || cfg.Rope.Theta != 1e6 || len(cfg.EOS) != 2 {
		t.Fatalf("config = %+v", cfg)
	}
	names, _ := paramShapes(cfg)
	if !strings.Contains(strings.Join(names, " "), "self_attn.q_proj.bias") {
		t.Fatal("no q_proj bias parameter")
	}
	m := Random("qwen2-test", cfg, 5)
	logits, _, err := m.ComputeLogits([]int{1, 2, 3})
	if err != nil || len(logits) != 3 || len(logits[0]) != 300 {
		t.Fatalf("logits: %v", err)
	}
}

func TestConfigErrorsNameTheField(t *testing.T) {
	base := `"vocab_size":10,"hidden_size":8,"intermediate_size":8,"num_hidden_layers":1,"num_attention_heads":2,"rms_norm_eps":1e-5`
	cases := map[string]string{
		`{"architectures":["GPT2LMHeadModel"],"model_type":"gpt2",` + base + `}`:                                                  "architectures",
		`{"architectures":["LlamaForCausalLM"],"model_type":"llama","hidden_act":"gelu",` + base + `}`:                            "hidden_act",
		`{"architectures":["LlamaForCausalLM"],"model_type":"llama","rope_scaling":{"rope_type":"yarn","factor":2},` + base + `}`: "yarn",
		`{"architectures":["LlamaForCausalLM"],"model_type":"llama","num_key_value_heads":3,` + base + `}`:                        "num_key_value_heads",
		`{"architectures":["LlamaForCausalLM"],"model_type":"llama","mlp_bias":true,` + base + `}`:                                "mlp_bias",
	}
	for js, want := range cases {
		_, err := ParseConfig([]byte(js))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v does not name %q", js, err, want)
		}
	}
}

func TestPEFTRoundTrip(t *testing.T) {
	m, err := Load(fixture("tiny-llama"))
	if err != nil {
		t.Fatal(err)
	}
	theirs, err := LoadPEFT(fixture("tiny-llama-lora"), m.Config)
	if err != nil {
		t.Fatal(err)
	}
	if theirs.Config.Rank != 4 || theirs.Config.Scale() != 2 || len(theirs.Names) != 2*2*4 {
		t.Fatalf("loaded %+v with %d tensors", theirs.Config, len(theirs.Names))
	}
	dir := t.TempDir()
	if err := theirs.SavePEFT(dir, "tiny-llama"); err != nil {
		t.Fatal(err)
	}
	again, err := LoadPEFT(dir, m.Config)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range theirs.Names {
		for j := range theirs.Values[n] {
			if theirs.Values[n][j] != again.Values[n][j] {
				t.Fatalf("%s[%d] changed in the round trip", n, j)
			}
		}
	}
	// Tensor names are PEFT's saved names, byte for byte.
	st, err := safetensors.ReadFile(filepath.Join(dir, "adapter_model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	ref, _ := safetensors.ReadFile(fixture("tiny-llama-lora", "adapter_model.safetensors"))
	if strings.Join(st.Names(), ",") != strings.Join(ref.Names(), ",") {
		t.Error("saved tensor names differ from PEFT's")
	}
	// Unsupported PEFT features are named.
	cfg, _ := os.ReadFile(fixture("tiny-llama-lora", "adapter_config.json"))
	bad := strings.Replace(string(cfg), `"use_dora": false`, `"use_dora": true`, 1)
	if _, err := ParsePEFT([]byte(bad), ref, m.Config); err == nil || !strings.Contains(err.Error(), "use_dora") {
		t.Errorf("use_dora: %v", err)
	}
}
