package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tensafe/tensafe/api"
	"github.com/tensafe/tensafe/audit"
	"github.com/tensafe/tensafe/benchsuite"
	"github.com/tensafe/tensafe/client"
	"github.com/tensafe/tensafe/model"
	"github.com/tensafe/tensafe/seal"
	"github.com/tensafe/tensafe/store"
	"github.com/tensafe/tensafe/tokenizer"
)

// bin is the tensafe binary built by TestMain.
var bin string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "tensafe-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	bin = filepath.Join(dir, "tensafe")
	build := exec.Command("go", "build", "-o", bin, "./cmd/tensafe")
	build.Dir = ".."
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: go build ./cmd/tensafe:", err)
		return 1
	}
	return m.Run()
}

// server is a running `tensafe serve`.
type server struct {
	cmd     *exec.Cmd
	dataDir string
	base    string
	mu      sync.Mutex
	out     strings.Builder
	done    chan error
}

func startServer(t *testing.T, dataDir string) *server {
	t.Helper()
	s := &server{dataDir: dataDir, done: make(chan error, 1)}
	s.cmd = exec.Command(bin, "serve", "--data-dir", dataDir, "--addr", "127.0.0.1:0")
	stdout, err := s.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	s.cmd.Stderr = io.Discard // JSON request logs
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start tensafe serve: %v", err)
	}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			s.mu.Lock()
			s.out.WriteString(line + "\n")
			s.mu.Unlock()
			if rest, ok := strings.CutPrefix(line, "tensafe serving on "); ok {
				addr <- strings.Fields(rest)[0]
			}
		}
		s.done <- s.cmd.Wait()
	}()
	select {
	case a := <-addr:
		s.base = a
	case err := <-s.done:
		t.Fatalf("tensafe serve exited before serving: %v\n%s", err, s.output())
	case <-time.After(60 * time.Second):
		s.cmd.Process.Kill()
		t.Fatalf("tensafe serve printed no address in 60 s:\n%s", s.output())
	}
	t.Cleanup(func() {
		if s.cmd.ProcessState == nil {
			s.cmd.Process.Kill()
			<-s.done
		}
	})
	return s
}

func (s *server) output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.out.String()
}

// stop sends SIGTERM and waits for a graceful exit.
func (s *server) stop(t *testing.T) {
	t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-s.done:
		if err != nil {
			t.Fatalf("tensafe serve exited with %v after SIGTERM:\n%s", err, s.output())
		}
	case <-time.After(60 * time.Second):
		s.cmd.Process.Kill()
		t.Fatal("tensafe serve did not stop within 60 s of SIGTERM")
	}
	if !strings.Contains(s.output(), "tensafe stopped") {
		t.Errorf("no \"tensafe stopped\" line:\n%s", s.output())
	}
}

