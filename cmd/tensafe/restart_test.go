package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tensafe/tensafe/api"
	"github.com/tensafe/tensafe/client"
	"github.com/tensafe/tensafe/model"
)

// When this variable is set, the test binary runs `tensafe serve` instead
// of the tests: TestRestartAfterKill starts it as a child process it can
// SIGKILL.
const serveChildEnv = "TENSAFE_TEST_SERVE_CHILD"

func TestMain(m *testing.M) {
	if args := os.Getenv(serveChildEnv); args != "" {
		cmd := newRootCmd()
		cmd.SetArgs(append([]string{"serve"}, strings.Fields(args)...))
		if err := cmd.Execute(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func startServeChild(t *testing.T, dataDir, addr string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), serveChildEnv+"=--data-dir "+dataDir+" --addr "+addr)
	cmd.Stdout, cmd.Stderr = nil, nil
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd
}

func waitReady(t *testing.T, base, dataDir string) *client.ServiceClient {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if key, err := os.ReadFile(filepath.Join(dataDir, serveAdminKeyFile)); err == nil {
			c, err := client.New(base, strings.TrimSpace(string(key)))
			if err != nil {
				t.Fatal(err)
			}
			if c.Ready(context.Background()) == nil {
				return c
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("server did not become ready")
	return nil
}

// TestRestartAfterKill kills `tensafe serve` with SIGKILL in the middle of
// training and restarts it: tenants, keys, clients, artifacts and the audit
// chain survive; operations cut off are failed with server_restarted; the
// client loads its checkpoint and continues with its accountant state.
func TestRestartAfterKill(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two server processes")
	}
	ctx := context.Background()
	dataDir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	base := "http://" + addr

	child := startServeChild(t, dataDir, addr)
	admin := waitReady(t, base, dataDir)
	c, _ := newTrainer(t, admin, base, "restart")
	tc, err := c.CreateTrainingClient(ctx, api.TrainingConfig{
		BaseModel: model.TinyName, LoRA: api.LoRAConfig{Rank: 4, Alpha: 8},
		DP: &api.DPConfig{NoiseMultiplier: 1, MaxGradNorm: 1, TargetEpsilon: 50, TargetDelta: 1e-5, DatasetSize: 100, ExpectedBatchSize: 4},
	})
	if err != nil {
		t.Fatal(err)
	}
	batch := api.Batch{InputIDs: [][]int{{256, 104, 105, 257}, {256, 111, 107, 257}}, Labels: [][]int{{256, 104, 105, 257}, {256, 111, 107, 257}}}
	trainSteps(t, ctx, tc, batch, 2)
	save, err := tc.SaveState(ctx, "before-kill")
	if err != nil {
		t.Fatal(err)
	}
	saved, err := save.Result(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Queue work and kill the server while it is in flight.
	var pending []string
	for i := 0; i < 6; i++ {
		fb, err := tc.ForwardBackward(ctx, batch, nil)
		if err != nil {
			t.Fatal(err)
		}
		pending = append(pending, fb.ID)
	}
	if err := child.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = child.Wait()

	child = startServeChild(t, dataDir, addr)
	defer func() {
		_ = child.Process.Signal(syscall.SIGTERM)
		_ = child.Wait()
	}()
	waitReady(t, base, dataDir)
	// The same key still works; the client and the artifact are there.
	if _, err := c.TrainingClient(ctx, tc.ID); err != nil {
		t.Fatalf("training client after restart: %v", err)
	}
	if _, err := c.Artifact(ctx, saved.ArtifactID); err != nil {
		t.Fatalf("artifact after restart: %v", err)
	}
	// Every operation is accounted for: finished before the kill, or failed
	// with server_restarted; none is lost or left running.
	restarted := 0
	for _, id := range pending {
		f, err := client.FutureOf[api.ForwardBackwardResult](c, id).Status(ctx)
		if err != nil {
			t.Fatalf("future %s after restart: %v", id, err)
		}
		switch {
		case f.State == "succeeded":
		case f.State == "failed" && f.Error != nil && f.Error.Code == api.CodeServerRestarted:
			restarted++
		default:
			t.Fatalf("future %s after restart: state %s, error %+v", id, f.State, f.Error)
		}
	}
	t.Logf("%d of %d queued operations were cut off and marked server_restarted", restarted, len(pending))
	// Load the checkpoint into a new client and continue: the accountant
	// state came back with it.
	tc2, err := c.CreateTrainingClient(ctx, api.TrainingConfig{
		BaseModel: model.TinyName, LoRA: api.LoRAConfig{Rank: 4, Alpha: 8},
		DP: &api.DPConfig{NoiseMultiplier: 1, MaxGradNorm: 1, TargetEpsilon: 50, TargetDelta: 1e-5, DatasetSize: 100, ExpectedBatchSize: 4},
	})
	if err != nil {
		t.Fatal(err)
	}
	load, err := tc2.LoadState(ctx, saved.ArtifactID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := load.Result(ctx); err != nil {
		t.Fatal(err)
	}
	before, err := tc2.DPMetrics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if before.Steps != 2 {
		t.Fatalf("loaded accountant has %d steps, want 2", before.Steps)
	}
	trainSteps(t, ctx, tc2, batch, 1)
	after, err := tc2.DPMetrics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if after.Steps != 3 || !(after.EpsilonSpent > before.EpsilonSpent) {
		t.Fatalf("after one more step: %+v (before %+v)", after, before)
	}
	v, err := c.VerifyAudit(ctx)
	if err != nil || !v.Verified {
		t.Fatalf("audit after restart: %+v, %v", v, err)
	}
}
