package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tensafe/tensafe/api"
	"github.com/tensafe/tensafe/privacy"
	"github.com/tensafe/tensafe/seal"
	"github.com/tensafe/tensafe/servertest"
	"github.com/tensafe/tensafe/store"
)

// TestTrainConfigs runs every example config of configs/ for two steps on
// an embedded server: metrics lines, a checkpoint and a DP certificate
// (server-poisson for the server-sampled one, over the uploaded rows).
func TestTrainConfigs(t *testing.T) {
	for _, mode := range []string{"sft", "dpo", "rlvr", "sft_server"} {
		t.Run(mode, func(t *testing.T) {
			out := t.TempDir()
			sum, err := runTrain(context.Background(), trainOptions{config: filepath.Join("..", "..", "configs", "train_"+mode+".yaml"),
				dataDir: t.TempDir(), out: out, steps: 2}, io.Discard, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if sum.Steps != 2 || sum.ArtifactID == "" || !(sum.EpsilonSpent > 0) {
				t.Errorf("summary %+v", sum)
			}
			f, err := os.Open(filepath.Join(out, "metrics.jsonl"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			var lines []metricLine
			sc := bufio.NewScanner(f)
			for sc.Scan() {
				var m metricLine
				if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
					t.Fatal(err)
				}
				lines = append(lines, m)
			}
			if len(lines) != 2 || lines[1].Step != 2 || !(lines[1].EpsilonSpent > lines[0].EpsilonSpent) || lines[1].NoiseStd == 0 {
				t.Fatalf("metrics %+v", lines)
			}
			if mode == "rlvr" && lines[1].MeanReward == nil {
				t.Error("rlvr metrics without mean_reward")
			}
			if lines[1].EvalLoss == nil && lines[1].EvalReward == nil {
				t.Error("no evaluation at the last step")
			}
			var cert map[string]any
			b, err := os.ReadFile(filepath.Join(out, "dp_certificate.json"))
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(b, &cert); err != nil {
				t.Fatal(err)
			}
			if cert["format"] != "tensafe-dp-certificate/v1" || cert["epsilon"] != sum.EpsilonSpent {
				t.Errorf("certificate %v (ε spent %v)", cert, sum.EpsilonSpent)
			}
			want := "client-declared"
			if mode == "sft_server" {
				want = "server-poisson"
			}
			if cert["sampling"] != want {
				t.Errorf("certificate sampling %v, want %s", cert["sampling"], want)
			}
		})
	}
}

const goodSFT = `mode: sft
model: tensafe-tiny
lora: {rank: 4, alpha: 8}
dp:
  noise_multiplier: 1.0
  max_grad_norm: 1.0
  target_epsilon: 8
  target_delta: 1.0e-5
optimizer: {learning_rate: 1.0e-2}
data:
  train: train.jsonl
schedule:
  steps: 2
  batch_size: 2
`

// TestTrainBadConfigs: each bad config is refused before anything runs,
// naming the key and its line.
func TestTrainBadConfigs(t *testing.T) {
	for _, c := range []struct {
		name, yaml, want string
	}{
		{"unknown top key", goodSFT + "epochs: 3\n", "cfg.yaml:15: epochs: unknown key"},
		{"unknown nested key", strings.Replace(goodSFT, "lora: {rank: 4, alpha: 8}", "lora: {rank: 4, alpha: 8, rnak: 2}", 1), "cfg.yaml:3: lora.rnak: unknown key"},
		{"duplicate key", goodSFT + "mode: dpo\n", "mode"},
		{"missing mode", strings.Replace(goodSFT, "mode: sft\n", "", 1), "mode: is required"},
		{"bad mode", strings.Replace(goodSFT, "mode: sft", "mode: rl", 1), `cfg.yaml:1: mode: "rl"`},
		{"bad rank", strings.Replace(goodSFT, "rank: 4", "rank: 0", 1), "cfg.yaml:3: lora.rank: must be ≥ 1"},
		{"bad type", strings.Replace(goodSFT, "rank: 4", "rank: four", 1), "cfg.yaml:3: lora.rank: !!str `four` into int"},
		{"bad nested type", strings.Replace(goodSFT, "  steps: 2\n", "  steps: [2]\n", 1), "cfg.yaml:13: schedule.steps: !!seq into int"},
		{"no noise", strings.Replace(goodSFT, "noise_multiplier: 1.0", "noise_multiplier: 0", 1), "cfg.yaml:5: dp.noise_multiplier: must be > 0"},
		{"bad delta", strings.Replace(goodSFT, "target_delta: 1.0e-5", "target_delta: 2", 1), "cfg.yaml:8: dp.target_delta"},
		{"no data", strings.Replace(goodSFT, "  train: train.jsonl\n", "  eval: x.jsonl\n", 1), "data.train: is required"},
		{"steps and epochs", strings.Replace(goodSFT, "  steps: 2\n", "  steps: 2\n  epochs: 1\n", 1), "cfg.yaml:14: schedule.epochs: give steps or epochs"},
		{"no batch", strings.Replace(goodSFT, "  batch_size: 2\n", "", 1), "schedule.batch_size: must be ≥ 1"},
		{"eval without data", goodSFT + "evaluation: {every: 2}\n", "cfg.yaml:15: evaluation.every: needs data.eval"},
		{"rlvr section in sft", goodSFT + "rlvr: {algorithm: ppo}\n", "cfg.yaml:15: rlvr: is only used in rlvr mode"},
		{"rlvr without rewards", strings.Replace(strings.Replace(goodSFT, "mode: sft", "mode: rlvr", 1), "  batch_size: 2\n", "", 1) + "rlvr: {algorithm: ppo}\n", "rlvr.rewards: at least one"},
		{"rlvr bad reward", strings.Replace(strings.Replace(goodSFT, "mode: sft", "mode: rlvr", 1), "  batch_size: 2\n", "", 1) +
			"rlvr:\n  rewards:\n    - type: keyword_contains\n      kwargs: {keyword: [a]}\n", `cfg.yaml:16: rlvr.rewards[0]: rlvr: reward keyword_contains: unknown kwarg "keyword"`},
		{"rlvr unknown reward key", strings.Replace(strings.Replace(goodSFT, "mode: sft", "mode: rlvr", 1), "  batch_size: 2\n", "", 1) +
			"rlvr:\n  rewards:\n    - type: exact_match\n      wieght: 2\n", "cfg.yaml:17: rlvr.rewards[0].wieght: unknown key"},
		{"rlvr with loss", strings.Replace(strings.Replace(goodSFT, "mode: sft", "mode: rlvr", 1), "  batch_size: 2\n", "", 1) +
			"loss: {type: ppo}\n", "cfg.yaml:14: loss: is not used in rlvr mode"},
		{"dpo with another loss", strings.Replace(goodSFT, "mode: sft", "mode: dpo", 1) + "loss: {type: token_ce}\n", "cfg.yaml:15: loss.type"},
		{"not a mapping", "- 1\n- 2\n", "(document): must be a mapping"},
		{"lora not a mapping", strings.Replace(goodSFT, "lora: {rank: 4, alpha: 8}", "lora: 4", 1), "cfg.yaml:3: lora: must be a mapping"},
		{"empty", "", "empty config"},
		{"over budget", strings.Replace(goodSFT, "steps: 2", "steps: 5000", 1), "cfg.yaml:13: schedule.steps: 5000 optimizer steps exceed the privacy budget"},
		{"bad sampling", strings.Replace(goodSFT, "  target_delta: 1.0e-5\n", "  target_delta: 1.0e-5\n  sampling: poisson\n", 1), `cfg.yaml:9: dp.sampling: "poisson", want client (default) or server`},
		{"server sampling in dpo", strings.Replace(strings.Replace(goodSFT, "mode: sft", "mode: dpo", 1), "  target_delta: 1.0e-5\n", "  target_delta: 1.0e-5\n  sampling: server\n", 1),
			"cfg.yaml:9: dp.sampling: server sampling works in sft mode only"},
		{"server sampling in rlvr", strings.Replace(strings.Replace(strings.Replace(goodSFT, "mode: sft", "mode: rlvr", 1), "  batch_size: 2\n", "", 1),
			"  target_delta: 1.0e-5\n", "  target_delta: 1.0e-5\n  sampling: server\n", 1) + "rlvr:\n  rewards:\n    - type: exact_match\n", "cfg.yaml:9: dp.sampling: server sampling draws rows"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			cfgPath := filepath.Join(dir, "cfg.yaml")
			if err := os.WriteFile(cfgPath, []byte(c.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			os.WriteFile(filepath.Join(dir, "train.jsonl"), []byte("{\"text\": \"hello\"}\n{\"text\": \"world\"}\n{\"prompt\": \"hi\"}\n"), 0o600)
			var err error
			if c.name == "over budget" {
				// Budget planning needs the data: run until it refuses
				// (before any client is created).
				_, err = runTrain(context.Background(), trainOptions{config: cfgPath, dataDir: t.TempDir(), out: t.TempDir()}, io.Discard, io.Discard)
				if err != nil && strings.Contains(err.Error(), "data") {
					os.WriteFile(filepath.Join(dir, "train.jsonl"), []byte("{\"text\": \"hello\"}\n{\"text\": \"world\"}\n"), 0o600)
					_, err = runTrain(context.Background(), trainOptions{config: cfgPath, dataDir: t.TempDir(), out: t.TempDir()}, io.Discard, io.Discard)
				}
			} else {
				_, err = loadTrainConfig(cfgPath)
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want one containing %q", err, c.want)
			}
		})
	}
}

// TestTrainBadData: records of the wrong shape are refused with file and
// line.
func TestTrainBadData(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		mode, data, want string
	}{
		{"sft", "{\"text\": \"a\"}\n{\"txt\": \"b\"}\n", `d.jsonl:2: json: unknown field "txt"`},
		{"sft", "{\"prompt\": \"a\"}\n", "d.jsonl:1: sft records"},
		{"sft", "{\"text\": \"a\", \"completion\": \"b\"}\n", "d.jsonl:1: give {text}"},
		{"sft", "not json\n", "d.jsonl:1:"},
		{"dpo", "{\"prompt\": \"a\", \"chosen\": \"b\"}\n", "d.jsonl:1: dpo records"},
		{"rlvr", "{\"text\": \"a\"}\n", "d.jsonl:1: rlvr records"},
		{"sft", "\n\n", "no records"},
	} {
		p := filepath.Join(dir, "d.jsonl")
		if err := os.WriteFile(p, []byte(c.data), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := readRecords(p, c.mode)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s %q: %v, want %q", c.mode, c.data, err, c.want)
		}
	}
}

// TestTrainRemoteFlags: --server needs an API key; an unreachable server
// is an error, not a hang.
func TestTrainRemoteFlags(t *testing.T) {
	cfg := filepath.Join("..", "..", "configs", "train_sft.yaml")
	_, err := runTrain(context.Background(), trainOptions{config: cfg, server: "http://127.0.0.1:1", out: t.TempDir()}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "--api-key") {
		t.Errorf("without a key: %v", err)
	}
	_, err = runTrain(context.Background(), trainOptions{config: cfg, server: "http://127.0.0.1:1", apiKey: "tsk_x", out: t.TempDir()}, io.Discard, io.Discard)
	if err == nil || strings.Contains(err.Error(), "tsk_x") {
		t.Errorf("unreachable server: %v", err)
	}
	_, err = runTrain(context.Background(), trainOptions{config: cfg, steps: -1, out: t.TempDir()}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "--steps") {
		t.Errorf("negative --steps: %v", err)
	}
}

// FuzzTrainConfig: the config parser never panics; what it accepts has a
// mode and a training file.
func FuzzTrainConfig(f *testing.F) {
	f.Add([]byte(goodSFT))
	f.Add([]byte("mode: rlvr\nrlvr:\n  rewards:\n    - {type: numeric_match, kwargs: {tolerance: 0.1}}\n"))
	f.Add([]byte("lora: {rank: [1, {a: b}]}\n"))
	f.Add([]byte(strings.Replace(goodSFT, "  target_delta: 1.0e-5\n", "  target_delta: 1.0e-5\n  sampling: server\n", 1)))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := parseTrainConfig("fuzz.yaml", data)
		if err != nil {
			return
		}
		if p.Mode == "" || p.Data.Train == "" {
			t.Fatalf("accepted a config without mode or data.train: %+v", p.trainConfig)
		}
		if p.DP.Sampling == api.SamplingServer && p.Mode != modeSFT {
			t.Fatalf("accepted server sampling in mode %s", p.Mode)
		}
	})
}

