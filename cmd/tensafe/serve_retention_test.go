package main

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tensafe/tensafe/api"
	"github.com/tensafe/tensafe/client"
	"github.com/tensafe/tensafe/model"
)

func TestRetentionInterval(t *testing.T) {
	for _, c := range []struct {
		artifact, operation, want time.Duration
	}{
		{0, 0, serveResealInterval},
		{720 * time.Hour, 0, time.Minute},
		{0, 168 * time.Hour, time.Minute},
		{0, 2 * time.Second, time.Second},
		{2 * time.Minute, 0, 30 * time.Second},
		{720 * time.Hour, 20 * time.Second, 5 * time.Second},
		{12 * time.Second, 720 * time.Hour, 3 * time.Second},
	} {
		if got := retentionInterval(c.artifact, c.operation); got != c.want {
			t.Errorf("artifact TTL %v, operation TTL %v: %v, want %v", c.artifact, c.operation, got, c.want)
		}
	}
}

// TestServeOperationTTLFlag: --operation-ttl parses into the options; a
// negative TTL is refused naming the flag (exit status 2) before anything
// is created.
func TestServeOperationTTLFlag(t *testing.T) {
	cmd := newServeCmd()
	if err := cmd.ParseFlags([]string{"--operation-ttl", "168h", "--artifact-ttl", "720h"}); err != nil {
		t.Fatal(err)
	}
	if f := cmd.Flags().Lookup("operation-ttl"); f == nil || f.Value.String() != (168*time.Hour).String() {
		t.Fatalf("operation-ttl flag: %+v", f)
	}
	for _, o := range []serveOptions{{operationTTL: -time.Hour}, {artifactTTL: -time.Second}} {
		dir := filepath.Join(t.TempDir(), "data")
		o.dataDir, o.addr, o.logger = dir, "127.0.0.1:0", discardLogger()
		err := runServe(context.Background(), o, io.Discard, nil)
		var ee *exitError
		if !errors.As(err, &ee) || ee.code != 2 || !strings.Contains(err.Error(), "-ttl must be") {
			t.Errorf("%+v: %v, want exit status 2 naming the flag", o, err)
		}
		if _, serr := os.Stat(dir); !errors.Is(serr, os.ErrNotExist) {
			t.Errorf("%+v: the data directory was created", o)
		}
	}
}

// serveWith runs `tensafe serve` in-process with o on a fresh data
// directory until the test ends; it returns the base URL and an operator
// admin client.
func serveWith(t *testing.T, o serveOptions) (string, *client.ServiceClient) {
	t.Helper()
	base, dir := serveInProcess(t, o)
	return base, serveAdmin(t, base, dir)
}

// waitFor polls cond every 100 ms until it holds or a minute has passed.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting: %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestServeRetentionLoop: the retention loop runs without any TTL (it
// re-seals accountant states after a KEK rotation), every
// serveResealInterval; with --operation-ttl a finished operation is
// deleted once it is older than the TTL (its future answers not_found).
func TestServeRetentionLoop(t *testing.T) {
	if testing.Short() {
		t.Skip("runs live servers")
	}
	ctx := context.Background()
	_, adm := serveWith(t, serveOptions{})
	var last api.RetentionMetric
	waitFor(t, "the retention loop without a TTL", func() bool {
		m, err := adm.ComplianceMetrics(ctx)
		if err != nil {
			t.Fatal(err)
		}
		last = m.Retention
		return last.SweeperRunning
	})
	if last.SweepIntervalSecs != int64(serveResealInterval/time.Second) || last.ArtifactTTLSeconds != 0 {
		t.Fatalf("retention without a TTL: %+v", last)
	}

	base, adm := serveWith(t, serveOptions{operationTTL: time.Second})
	c, _ := newTrainer(t, adm, base, "acme")
	tc, err := c.CreateTrainingClient(ctx, api.TrainingConfig{BaseModel: model.TinyName, LoRA: api.LoRAConfig{Rank: 4, Alpha: 8},
		DP: &api.DPConfig{NoiseMultiplier: 1.1, MaxGradNorm: 1, TargetEpsilon: 8, TargetDelta: 1e-5, DatasetSize: 100, ExpectedBatchSize: 2}})
	if err != nil {
		t.Fatal(err)
	}
	st, err := tc.OptimStep(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Result(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the finished operation to be deleted after its TTL", func() bool {
		_, err := st.Status(ctx)
		if err != nil && !client.IsNotFound(err) {
			t.Fatal(err)
		}
		return client.IsNotFound(err)
	})
	// The client itself stays.
	if m, err := tc.DPMetrics(ctx); err != nil || m.Steps != 1 {
		t.Fatalf("client after its operation expired: %+v, %v", m, err)
	}
}
