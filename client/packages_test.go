package client_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/tensafe/tensafe/api"
	"github.com/tensafe/tensafe/audit"
	"github.com/tensafe/tensafe/client"
	"github.com/tensafe/tensafe/engine"
	"github.com/tensafe/tensafe/keys"
	"github.com/tensafe/tensafe/model"
	"github.com/tensafe/tensafe/privacy"
	"github.com/tensafe/tensafe/safetensors"
	"github.com/tensafe/tensafe/seal"
	"github.com/tensafe/tensafe/servertest"
	"github.com/tensafe/tensafe/service"
	"github.com/tensafe/tensafe/store"
	"github.com/tensafe/tensafe/tssp"
)

// pkgEnv is a real server (servertest) whose audit log signs checkpoints
// and whose service signs packages.
type pkgEnv struct {
	url                 string
	tenantA             string
	trainerA, viewerA   string
	trainerB            string
	auditKey, signerKey *seal.VerifyingKey
	keys                keys.Provider
}

func newPkgEnv(t testing.TB) *pkgEnv {
	t.Helper()
	auditSigner, err := seal.GenerateSigningKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pkgSigner, err := seal.GenerateSigningKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s := servertest.New(t, servertest.WithOrigin("tensafe.test/packages"),
		servertest.WithAuditSigner(auditSigner), servertest.WithPackageSigner(pkgSigner))
	a, b := s.Tenant(t, "A"), s.Tenant(t, "B")
	return &pkgEnv{
		url:       s.URL,
		tenantA:   a,
		trainerA:  s.Key(t, a, store.RoleTrainer),
		viewerA:   s.Key(t, a, store.RoleViewer),
		trainerB:  s.Key(t, b, store.RoleTrainer),
		auditKey:  auditSigner.Public(),
		signerKey: pkgSigner.Public(),
		keys:      s.Keys,
	}
}

