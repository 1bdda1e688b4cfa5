package e2e

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/binary"
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

// records is a synthetic corpus (no personal data) of n distinct notes
// tokenized for tensafe-tiny.
func records(t *testing.T, n int) [][]int {
	t.Helper()
	tok := tokenizer.NewByte()
	symptoms := []string{"mild symptoms", "a cough", "a headache", "fatigue", "a sore throat", "no complaints"}
	advice := []string{"rest", "drink water", "return in a week", "take the usual dose", "walk daily"}
	var out [][]int
	for i := range n {
		text := fmt.Sprintf("note %d: the patient reports %s and is advised to %s.", i, symptoms[i%len(symptoms)], advice[(i/len(symptoms))%len(advice)])
		ids, err := tok.Encode(text, true)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, append(ids, tokenizer.ByteEOS))
	}
	return out
}

// poisson draws a batch including each example independently with
// probability q, from crypto/rand: the sampling the accountant's q assumes.
func poisson(t *testing.T, data [][]int, q float64) api.Batch {
	t.Helper()
	var b api.Batch
	var buf [8]byte
	for _, ex := range data {
		if _, err := rand.Read(buf[:]); err != nil {
			t.Fatal(err)
		}
		if float64(binary.LittleEndian.Uint64(buf[:])>>11)/(1<<53) < q {
			b.InputIDs, b.Labels = append(b.InputIDs, ex), append(b.Labels, ex)
		}
	}
	return b
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

// train runs DP steps on Poisson-sampled batches (expected size 8) until
// steps are done or until the deadline, whichever is set. An empty batch is
// still a step (noise only), as the accountant assumes.
func train(ctx context.Context, t *testing.T, tc *client.TrainingClient, data [][]int, steps int, until time.Time) []stepMetrics {
	t.Helper()
	q := float64(expectedBatch) / float64(len(data))
	var out []stepMetrics
	prevEps := 0.0
	for i := 0; (steps > 0 && i < steps) || (steps == 0 && time.Now().Before(until)); i++ {
		b := poisson(t, data, q)
		t0 := time.Now()
		var fb *api.ForwardBackwardResult
		if len(b.InputIDs) > 0 {
			f, err := tc.ForwardBackward(ctx, b, &api.LossSpec{Type: "token_ce"})
			if err != nil {
				t.Fatalf("step %d: forward_backward: %v", i+1, err)
			}
			if fb, err = f.Result(ctx); err != nil {
				t.Fatalf("step %d: forward_backward: %v", i+1, err)
			}
			if math.IsNaN(fb.Loss) || fb.Loss <= 0 || len(fb.PerExampleLoss) != len(b.InputIDs) {
				t.Fatalf("step %d: forward_backward result %+v for %d examples", i+1, fb, len(b.InputIDs))
			}
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
		sm := stepMetrics{Step: i + 1, Batch: len(b.InputIDs), Epsilon: m.EpsilonSpent, StepMS: float64(el.Nanoseconds()) / 1e6}
		if fb != nil {
			sm.Loss, sm.Clipped = fb.Loss, fb.FractionClipped
		}
		out = append(out, sm)
	}
	return out
}

// corpusSize and expectedBatch give the sampling rate q declared to the
// server: the batches really are Poisson samples of this corpus at this q.
const corpusSize, expectedBatch = 4000, 8

func dpConfig() *api.DPConfig {
	return &api.DPConfig{NoiseMultiplier: 1.0, MaxGradNorm: 1.0, TargetEpsilon: 8, TargetDelta: 1e-5,
		DatasetSize: corpusSize, ExpectedBatchSize: expectedBatch}
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
	data := records(t, corpusSize)

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
		first, last := lossWindows(metrics, 20)
		t.Logf("%d DP steps; mean loss %.4f (first steps) → %.4f (last steps); ε %.4f", len(metrics), first, last, metrics[len(metrics)-1].Epsilon)
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

// lossWindows returns the mean loss of the first and of the last k steps
// that had examples (Poisson batches may be empty).
func lossWindows(m []stepMetrics, k int) (first, last float64) {
	var losses []float64
	for _, s := range m {
		if s.Batch > 0 {
			losses = append(losses, s.Loss)
		}
	}
	mean := func(x []float64) float64 {
		if len(x) == 0 {
			return 0
		}
		var sum float64
		for _, v := range x {
			sum += v
		}
		return sum / float64(len(x))
	}
	k = min(k, len(losses))
	return mean(losses[:k]), mean(losses[len(losses)-k:])
}

// writeFullReport writes the long run's step metrics to reports/e2e/.
func writeFullReport(t *testing.T, m []stepMetrics, d time.Duration) {
	t.Helper()
	var ms []float64
	for _, s := range m {
		ms = append(ms, s.StepMS)
	}
	st := benchsuite.Summarize(ms)
	first, last := lossWindows(m, 20)
	examples := 0
	for _, s := range m {
		examples += s.Batch
	}
	rep := map[string]any{
		"format":           "tensafe-e2e-full/v1",
		"duration_s":       d.Seconds(),
		"steps":            len(m),
		"examples":         examples,
		"corpus_size":      corpusSize,
		"expected_batch":   expectedBatch,
		"step_ms":          st,
		"loss_first20":     first,
		"loss_last20":      last,
		"epsilon":          m[len(m)-1].Epsilon,
		"delta":            1e-5,
		"noise_multiplier": 1.0,
		"machine":          benchsuite.ReadMachine("go (tensafe serve default)"),
		"per_step":         m,
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
	t.Logf("full run: %d steps (%d examples) in %s, step p50 %.1f ms p95 %.1f ms, mean loss %.4f (first 20) → %.4f (last 20), ε %.4f; metrics in %s",
		len(m), examples, d, st.P50, st.P95, first, last, m[len(m)-1].Epsilon, path)
}
