//go:build unix

package store

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/tensafe/tensafe/audit"
	"github.com/tensafe/tensafe/seal"
)

const crashHelperEnv = "TENSAFE_STORE_CRASH_HELPER"

// TestCrashHelper is the child process of TestSQLiteSurvivesKill: it writes
// clients, operations and audit entries forever, printing the id of each
// as soon as the store has acknowledged it.
func TestCrashHelper(t *testing.T) {
	dir := os.Getenv(crashHelperEnv)
	if dir == "" {
		t.Skip("helper process for TestSQLiteSurvivesKill")
	}
	s, err := Open(ctx, filepath.Join(dir, "db"))
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	key, err := readKey(dir)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	as, err := s.AuditStore(ctx, "main")
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	l, err := audit.Open(ctx, as, audit.Options{Origin: testOrigin, Signer: key, CheckpointEvery: 8, CheckpointInterval: -1})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	if _, err := s.CreateTenant(ctx, Tenant{ID: "t1", Name: "crash"}); err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	for i := 0; ; i++ {
		id := fmt.Sprintf("c%d", i)
		if _, err := s.CreateClient(ctx, TrainingClient{ID: id, TenantID: "t1", BaseModel: "m", BudgetState: []byte(id)}); err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		if _, err := s.CreateOperation(ctx, Operation{ID: "o" + id, TenantID: "t1", ClientID: id, Kind: KindOptimStep, State: OpRunning}); err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		e, err := l.Append(ctx, auditRecord(i))
		if err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		fmt.Printf("ack %s %d\n", id, e.Seq)
	}
}

// TestSQLiteSurvivesKill: a process writing to the store is killed with
// SIGKILL; everything it had acknowledged is there after reopening, the
// file lock died with it, the audit log verifies, and its running
// operations are failed as server_restarted.
func TestSQLiteSurvivesKill(t *testing.T) {
	if os.Getenv(crashHelperEnv) != "" {
		t.Skip("in the helper")
	}
	dir := t.TempDir()
	key := auditKey(t)
	if err := writeKey(dir, key); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashHelperEnv+"="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acked := map[string]uint64{}
	sc := bufio.NewScanner(out)
	for sc.Scan() && len(acked) < 40 {
		f := strings.Fields(sc.Text())
		if len(f) > 0 && f[0] == "error" {
			t.Fatalf("helper: %s", sc.Text())
		}
		if len(f) == 3 && f[0] == "ack" {
			var seq uint64
			fmt.Sscan(f[2], &seq)
			acked[f[1]] = seq
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	if len(acked) < 40 {
		t.Fatalf("helper acknowledged only %d writes", len(acked))
	}

	s, err := Open(ctx, filepath.Join(dir, "db"))
	if err != nil {
		t.Fatalf("reopen after kill: %v", err)
	}
	defer s.Close()
	var maxSeq uint64
	for id, seq := range acked {
		c, err := s.GetClient(ctx, "t1", id)
		if err != nil || string(c.BudgetState) != id {
			t.Fatalf("acknowledged client %s after kill: %+v, %v", id, c, err)
		}
		maxSeq = max(maxSeq, seq)
	}
	n, err := s.FailRunningOperations(ctx, "killed")
	if err != nil || n < int64(len(acked)) {
		t.Fatalf("FailRunningOperations = %d, %v; want at least %d", n, err, len(acked))
	}
	as, err := s.AuditStore(ctx, "main")
	if err != nil {
		t.Fatal(err)
	}
	res, err := audit.Verify(ctx, as, audit.VerifyOptions{Key: key.Public()})
	as.Close()
	if err != nil || res.Size <= maxSeq {
		t.Fatalf("audit log after kill: %+v, %v (acknowledged up to seq %d)", res, err, maxSeq)
	}
}

func writeKey(dir string, k *seal.SigningKey) error {
	b, err := k.MarshalBinary()
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "key"), b, 0o600)
}

func readKey(dir string) (*seal.SigningKey, error) {
	b, err := os.ReadFile(filepath.Join(dir, "key"))
	if err != nil {
		return nil, err
	}
	return seal.ParseSigningKey(b)
}
