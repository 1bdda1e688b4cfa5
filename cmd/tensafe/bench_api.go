package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tensafe/tensafe/api"
	"github.com/tensafe/tensafe/benchsuite"
	"github.com/tensafe/tensafe/client"
	"github.com/tensafe/tensafe/model"
	"github.com/tensafe/tensafe/seal"
)

// embeddedServer is `tensafe serve` run in this process on a loopback port
// of the kernel's choosing, over a data directory.
type embeddedServer struct {
	base, adminKey string
	stop           func() error
}

func startEmbeddedServer(ctx context.Context, dataDir string) (*embeddedServer, error) {
	srvCtx, cancel := context.WithCancel(ctx)
	addrCh := make(chan string, 1)
	srvErr := make(chan error, 1)
	go func() {
		srvErr <- runServe(srvCtx, serveOptions{dataDir: dataDir, addr: "127.0.0.1:0", rateLimit: -1, grace: 30 * time.Second,
			logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, io.Discard, func(addr string) { addrCh <- addr })
	}()
	select {
	case addr := <-addrCh:
		key, err := os.ReadFile(filepath.Join(dataDir, serveAdminKeyFile))
		if err != nil {
			cancel()
			<-srvErr
			return nil, err
		}
		return &embeddedServer{base: "http://" + addr, adminKey: strings.TrimSpace(string(key)),
			stop: func() error { cancel(); return <-srvErr }}, nil
	case err := <-srvErr:
		cancel()
		return nil, fmt.Errorf("embedded server: %w", err)
	}
}

// benchTenant is a fresh tenant with a trainer API key on a tensafe serve
// run in this process over a temporary data directory: what the API
// benchmarks time against.
type benchTenant struct {
	srv   *embeddedServer
	dir   string
	admin *client.ServiceClient // the server's admin key
	token string                // the trainer key
	svc   *client.ServiceClient // the trainer key's client
}

// startBenchTenant starts an embedded server over a new temporary directory
// (named after dirPattern, as os.MkdirTemp does) and creates tenant on it
// with a "trainer" key. close stops the server and removes the directory.
func startBenchTenant(ctx context.Context, dirPattern, tenant string) (_ *benchTenant, err error) {
	bt := &benchTenant{}
	if bt.dir, err = os.MkdirTemp("", dirPattern); err != nil {
		return nil, err
	}
	if bt.srv, err = startEmbeddedServer(ctx, bt.dir); err != nil {
		os.RemoveAll(bt.dir)
		return nil, err
	}
	defer func() {
		if err != nil {
			bt.close()
		}
	}()
	if bt.admin, err = client.New(bt.srv.base, bt.srv.adminKey); err != nil {
		return nil, err
	}
	t, err := bt.admin.CreateTenant(ctx, tenant)
	if err != nil {
		return nil, err
	}
	key, err := bt.admin.CreateAPIKey(ctx, t.ID, "trainer")
	if err != nil {
		return nil, err
	}
	bt.token = key.Token
	if bt.svc, err = client.New(bt.srv.base, bt.token); err != nil {
		return nil, err
	}
	return bt, nil
}

func (bt *benchTenant) close() {
	bt.srv.stop()
	os.RemoveAll(bt.dir)
}

// awaitResult is the end of a timed operation submitted through the SDK:
// the submission's error, or else the error of awaiting its future's result.
func awaitResult[T any](ctx context.Context, f *client.Future[T], err error) error {
	if err != nil {
		return err
	}
	_, err = f.Result(ctx)
	return err
}

// benchAPIGroup times the HTTP API end to end in this process: the Go SDK
// against the real server (auth, tenant scoping, validation, the op queue,
// futures by long-poll, SQLite, the audit log, encrypted checkpoints).
func benchAPIGroup(ctx context.Context, r *benchsuite.Runner, o suiteOptions) error {
	bt, err := startBenchTenant(ctx, "tensafe-bench-api-", "bench")
	if err != nil {
		return err
	}
	defer bt.close()
	admin, svc := bt.admin, bt.svc
	const batchSize, seqLen = 8, 64
	tc, err := svc.CreateTrainingClient(ctx, api.TrainingConfig{
		BaseModel: model.TinyName,
		LoRA:      api.LoRAConfig{Rank: 8, Alpha: 16, TargetModules: []string{"q_proj", "k_proj", "v_proj", "o_proj"}},
		DP: &api.DPConfig{NoiseMultiplier: 1, MaxGradNorm: 1, TargetEpsilon: 8, TargetDelta: 1e-5,
			DatasetSize: 1_000_000, ExpectedBatchSize: batchSize},
		Seed: 1,
	})
	if err != nil {
		return err
	}
	r.Param("api", fmt.Sprintf("tensafe serve in process (SQLite, local keyring, signed audit log), Go SDK over loopback HTTP; DP training client on %s, B=%d T=%d", model.TinyName, batchSize, seqLen))
	eb := randomBatch(model.TinyConfig().VocabSize, batchSize, seqLen, 5)
	batch := api.Batch{InputIDs: eb.InputIDs, Labels: eb.Labels}
	fast := iters(o, 50, 300)
	train := iters(o, 15, 40)
	spec := func(name, original string, n int, unit, note string) benchsuite.Spec {
		return benchsuite.Spec{Group: "api", Name: name, Original: original, N: n, Unit: unit, Note: note, MaxTime: 60 * time.Second}
	}
	if _, err := r.Measure(ctx, spec("GET /readyz", "", fast, "request", "no authentication"),
		func(ctx context.Context) error { return svc.Ready(ctx) }); err != nil {
		return err
	}
	if _, err := r.Measure(ctx, spec("GET training client", "api_latency", fast, "request", "bearer key lookup, tenant scoping, SQLite read, JSON"),
		func(ctx context.Context) error { _, err := tc.Refresh(ctx); return err }); err != nil {
		return err
	}
	if _, err := r.Measure(ctx, spec("GET dp_metrics", "", fast, "request", "ε spent from the stored accountant"),
		func(ctx context.Context) error { _, err := tc.DPMetrics(ctx); return err }); err != nil {
		return err
	}
	if _, err := r.Measure(ctx, spec("forward_backward (API, DP)", "", train, fmt.Sprintf("batch of %d × %d tokens", batchSize, seqLen),
		"POST with strict decoding, queued, run, audited, future long-polled"),
		func(ctx context.Context) error {
			f, err := tc.ForwardBackward(ctx, batch, &api.LossSpec{Type: "token_ce"})
			return awaitResult(ctx, f, err)
		}); err != nil {
		return err
	}
	if _, err := r.Measure(ctx, spec("training step (API, DP)", "", train, fmt.Sprintf("forward_backward of %d × %d tokens + optim_step", batchSize, seqLen),
		"both submitted, then the optim_step future awaited (the op queue runs them in order); budget, noise, AdamW, audit"),
		func(ctx context.Context) error {
			if _, err := tc.ForwardBackward(ctx, batch, &api.LossSpec{Type: "token_ce"}); err != nil {
				return err
			}
			f, err := tc.OptimStep(ctx)
			return awaitResult(ctx, f, err)
		}); err != nil {
		return err
	}
	if _, err := r.Measure(ctx, spec("sample (API, 16 tokens)", "", train, "8-token prompt, 16 new tokens, greedy", ""),
		func(ctx context.Context) error {
			f, err := tc.Sample(ctx, api.SampleRequest{PromptTokens: batch.InputIDs[0][:8], MaxTokens: 16})
			return awaitResult(ctx, f, err)
		}); err != nil {
		return err
	}
	var saved *api.SaveStateResult
	if _, err := r.Measure(ctx, spec("save_state (API, encrypted)", "", train, "checkpoint", "engine state + accountant sealed under the tenant KEK, fsync, recorded, audited"),
		func(ctx context.Context) error {
			f, err := tc.SaveState(ctx, "bench")
			if err != nil {
				return err
			}
			saved, err = f.Result(ctx)
			return err
		}); err != nil {
		return err
	}
	if _, err := r.Measure(ctx, spec("GET dp_certificate", "", fast, "request", "the DP certificate computed from the stored accountant"),
		func(ctx context.Context) error { _, err := tc.DPCertificate(ctx); return err }); err != nil {
		return err
	}
	rk, err := seal.GenerateRecipientKey()
	if err != nil {
		return err
	}
	rpub, err := rk.Public().MarshalText()
	if err != nil {
		return err
	}
	if _, err := r.Measure(ctx, spec("package checkpoint as TSSP (API)", "", train, "package",
		"server side: decrypt the checkpoint, PEFT adapter, DP certificate, evidence with audit inclusion proofs, sign, seal to a recipient and the tenant KEK"),
		func(ctx context.Context) error {
			_, err := svc.PackageArtifact(ctx, saved.ArtifactID, api.PackageRequest{Recipients: []string{string(rpub), api.RecipientTenant}})
			return err
		}); err != nil {
		return err
	}
	if _, err := r.Measure(ctx, spec("GET compliance metrics (API, admin)", "", iters(o, 5, 20), "request",
		"what an evidence pack collects: artifacts opened, audit verified, key ages, DP per client"),
		func(ctx context.Context) error { _, err := admin.ComplianceMetrics(ctx); return err }); err != nil {
		return err
	}
	if _, err = r.Measure(ctx, spec("verify audit (API)", "", iters(o, 5, 20), "whole tenant log", "hash chain, Merkle roots, signed checkpoints"),
		func(ctx context.Context) error {
			v, err := svc.VerifyAudit(ctx)
			if err != nil {
				return err
			}
			if !v.Verified {
				return fmt.Errorf("audit log does not verify: %s", v.Error)
			}
			return nil
		}); err != nil {
		return err
	}
	return benchPythonSDK(ctx, r, o, bt.srv.base, bt.token)
}
