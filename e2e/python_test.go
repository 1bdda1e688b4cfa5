package e2e

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// pythonSDKScript trains through the Python SDK as a tenant of its own and
// prints one JSON object with what it saw.
const pythonSDKScript = `
import json, sys
from tensafe import ServiceClient, TrainingConfig, LoRAConfig, DPConfig

base, admin_key = sys.argv[1], open(sys.argv[2]).read().strip()
admin = ServiceClient(base, admin_key)
tenant = admin.create_tenant("e2e-python")
key = admin.create_api_key(tenant.id, "trainer")
svc = ServiceClient(base, key.token)
tc = svc.create_training_client(TrainingConfig(
    model_ref="tensafe-tiny",
    lora_config=LoRAConfig(rank=8, alpha=16),
    dp_config=DPConfig(noise_multiplier=1.0, max_grad_norm=1.0, target_epsilon=8.0, dataset_size=50000),
    batch_size=4,
))
row = [256] + list(b"the patient reports mild symptoms.") + [257]
losses, eps = [], []
for _ in range(3):
    fb = tc.forward_backward({"input_ids": [row] * 4, "labels": [row] * 4}).result()
    tc.optim_step().result()
    losses.append(fb.loss)
    eps.append(tc.get_dp_metrics().epsilon_spent)
out = tc.sample(["the patient "], max_tokens=8, temperature=0.0)
ckpt = tc.save_state("e2e-python")
audit = svc.verify_audit()
print(json.dumps({"losses": losses, "epsilons": eps, "completion": out.samples[0].completion,
                  "artifact": ckpt.artifact_id, "audit_verified": audit.get("verified")}))
`

func pythonSDK(ctx context.Context, t *testing.T, s *server) {
	src, err := filepath.Abs(filepath.Join("..", "sdk", "python", "src"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(src, "tensafe", "__init__.py")); err != nil {
		t.Skip("not available: the Python SDK (sdk/python) is not in this checkout")
	}
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("not available: no python3 on PATH")
	}
	if err := exec.Command(py, "-c", "import sys; sys.exit(0 if sys.version_info >= (3, 9) else 1)").Run(); err != nil {
		t.Skip("not available: python3 is older than 3.9")
	}
	cmd := exec.CommandContext(ctx, py, "-c", pythonSDKScript, s.base, filepath.Join(s.dataDir, "admin.key"))
	cmd.Env = append(os.Environ(), "PYTHONPATH="+src)
	out, err := cmd.Output()
	if err != nil {
		msg := ""
		if ee, ok := err.(*exec.ExitError); ok {
			msg = string(ee.Stderr)
		}
		t.Fatalf("Python SDK run: %v\n%s", err, msg)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	var got struct {
		Losses        []float64 `json:"losses"`
		Epsilons      []float64 `json:"epsilons"`
		Completion    string    `json:"completion"`
		Artifact      string    `json:"artifact"`
		AuditVerified bool      `json:"audit_verified"`
	}
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &got); err != nil {
		t.Fatalf("Python SDK output %q: %v", out, err)
	}
	if len(got.Losses) != 3 || len(got.Epsilons) != 3 || !(got.Epsilons[0] > 0 && got.Epsilons[1] > got.Epsilons[0] && got.Epsilons[2] > got.Epsilons[1]) {
		t.Fatalf("Python SDK training: %+v", got)
	}
	if got.Artifact == "" || !got.AuditVerified {
		t.Fatalf("Python SDK checkpoint/audit: %+v", got)
	}
	t.Logf("Python SDK: 3 DP steps, loss %.4f → %.4f, ε %.4f, checkpoint %s", got.Losses[0], got.Losses[2], got.Epsilons[2], got.Artifact)
}