func (s *server) adminKey(t *testing.T) string {
	t.Helper()
	path := filepath.Join(s.dataDir, "admin.key")
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("admin.key has mode %v, want 0600", fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// tensafe runs the binary and returns its combined output.
func tensafe(ctx context.Context, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	return string(out), err
}

// records is a small synthetic corpus (no personal data) tokenized for
// tensafe-tiny.
func records(t *testing.T) [][]int {
	t.Helper()
	tok := tokenizer.NewByte()
	var out [][]int
	for i := range 64 {
		text := fmt.Sprintf("note %d: the patient reports mild symptoms and is advised to rest and drink water.", i)
		ids, err := tok.Encode(text, true)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, append(ids, tokenizer.ByteEOS))
	}
	return out
}

type trainer struct {
	svc      *client.ServiceClient
	tenantID string
	token    string
}

func newTrainer(ctx context.Context, t *testing.T, s *server, name string) *trainer {
	t.Helper()
	admin, err := client.New(s.base, s.adminKey(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := admin.Ready(ctx); err != nil {
		t.Fatalf("ready: %v", err)
	}
	ten, err := admin.CreateTenant(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	key, err := admin.CreateAPIKey(ctx, ten.ID, "trainer")
	if err != nil {
		t.Fatal(err)
	}
	svc, err := client.New(s.base, key.Token)
	if err != nil {
		t.Fatal(err)
	}
	return &trainer{svc: svc, tenantID: ten.ID, token: key.Token}
}

// stepMetrics is what one training step reports.
type stepMetrics struct {
	Step    int     `json:"step"`
	Batch   int     `json:"batch"`
	Loss    float64 `json:"loss"`
	Clipped float64 `json:"fraction_clipped"`
	Epsilon float64 `json:"epsilon"`
	StepMS  float64 `json:"step_ms"`
}

// train runs DP steps (fixed batches of 8 cycling through the corpus) until
// steps are done or until the deadline, whichever is set.
func train(ctx context.Context, t *testing.T, tc *client.TrainingClient, data [][]int, steps int, until time.Time) []stepMetrics {
	t.Helper()
	var out []stepMetrics
	prevEps := 0.0
	for i := 0; (steps > 0 && i < steps) || (steps == 0 && time.Now().Before(until)); i++ {
		var b api.Batch
		for j := range 8 {
			ex := data[(i*8+j)%len(data)]
			b.InputIDs, b.Labels = append(b.InputIDs, ex), append(b.Labels, ex)
		}
		t0 := time.Now()
		f, err := tc.ForwardBackward(ctx, b, &api.LossSpec{Type: "token_ce"})
		if err != nil {
			t.Fatalf("step %d: forward_backward: %v", i+1, err)
		}
		fb, err := f.Result(ctx)
		if err != nil {
			t.Fatalf("step %d: forward_backward: %v", i+1, err)
		}
		o, err := tc.OptimStep(ctx)
		if err != nil {
			t.Fatalf("step %d: optim_step: %v", i+1, err)
		}
		if _, err := o.Result(ctx); err != nil {
			if client.IsBudgetExceeded(err) {
				t.Logf("step %d refused by the privacy budget: stopping", i+1)
				break
			}
			t.Fatalf("step %d: optim_step: %v", i+1, err)
		}
		el := time.Since(t0)
		m, err := tc.DPMetrics(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if m.Steps != int64(i+1) || m.EpsilonSpent <= prevEps || m.EpsilonSpent > m.TargetEpsilon {
			t.Fatalf("step %d: dp_metrics steps %d, ε %v (previous %v, target %v)", i+1, m.Steps, m.EpsilonSpent, prevEps, m.TargetEpsilon)
		}
		prevEps = m.EpsilonSpent
		if math.IsNaN(fb.Loss) || fb.Loss <= 0 || len(fb.PerExampleLoss) != 8 {
			t.Fatalf("step %d: forward_backward result %+v", i+1, fb)
		}
		out = append(out, stepMetrics{Step: i + 1, Batch: 8, Loss: fb.Loss, Clipped: fb.FractionClipped, Epsilon: m.EpsilonSpent,
			StepMS: float64(el.Nanoseconds()) / 1e6})
	}
	return out
}

func dpConfig() *api.DPConfig {
	return &api.DPConfig{NoiseMultiplier: 1.0, MaxGradNorm: 1.0, TargetEpsilon: 8, TargetDelta: 1e-5, DatasetSize: 50_000, ExpectedBatchSize: 8}
}

func TestEndToEnd(t *testing.T) {
	full := os.Getenv("TENSAFE_E2E_FULL") == "1"
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	if full {
		cancel()
		ctx, cancel = context.WithTimeout(context.Background(), 30*time.Minute)
	}
	defer cancel()
	dataDir := t.TempDir()
	s := startServer(t, dataDir)
	tr := newTrainer(ctx, t, s, "e2e-go")
	lr, wd := 5e-3, 0.0
	tc, err := tr.svc.CreateTrainingClient(ctx, api.TrainingConfig{
		BaseModel: model.TinyName,
		LoRA:      api.LoRAConfig{Rank: 8, Alpha: 16, TargetModules: model.AllModules},
		DP:        dpConfig(),
		Optimizer: api.OptimizerConfig{LearningRate: &lr, WeightDecay: &wd},
		Seed:      1,
	})
	if err != nil {
		t.Fatal(err)
	}
	data := records(t)

	var saved *api.SaveStateResult
	t.Run("go_sdk_training", func(t *testing.T) {
		var metrics []stepMetrics
		if full {
			d := 10 * time.Minute
			if v := os.Getenv("TENSAFE_E2E_DURATION"); v != "" {
				if d, err = time.ParseDuration(v); err != nil {
					t.Fatalf("TENSAFE_E2E_DURATION: %v", err)
				}
			}
			metrics = train(ctx, t, tc, data, 0, time.Now().Add(d))
			writeFullReport(t, metrics, d)
		} else {
			metrics = train(ctx, t, tc, data, 4, time.Time{})
		}
		if len(metrics) == 0 {
			t.Fatal("no step ran")
		}
		t.Logf("%d DP steps; loss %.4f → %.4f; ε %.4f", len(metrics), metrics[0].Loss, metrics[len(metrics)-1].Loss, metrics[len(metrics)-1].Epsilon)
		sf, err := tc.Sample(ctx, api.SampleRequest{PromptTokens: data[0][:10], MaxTokens: 16})
		if err != nil {
			t.Fatal(err)
		}
		sr, err := sf.Result(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(sr.Sequences) != 1 || len(sr.Sequences[0].Tokens) == 0 {
			t.Fatalf("sample: %+v", sr)
		}
		f, err := tc.SaveState(ctx, "e2e")
		if err != nil {
			t.Fatal(err)
		}
		if saved, err = f.Result(ctx); err != nil {
			t.Fatal(err)
		}
		if saved.Step != int64(len(metrics)) || !strings.HasPrefix(saved.ContentHash, "sha256:") || saved.Size <= 0 {
			t.Fatalf("save_state: %+v", saved)
		}
		// The checkpoint on disk is ciphertext: the plaintext engine state's
		// format name must not appear in any artifact file.
		files, _ := filepath.Glob(filepath.Join(dataDir, "artifacts", "*"))
		if len(files) == 0 {
			t.Fatal("no artifact file under the data dir")
		}
		for _, p := range files {
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(b), "tensafe-engine-state") || strings.Contains(string(b), "lora_A") {
				t.Fatalf("artifact %s holds plaintext", filepath.Base(p))
			}
		}
		// Load into a new client and continue.
		tc2, err := tr.svc.CreateTrainingClient(ctx, api.TrainingConfig{BaseModel: model.TinyName,
			LoRA: api.LoRAConfig{Rank: 8, Alpha: 16, TargetModules: model.AllModules}, DP: dpConfig(), Seed: 2})
		if err != nil {
			t.Fatal(err)
		}
		lf, err := tc2.LoadState(ctx, saved.ArtifactID)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := lf.Result(ctx); err != nil {
			t.Fatal(err)
		}
		m, err := tc2.DPMetrics(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if m.Steps != saved.Step {
			t.Fatalf("loaded client reports %d steps, want %d (the accountant travels with the checkpoint)", m.Steps, saved.Step)
		}
	})

	t.Run("python_sdk_training", func(t *testing.T) {
		pythonSDK(ctx, t, s)
	})

	t.Run("tssp_package", func(t *testing.T) {
		if saved == nil {
			t.Skip("no checkpoint (training failed)")
		}
		packageArtifact(ctx, t, s, tr, saved.ArtifactID)
	})

	t.Run("audit_api", func(t *testing.T) {
		v, err := tr.svc.VerifyAudit(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !v.Verified || v.Size < 10 {
			t.Fatalf("audit verification through the API: %+v", v)
		}
	})

	t.Run("compliance_evidence", func(t *testing.T) {
		evidencePack(ctx, t, s, tr)
	})

	s.stop(t)

	t.Run("audit_offline", func(t *testing.T) {
		// After the server has stopped: the log in the database verifies
		// against the signing key in the data dir, independently of the
		// server's own verification.
		st, err := store.Open(ctx, filepath.Join(dataDir, "tensafe.db"))
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		as, err := st.AuditStore(ctx, "main")
		if err != nil {
			t.Fatal(err)
		}
		keyText, err := os.ReadFile(filepath.Join(dataDir, "audit-signing.key"))
		if err != nil {
			t.Fatal(err)
		}
		sk, err := seal.ParseSigningKeyText(strings.TrimSpace(string(keyText)))
		if err != nil {
			t.Fatal(err)
		}
		res, err := audit.Verify(ctx, as, audit.VerifyOptions{Key: sk.Public()})
		if err != nil {
			t.Fatalf("offline audit verification: %v", err)
		}
		if res.Size < 10 || res.Checkpoints < 1 || !res.SignaturesChecked {
			t.Fatalf("offline audit verification: %+v", res)
		}
		// The log names what happened, never the data: no token ids, no
		// API key.
		var ops []string
		err = as.Scan(ctx, 0, func(_ uint64, e audit.Entry) error {
			b, _ := json.Marshal(e)
			if strings.Contains(string(b), tr.token) {
				t.Fatalf("audit entry %d holds the API key", e.Seq)
			}
			ops = append(ops, e.Operation)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"training.forward_backward", "training.optim_step", "training.save_state"} {
			if !strings.Contains(strings.Join(ops, " "), want) {
				t.Errorf("audit log has no %s entry (operations: %v)", want, uniq(ops))
			}
		}
	})
}

func uniq(s []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, v := range s {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}

// writeFullReport writes the long run's step metrics to reports/e2e/.
func writeFullReport(t *testing.T, m []stepMetrics, d time.Duration) {
	t.Helper()
	var ms []float64
	for _, s := range m {
		ms = append(ms, s.StepMS)
	}
	st := benchsuite.Summarize(ms)
	rep := map[string]any{
		"format":     "tensafe-e2e-full/v1",
		"duration_s": d.Seconds(),
		"steps":      len(m),
		"step_ms":    st,
		"loss_first": m[0].Loss,
		"loss_last":  m[len(m)-1].Loss,
		"epsilon":    m[len(m)-1].Epsilon,
		"machine":    benchsuite.ReadMachine("go (tensafe serve default)"),
		"per_step":   m,
	}
	dir := filepath.Join("..", "reports", "e2e")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, time.Now().UTC().Format("20060102T150405Z")+"-full.json")
	b, _ := json.MarshalIndent(rep, "", "  ")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("full run: %d steps in %s, step p50 %.1f ms p95 %.1f ms, loss %.4f → %.4f, ε %.4f; metrics in %s",
		len(m), d, st.P50, st.P95, m[0].Loss, m[len(m)-1].Loss, m[len(m)-1].Epsilon, path)
}
