package service

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"testing"

	"github.com/tensafe/tensafe/api"
	"github.com/tensafe/tensafe/audit"
	"github.com/tensafe/tensafe/loss"
	"github.com/tensafe/tensafe/model"
	"github.com/tensafe/tensafe/privacy"
	"github.com/tensafe/tensafe/seal"
	"github.com/tensafe/tensafe/tssp"
)

// bernsteinBound returns t such that a sum S of independent Bernoulli(q)
// variables, m of them, has P(|S − mq| ≥ t) < 1e-6 by Bernstein's
// inequality: P(|S − μ| ≥ t) ≤ 2·exp(−t² / (2(σ² + t/3))), σ² = m·q(1−q).
// The test that uses it fails by chance with probability below 1e-6.
func bernsteinBound(m int, q float64) float64 {
	v := float64(m) * q * (1 - q)
	l := math.Log(2 / 1e-6) // t²/(2(v + t/3)) ≥ l  ⇔  t² − (2l/3)t − 2lv ≥ 0
	b := 2 * l / 3
	return (b + math.Sqrt(b*b+8*l*v)) / 2
}

func TestPoissonDraw(t *testing.T) {
	for _, c := range []struct {
		q    float64
		n, k int
	}{{0.01, 1000, 200}, {0.25, 64, 500}, {0.5, 10, 1000}, {1e-4, 100000, 20}} {
		total := 0
		for range c.k {
			idx, err := poissonDraw(c.q, c.n)
			if err != nil {
				t.Fatal(err)
			}
			for i, x := range idx {
				if x < 0 || x >= c.n || (i > 0 && x <= idx[i-1]) {
					t.Fatalf("q %v: draw %v not increasing in [0, %d)", c.q, idx, c.n)
				}
			}
			total += len(idx)
		}
		mean, bound := float64(c.q)*float64(c.n*c.k), bernsteinBound(c.n*c.k, c.q)
		if math.Abs(float64(total)-mean) >= bound {
			t.Errorf("q %v, n %d, %d draws: %d rows drawn, expected %.1f ± %.1f (failure probability < 1e-6)", c.q, c.n, c.k, total, mean, bound)
		}
	}
	if idx, _ := poissonDraw(0, 100); len(idx) != 0 {
		t.Errorf("q 0 drew %v", idx)
	}
	if idx, _ := poissonDraw(1, 100); len(idx) != 100 {
		t.Errorf("q 1 drew %d of 100", len(idx))
	}
	for _, q := range []float64{-0.1, 1.1, math.NaN()} {
		if _, err := poissonDraw(q, 10); err == nil {
			t.Errorf("q %v accepted", q)
		}
	}
}

// textRows are dataset rows of tensafe-tiny's byte tokens.
func textRows(n int, secret string) []api.DatasetExample {
	out := make([]api.DatasetExample, n)
	for i := range out {
		ids := []int{256}
		for _, c := range []byte(fmt.Sprintf("%s row %d", secret, i)) {
			ids = append(ids, int(c))
		}
		out[i] = api.DatasetExample{InputIDs: ids}
	}
	out[0].Weights = make([]float64, len(out[0].InputIDs))
	for j := range out[0].Weights {
		out[0].Weights[j] = 0.5
	}
	return out
}

func serverConfig(datasetID string, batch int) api.TrainingConfig {
	c := tinyConfig(1, 50, batch, 0)
	c.DP.Sampling, c.DP.DatasetID = api.SamplingServer, datasetID
	return c
}

func codeField(err error) string {
	code, field := CodeOf(err)
	return code + "/" + field
}

