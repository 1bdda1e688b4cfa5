package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/tensafe/tensafe/benchsuite"
)

// benchPythonScript measures the Python SDK against a server: it prints one
// JSON object of millisecond samples per operation, the same operations and
// shapes as the Go SDK's part of bench api.
const benchPythonScript = `
import json, os, random, sys, time
from tensafe import ServiceClient, TrainingConfig, LoRAConfig, DPConfig

n_fast, n_train = int(sys.argv[1]), int(sys.argv[2])
svc = ServiceClient(os.environ["TENSAFE_BASE_URL"], os.environ["TENSAFE_API_KEY"])
tc = svc.create_training_client(TrainingConfig(
    model_ref="tensafe-tiny",
    lora_config=LoRAConfig(rank=8, alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]),
    dp_config=DPConfig(noise_multiplier=1.0, max_grad_norm=1.0, target_epsilon=8.0, dataset_size=1000000),
    batch_size=8,
))
rng = random.Random(5)
rows = [[rng.randrange(256) for _ in range(64)] for _ in range(8)]
batch = {"input_ids": rows, "labels": rows}

def timed(n, fn):
    fn()
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out

def step():
    tc.forward_backward(batch)
    tc.optim_step().result()

res = {
    "get_dp_metrics": timed(n_fast, tc.get_dp_metrics),
    "forward_backward": timed(n_train, lambda: tc.forward_backward(batch).result()),
    "step": timed(n_train, step),
    "sample": timed(n_train, lambda: tc.sample(["the patient "], max_tokens=16, temperature=0)),
    "python": sys.version.split()[0],
}
print(json.dumps(res))
`

// pythonSDKSource finds sdk/python/src from the working directory or one of
// its parents (the suite runs from the repository), or $TENSAFE_PYTHON_SDK.
func pythonSDKSource() (string, bool) {
	if p := os.Getenv("TENSAFE_PYTHON_SDK"); p != "" {
		_, err := os.Stat(filepath.Join(p, "tensafe", "__init__.py"))
		return p, err == nil
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", false
	}
	for {
		p := filepath.Join(dir, "sdk", "python", "src")
		if _, err := os.Stat(filepath.Join(p, "tensafe", "__init__.py")); err == nil {
			return p, true
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", false
		}
		dir = parent
	}
}

// benchPythonSDK times the Python SDK (sdk/python) against the same
// server as the Go SDK's part, when a python3 ≥ 3.9 and the SDK's source
// are here; otherwise it records why not.
func benchPythonSDK(ctx context.Context, r *benchsuite.Runner, o suiteOptions, baseURL, apiKey string) error {
	src, ok := pythonSDKSource()
	if !ok {
		r.Skip("api (Python SDK)", "sdk/python/src not found from the working directory (set TENSAFE_PYTHON_SDK)")
		return nil
	}
	py, err := exec.LookPath("python3")
	if err != nil {
		r.Skip("api (Python SDK)", "no python3 on PATH")
		return nil
	}
	if err := exec.CommandContext(ctx, py, "-c", "import sys; sys.exit(0 if sys.version_info >= (3, 9) else 1)").Run(); err != nil {
		r.Skip("api (Python SDK)", "python3 is older than 3.9")
		return nil
	}
	nFast, nTrain := iters(o, 50, 300), iters(o, 10, 40)
	cmd := exec.CommandContext(ctx, py, "-c", benchPythonScript, fmt.Sprint(nFast), fmt.Sprint(nTrain))
	// The key goes through the environment, never the command line.
	cmd.Env = append(os.Environ(), "PYTHONPATH="+src, "TENSAFE_BASE_URL="+baseURL, "TENSAFE_API_KEY="+apiKey)
	r.Logf("api      Python SDK: %d reads, %d training steps …", nFast, nTrain)
	out, err := cmd.Output()
	if err != nil {
		msg := ""
		if ee, ok := err.(*exec.ExitError); ok {
			msg = strings.ReplaceAll(string(ee.Stderr), apiKey, "<api key>")
		}
		return fmt.Errorf("Python SDK: %v\n%s", err, msg)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	var res struct {
		GetDPMetrics    []float64 `json:"get_dp_metrics"`
		ForwardBackward []float64 `json:"forward_backward"`
		Step            []float64 `json:"step"`
		Sample          []float64 `json:"sample"`
		Python          string    `json:"python"`
	}
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &res); err != nil {
		return fmt.Errorf("Python SDK output: %w", err)
	}
	note := "Python " + res.Python + " SDK (sdk/python), same server"
	r.Add(benchsuite.Spec{Group: "api", Name: "GET dp_metrics (Python SDK)", Unit: "request", Note: note}, res.GetDPMetrics)
	r.Add(benchsuite.Spec{Group: "api", Name: "forward_backward (Python SDK, DP)", Unit: "batch of 8 × 64 tokens", Note: note}, res.ForwardBackward)
	r.Add(benchsuite.Spec{Group: "api", Name: "training step (Python SDK, DP)", Unit: "forward_backward of 8 × 64 tokens + optim_step", Note: note}, res.Step)
	r.Add(benchsuite.Spec{Group: "api", Name: "sample (Python SDK, 16 tokens)", Unit: "12-character prompt, 16 new tokens, greedy", Note: note}, res.Sample)
	return nil
}
