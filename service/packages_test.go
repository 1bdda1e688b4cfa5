package service

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"testing"

	"github.com/tensafe/tensafe/api"
	"github.com/tensafe/tensafe/audit"
	"github.com/tensafe/tensafe/engine"
	"github.com/tensafe/tensafe/model"
	"github.com/tensafe/tensafe/privacy"
	"github.com/tensafe/tensafe/safetensors"
	"github.com/tensafe/tensafe/seal"
	"github.com/tensafe/tensafe/tssp"
)

// TestBatchDigest pins tensafe-batch-digest/v1 to values computed
// independently (Python: sha256(json.dumps(batch, separators=(",", ":"),
// sort_keys=True))).
func TestBatchDigest(t *testing.T) {
	for _, c := range []struct {
		b    api.Batch
		want string
	}{
		{api.Batch{InputIDs: [][]int{{256, 104, 105}}, Labels: [][]int{{256, 104, 105}}},
			"sha256:d0d57bd8a21d986fb8360542f865d72bcb3aedad52a6111f448279c5977cebae"},
		{api.Batch{InputIDs: [][]int{{1, 2}}, Weights: [][]float64{{0.5, 1}}},
			"sha256:2dc87ecf68ab13ce41f47919864e480fea1e2626e2a495d6c5a393b7c0bcd229"},
	} {
		if got := BatchDigest(c.b); got != c.want {
			t.Errorf("BatchDigest(%+v) = %s, want %s", c.b, got, c.want)
		}
	}
}

func TestParseRecipients(t *testing.T) {
	k1, _ := seal.GenerateRecipientKey()
	k2, _ := seal.GenerateRecipientKey()
	secret, _ := k1.MarshalText()
	signer, _ := seal.GenerateSigningKey(rand.Reader)
	for _, c := range []struct {
		name   string
		in     []string
		keys   int
		tenant bool
		field  string
	}{
		{"keys and tenant", []string{k1.Public().String(), " tenant ", k2.Public().String() + "\n"}, 2, true, ""},
		{"tenant only", []string{"tenant"}, 0, true, ""},
		{"none", nil, 0, false, "recipients"},
		{"empty string", []string{""}, 0, false, "recipients[0]"},
		{"tenant twice", []string{"tenant", "tenant"}, 0, false, "recipients[1]"},
		{"same key twice", []string{k1.Public().String(), k1.Public().String()}, 0, false, "recipients[1]"},
		{"a secret key", []string{"tenant", string(secret)}, 0, false, "recipients[1]"},
		{"a signing key", []string{signer.Public().String()}, 0, false, "recipients[0]"},
		{"truncated key", []string{k1.Public().String()[:60]}, 0, false, "recipients[0]"},
		{"too many", make([]string, tssp.MaxRecipients+2), 0, false, "recipients"},
	} {
		t.Run(c.name, func(t *testing.T) {
			rs, tenant, err := parseRecipients(c.in)
			if c.field == "" {
				if err != nil || len(rs) != c.keys || tenant != c.tenant {
					t.Fatalf("got %d keys, tenant %v, %v", len(rs), tenant, err)
				}
				return
			}
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != c.field {
				t.Fatalf("error %v, want one naming %s", err, c.field)
			}
			if strings.Contains(err.Error(), string(secret[len(secret)-16:])) {
				t.Fatal("the error quotes the secret key")
			}
		})
	}
}