// TestServerSampledTraining: train_step draws Poisson batches at the rate
// the accountant assumes, client batches are refused, and the certificate
// says server-poisson with the dataset's content hash.
func TestServerSampledTraining(t *testing.T) {
	f := newFixture(t)
	f.svc.pkg = newPackager(PackageConfig{AuditStore: f.as})
	ctx := context.Background()
	s, ten := f.svc, f.tenA
	const secret = "patient-record-7731"
	const rows, batch, steps = 40, 4, 30
	ds, err := s.CreateDataset(ctx, ten, api.CreateDatasetRequest{Name: "notes", Examples: textRows(rows, secret)})
	if err != nil {
		t.Fatal(err)
	}
	if ds.Rows != rows || !strings.HasPrefix(ds.ContentHash, "sha256:") || ds.Name != "notes" {
		t.Fatalf("dataset %+v", ds)
	}
	if got, err := s.GetDataset(ctx, ten, ds.ID); err != nil || got != ds {
		t.Fatalf("get dataset: %+v, %v; created %+v", got, err, ds)
	}
	tc, err := s.CreateTrainingClient(ctx, ten, serverConfig(ds.ID, batch))
	if err != nil {
		t.Fatal(err)
	}
	if tc.Config.DP.DatasetSize != rows || tc.Config.DP.Sampling != api.SamplingServer {
		t.Fatalf("stored dp_config %+v", tc.Config.DP)
	}
	m, err := s.DPMetrics(ctx, ten, tc.ID)
	if err != nil || m.SamplingSource != SamplingServerPoisson || m.SamplingRate != float64(batch)/rows {
		t.Fatalf("dp_metrics %+v, %v", m, err)
	}
	if rec, err := f.st.GetClient(ctx, ten, tc.ID); err != nil {
		t.Fatal(err)
	} else if cp := clientPrivacy(rec); cp.SamplingSource != SamplingServerPoisson || cp.SamplingRate != float64(batch)/rows {
		t.Fatalf("compliance client privacy %+v", cp)
	}

	// Client batches and client steps would break q.
	for name, call := range map[string]func() error{
		"forward_backward": func() error {
			_, err := s.ForwardBackward(ctx, ten, tc.ID, api.ForwardBackwardRequest{Batch: textBatch("ab")})
			return err
		},
		"forward_backward_custom": func() error {
			_, err := s.ForwardBackwardCustom(ctx, ten, tc.ID, api.ForwardBackwardCustomRequest{Batch: textBatch("ab"), LogprobGrads: [][]float64{{0, 1, 1}}})
			return err
		},
		"optim_step": func() error { _, err := s.OptimStep(ctx, ten, tc.ID); return err },
	} {
		if err := call(); !errors.Is(err, ErrFailedPrecondition) || !strings.Contains(err.Error(), "train_step") {
			t.Errorf("%s on a server-sampled client: %v", name, err)
		}
	}
	// forward and sample read the model and stay allowed.
	ff, err := s.Forward(ctx, ten, tc.ID, api.ForwardRequest{Batch: textBatch("ab")})
	await(t, s, ten, ff, err, nil)
	sf, err := s.Sample(ctx, ten, tc.ID, api.SampleRequest{Prompt: "a", MaxTokens: 2})
	await(t, s, ten, sf, err, nil)

	total, empty := 0, 0
	var last api.TrainStepResult
	for i := range steps {
		var r api.TrainStepResult
		fu, err := s.TrainStep(ctx, ten, tc.ID, api.TrainStepRequest{})
		await(t, s, ten, fu, err, &r)
		if r.Step != int64(i+1) || r.DatasetRows != rows || r.SamplingRate != float64(batch)/rows || r.Examples < 0 || r.Examples > rows || r.NoiseStd != 1 {
			t.Fatalf("train_step %d: %+v", i, r)
		}
		if r.Examples > 0 && !(r.Loss > 0) {
			t.Fatalf("train_step %d: %d examples, loss %v", i, r.Examples, r.Loss)
		}
		if r.Examples == 0 {
			empty++ // a noise-only step: recorded like the others
		}
		total += r.Examples
		last = r
	}
	// q is enforced: the draws are Binomial(steps·rows, q).
	mean, bound := float64(steps*batch), bernsteinBound(steps*rows, float64(batch)/rows)
	if math.Abs(float64(total)-mean) >= bound {
		t.Errorf("%d train_steps drew %d rows, expected %.0f ± %.1f (failure probability < 1e-6)", steps, total, mean, bound)
	}
	m, err = s.DPMetrics(ctx, ten, tc.ID)
	if err != nil || m.Steps != steps || m.EpsilonSpent != last.EpsilonSpent {
		t.Fatalf("dp_metrics after %d steps: %+v, %v (last %+v)", steps, m, err, last)
	}
	raw, err := s.DPCertificate(ctx, ten, tc.ID)
	if err != nil {
		t.Fatal(err)
	}
	var c privacy.Certificate
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	if c.Sampling != privacy.SamplingServerPoisson || c.DatasetFingerprint != ds.ContentHash || c.DatasetSize != rows || c.Steps != steps || c.Q != float64(batch)/rows {
		t.Fatalf("certificate: sampling %s, fingerprint %s (dataset %s), size %d, steps %d, q %v", c.Sampling, c.DatasetFingerprint, ds.ContentHash, c.DatasetSize, c.Steps, c.Q)
	}

	// The audit log has the steps with the dataset's hash, never its rows.
	n := 0
	if err := auditScan(f, func(e audit.Entry) {
		b, _ := json.Marshal(e)
		if strings.Contains(string(b), secret) || strings.Contains(string(b), "112,97,116") {
			t.Errorf("audit entry %d holds training data: %s", e.Seq, b)
		}
		if e.Operation == "training.train_step" {
			n++
			if e.Details["dataset_hash"] != ds.ContentHash || e.Details["dataset_id"] != ds.ID {
				t.Errorf("train_step entry %v", e.Details)
			}
		}
	}); err != nil {
		t.Fatal(err)
	}
	if n != steps {
		t.Fatalf("%d train_step audit entries, want %d", n, steps)
	}
	t.Logf("%d steps drew %d rows (%.0f expected), %d noise-only; ε = %.3g", steps, total, mean, empty, c.Epsilon)
}