// TestTrainResume: a run on a persistent --data-dir continues from its
// checkpoint with --resume: the steps go on from the checkpoint's (the
// rlvr algorithm state included) and metrics.jsonl is continued.
func TestTrainResume(t *testing.T) {
	for _, mode := range []string{"sft", "rlvr", "sft_server"} {
		t.Run(mode, func(t *testing.T) {
			data, out := t.TempDir(), t.TempDir()
			cfg := filepath.Join("..", "..", "configs", "train_"+mode+".yaml")
			first, err := runTrain(context.Background(), trainOptions{config: cfg, dataDir: data, out: out, steps: 2}, io.Discard, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			var log strings.Builder
			second, err := runTrain(context.Background(), trainOptions{config: cfg, dataDir: data, out: out, steps: 3, resume: first.ArtifactID}, &log, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(log.String(), "resumed from "+first.ArtifactID+" at step 2") || !(second.EpsilonSpent > first.EpsilonSpent) {
				t.Errorf("resume: %q, ε %v then %v", log.String(), first.EpsilonSpent, second.EpsilonSpent)
			}
			b, err := os.ReadFile(filepath.Join(out, "metrics.jsonl"))
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSpace(string(b)), "\n")
			var last metricLine
			if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil {
				t.Fatal(err)
			}
			if len(lines) != 3 || last.Step != 3 {
				t.Errorf("metrics after resume: %d lines, last step %d", len(lines), last.Step)
			}
			if mode == "sft_server" {
				// The resumed run's lineage is train_steps throughout.
				var cert privacy.Certificate
				if b, err := os.ReadFile(filepath.Join(out, "dp_certificate.json")); err != nil || json.Unmarshal(b, &cert) != nil ||
					cert.Sampling != privacy.SamplingServerPoisson || cert.Steps != 3 {
					t.Errorf("certificate after a server-sampled resume: %+v, %v", cert, err)
				}
			}
			// Resuming past the schedule is refused.
			_, err = runTrain(context.Background(), trainOptions{config: cfg, dataDir: data, out: out, steps: 3, resume: second.ArtifactID}, io.Discard, io.Discard)
			if err == nil || !strings.Contains(err.Error(), "schedule.steps") {
				t.Errorf("resume at the end of the schedule: %v", err)
			}
		})
	}
}

// TestTrainServerSampled: dp.sampling server uploads the training rows as
// a dataset and trains with train_step: the certificate says
// server-poisson, its dataset size is the rows and its fingerprint the
// dataset's content hash (as printed), and every step's metrics come from
// the server's draw.
func TestTrainServerSampled(t *testing.T) {
	dir, out := t.TempDir(), t.TempDir()
	cfgPath := filepath.Join(dir, "cfg.yaml")
	yaml := strings.Replace(goodSFT, "  target_delta: 1.0e-5\n", "  target_delta: 1.0e-5\n  sampling: server\n", 1)
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	rows := "{\"text\": \"hello\"}\n{\"text\": \"world\"}\n{\"prompt\": \"hi\", \"completion\": \" there\"}\n{\"text\": \"again\"}\n"
	if err := os.WriteFile(filepath.Join(dir, "train.jsonl"), []byte(rows), 0o600); err != nil {
		t.Fatal(err)
	}
	var log strings.Builder
	sum, err := runTrain(context.Background(), trainOptions{config: cfgPath, dataDir: t.TempDir(), out: out, steps: 3}, &log, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var id, hash string
	var n int
	for _, line := range strings.Split(log.String(), "\n") {
		if rest, ok := strings.CutPrefix(line, "server-sampled: dataset "); ok {
			if _, err := fmt.Sscanf(rest, "%s (%d rows, %s", &id, &n, &hash); err != nil {
				t.Fatalf("%q: %v", line, err)
			}
			hash = strings.TrimSuffix(hash, ");")
		}
	}
	if id == "" || n != 4 || !strings.HasPrefix(hash, "sha256:") {
		t.Fatalf("no dataset line in the output:\n%s", log.String())
	}
	b, err := os.ReadFile(filepath.Join(out, "dp_certificate.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cert privacy.Certificate
	if err := json.Unmarshal(b, &cert); err != nil {
		t.Fatal(err)
	}
	if cert.Sampling != privacy.SamplingServerPoisson || cert.DatasetFingerprint != hash || cert.DatasetSize != 4 || cert.Steps != 3 ||
		cert.Q != 0.5 || cert.Epsilon != sum.EpsilonSpent {
		t.Fatalf("certificate %+v, dataset %s %s", cert, id, hash)
	}
	mb, err := os.ReadFile(filepath.Join(out, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(mb)), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d metric lines", len(lines))
	}
	for i, l := range lines {
		var m metricLine
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatal(err)
		}
		if m.Step != i+1 || m.Examples < 0 || m.Examples > 4 || (m.Loss != nil) != (m.Examples > 0) || !(m.EpsilonSpent > 0) || m.NoiseStd == 0 {
			t.Errorf("metrics line %d: %+v", i, m)
		}
	}
}

// TestTrainServerSampledPackage: a server-sampled `tensafe train` against
// a server packages with `tensafe package create --artifact`, and
// `package verify --audit-key` checks its v2 evidence: server-poisson,
// train_steps on the uploaded dataset.
func TestTrainServerSampledPackage(t *testing.T) {
	auditSigner, err := seal.GenerateSigningKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pkgSigner, err := seal.GenerateSigningKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s := servertest.New(t, servertest.WithAuditSigner(auditSigner), servertest.WithPackageSigner(pkgSigner))
	key := s.Key(t, s.Tenant(t, "T"), store.RoleTrainer)
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "cfg.yaml")
	yaml := strings.Replace(goodSFT, "  target_delta: 1.0e-5\n", "  target_delta: 1.0e-5\n  sampling: server\n", 1)
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "train.jsonl"), []byte("{\"text\": \"hello\"}\n{\"text\": \"world\"}\n{\"text\": \"again\"}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var log strings.Builder
	sum, err := runTrain(context.Background(), trainOptions{config: cfgPath, server: s.URL, apiKey: key, out: filepath.Join(dir, "out"), steps: 2}, &log, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log.String(), "server-sampled: dataset ") {
		t.Fatalf("output:\n%s", log.String())
	}
	if out, _, err := runPackageCLI(t, "keys", "recipient", "new", "--out", filepath.Join(dir, "alice")); err != nil {
		t.Fatal(err, out)
	}
	signerPub, auditPub := filepath.Join(dir, "server.pub"), filepath.Join(dir, "audit.pub")
	if out, _, err := runPackageCLI(t, "package", "signer", "--server", s.URL, "--out", signerPub); err != nil {
		t.Fatal(err, out)
	}
	if out, _, err := runPackageCLI(t, "package", "signer", "--server", s.URL, "--audit", "--out", auditPub); err != nil {
		t.Fatal(err, out)
	}
	t.Setenv("TENSAFE_API_KEY", key)
	pkg := filepath.Join(dir, "model.tssp")
	if out, code, err := runPackageCLI(t, "package", "create", "--artifact", sum.ArtifactID, "--server", s.URL,
		"--recipient", filepath.Join(dir, "alice.pub"), "--trusted-key", signerPub, "--out", pkg); err != nil || code != 0 {
		t.Fatalf("package create: code %d, %v\n%s", code, err, out)
	}
	out, code, err := runPackageCLI(t, "package", "verify", pkg, "--trusted-key", signerPub, "--audit-key", auditPub)
	if err != nil || code != 0 || !strings.Contains(out, "sampling server-poisson: 2 train_steps drawn by the server from dataset ") {
		t.Fatalf("package verify: code %d, %v\n%s", code, err, out)
	}
	if out, _, err := runPackageCLI(t, "package", "inspect", pkg); err != nil || !strings.Contains(out, "sampling:    server-poisson: 2 train_steps") ||
		!strings.Contains(out, "sampling server-poisson") {
		t.Fatalf("package inspect: %v\n%s", err, out)
	}
}
