package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tensafe/tensafe/api"
	"github.com/tensafe/tensafe/client"
)

// runCLI runs the tensafe command line with args in process and returns
// what it wrote, stdout and stderr together.
func runCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

// serveInProcess runs `tensafe serve` in process with o on a fresh data
// directory, a loopback port, no rate limit, a 5 s grace and a logger that
// discards, until the test ends; it returns the base URL and the data
// directory (where serve writes the operator admin key, serveAdminKeyFile).
func serveInProcess(t *testing.T, o serveOptions) (base, dataDir string) {
	t.Helper()
	o.dataDir = filepath.Join(t.TempDir(), "data")
	o.addr, o.rateLimit, o.grace, o.logger = "127.0.0.1:0", -1, 5*time.Second, discardLogger()
	ctx, cancel := context.WithCancel(context.Background())
	addrc := make(chan string, 1)
	done := make(chan error, 1)
	var out bytes.Buffer
	go func() { done <- runServe(ctx, o, &out, func(a string) { addrc <- a }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	select {
	case a := <-addrc:
		return "http://" + a, o.dataDir
	case err := <-done:
		t.Fatalf("serve: %v", err)
	}
	return "", ""
}

// serveAdmin returns an SDK client with the operator admin key that serve
// wrote to dataDir.
func serveAdmin(t *testing.T, base, dataDir string) *client.ServiceClient {
	t.Helper()
	key, err := os.ReadFile(filepath.Join(dataDir, serveAdminKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	adm, err := client.New(base, strings.TrimSpace(string(key)))
	if err != nil {
		t.Fatal(err)
	}
	return adm
}

// newTrainer creates tenant name with the admin client adm and returns an
// SDK client with a new trainer key of it, and the key's token.
func newTrainer(t *testing.T, adm *client.ServiceClient, base, name string) (*client.ServiceClient, string) {
	t.Helper()
	ctx := context.Background()
	tn, err := adm.CreateTenant(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	key, err := adm.CreateAPIKey(ctx, tn.ID, client.RoleTrainer)
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(base, key.Token)
	if err != nil {
		t.Fatal(err)
	}
	return c, key.Token
}

// trainSteps runs n DP steps (forward_backward on batch, then optim_step) on
// tc, waiting for each result.
func trainSteps(t *testing.T, ctx context.Context, tc *client.TrainingClient, batch api.Batch, n int) {
	t.Helper()
	for range n {
		fb, err := tc.ForwardBackward(ctx, batch, nil)
		if err == nil {
			_, err = fb.Result(ctx)
		}
		if err != nil {
			t.Fatal(err)
		}
		st, err := tc.OptimStep(ctx)
		if err == nil {
			_, err = st.Result(ctx)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}