// TestServerSampledConfig: every bad combination names its field, and a
// dataset of another tenant is a 404 naming dp_config.dataset_id.
func TestServerSampledConfig(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	s := f.svc
	mine, err := s.CreateDataset(ctx, f.tenA, api.CreateDatasetRequest{Examples: textRows(8, "a")})
	if err != nil {
		t.Fatal(err)
	}
	theirs, err := s.CreateDataset(ctx, f.tenB, api.CreateDatasetRequest{Examples: textRows(8, "b")})
	if err != nil {
		t.Fatal(err)
	}
	wide, err := s.CreateDataset(ctx, f.tenA, api.CreateDatasetRequest{Examples: []api.DatasetExample{{InputIDs: []int{1, 1 << 20}}}})
	if err != nil {
		t.Fatal(err)
	}
	ckClient, err := s.CreateTrainingClient(ctx, f.tenA, tinyConfig(1, 8, 1, 10))
	if err != nil {
		t.Fatal(err)
	}
	ou, err := s.OptimStep(ctx, f.tenA, ckClient.ID)
	await(t, s, f.tenA, ou, err, nil)
	var sv api.SaveStateResult
	vf, err := s.SaveState(ctx, f.tenA, ckClient.ID, api.SaveStateRequest{})
	await(t, s, f.tenA, vf, err, &sv)

	set := func(mod func(d *api.DPConfig)) api.TrainingConfig {
		c := serverConfig(mine.ID, 2)
		mod(c.DP)
		return c
	}
	for name, c := range map[string]struct {
		cfg  api.TrainingConfig
		want string
	}{
		"another tenant's dataset": {set(func(d *api.DPConfig) { d.DatasetID = theirs.ID }), "not_found/dp_config.dataset_id"},
		"no such dataset":          {set(func(d *api.DPConfig) { d.DatasetID = "art_nope" }), "not_found/dp_config.dataset_id"},
		"a checkpoint":             {set(func(d *api.DPConfig) { d.DatasetID = sv.ArtifactID }), "not_found/dp_config.dataset_id"},
		"dataset_size declared":    {set(func(d *api.DPConfig) { d.DatasetSize = 8 }), "invalid_argument/dp_config.dataset_size"},
		"no dataset_id":            {set(func(d *api.DPConfig) { d.DatasetID = "" }), "invalid_argument/dp_config.dataset_id"},
		"dataset_id, client":       {set(func(d *api.DPConfig) { d.Sampling, d.DatasetSize = api.SamplingClient, 8 }), "invalid_argument/dp_config.dataset_id"},
		"unknown sampling":         {set(func(d *api.DPConfig) { d.Sampling = "poisson" }), "invalid_argument/dp_config.sampling"},
		"batch above rows":         {set(func(d *api.DPConfig) { d.ExpectedBatchSize = 9 }), "invalid_argument/dp_config.expected_batch_size"},
		"token outside the vocab":  {set(func(d *api.DPConfig) { d.DatasetID = wide.ID }), "invalid_argument/dp_config.dataset_id"},
	} {
		_, err := s.CreateTrainingClient(ctx, f.tenA, c.cfg)
		if got := codeField(err); got != c.want {
			t.Errorf("%s: %s (%v), want %s", name, got, err, c.want)
		}
	}
	// train_step needs a server-sampled client.
	if _, err := s.TrainStep(ctx, f.tenA, ckClient.ID, api.TrainStepRequest{}); !errors.Is(err, ErrFailedPrecondition) {
		t.Errorf("train_step on a client-sampled client: %v", err)
	}
	// Datasets are the tenant's: another tenant sees nothing.
	if _, err := s.GetDataset(ctx, f.tenB, mine.ID); codeField(err) != "not_found/" {
		t.Errorf("get another tenant's dataset: %v", err)
	}
	if err := s.DeleteDataset(ctx, f.tenB, mine.ID); codeField(err) != "not_found/" {
		t.Errorf("delete another tenant's dataset: %v", err)
	}
	if _, err := s.GetDataset(ctx, f.tenA, sv.ArtifactID); codeField(err) != "not_found/" {
		t.Errorf("a checkpoint as a dataset: %v", err)
	}
	// Bad rows name the field.
	for name, c := range map[string]struct {
		ex   []api.DatasetExample
		want string
	}{
		"no rows":       {nil, "examples"},
		"empty row":     {[]api.DatasetExample{{InputIDs: []int{1}}, {}}, "examples[1].input_ids"},
		"negative id":   {[]api.DatasetExample{{InputIDs: []int{1, -2}}}, "examples[0].input_ids[1]"},
		"labels length": {[]api.DatasetExample{{InputIDs: []int{1, 2}, Labels: []int{1}}}, "examples[0].labels"},
		"weights":       {[]api.DatasetExample{{InputIDs: []int{1, 2}, Weights: []float64{1, math.NaN()}}}, "examples[0].weights[1]"},
	} {
		if _, err := s.CreateDataset(ctx, f.tenA, api.CreateDatasetRequest{Examples: c.ex}); !isField(err, c.want) {
			t.Errorf("%s: %v, want a field error on %s", name, err, c.want)
		}
	}
}