func (e *pkgEnv) client(t testing.TB, key string) *client.ServiceClient {
	t.Helper()
	c, err := client.New(e.url, key)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// download reads artifact id whole.
func download(t testing.TB, c *client.ServiceClient, id string) []byte {
	t.Helper()
	rc, err := c.DownloadArtifact(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func greedy(t testing.TB, e *engine.Engine, prompt []int) []int {
	t.Helper()
	seqs, err := e.Sample(context.Background(), engine.SampleRequest{Prompt: prompt, MaxTokens: 12, N: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return seqs[0].Tokens
}

func TestPackageCheckpoint(t *testing.T) {
	e := newPkgEnv(t)
	ctx := context.Background()
	c := e.client(t, e.trainerA)

	// The signer, without an API key.
	sg, err := e.client(t, "").Signer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pinned, err := seal.ParseVerifyingKeyText(sg.PublicKey)
	if err != nil || !pinned.Equal(e.signerKey) || sg.KeyID != e.signerKey.KeyID() || sg.AuditPublicKey != e.auditKey.String() {
		t.Fatalf("signer %+v: %v", sg, err)
	}

	tc, err := c.CreateTrainingClient(ctx, tinyConfig(1, 8))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tc.DPCertificate(ctx); !client.IsFailedPrecondition(err) {
		t.Fatalf("certificate before any step: %v", err)
	}
	m := &api.DPMetrics{}
	const steps = 3
	for range steps {
		m = step(t, tc, m)
	}
	prompt := []int{256, 104, 101}
	fs, err := tc.Sample(ctx, api.SampleRequest{PromptTokens: prompt, MaxTokens: 12})
	served := result(t, fs, err).Sequences[0].Tokens
	fsv, err := tc.SaveState(ctx, "three-steps")
	sv := result(t, fsv, err)

	// The live certificate.
	certJSON, err := tc.DPCertificate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	live, err := privacy.ParseCertificate(certJSON)
	if err != nil {
		t.Fatal(err)
	}
	if err := live.Verify(); err != nil {
		t.Fatal(err)
	}
	// Another tenant's key: 404, exactly like a missing client; a viewer may read it.
	for key, want := range map[string]int{e.trainerB: http.StatusNotFound, e.viewerA: http.StatusOK} {
		req, _ := http.NewRequest(http.MethodGet, e.url+"/api/v1/training_clients/"+tc.ID+"/dp_certificate", nil)
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want || want == http.StatusOK && !bytes.Equal(body[:bytes.Index(body, []byte(`"issued_at"`))], certJSON[:bytes.Index(certJSON, []byte(`"issued_at"`))]) {
			t.Fatalf("dp_certificate with another key: %d %s, want %d", resp.StatusCode, body, want)
		}
	}
	if live.Steps != steps || live.Epsilon != m.EpsilonSpent || live.SessionID != tc.ID || live.Sampling != privacy.SamplingClientDeclared ||
		live.DatasetSize != 100 || live.ClippingNorm != 1 {
		t.Fatalf("live certificate %+v, metrics %+v", live, m)
	}

	// Package for a recipient and the tenant itself.
	rk, err := seal.GenerateRecipientKey()
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.PackageArtifact(ctx, sv.ArtifactID, api.PackageRequest{Recipients: []string{rk.Public().String(), "tenant"}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Artifact.Kind != api.ArtifactKindTSSP || res.Signer != e.signerKey.KeyID() || res.Steps != steps ||
		res.Epsilon != live.Epsilon || !slices.Equal(res.Recipients, []string{rk.Public().KeyID(), keys.KeyIDFor(e.tenantA)}) ||
		res.Artifact.Name != "three-steps.tssp" {
		t.Fatalf("package result %+v", res)
	}
	raw := download(t, c, res.Artifact.ID)
	if int64(len(raw)) != res.Artifact.Size {
		t.Fatalf("downloaded %d bytes, artifact says %d", len(raw), res.Artifact.Size)
	}
	p, err := tssp.Read(bytes.NewReader(raw), int64(len(raw)))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Verify(ctx, []*seal.VerifyingKey{pinned}); err != nil {
		t.Fatal(err)
	}
	if p.Manifest().PackageID != res.PackageID || p.Manifest().Weights.PlaintextSHA256 != res.WeightsSHA256 {
		t.Fatalf("manifest %+v vs result %+v", p.Manifest(), res)
	}
	a, err := tssp.Load(ctx, p, []*seal.VerifyingKey{pinned}, tssp.RecipientIdentity(rk))
	if err != nil {
		t.Fatal(err)
	}

	// The packaged certificate certifies exactly these weights, and agrees
	// with the live one (nothing ran between save_state and the request).
	cert, err := privacy.ParseCertificate(a.Certificate)
	if err != nil {
		t.Fatal(err)
	}
	if cert.AdapterHash != res.WeightsSHA256 || cert.AdapterHash != live.AdapterHash || cert.Epsilon != live.Epsilon ||
		cert.DatasetFingerprint != live.DatasetFingerprint || cert.Steps != steps {
		t.Fatalf("packaged certificate %+v, live %+v", cert, live)
	}

	// Evidence: the training operations' entries, proven in the signed log.
	ev, err := tssp.ParseEvidence(a.Evidence)
	if err != nil {
		t.Fatal(err)
	}
	if err := ev.VerifyAudit(e.auditKey); err != nil {
		t.Fatal(err)
	}
	if err := ev.CheckCertificate(cert); err != nil {
		t.Fatal(err)
	}
	var ops []string
	for _, pr := range ev.Audit.Proofs {
		ops = append(ops, strings.TrimPrefix(pr.Entry.Operation, "training."))
	}
	want := []string{"create_client"}
	for range steps {
		want = append(want, "forward_backward", "optim_step")
	}
	want = append(want, "save_state")
	if !slices.Equal(ops, want) {
		t.Fatalf("proven operations %v, want %v", ops, want)
	}
	if ev.Dataset.Fingerprint != cert.DatasetFingerprint || ev.Dataset.Batches != steps || ev.Dataset.BatchesWithoutDigest != 0 ||
		ev.Loss.Count != steps || ev.Training.OptimSteps != steps || ev.Checkpoint.ArtifactID != sv.ArtifactID ||
		ev.Checkpoint.ContentHash != sv.ContentHash || !slices.Equal(ev.Training.Clients, []string{tc.ID}) {
		t.Fatalf("evidence %+v", ev)
	}
	digest := service.BatchDigest(textBatch("hello", "world"))
	if got := ev.Audit.Proofs[1].Entry.Details[tssp.BatchDigestDetail]; got != digest {
		t.Fatalf("batch digest %s, want %s", got, digest)
	}
	if tssp.DatasetFingerprint([]string{digest, digest, digest}) != cert.DatasetFingerprint {
		t.Fatal("dataset fingerprint is not the combination of the batch digests")
	}
	otherAudit, _ := seal.GenerateSigningKey(rand.Reader)
	if err := ev.VerifyAudit(otherAudit.Public()); !errors.Is(err, tssp.ErrEvidence) || !errors.Is(err, audit.ErrForgedCheckpoint) {
		t.Fatalf("evidence against another audit key: %v", err)
	}
	forged, _ := tssp.ParseEvidence(a.Evidence)
	forged.Audit.Proofs[1].Entry.Details["batch_size"] = "3"
	if err := forged.VerifyAudit(e.auditKey); !errors.Is(err, tssp.ErrEvidence) || !errors.Is(err, audit.ErrProof) {
		t.Fatalf("altered proven entry: %v", err)
	}
	forged, _ = tssp.ParseEvidence(a.Evidence)
	forged.Dataset.Fingerprint = tssp.DatasetFingerprint(nil)
	if err := forged.VerifyAudit(e.auditKey); !errors.Is(err, tssp.ErrEvidence) {
		t.Fatalf("altered fingerprint: %v", err)
	}

	// The opened adapter samples exactly as the server does.
	bm := model.Tiny()
	stf, err := safetensors.Parse(a.Weights)
	if err != nil {
		t.Fatal(err)
	}
	lora, err := model.ParsePEFT(a.Config, stf, bm.Config)
	if err != nil {
		t.Fatal(err)
	}
	nonzero := false
	for n, v := range lora.Values {
		if strings.Contains(n, "lora_B") && slices.ContainsFunc(v, func(x float32) bool { return x != 0 }) {
			nonzero = true
		}
	}
	if !nonzero {
		t.Fatal("the packaged adapter is untrained (B = 0)")
	}
	eng, err := engine.NewWithAdapter(bm, engine.Config{LoRA: lora.Config, Optimizer: engine.DefaultOptimizer()}, lora)
	if err != nil {
		t.Fatal(err)
	}
	if got := greedy(t, eng, prompt); !slices.Equal(got, served) {
		t.Fatalf("greedy tokens with the opened adapter %v, through the server %v", got, served)
	}

	// The tenant's own KEK opens it too; a stranger's key does not.
	if _, err := tssp.Load(ctx, p, []*seal.VerifyingKey{pinned}, tssp.TenantIdentity(e.keys, e.tenantA)); err != nil {
		t.Fatalf("tenant identity: %v", err)
	}
	stranger, _ := seal.GenerateRecipientKey()
	if _, err := tssp.Load(ctx, p, []*seal.VerifyingKey{pinned}, tssp.RecipientIdentity(stranger)); !errors.Is(err, tssp.ErrNotRecipient) {
		t.Fatalf("stranger: %v", err)
	}
	// Tampered in transit: a byte of the encrypted weights, or an untrusted signer.
	bad := bytes.Clone(raw)
	bad[len(bad)-1024-100] ^= 1
	if q, err := tssp.Read(bytes.NewReader(bad), int64(len(bad))); err == nil {
		if err := q.Verify(ctx, []*seal.VerifyingKey{pinned}); !errors.Is(err, tssp.ErrMemberHash) {
			t.Fatalf("tampered weights: %v", err)
		}
	} else if !errors.Is(err, tssp.ErrMalformed) {
		t.Fatalf("tampered weights: %v", err)
	}
	if err := p.Verify(ctx, []*seal.VerifyingKey{otherAudit.Public()}); !errors.Is(err, tssp.ErrUntrustedSigner) {
		t.Fatalf("untrusted signer: %v", err)
	}

	// Errors: another tenant's artifact, a bad recipient, a package of a
	// package, a viewer.
	if _, err := e.client(t, e.trainerB).PackageArtifact(ctx, sv.ArtifactID, api.PackageRequest{Recipients: []string{"tenant"}}); !client.IsNotFound(err) {
		t.Errorf("tenant B packaging A's checkpoint: %v", err)
	}
	_, err = c.PackageArtifact(ctx, sv.ArtifactID, api.PackageRequest{Recipients: []string{"tenant", "not-a-key"}})
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.Status != 400 || ae.Field != "recipients[1]" {
		t.Errorf("bad recipient: %v", err)
	}
	secret, _ := rk.MarshalText()
	_, err = c.PackageArtifact(ctx, sv.ArtifactID, api.PackageRequest{Recipients: []string{string(secret)}})
	if !errors.As(err, &ae) || ae.Field != "recipients[0]" || strings.Contains(err.Error(), string(secret[len(secret)-20:])) {
		t.Errorf("secret key as recipient: %v", err)
	}
	if _, err := c.PackageArtifact(ctx, res.Artifact.ID, api.PackageRequest{Recipients: []string{"tenant"}}); !errors.As(err, &ae) || ae.Status != 400 || ae.Field != "artifact_id" {
		t.Errorf("packaging a package: %v", err)
	}
	if _, err := e.client(t, e.viewerA).PackageArtifact(ctx, sv.ArtifactID, api.PackageRequest{Recipients: []string{"tenant"}}); !client.IsPermissionDenied(err) {
		t.Errorf("viewer packaging: %v", err)
	}
	if _, err := e.client(t, e.trainerB).PackageArtifact(ctx, "art-missing", api.PackageRequest{Recipients: []string{"tenant"}}); !client.IsNotFound(err) {
		t.Errorf("missing artifact: %v", err)
	}

	// A checkpoint loaded into another client: the evidence follows it back.
	tc2, err := c.CreateTrainingClient(ctx, tinyConfig(1, 8))
	if err != nil {
		t.Fatal(err)
	}
	fl, err := tc2.LoadState(ctx, sv.ArtifactID)
	result(t, fl, err)
	m2, _ := tc2.DPMetrics(ctx)
	step(t, tc2, m2)
	fsv2, err := tc2.SaveState(ctx, "")
	sv2 := result(t, fsv2, err)
	res2, err := c.PackageArtifact(ctx, sv2.ArtifactID, api.PackageRequest{Recipients: []string{"tenant"}})
	if err != nil {
		t.Fatal(err)
	}
	p2, err := tssp.Read(bytes.NewReader(download(t, c, res2.Artifact.ID)), res2.Artifact.Size)
	if err != nil {
		t.Fatal(err)
	}
	a2, err := tssp.Load(ctx, p2, []*seal.VerifyingKey{pinned}, tssp.TenantIdentity(e.keys, e.tenantA))
	if err != nil {
		t.Fatal(err)
	}
	ev2, err := tssp.ParseEvidence(a2.Evidence)
	if err != nil {
		t.Fatal(err)
	}
	if err := ev2.VerifyAudit(e.auditKey); err != nil {
		t.Fatal(err)
	}
	c2, err := privacy.ParseCertificate(a2.Certificate)
	if err == nil {
		err = ev2.CheckCertificate(c2)
	}
	if err != nil {
		t.Fatalf("certificate after load_state against its evidence: %v", err)
	}
	if !slices.Equal(ev2.Training.Clients, []string{tc.ID, tc2.ID}) || ev2.Training.OptimSteps != steps+1 || ev2.Dataset.Batches != steps+1 || res2.Steps != steps+1 {
		t.Fatalf("evidence after load_state: clients %v, %d steps, %d batches (result %+v)", ev2.Training.Clients, ev2.Training.OptimSteps, ev2.Dataset.Batches, res2)
	}
	var cert2 privacy.Certificate
	if err := json.Unmarshal(a2.Certificate, &cert2); err != nil || cert2.Steps != steps+1 || cert2.DatasetFingerprint != ev2.Dataset.Fingerprint {
		t.Fatalf("certificate after load_state %+v, %v", cert2, err)
	}
}

// TestPackageServerSampled: a server-sampled checkpoint packages end to
// end through a real server: register a dataset, train three train_steps,
// save, package, download, verify, open. The certificate says
// server-poisson with the dataset's content hash as fingerprint, and the
// evidence (tensafe-tssp-evidence/v2) proves exactly those train_steps on
// that dataset in the signed audit log.
func TestPackageServerSampled(t *testing.T) {
	e := newPkgEnv(t)
	ctx := context.Background()
	c := e.client(t, e.trainerA)
	const rows, batch, steps = 16, 4, 3
	ds, err := c.CreateDataset(ctx, api.CreateDatasetRequest{Name: "rows", Examples: datasetRows(rows)})
	if err != nil {
		t.Fatal(err)
	}
	cfg := tinyConfig(1, 50)
	cfg.DP.DatasetSize, cfg.DP.ExpectedBatchSize = 0, batch
	cfg.DP.Sampling, cfg.DP.DatasetID = api.SamplingServer, ds.ID
	tc, err := c.CreateTrainingClient(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	examples := int64(0)
	for range steps {
		f, err := tc.TrainStep(ctx, nil)
		examples += int64(result(t, f, err).Examples)
	}
	fsv, err := tc.SaveState(ctx, "server-sampled")
	sv := result(t, fsv, err)

	rk, err := seal.GenerateRecipientKey()
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.PackageArtifact(ctx, sv.ArtifactID, api.PackageRequest{Recipients: []string{rk.Public().String()}})
	if err != nil {
		t.Fatalf("packaging a server-sampled checkpoint: %v", err)
	}
	if res.Steps != steps || res.Artifact.Kind != api.ArtifactKindTSSP {
		t.Fatalf("package result %+v", res)
	}
	raw := download(t, c, res.Artifact.ID)
	p, err := tssp.Read(bytes.NewReader(raw), int64(len(raw)))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Verify(ctx, []*seal.VerifyingKey{e.signerKey}); err != nil {
		t.Fatal(err)
	}
	a, err := tssp.Load(ctx, p, []*seal.VerifyingKey{e.signerKey}, tssp.RecipientIdentity(rk))
	if err != nil {
		t.Fatal(err)
	}
	cert, err := privacy.ParseCertificate(a.Certificate)
	if err != nil {
		t.Fatal(err)
	}
	if cert.Sampling != privacy.SamplingServerPoisson || cert.DatasetFingerprint != ds.ContentHash || cert.DatasetSize != rows ||
		cert.Steps != steps || cert.AdapterHash != res.WeightsSHA256 || cert.SessionID != tc.ID {
		t.Fatalf("certificate %+v", cert)
	}
	ev, err := tssp.ParseEvidence(a.Evidence)
	if err != nil {
		t.Fatal(err)
	}
	if ev.Format != tssp.EvidenceFormatV2 {
		t.Fatalf("evidence format %q", ev.Format)
	}
	if err := ev.VerifyAudit(e.auditKey); err != nil {
		t.Fatal(err)
	}
	if err := ev.CheckCertificate(cert); err != nil {
		t.Fatal(err)
	}
	var ops []string
	for _, pr := range ev.Audit.Proofs {
		ops = append(ops, strings.TrimPrefix(pr.Entry.Operation, "training."))
		if pr.Entry.Operation == "training.train_step" && pr.Entry.Details[tssp.DatasetHashDetail] != ds.ContentHash {
			t.Fatalf("train_step entry %v", pr.Entry.Details)
		}
	}
	if want := []string{"create_client", "train_step", "train_step", "train_step", "save_state"}; !slices.Equal(ops, want) {
		t.Fatalf("proven operations %v, want %v", ops, want)
	}
	d := ev.Dataset
	if d.Sampling != privacy.SamplingServerPoisson || d.DatasetID != ds.ID || d.ContentHash != ds.ContentHash || d.Fingerprint != ds.ContentHash ||
		d.DigestFormat != tssp.DatasetHashFormat || d.Batches != steps || ev.Training.TrainSteps != steps || ev.Training.OptimSteps != steps ||
		ev.Training.ForwardBackward != 0 || ev.Training.Examples != examples {
		t.Fatalf("evidence dataset %+v, training %+v", d, ev.Training)
	}

	// Another dataset's hash in the evidence is caught (the tamper matrix
	// of package tssp covers the rest).
	forged, _ := tssp.ParseEvidence(a.Evidence)
	forged.Dataset.ContentHash, forged.Dataset.Fingerprint = service.BatchDigest(textBatch("x")), service.BatchDigest(textBatch("x"))
	if err := forged.VerifyAudit(e.auditKey); !errors.Is(err, tssp.ErrEvidence) || !errors.Is(err, tssp.ErrDatasetHash) {
		t.Fatalf("another dataset hash: %v", err)
	}

	// The opened adapter is the trained one.
	stf, err := safetensors.Parse(a.Weights)
	if err != nil {
		t.Fatal(err)
	}
	lora, err := model.ParsePEFT(a.Config, stf, model.Tiny().Config)
	if err != nil {
		t.Fatal(err)
	}
	if examples > 0 && !slices.ContainsFunc(lora.Names, func(n string) bool {
		return strings.Contains(n, "lora_B") && slices.ContainsFunc(lora.Values[n], func(x float32) bool { return x != 0 })
	}) {
		t.Fatal("the packaged adapter is untrained (B = 0)")
	}
}
