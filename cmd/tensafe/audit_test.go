package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tensafe/tensafe/audit"
	"github.com/tensafe/tensafe/seal"
)

func runAuditCLI(t *testing.T, args ...string) (stdout string, code int, err error) {
	t.Helper()
	root := newRootCmd()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(args)
	root.SetContext(context.Background())
	err = root.Execute()
	if err != nil {
		code = exitCode(err)
	}
	return out.String(), code, err
}

// makeAuditLog writes a log of 1+n entries, checkpointed every 4, and the
// verifying key file; it returns the log directory and the key file.
func makeAuditLog(t *testing.T, n int) (string, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "audit")
	key, err := seal.GenerateSigningKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	store, err := audit.OpenFileStore(dir, audit.FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	l, err := audit.Open(context.Background(), store, audit.Options{Origin: "tensafe.test/audit", Signer: key, CheckpointEvery: 4, CheckpointInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		_, err := l.Append(context.Background(), audit.Record{
			TenantID: "acme", Actor: "key:ak_1", Operation: "training.optim_step",
			Resource: fmt.Sprintf("session/s-%d", i), Outcome: audit.OutcomeSuccess,
			Details: map[string]string{"step": fmt.Sprint(i)},
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	pub := filepath.Join(t.TempDir(), "audit.pub")
	if err := os.WriteFile(pub, []byte(key.Public().String()+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, pub
}

func TestAuditVerifyCLI(t *testing.T) {
	dir, pub := makeAuditLog(t, 10)

	out, code, err := runAuditCLI(t, "audit", "verify", "--log", dir, "--key", pub)
	if err != nil || !strings.Contains(out, "OK") || !strings.Contains(out, "entries: 11") {
		t.Fatalf("verify: code %d, %v\n%s", code, err, out)
	}
	// Without the key: chain and roots verify, signatures do not: not 0.
	_, code, err = runAuditCLI(t, "audit", "verify", "--log", dir)
	if code != auditExitIncomplete {
		t.Fatalf("verify without --key: code %d (%v), want %d", code, err, auditExitIncomplete)
	}
	// A trusted checkpoint from outside.
	p, _ := audit.OpenFileStore(dir, audit.FileOptions{ReadOnly: true})
	cps, _ := p.Checkpoints(context.Background())
	trusted := filepath.Join(t.TempDir(), "cp.txt")
	os.WriteFile(trusted, cps[len(cps)-1], 0o644)
	if _, code, err := runAuditCLI(t, "audit", "verify", "--log", dir, "--key", pub, "--trusted", trusted); err != nil {
		t.Fatalf("verify --trusted: code %d, %v", code, err)
	}

	// Tamper with entry 6: exit 2, and the error names seq 6.
	path := filepath.Join(dir, audit.EntriesFile)
	b, _ := os.ReadFile(path)
	lines := bytes.SplitAfter(b, []byte("\n"))
	lines[6] = bytes.Replace(lines[6], []byte(`"acme"`), []byte(`"evil"`), 1)
	os.WriteFile(path, bytes.Join(lines, nil), 0o600)
	_, code, err = runAuditCLI(t, "audit", "verify", "--log", dir, "--key", pub)
	if code != auditExitBad || err == nil || !strings.Contains(err.Error(), "first bad seq 6") {
		t.Fatalf("verify of a tampered log: code %d, %v; want %d and seq 6", code, err, auditExitBad)
	}
	// Verifying only before the tampered entry still passes the chain;
	// the checkpoints are what cover the rest.
	if _, code, err := runAuditCLI(t, "audit", "verify", "--log", dir, "--key", pub, "--to", "5"); err != nil {
		t.Fatalf("verify --to 5: code %d, %v", code, err)
	}
}

func TestAuditProofCLI(t *testing.T) {
	dir, pub := makeAuditLog(t, 10)
	out, code, err := runAuditCLI(t, "audit", "proof", "5", "--log", dir, "--key", pub)
	if err != nil {
		t.Fatalf("proof: code %d, %v", code, err)
	}
	if !strings.Contains(out, `"tree_size": 11`) || !strings.Contains(out, `"checkpoint"`) {
		t.Fatalf("proof of seq 5 should be against the latest checkpoint (size 11):\n%s", out)
	}
	pf := filepath.Join(t.TempDir(), "proof.json")
	os.WriteFile(pf, []byte(out), 0o644)
	vout, code, err := runAuditCLI(t, "audit", "verify-proof", pf, "--key", pub)
	if err != nil || !strings.Contains(vout, "OK: seq 5") {
		t.Fatalf("verify-proof: code %d, %v\n%s", code, err, vout)
	}
	// An altered proof is refused with exit 2.
	os.WriteFile(pf, []byte(strings.Replace(out, `"acme"`, `"evil"`, 1)), 0o644)
	if _, code, _ := runAuditCLI(t, "audit", "verify-proof", pf, "--key", pub); code != auditExitBad {
		t.Fatalf("verify-proof of an altered proof: code %d, want %d", code, auditExitBad)
	}
	if _, _, err := runAuditCLI(t, "audit", "proof", "x", "--log", dir); err == nil || !strings.Contains(err.Error(), "SEQ") {
		t.Fatalf("proof x: %v", err)
	}
}

func TestAuditRepairCLI(t *testing.T) {
	dir, pub := makeAuditLog(t, 3)
	path := filepath.Join(dir, audit.EntriesFile)
	f, _ := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString(`{"v":1,"seq":4,"time":"20`)
	f.Close()
	_, code, err := runAuditCLI(t, "audit", "verify", "--log", dir, "--key", pub)
	if code != auditExitBad || !strings.Contains(err.Error(), "first bad seq 4") || !strings.Contains(err.Error(), "torn tail") {
		t.Fatalf("verify of a torn log: code %d, %v", code, err)
	}
	if _, _, err := runAuditCLI(t, "audit", "repair", "--log", dir); err == nil || !strings.Contains(err.Error(), "--actor") {
		t.Fatalf("repair without --actor: %v", err)
	}
	out, code, err := runAuditCLI(t, "audit", "repair", "--log", dir, "--actor", "operator:alice")
	if err != nil || !strings.Contains(out, "moved 25 bytes") {
		t.Fatalf("repair: code %d, %v\n%s", code, err, out)
	}
	// The repair entry, seq 4, is on the record; without --signing-key it
	// is not yet under a checkpoint, and the earlier checkpoints verify.
	out, code, err = runAuditCLI(t, "audit", "verify", "--log", dir, "--key", pub)
	if err != nil || !strings.Contains(out, "not yet checkpointed: seqs 4..4") {
		t.Fatalf("verify after repair: code %d, %v\n%s", code, err, out)
	}
}
