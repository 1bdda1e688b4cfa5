package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/tensafe/tensafe/loss"
	"github.com/tensafe/tensafe/model"
	"github.com/tensafe/tensafe/safetensors"
)

// trainedEngine is a tiny engine after two plain AdamW steps (moments not
// zero).
func trainedEngine(t *testing.T) *Engine {
	t.Helper()
	e := tinyEngine(t, false)
	for range 2 {
		if _, err := e.ForwardBackward(context.Background(), tinyBatch(), loss.Spec{}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.OptimStep(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

func freshEngine(t *testing.T) *Engine {
	t.Helper()
	e, err := New(model.Tiny(), Config{LoRA: model.LoRAConfig{Rank: 8, Alpha: 16, TargetModules: model.AllModules},
		Optimizer: DefaultOptimizer(), Seed: 99})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// TestStateWithoutOptimizer: a state saved without the optimizer holds the
// LoRA tensors only; loading it restores the weights and step exactly and
// zeroes the AdamW moments.
func TestStateWithoutOptimizer(t *testing.T) {
	a := trainedEngine(t)
	var full, slim bytes.Buffer
	if err := a.Save(&full); err != nil {
		t.Fatal(err)
	}
	if err := a.SaveWith(&slim, SaveOptions{SkipOptimizer: true}); err != nil {
		t.Fatal(err)
	}
	f, err := safetensors.Parse(slim.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range f.Names() {
		if !strings.HasPrefix(n, "lora/") {
			t.Errorf("slim state has tensor %q", n)
		}
	}
	if len(f.Names()) != len(a.lora.Names) {
		t.Errorf("slim state has %d tensors, want %d", len(f.Names()), len(a.lora.Names))
	}
	if !strings.Contains(f.Metadata["tensafe"], `"optimizer_state":"none"`) {
		t.Errorf("header %s", f.Metadata["tensafe"])
	}
	if slim.Len() >= full.Len()/2 {
		t.Errorf("slim state %d bytes, full %d", slim.Len(), full.Len())
	}
	b := freshEngine(t)
	if err := b.Load(bytes.NewReader(slim.Bytes())); err != nil {
		t.Fatal(err)
	}
	if b.Step() != a.Step() {
		t.Errorf("step %d, want %d", b.Step(), a.Step())
	}
	for i, n := range a.lora.Names {
		for j, v := range a.lora.Values[n] {
			if b.lora.Values[n][j] != v {
				t.Fatalf("%s[%d] = %v, want %v", n, j, b.lora.Values[n][j], v)
			}
		}
		nonzero := false
		for _, v := range a.adamM[i] {
			nonzero = nonzero || v != 0
		}
		if i == len(a.lora.Names)-1 && !nonzero {
			t.Fatalf("trained engine has zero moments for %s", n)
		}
		for j := range b.adamM[i] {
			if b.adamM[i][j] != 0 || b.adamV[i][j] != 0 {
				t.Fatalf("moments of %s not reset", n)
			}
		}
		if len(b.adamM[i]) != len(a.adamM[i]) || len(b.adamV[i]) != len(a.adamV[i]) {
			t.Fatalf("moments of %s have the wrong size", n)
		}
	}
	// It trains on from there.
	if _, err := b.ForwardBackward(context.Background(), tinyBatch(), loss.Spec{}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.OptimStep(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestStateV1 reads a tensafe-engine-state/v1 file (no optimizer_state
// field, moments present) and refuses malformed optimizer_state headers.
func TestStateV1(t *testing.T) {
	a := trainedEngine(t)
	var full bytes.Buffer
	if err := a.Save(&full); err != nil {
		t.Fatal(err)
	}
	f, err := safetensors.Parse(full.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	rewrite := func(edit func(h map[string]any), drop string) []byte {
		var h map[string]any
		if err := json.Unmarshal([]byte(f.Metadata["tensafe"]), &h); err != nil {
			t.Fatal(err)
		}
		edit(h)
		hj, _ := json.Marshal(h)
		ts := map[string]*safetensors.Tensor{}
		for _, n := range f.Names() {
			if drop == "" || !strings.HasPrefix(n, drop) {
				ts[n] = f.Tensors[n]
			}
		}
		var out bytes.Buffer
		if err := safetensors.Write(&out, ts, map[string]string{"tensafe": string(hj)}); err != nil {
			t.Fatal(err)
		}
		return out.Bytes()
	}
	v1 := rewrite(func(h map[string]any) { h["format"] = StateFormatV1; delete(h, "optimizer_state") }, "")
	b := freshEngine(t)
	if err := b.Load(bytes.NewReader(v1)); err != nil {
		t.Fatalf("v1 state: %v", err)
	}
	var again bytes.Buffer
	if err := b.Save(&again); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again.Bytes(), full.Bytes()) {
		t.Error("v1 state loaded and saved again differs from the v2 original")
	}
	for _, c := range []struct {
		name string
		data []byte
		want string
	}{
		{"v1 with optimizer_state", rewrite(func(h map[string]any) { h["format"] = StateFormatV1 }, ""), "not a field"},
		{"v2 without optimizer_state", rewrite(func(h map[string]any) { delete(h, "optimizer_state") }, ""), "optimizer_state"},
		{"unknown optimizer_state", rewrite(func(h map[string]any) { h["optimizer_state"] = "sgd" }, ""), "optimizer_state"},
		{"adamw without moments", rewrite(func(map[string]any) {}, "adam_"), "tensors"},
		{"none with moments", rewrite(func(h map[string]any) { h["optimizer_state"] = "none" }, ""), "tensors"},
		{"unknown format", rewrite(func(h map[string]any) { h["format"] = "tensafe-engine-state/v9" }, ""), "format"},
	} {
		e := freshEngine(t)
		err := e.Load(bytes.NewReader(c.data))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error containing %q", c.name, err, c.want)
		}
		if e.Step() != 0 {
			t.Errorf("%s: failed load changed the engine", c.name)
		}
	}
}