// trainAndSave runs steps DP steps on a new client of tenant and saves it.
func trainAndSave(t testing.TB, f *fixture, cfg api.TrainingConfig, steps int) (client string, sv api.SaveStateResult) {
	t.Helper()
	ctx := context.Background()
	c, err := f.svc.CreateTrainingClient(ctx, f.tenA, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for range steps {
		fb, err := f.svc.ForwardBackward(ctx, f.tenA, c.ID, api.ForwardBackwardRequest{Batch: textBatch("package", "me")})
		await(t, f.svc, f.tenA, fb, err, nil)
		os, err := f.svc.OptimStep(ctx, f.tenA, c.ID)
		await(t, f.svc, f.tenA, os, err, nil)
	}
	fs, err := f.svc.SaveState(ctx, f.tenA, c.ID, api.SaveStateRequest{})
	await(t, f.svc, f.tenA, fs, err, &sv)
	return c.ID, sv
}

// TestPackageUnsignedLog packages through a service whose audit log signs no
// checkpoints: the evidence proves inclusion against the unsigned root,
// which the package signature vouches for; and packaging needs a signer and
// an audit store.
func TestPackageUnsignedLog(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	client, sv := trainAndSave(t, f, tinyConfig(1, 10, 2, 100), 2)
	req := api.PackageRequest{Recipients: []string{"tenant"}}

	if _, err := f.svc.PackageArtifact(ctx, f.tenA, sv.ArtifactID, req); !errors.Is(err, ErrFailedPrecondition) {
		t.Fatalf("without a signing key: %v", err)
	}
	if _, err := f.svc.PackageSigner(); !errors.Is(err, ErrFailedPrecondition) {
		t.Fatalf("PackageSigner without a key: %v", err)
	}
	signer, _ := seal.GenerateSigningKey(rand.Reader)
	f.svc.pkg = newPackager(PackageConfig{Signer: signer})
	if _, err := f.svc.PackageArtifact(ctx, f.tenA, sv.ArtifactID, req); !errors.Is(err, ErrFailedPrecondition) {
		t.Fatalf("without an audit store: %v", err)
	}
	if _, err := f.svc.DPCertificate(ctx, f.tenA, client); !errors.Is(err, ErrFailedPrecondition) {
		t.Fatalf("certificate without an audit store: %v", err)
	}
	f.svc.pkg = newPackager(PackageConfig{Signer: signer, AuditStore: f.as})
	before, _ := f.st.ListArtifacts(ctx, f.tenA)
	if _, err := f.svc.PackageArtifact(ctx, f.tenB, sv.ArtifactID, req); !errors.Is(err, ErrNotFound) {
		t.Fatalf("tenant B: %v", err)
	}
	res, err := f.svc.PackageArtifact(ctx, f.tenA, sv.ArtifactID, api.PackageRequest{Recipients: []string{"tenant"}, Name: "mine"})
	if err != nil {
		t.Fatal(err)
	}
	after, _ := f.st.ListArtifacts(ctx, f.tenA)
	if len(after) != len(before)+1 || res.Artifact.Name != "mine" || res.Artifact.Kind != api.ArtifactKindTSSP {
		t.Fatalf("artifacts %d → %d, result %+v", len(before), len(after), res)
	}
	rc, _, err := f.svc.OpenArtifact(ctx, f.tenA, res.Artifact.ID)
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
	a, err := tssp.Load(ctx, p, []*seal.VerifyingKey{signer.Public()}, tssp.TenantIdentity(f.svc.keys, f.tenA))
	if err != nil {
		t.Fatal(err)
	}
	ev, err := tssp.ParseEvidence(a.Evidence)
	if err != nil {
		t.Fatal(err)
	}
	if ev.Audit.Checkpoint != "" || len(ev.Audit.Proofs) != 1+2*2+1 || ev.Training.Clients[0] != client {
		t.Fatalf("evidence %+v", ev)
	}
	if err := ev.VerifyAudit(nil); err != nil {
		t.Fatal(err)
	}
	if err := ev.VerifyAudit(signer.Public()); !errors.Is(err, tssp.ErrEvidence) {
		t.Fatalf("a key without a checkpoint: %v", err)
	}
	cert, err := privacy.ParseCertificate(a.Certificate)
	if err != nil || cert.Steps != 2 || cert.TenSafeVersion != "dev" || cert.AdapterHash != res.WeightsSHA256 {
		t.Fatalf("certificate %+v, %v", cert, err)
	}
	// Packaging is on the audit record, metadata only.
	var rec *audit.Entry
	err = auditScan(f, func(e audit.Entry) {
		if e.Operation == "artifact.package" && e.Outcome == audit.OutcomeSuccess {
			rec = &e
		}
	})
	if err != nil || rec == nil || rec.Details["package_id"] != res.PackageID || rec.Resource != sv.ArtifactID {
		t.Fatalf("audit entry %+v, %v", rec, err)
	}
	// A failed request changes nothing.
	if _, err := f.svc.PackageArtifact(ctx, f.tenA, sv.ArtifactID, api.PackageRequest{Recipients: []string{"nobody"}}); err == nil {
		t.Fatal("a bad recipient was accepted")
	}
	if now, _ := f.st.ListArtifacts(ctx, f.tenA); len(now) != len(after) {
		t.Fatalf("a refused request stored an artifact")
	}
}

// BenchmarkPackageArtifact packages a saved tensafe-tiny checkpoint through
// the service: open the sealed checkpoint, render the PEFT adapter, read
// the audit log and build the inclusion proofs, certify, encrypt to one
// recipient and the tenant, sign, and seal the package as a new artifact.
func BenchmarkPackageArtifact(b *testing.B) {
	allModules := []string{"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
	for _, c := range []struct {
		rank    int
		modules []string
	}{{8, nil}, {64, allModules}, {256, allModules}} {
		b.Run(fmt.Sprintf("rank%d_modules%d", c.rank, max(len(c.modules), 4)), func(b *testing.B) {
			f := newFixture(b)
			signer, _ := seal.GenerateSigningKey(rand.Reader)
			f.svc.pkg = newPackager(PackageConfig{Signer: signer, AuditStore: f.as})
			cfg := tinyConfig(1, 50, 2, 100)
			cfg.LoRA.Rank, cfg.LoRA.TargetModules = c.rank, c.modules
			_, sv := trainAndSave(b, f, cfg, 4)
			rk, _ := seal.GenerateRecipientKey()
			req := api.PackageRequest{Recipients: []string{rk.Public().String(), "tenant"}}
			ctx := context.Background()
			var size int64
			b.ResetTimer()
			for b.Loop() {
				res, err := f.svc.PackageArtifact(ctx, f.tenA, sv.ArtifactID, req)
				if err != nil {
					b.Fatal(err)
				}
				size = res.Artifact.Size
			}
			b.ReportMetric(float64(size), "package-bytes")
			b.ReportMetric(float64(sv.Size), "checkpoint-bytes")
		})
	}
}

// FuzzParseRecipients feeds arbitrary recipient strings (untrusted request
// fields) to the parser: nothing may panic, every error names a field, and
// no error quotes what it refuses (it might be a secret key sent by
// mistake).
func FuzzParseRecipients(f *testing.F) {
	k, _ := seal.GenerateRecipientKey()
	secret, _ := k.MarshalText()
	f.Add(k.Public().String(), "tenant")
	f.Add(string(secret), "")
	f.Add(seal.RecipientPublicKeyPrefix+"AAAA", "tenant")
	f.Add("tenant", "tenant")
	f.Fuzz(func(t *testing.T, a, b string) {
		_, _, err := parseRecipients([]string{a, b})
		if err == nil {
			return
		}
		var fe *FieldError
		if !errors.As(err, &fe) || !strings.HasPrefix(fe.Field, "recipients") {
			t.Fatalf("error %v names no recipients field", err)
		}
		for _, v := range []string{a, b} {
			v = strings.TrimSpace(v)
			if len(v) >= 24 && strings.Contains(err.Error(), v) && !strings.Contains(seal.RecipientPublicKeyPrefix, v) {
				t.Fatalf("the error quotes its input: %v", err)
			}
		}
	})
}

// TestPackageCustomLoss: forward_backward_custom batches count in the
// dataset fingerprint (they record their digest too); a custom batch whose
// client reported no losses stays out of the loss summary.
func TestPackageCustomLoss(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	signer, _ := seal.GenerateSigningKey(rand.Reader)
	f.svc.pkg = newPackager(PackageConfig{Signer: signer, AuditStore: f.as})
	c, err := f.svc.CreateTrainingClient(ctx, f.tenA, tinyConfig(1, 10, 2, 100))
	if err != nil {
		t.Fatal(err)
	}
	b := textBatch("ab", "cd")
	grads := [][]float64{{0, -1, -1}, {0, -1, -1}}
	for _, losses := range [][]float64{nil, {1.5, 2.5}} {
		fb, err := f.svc.ForwardBackwardCustom(ctx, f.tenA, c.ID, api.ForwardBackwardCustomRequest{Batch: b, LogprobGrads: grads, Losses: losses})
		await(t, f.svc, f.tenA, fb, err, nil)
		os, err := f.svc.OptimStep(ctx, f.tenA, c.ID)
		await(t, f.svc, f.tenA, os, err, nil)
	}
	var sv api.SaveStateResult
	fs, err := f.svc.SaveState(ctx, f.tenA, c.ID, api.SaveStateRequest{})
	await(t, f.svc, f.tenA, fs, err, &sv)
	res, err := f.svc.PackageArtifact(ctx, f.tenA, sv.ArtifactID, api.PackageRequest{Recipients: []string{"tenant"}})
	if err != nil {
		t.Fatal(err)
	}
	rc, _, err := f.svc.OpenArtifact(ctx, f.tenA, res.Artifact.ID)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(rc)
	rc.Close()
	p, err := tssp.Read(bytes.NewReader(raw), int64(len(raw)))
	if err != nil {
		t.Fatal(err)
	}
	a, err := tssp.Load(ctx, p, []*seal.VerifyingKey{signer.Public()}, tssp.TenantIdentity(f.svc.keys, f.tenA))
	if err != nil {
		t.Fatal(err)
	}
	ev, err := tssp.ParseEvidence(a.Evidence)
	if err != nil {
		t.Fatal(err)
	}
	d := BatchDigest(b)
	if ev.Dataset.Batches != 2 || ev.Dataset.BatchesWithoutDigest != 0 || ev.Dataset.Fingerprint != tssp.DatasetFingerprint([]string{d, d}) ||
		ev.Loss.Count != 1 || ev.Loss.First != 2 {
		t.Fatalf("evidence dataset %+v, loss %+v", ev.Dataset, ev.Loss)
	}
	if err := ev.VerifyAudit(nil); err != nil {
		t.Fatal(err)
	}
}

// TestCheckpointAdapter: the PEFT files rendered from an engine state equal
// those of the engine's own adapter, and a state that does not fit the base
// model is refused, naming what is wrong.
func TestCheckpointAdapter(t *testing.T) {
	m := model.Tiny()
	eng, err := engine.New(m, engine.Config{LoRA: model.LoRAConfig{Rank: 2, Alpha: 4}, Optimizer: engine.DefaultOptimizer(), Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	var state bytes.Buffer
	if err := eng.Save(&state); err != nil {
		t.Fatal(err)
	}
	cfg, w, hash, err := checkpointAdapter(state.Bytes(), m.Config, "tensafe-tiny")
	if err != nil {
		t.Fatal(err)
	}
	cfg2, w2, hash2, err := adapterFiles(eng.Adapter(), "tensafe-tiny")
	if err != nil || !bytes.Equal(cfg, cfg2) || !bytes.Equal(w, w2) || hash != hash2 {
		t.Fatalf("rendered from the state and from the engine differ (%v)", err)
	}
	f, err := safetensors.Parse(state.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	name := "lora/" + eng.Adapter().Names[0]
	for _, c := range []struct {
		name   string
		change func(ts map[string]*safetensors.Tensor, meta map[string]string)
		want   string
	}{
		{"missing tensor", func(ts map[string]*safetensors.Tensor, _ map[string]string) { delete(ts, name) }, "missing tensor"},
		{"wrong shape", func(ts map[string]*safetensors.Tensor, _ map[string]string) {
			t := *ts[name]
			t.Shape = []int{t.Shape[1], t.Shape[0]}
			ts[name] = &t
		}, "want F32"},
		{"other format", func(_ map[string]*safetensors.Tensor, meta map[string]string) {
			meta["tensafe"] = strings.Replace(meta["tensafe"], engine.StateFormat, "tensafe-engine-state/v9", 1)
		}, "format"},
		{"other base model", func(_ map[string]*safetensors.Tensor, meta map[string]string) {
			meta["tensafe"] = strings.Replace(meta["tensafe"], `"base_params":"`, `"base_params":"1`, 1)
		}, "parameters"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ts := map[string]*safetensors.Tensor{}
			for k, v := range f.Tensors {
				ts[k] = v
			}
			meta := map[string]string{"tensafe": f.Metadata["tensafe"]}
			c.change(ts, meta)
			var b bytes.Buffer
			if err := safetensors.Write(&b, ts, meta); err != nil {
				t.Fatal(err)
			}
			if _, _, _, err := checkpointAdapter(b.Bytes(), m.Config, "tensafe-tiny"); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error mentioning %q", err, c.want)
			}
		})
	}
	// A state saved before tensafe-engine-state/v2 (no optimizer_state
	// field) still packages, to the same adapter bytes.
	v1 := strings.Replace(f.Metadata["tensafe"], engine.StateFormat, engine.StateFormatV1, 1)
	v1 = regexp.MustCompile(`,"optimizer_state":"[^"]*"`).ReplaceAllString(v1, "")
	if v1 == f.Metadata["tensafe"] || strings.Contains(v1, "optimizer_state") {
		t.Fatalf("could not rewrite the header to v1: %s", v1)
	}
	var b1 bytes.Buffer
	if err := safetensors.Write(&b1, f.Tensors, map[string]string{"tensafe": v1}); err != nil {
		t.Fatal(err)
	}
	if _, w1, hash1, err := checkpointAdapter(b1.Bytes(), m.Config, "tensafe-tiny"); err != nil || !bytes.Equal(w1, w) || hash1 != hash {
		t.Fatalf("v1 state: %v", err)
	}
	if _, _, _, err := checkpointAdapter([]byte("not a state"), m.Config, "tensafe-tiny"); err == nil {
		t.Fatal("garbage accepted")
	}
}