// TestServerSampledDeletedDataset: a train_step on a deleted dataset fails
// clearly, before and after it was queued; the client's state stays.
func TestServerSampledDeletedDataset(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	s, ten := f.svc, f.tenA
	ds, err := s.CreateDataset(ctx, ten, api.CreateDatasetRequest{Examples: textRows(6, "x")})
	if err != nil {
		t.Fatal(err)
	}
	tc, err := s.CreateTrainingClient(ctx, ten, serverConfig(ds.ID, 3))
	if err != nil {
		t.Fatal(err)
	}
	fu, err := s.TrainStep(ctx, ten, tc.ID, api.TrainStepRequest{})
	await(t, s, ten, fu, err, nil)
	if err := s.DeleteDataset(ctx, ten, ds.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetDataset(ctx, ten, ds.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted dataset: %v", err)
	}
	_, err = s.TrainStep(ctx, ten, tc.ID, api.TrainStepRequest{})
	if !errors.Is(err, ErrFailedPrecondition) || !strings.Contains(err.Error(), ds.ID) || !strings.Contains(err.Error(), "no longer exists") {
		t.Fatalf("train_step on a deleted dataset: %v", err)
	}
	m, err := s.DPMetrics(ctx, ten, tc.ID)
	if err != nil || m.Steps != 1 {
		t.Fatalf("dp_metrics: %+v, %v", m, err)
	}
	if err := s.DeleteDataset(ctx, ten, ds.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	ops := map[string]int{}
	if err := auditScan(f, func(e audit.Entry) {
		if strings.HasPrefix(e.Operation, "dataset.") && e.Outcome == audit.OutcomeSuccess {
			ops[e.Operation]++
			if e.Resource != ds.ID || e.Details[api.ComplianceCategoryKey] == "" {
				t.Errorf("entry %+v", e)
			}
		}
	}); err != nil {
		t.Fatal(err)
	}
	if ops["dataset.create"] != 1 || ops["dataset.delete"] != 1 {
		t.Fatalf("dataset audit entries %v", ops)
	}
}

// TestServerSampledRestart: after a restart a server-sampled client keeps
// its q and budget, loads its checkpoint and goes on drawing from its
// dataset (read again from its sealed file).
func TestServerSampledRestart(t *testing.T) {
	f := newFixture(t)
	f.svc.pkg = newPackager(PackageConfig{AuditStore: f.as})
	ctx := context.Background()
	s, ten := f.svc, f.tenA
	ds, err := s.CreateDataset(ctx, ten, api.CreateDatasetRequest{Examples: textRows(10, "r")})
	if err != nil {
		t.Fatal(err)
	}
	tc, err := s.CreateTrainingClient(ctx, ten, serverConfig(ds.ID, 5))
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		fu, err := s.TrainStep(ctx, ten, tc.ID, api.TrainStepRequest{})
		await(t, s, ten, fu, err, nil)
	}
	var sv api.SaveStateResult
	vf, err := s.SaveState(ctx, ten, tc.ID, api.SaveStateRequest{})
	await(t, s, ten, vf, err, &sv)
	before, err := s.DPMetrics(ctx, ten, tc.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	s2, err := New(Config{Store: f.st, Audit: f.log, Keys: s.keys, ArtifactDir: s.dir, Packages: PackageConfig{AuditStore: f.as}})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close(ctx)
	if _, err := s2.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	after, err := s2.DPMetrics(ctx, ten, tc.ID)
	if err != nil || after != before || after.SamplingSource != SamplingServerPoisson {
		t.Fatalf("dp_metrics after restart %+v (%v), before %+v", after, err, before)
	}
	if _, err := s2.TrainStep(ctx, ten, tc.ID, api.TrainStepRequest{}); !errors.Is(err, ErrFailedPrecondition) || !strings.Contains(err.Error(), "load_state") {
		t.Fatalf("train_step before load_state: %v", err)
	}
	lf, err := s2.LoadState(ctx, ten, tc.ID, api.LoadStateRequest{ArtifactID: sv.ArtifactID})
	await(t, s2, ten, lf, err, nil)
	var r api.TrainStepResult
	fu, err := s2.TrainStep(ctx, ten, tc.ID, api.TrainStepRequest{})
	await(t, s2, ten, fu, err, &r)
	if r.Step != 3 || r.DatasetRows != 10 || r.SamplingRate != 0.5 {
		t.Fatalf("train_step after restart: %+v", r)
	}
	raw, err := s2.DPCertificate(ctx, ten, tc.ID)
	if err != nil {
		t.Fatal(err)
	}
	var c privacy.Certificate
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	if c.Sampling != privacy.SamplingServerPoisson || c.DatasetFingerprint != ds.ContentHash || c.Steps != 3 {
		t.Fatalf("certificate after restart: %s %s %d", c.Sampling, c.DatasetFingerprint, c.Steps)
	}
}

func certOf(t *testing.T, s *Service, tenant, client string) privacy.Certificate {
	t.Helper()
	raw, err := s.DPCertificate(context.Background(), tenant, client)
	if err != nil {
		t.Fatal(err)
	}
	var c privacy.Certificate
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestServerSampledMixedHistory: a client whose accountant holds client-
// declared steps is certified client-declared, even after it loads a
// server-sampled checkpoint and trains with train_step; the server-sampled
// run itself stays server-poisson, and its checkpoint packages with
// server-poisson evidence v2 that verifies against the certificate.
func TestServerSampledMixedHistory(t *testing.T) {
	f := newFixture(t)
	signer, err := seal.GenerateSigningKey(crand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	f.svc.pkg = newPackager(PackageConfig{Signer: signer, AuditStore: f.as})
	ctx := context.Background()
	s, ten := f.svc, f.tenA
	ds, err := s.CreateDataset(ctx, ten, api.CreateDatasetRequest{Examples: textRows(8, "m")})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := s.CreateTrainingClient(ctx, ten, serverConfig(ds.ID, 4))
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		fu, err := s.TrainStep(ctx, ten, srv.ID, api.TrainStepRequest{})
		await(t, s, ten, fu, err, nil)
	}
	var sv api.SaveStateResult
	vf, err := s.SaveState(ctx, ten, srv.ID, api.SaveStateRequest{})
	await(t, s, ten, vf, err, &sv)

	cl, err := s.CreateTrainingClient(ctx, ten, tinyConfig(1, 50, 2, 8))
	if err != nil {
		t.Fatal(err)
	}
	fu, err := s.ForwardBackward(ctx, ten, cl.ID, api.ForwardBackwardRequest{Batch: textBatch("ab", "cd")})
	await(t, s, ten, fu, err, nil)
	ou, err := s.OptimStep(ctx, ten, cl.ID)
	await(t, s, ten, ou, err, nil)
	if c := certOf(t, s, ten, cl.ID); c.Sampling != privacy.SamplingClientDeclared {
		t.Fatalf("client-sampled certificate says %s", c.Sampling)
	}
	lf, err := s.LoadState(ctx, ten, cl.ID, api.LoadStateRequest{ArtifactID: sv.ArtifactID})
	await(t, s, ten, lf, err, nil)
	// The loaded configuration samples on the server from now on.
	if _, err := s.ForwardBackward(ctx, ten, cl.ID, api.ForwardBackwardRequest{Batch: textBatch("ab")}); !errors.Is(err, ErrFailedPrecondition) {
		t.Fatalf("forward_backward after loading a server-sampled checkpoint: %v", err)
	}
	tf, err := s.TrainStep(ctx, ten, cl.ID, api.TrainStepRequest{})
	await(t, s, ten, tf, err, nil)
	c := certOf(t, s, ten, cl.ID)
	if c.Sampling != privacy.SamplingClientDeclared || c.Steps != 4 || c.DatasetFingerprint == ds.ContentHash {
		t.Fatalf("mixed run certified %s over %d steps, fingerprint %s", c.Sampling, c.Steps, c.DatasetFingerprint)
	}
	if c := certOf(t, s, ten, srv.ID); c.Sampling != privacy.SamplingServerPoisson || c.DatasetFingerprint != ds.ContentHash {
		t.Fatalf("server-sampled run certified %s, %s", c.Sampling, c.DatasetFingerprint)
	}
	res, err := s.PackageArtifact(ctx, ten, sv.ArtifactID, api.PackageRequest{Recipients: []string{"tenant"}})
	if err != nil {
		t.Fatalf("packaging a server-sampled checkpoint: %v", err)
	}
	rc, _, err := s.OpenArtifact(ctx, ten, res.Artifact.ID)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	p, err := tssp.Read(bytes.NewReader(raw), int64(len(raw)))
	if err != nil {
		t.Fatal(err)
	}
	a, err := tssp.Load(ctx, p, []*seal.VerifyingKey{signer.Public()}, tssp.TenantIdentity(s.keys, ten))
	if err != nil {
		t.Fatal(err)
	}
	ev, err := tssp.ParseEvidence(a.Evidence)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := privacy.ParseCertificate(a.Certificate)
	if err != nil {
		t.Fatal(err)
	}
	if ev.Dataset.Sampling != privacy.SamplingServerPoisson || ev.Dataset.ContentHash != ds.ContentHash || ev.Dataset.DatasetID != ds.ID ||
		ev.Training.TrainSteps != 2 || ev.Training.OptimSteps != 2 || pc.Sampling != privacy.SamplingServerPoisson {
		t.Fatalf("server-sampled package: evidence %+v %+v, certificate %s", ev.Dataset, ev.Training, pc.Sampling)
	}
	if err := ev.VerifyAudit(nil); err != nil {
		t.Fatal(err)
	}
	if err := ev.CheckCertificate(pc); err != nil {
		t.Fatal(err)
	}
}

// TestTrainStepBudget: train_step is refused at once when the step would
// pass the target ε, like optim_step: nothing is queued or recorded, and
// the refusal is audited.
func TestTrainStepBudget(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	s, ten := f.svc, f.tenA
	ds, err := s.CreateDataset(ctx, ten, api.CreateDatasetRequest{Examples: textRows(4, "b")})
	if err != nil {
		t.Fatal(err)
	}
	cfg := serverConfig(ds.ID, 2)
	cfg.DP.TargetEpsilon = 4
	tc, err := s.CreateTrainingClient(ctx, ten, cfg)
	if err != nil {
		t.Fatal(err)
	}
	var refused error
	steps := int64(0)
	for range 100 {
		fu, err := s.TrainStep(ctx, ten, tc.ID, api.TrainStepRequest{})
		if err != nil {
			refused = err
			break
		}
		await(t, s, ten, fu, nil, nil)
		steps++
	}
	var be *BudgetExceededError
	if steps == 0 || !errors.As(refused, &be) || be.Steps != steps || !(be.EpsilonWouldBe > 4) {
		t.Fatalf("after %d steps: %v", steps, refused)
	}
	m, err := s.DPMetrics(ctx, ten, tc.ID)
	if err != nil || m.Steps != steps || !(m.EpsilonSpent <= 4) {
		t.Fatalf("dp_metrics %+v, %v", m, err)
	}
	denied := 0
	if err := auditScan(f, func(e audit.Entry) {
		if e.Operation == opTrainStep && e.Outcome == audit.OutcomeDenied {
			denied++
		}
	}); err != nil {
		t.Fatal(err)
	}
	if denied != 1 {
		t.Fatalf("%d denied train_step entries", denied)
	}
}

// FuzzDatasetRows: whatever rows a dataset holds, validating them never
// panics, and rows that pass checkExamples and checkDatasetFor make
// train_step batches that pass checkBatch for token_ce (so a step never
// fails on a row the client creation accepted).
func FuzzDatasetRows(f *testing.F) {
	f.Add([]byte(`{"format":"tensafe-dataset/v1","examples":[{"input_ids":[256,104,105]}]}`))
	f.Add([]byte(`{"format":"tensafe-dataset/v1","examples":[{"input_ids":[1,2],"labels":[-100,2],"weights":[0,1]},{"input_ids":[3]}]}`))
	f.Add([]byte(`{"examples":[{"input_ids":[1,2],"labels":[-1,2]}]}`))
	f.Add([]byte(`{"examples":[{"input_ids":[99999999]}]}`))
	mc := model.Tiny().Config
	l, err := loss.Resolve(loss.Spec{Type: "token_ce"})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var c datasetContent
		if json.Unmarshal(data, &c) != nil {
			return
		}
		if _, _, err := checkExamples(c.Examples); err != nil {
			return
		}
		if err := checkDatasetFor(c.Examples, mc, l.Ignore(), "dp_config.dataset_id"); err != nil {
			return
		}
		idx := make([]int, len(c.Examples))
		for i := range idx {
			idx[i] = i
		}
		for _, b := range drawnBatches(c.Examples, idx) {
			if _, err := checkBatch(b, mc, true, l, nil); err != nil {
				t.Fatalf("accepted rows make a bad batch: %v", err)
			}
		}
	})
}

// TestTextDataset: text rows are tokenized by the model's tokenizer as
// untrusted text, prompt positions masked; mixing and missing fields are
// refused naming them.
func TestTextDataset(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	s, ten := f.svc, f.tenA
	ds, err := s.CreateDataset(ctx, ten, api.CreateDatasetRequest{BaseModel: "tensafe-tiny", Examples: []api.DatasetExample{
		{Text: "hi<eos>"}, {Prompt: "Q", Completion: "ok"}, {InputIDs: []int{256, 7}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if ds.Rows != 3 || ds.BaseModel != "tensafe-tiny" {
		t.Fatalf("dataset %+v", ds)
	}
	a, err := s.dataset(ctx, ten, ds.ID, "")
	if err != nil {
		t.Fatal(err)
	}
	rows, err := s.readDataset(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	bos, eos := 256, 257
	want := []api.DatasetExample{
		{InputIDs: []int{bos, 'h', 'i', '<', 'e', 'o', 's', '>', eos}}, // "<eos>" written in text stays text
		{InputIDs: []int{bos, 'Q', 'o', 'k', eos}, Labels: []int{-100, -100, 'o', 'k', eos}},
		{InputIDs: []int{256, 7}},
	}
	if got, _ := json.Marshal(rows); string(got) != string(mustMarshal(t, want)) {
		t.Fatalf("stored rows %s, want %s", got, mustMarshal(t, want))
	}
	tc, err := s.CreateTrainingClient(ctx, ten, serverConfig(ds.ID, 2))
	if err != nil {
		t.Fatal(err)
	}
	fu, err := s.TrainStep(ctx, ten, tc.ID, api.TrainStepRequest{})
	await(t, s, ten, fu, err, nil)

	for name, c := range map[string]struct {
		req  api.CreateDatasetRequest
		want string
	}{
		"no base_model":       {api.CreateDatasetRequest{Examples: []api.DatasetExample{{Text: "a"}}}, "base_model"},
		"unknown base_model":  {api.CreateDatasetRequest{BaseModel: "gpt-9", Examples: []api.DatasetExample{{Text: "a"}}}, "base_model"},
		"base_model, tokens":  {api.CreateDatasetRequest{BaseModel: "tensafe-tiny", Examples: []api.DatasetExample{{InputIDs: []int{1}}}}, "base_model"},
		"tokens and text":     {api.CreateDatasetRequest{BaseModel: "tensafe-tiny", Examples: []api.DatasetExample{{Text: "a", InputIDs: []int{1}}}}, "examples[0].input_ids"},
		"text and prompt":     {api.CreateDatasetRequest{BaseModel: "tensafe-tiny", Examples: []api.DatasetExample{{Text: "a", Prompt: "b", Completion: "c"}}}, "examples[0].text"},
		"prompt alone":        {api.CreateDatasetRequest{BaseModel: "tensafe-tiny", Examples: []api.DatasetExample{{InputIDs: []int{1}}, {Prompt: "b"}}}, "examples[1].completion"},
		"text too long":       {api.CreateDatasetRequest{BaseModel: "tensafe-tiny", Examples: []api.DatasetExample{{Text: strings.Repeat("x", MaxDatasetTextBytes+1)}}}, "examples[0].text"},
		"row longer than max": {api.CreateDatasetRequest{BaseModel: "tensafe-tiny", Examples: []api.DatasetExample{{Text: strings.Repeat("x", MaxDatasetRowTokens)}}}, "examples[0].input_ids"},
	} {
		if _, err := s.CreateDataset(ctx, ten, c.req); !isField(err, c.want) {
			t.Errorf("%s: %v, want a field error on %s", name, err, c.want)
		}
	}
}

func mustMarshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
