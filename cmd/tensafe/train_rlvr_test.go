package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// rlvrYAML is a small rlvr config: 6 prompts, 3 per step (q = 1/2), 2
// samples each, with the privacy unit given by unit ("" for the default).
func rlvrYAML(unit string) string {
	y := `mode: rlvr
model: tensafe-tiny
lora: {rank: 4, alpha: 8, target_modules: [o_proj]}
dp: {noise_multiplier: 1.0, max_grad_norm: 1.0, target_epsilon: 50, target_delta: 1.0e-5}
data: {train: prompts.jsonl}
schedule: {steps: 2}
rlvr:
  rewards: [{type: keyword_contains, kwargs: {keywords: [a]}}]
  prompts_per_step: 3
  samples_per_prompt: 2
  max_tokens: 4
`
	if unit != "" {
		y += "  privacy_unit: " + unit + "\n"
	}
	return y
}

// TestTrainRLVRPrivacyUnit: rlvr mode Poisson-samples prompts at
// q = prompts_per_step / prompts and declares the DP config in privacy
// units — prompts by default, completions with privacy_unit: completion —
// so the accountant's q is the trainer's; a bad privacy_unit is refused
// naming the key.
func TestTrainRLVRPrivacyUnit(t *testing.T) {
	for _, c := range []struct{ unit, want string }{
		{"", "q = 0.5 (3 per step on average) × 2 samples, privacy unit: prompt"},
		{"completion", "q = 0.5 (3 per step on average) × 2 samples, privacy unit: completion"},
	} {
		dir := t.TempDir()
		cfgPath := filepath.Join(dir, "cfg.yaml")
		os.WriteFile(cfgPath, []byte(rlvrYAML(c.unit)), 0o600)
		os.WriteFile(filepath.Join(dir, "prompts.jsonl"), []byte(strings.Repeat("{\"prompt\": \"Q\"}\n", 6)), 0o600)
		var out bytes.Buffer
		sum, err := runTrain(context.Background(), trainOptions{config: cfgPath, dataDir: t.TempDir(), out: t.TempDir()}, &out, &out)
		if err != nil {
			t.Fatalf("unit %q: %v", c.unit, err)
		}
		if !strings.Contains(out.String(), c.want) || sum.Steps != 2 || !(sum.EpsilonSpent > 0) {
			t.Errorf("unit %q: summary %+v, output %s; want %q", c.unit, sum, out.String(), c.want)
		}
	}
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "cfg.yaml")
	os.WriteFile(cfgPath, []byte(rlvrYAML("row")), 0o600)
	if _, err := loadTrainConfig(cfgPath); err == nil || !strings.Contains(err.Error(), "rlvr.privacy_unit") {
		t.Errorf("privacy_unit: row: %v", err)
	}
}
