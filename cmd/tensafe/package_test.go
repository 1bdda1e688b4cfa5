package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tensafe/tensafe/api"
	"github.com/tensafe/tensafe/client"
	"github.com/tensafe/tensafe/model"
	"github.com/tensafe/tensafe/privacy"
	"github.com/tensafe/tensafe/tssp"
)

func runPackageCLI(t *testing.T, args ...string) (string, int, error) {
	t.Helper()
	out, err := runCLI(t, args...)
	code := 0
	if err != nil {
		code = exitCode(err)
	}
	return out, code, err
}

// trainedAdapter writes a tensafe-tiny PEFT adapter whose B matrices are
// nonzero, so that it changes what the model says, and a DP certificate
// for it.
func trainedAdapter(t *testing.T, dir string) (adapterDir, certFile string) {
	t.Helper()
	l, err := model.NewLoRA(model.TinyConfig(), model.LoRAConfig{Rank: 4, Alpha: 8}, 3)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	for _, name := range l.Names {
		if strings.Contains(name, "lora_B") {
			for i := range l.Values[name] {
				l.Values[name][i] = float32(r.NormFloat64())
			}
		}
	}
	adapterDir = filepath.Join(dir, "adapter")
	if err := l.SavePEFT(adapterDir, model.TinyName); err != nil {
		t.Fatal(err)
	}
	w, err := os.ReadFile(filepath.Join(adapterDir, "adapter_model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256(w)
	b, err := privacy.NewBudget(privacy.BudgetConfig{TargetEpsilon: 8, Delta: 1e-5})
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		if err := b.RecordStep(0.01, 1.2); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Date(2026, 11, 27, 6, 0, 0, 0, time.UTC)
	c, err := privacy.NewCertificate(b, privacy.CertificateInput{
		Sampling: privacy.SamplingServerPoisson, DatasetSize: 1000, ClippingNorm: 1, TenSafeVersion: version,
		AdapterHash: "sha256:" + hex.EncodeToString(h[:]), DatasetFingerprint: "sha256:" + strings.Repeat("ab", 32),
		StartedAt: start, FinishedAt: start.Add(time.Minute), IssuedAt: start.Add(2 * time.Minute),
	})
	if err != nil {
		t.Fatal(err)
	}
	cj, err := c.CanonicalJSON()
	if err != nil {
		t.Fatal(err)
	}
	certFile = filepath.Join(dir, "dp_certificate.json")
	if err := os.WriteFile(certFile, cj, 0o644); err != nil {
		t.Fatal(err)
	}
	return adapterDir, certFile
}

func sampleTokens(t *testing.T, args ...string) []any {
	t.Helper()
	out, _, err := runPackageCLI(t, append([]string{"sample", "--model", model.TinyName, "--prompt", "hello", "--max-tokens", "12", "--json"}, args...)...)
	if err != nil {
		t.Fatalf("sample %v: %v\n%s", args, err, out)
	}
	var res struct {
		Sequences []map[string]any `json:"sequences"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || len(res.Sequences) != 1 {
		t.Fatalf("sample output %q: %v", out, err)
	}
	toks, _ := res.Sequences[0]["tokens"].([]any)
	if len(toks) == 0 {
		t.Fatalf("no tokens in %q", out)
	}
	return toks
}

// TestPackageRoundTripCLI: create → verify → open → sample gives the same
// greedy tokens as sampling with the original adapter, and the edge loader
// refuses untrusted and tampered packages.
func TestPackageRoundTripCLI(t *testing.T) {
	dir := t.TempDir()
	adapterDir, certFile := trainedAdapter(t, dir)
	evidence := filepath.Join(dir, "evidence.json")
	os.WriteFile(evidence, []byte(`{"steps":20,"loss":{"first":5.6,"last":5.1}}`), 0o644)
	for _, k := range []string{"signer", "other"} {
		if out, _, err := runPackageCLI(t, "keys", "signer", "new", "--out", filepath.Join(dir, k)); err != nil {
			t.Fatal(err, out)
		}
	}
	for _, k := range []string{"alice", "bob", "eve"} {
		if out, _, err := runPackageCLI(t, "keys", "recipient", "new", "--out", filepath.Join(dir, k)); err != nil {
			t.Fatal(err, out)
		}
	}
	pkg := filepath.Join(dir, "model.tssp")
	out, _, err := runPackageCLI(t, "package", "create", "--adapter", adapterDir, "--base-model", model.TinyName,
		"--dp-certificate", certFile, "--evidence", evidence, "--signer", filepath.Join(dir, "signer.sec"),
		"--recipient", filepath.Join(dir, "alice.pub"), "--recipient", filepath.Join(dir, "bob.pub"), "--out", pkg)
	if err != nil {
		t.Fatal(err, out)
	}
	// --out never overwrites.
	if _, code, err := runPackageCLI(t, "package", "create", "--adapter", adapterDir, "--base-model", model.TinyName,
		"--signer", filepath.Join(dir, "signer.sec"), "--recipient", filepath.Join(dir, "alice.pub"), "--out", pkg); err == nil || code == 0 {
		t.Fatal("create over an existing package succeeded")
	}
	if _, code, err := runPackageCLI(t, "package", "create", "--artifact", "ckpt-1", "--recipient", filepath.Join(dir, "alice.pub"),
		"--out", filepath.Join(dir, "x.tssp")); err == nil || code != 2 || !strings.Contains(err.Error(), "--server") {
		t.Fatalf("--artifact: code %d, err %v", code, err)
	}

	for flag, file := range map[string]string{"--evidence": filepath.Join(dir, "signer.pub"), "--dp-certificate": evidence} {
		_, _, err := runPackageCLI(t, "package", "create", "--adapter", adapterDir, "--base-model", model.TinyName,
			"--signer", filepath.Join(dir, "signer.sec"), "--recipient", filepath.Join(dir, "alice.pub"), flag, file,
			"--out", filepath.Join(dir, "bad.tssp"))
		if err == nil || !strings.HasPrefix(err.Error(), flag+" ") {
			t.Fatalf("create with a bad %s: %v", flag, err)
		}
		if _, err := os.Stat(filepath.Join(dir, "bad.tssp")); !os.IsNotExist(err) {
			t.Fatalf("failed create left a file: %v", err)
		}
	}
	if ents, _ := filepath.Glob(filepath.Join(dir, ".tssp-*")); len(ents) != 0 {
		t.Fatalf("temporary files left: %v", ents)
	}

	out, _, err = runPackageCLI(t, "package", "inspect", pkg)
	if err != nil || !strings.Contains(out, "NOT VERIFIED") || !strings.Contains(out, "ε =") || !strings.Contains(out, "ts1-") {
		t.Fatalf("inspect: %v\n%s", err, out)
	}
	trusted := []string{"--trusted-key", filepath.Join(dir, "signer.pub")}
	if out, code, err := runPackageCLI(t, append([]string{"package", "verify", pkg}, trusted...)...); err != nil || code != 0 || !strings.HasPrefix(out, "OK ") {
		t.Fatalf("verify: code %d, %v\n%s", code, err, out)
	}
	if _, code, err := runPackageCLI(t, "package", "verify", pkg, "--trusted-key", filepath.Join(dir, "other.pub")); !errors.Is(err, tssp.ErrUntrustedSigner) || code != 3 {
		t.Fatalf("verify with an untrusted key: code %d, %v", code, err)
	}
	if _, code, err := runPackageCLI(t, "package", "verify", pkg); err == nil || code != 2 {
		t.Fatalf("verify without --trusted-key: code %d, %v", code, err)
	}

	// open → the same adapter files.
	opened := filepath.Join(dir, "opened")
	if out, _, err := runPackageCLI(t, append([]string{"package", "open", pkg, "--identity", filepath.Join(dir, "bob.sec"), "--out", opened}, trusted...)...); err != nil {
		t.Fatal(err, out)
	}
	for _, f := range []string{"adapter_config.json", "adapter_model.safetensors"} {
		a, _ := os.ReadFile(filepath.Join(adapterDir, f))
		b, err := os.ReadFile(filepath.Join(opened, f))
		if err != nil || !bytes.Equal(a, b) {
			t.Fatalf("%s differs after open (%v)", f, err)
		}
	}
	noOpen := filepath.Join(dir, "eve-out")
	if _, code, err := runPackageCLI(t, append([]string{"package", "open", pkg, "--identity", filepath.Join(dir, "eve.sec"), "--out", noOpen}, trusted...)...); !errors.Is(err, tssp.ErrNotRecipient) || code != 3 {
		t.Fatalf("open by a non-recipient: code %d, %v", code, err)
	}
	if _, err := os.Stat(noOpen); !os.IsNotExist(err) {
		t.Fatalf("failed open left %s behind", noOpen)
	}

	// The edge loader: same greedy tokens as the original adapter.
	base := sampleTokens(t)
	want := sampleTokens(t, "--adapter", adapterDir)
	got := sampleTokens(t, "--package", pkg, "--identity", filepath.Join(dir, "alice.sec"), "--trusted-key", filepath.Join(dir, "signer.pub"))
	if !jsonEqual(got, want) {
		t.Fatalf("package tokens %v, adapter tokens %v", got, want)
	}
	if jsonEqual(base, want) {
		t.Fatalf("the adapter does not change the output (%v): the comparison proves nothing", base)
	}

	// Refusals: untrusted signer, tampered package, no identity.
	tampered := filepath.Join(dir, "tampered.tssp")
	b, _ := os.ReadFile(pkg)
	b[len(b)-2*512-600] ^= 1 // inside weights.bin.enc
	os.WriteFile(tampered, b, 0o644)
	for _, c := range []struct {
		name string
		args []string
		want error
	}{
		{"untrusted", []string{"--package", pkg, "--identity", filepath.Join(dir, "alice.sec"), "--trusted-key", filepath.Join(dir, "other.pub")}, tssp.ErrUntrustedSigner},
		{"tampered", []string{"--package", tampered, "--identity", filepath.Join(dir, "alice.sec"), "--trusted-key", filepath.Join(dir, "signer.pub")}, tssp.ErrMemberHash},
		{"not a recipient", []string{"--package", pkg, "--identity", filepath.Join(dir, "eve.sec"), "--trusted-key", filepath.Join(dir, "signer.pub")}, tssp.ErrNotRecipient},
	} {
		_, code, err := runPackageCLI(t, append([]string{"sample", "--model", model.TinyName, "--prompt", "hi", "--max-tokens", "2"}, c.args...)...)
		if !errors.Is(err, c.want) || code != 3 {
			t.Errorf("%s: code %d, err %v, want %v", c.name, code, err, c.want)
		}
	}
	if _, code, err := runPackageCLI(t, "sample", "--model", model.TinyName, "--prompt", "hi", "--package", pkg, "--trusted-key", filepath.Join(dir, "signer.pub")); err == nil || code != 2 {
		t.Errorf("sample --package without --identity: code %d, %v", code, err)
	}
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}

// TestPackageTenantCLI: a package for the tenant's own use, opened with its
// KEK from the keyring.
func TestPackageTenantCLI(t *testing.T) {
	t.Setenv(envMasterKey, "")
	t.Setenv(envPassphrase, "")
	t.Setenv(envKeyring, "")
	dir := t.TempDir()
	adapterDir, _ := trainedAdapter(t, dir)
	ring, mk := filepath.Join(dir, "keyring.tsk"), filepath.Join(dir, "master.key")
	if out, _, err := runPackageCLI(t, "keys", "init", "--keyring", ring, "--new-master-key", mk); err != nil {
		t.Fatal(err, out)
	}
	if out, _, err := runPackageCLI(t, "keys", "signer", "new", "--out", filepath.Join(dir, "signer")); err != nil {
		t.Fatal(err, out)
	}
	ringFlags := []string{"--keyring", ring, "--master-key-file", mk}
	pkg := filepath.Join(dir, "own.tssp")
	out, _, err := runPackageCLI(t, append([]string{"package", "create", "--adapter", adapterDir, "--base-model", model.TinyName,
		"--signer", filepath.Join(dir, "signer.sec"), "--tenant", "acme", "--out", pkg}, ringFlags...)...)
	if err != nil {
		t.Fatal(err, out)
	}
	out, _, err = runPackageCLI(t, "package", "inspect", pkg)
	if err != nil || !strings.Contains(out, "tenant KEK:  kek:acme") {
		t.Fatalf("inspect: %v\n%s", err, out)
	}
	trusted := []string{"--trusted-key", filepath.Join(dir, "signer.pub")}
	opened := filepath.Join(dir, "opened")
	if out, _, err := runPackageCLI(t, append(append([]string{"package", "open", pkg, "--tenant", "acme", "--out", opened}, trusted...), ringFlags...)...); err != nil {
		t.Fatal(err, out)
	}
	a, _ := os.ReadFile(filepath.Join(adapterDir, "adapter_model.safetensors"))
	b, err := os.ReadFile(filepath.Join(opened, "adapter_model.safetensors"))
	if err != nil || !bytes.Equal(a, b) {
		t.Fatalf("weights differ after open (%v)", err)
	}
	_, code, err := runPackageCLI(t, append(append([]string{"package", "open", pkg, "--tenant", "globex", "--out", filepath.Join(dir, "x")}, trusted...), ringFlags...)...)
	if !errors.Is(err, tssp.ErrNotRecipient) || code != 3 {
		t.Fatalf("open as another tenant: code %d, %v", code, err)
	}
}

// TestPackageBaseModelHash packages the reference PEFT adapter of the
// tiny-llama fixture with the model folder's hash, loads it through the
// edge loader, and refuses it for a model folder whose weights differ.
func TestPackageBaseModelHash(t *testing.T) {
	fixtures := filepath.Join("..", "..", "testdata", "fixtures")
	modelDir, adapterDir := filepath.Join(fixtures, "tiny-llama"), filepath.Join(fixtures, "tiny-llama-lora")
	if _, err := os.Stat(modelDir); err != nil {
		t.Skipf("fixtures not present: %v", err)
	}
	dir := t.TempDir()
	for _, k := range []string{"signer", "alice"} {
		kind := "recipient"
		if k == "signer" {
			kind = "signer"
		}
		if out, _, err := runPackageCLI(t, "keys", kind, "new", "--out", filepath.Join(dir, k)); err != nil {
			t.Fatal(err, out)
		}
	}
	pkg := filepath.Join(dir, "llama.tssp")
	if out, _, err := runPackageCLI(t, "package", "create", "--adapter", adapterDir, "--base-model", modelDir,
		"--signer", filepath.Join(dir, "signer.sec"), "--recipient", filepath.Join(dir, "alice.pub"), "--out", pkg); err != nil {
		t.Fatal(err, out)
	}
	wantHash, err := tssp.BaseModelHash(modelDir)
	if err != nil {
		t.Fatal(err)
	}
	out, _, err := runPackageCLI(t, "package", "inspect", pkg)
	if err != nil || !strings.Contains(out, wantHash) {
		t.Fatalf("inspect does not show the base model hash %s: %v\n%s", wantHash, err, out)
	}

	m, err := model.Load(modelDir)
	if err != nil {
		t.Fatal(err)
	}
	cmd := newSampleCmd()
	cmd.SetContext(t.Context())
	trusted := []string{filepath.Join(dir, "signer.pub")}
	lora, err := loadPackageAdapter(cmd, pkg, filepath.Join(dir, "alice.sec"), trusted, modelDir, m)
	if err != nil {
		t.Fatal(err)
	}
	want, err := model.LoadPEFT(adapterDir, m.Config)
	if err != nil {
		t.Fatal(err)
	}
	if !jsonEqual(lora.Values, want.Values) || lora.Config.Rank != want.Config.Rank {
		t.Fatal("the packaged adapter differs from the PEFT folder")
	}

	// Another model folder: same config, one weight byte changed.
	other := filepath.Join(dir, "other-model")
	os.Mkdir(other, 0o755)
	for _, f := range []string{"config.json", "model.safetensors"} {
		b, err := os.ReadFile(filepath.Join(modelDir, f))
		if err != nil {
			t.Fatal(err)
		}
		if f == "model.safetensors" {
			b[len(b)-1] ^= 1
		}
		os.WriteFile(filepath.Join(other, f), b, 0o644)
	}
	_, err = loadPackageAdapter(cmd, pkg, filepath.Join(dir, "alice.sec"), trusted, other, m)
	if err == nil || exitCode(err) != 3 || !strings.Contains(err.Error(), "was made for base model") {
		t.Fatalf("package for another base model: %v", err)
	}
}

// TestPackageFromServerCLI: `tensafe serve`, a few DP steps through the SDK,
// save_state, then `package signer` and `package create --artifact`: the
// package verifies against the pinned server key, opens for the recipient,
// and the edge loader samples the same greedy tokens as the server did.
func TestPackageFromServerCLI(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	url, data := serveInProcess(t, serveOptions{})
	if fi, err := os.Stat(filepath.Join(data, "package-signing.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("package signing key: %v %v", fi, err)
	}
	c, token := newTrainer(t, serveAdmin(t, url, data), url, "acme")
	lr := 1e-2
	tc, err := c.CreateTrainingClient(ctx, api.TrainingConfig{BaseModel: model.TinyName, LoRA: api.LoRAConfig{Rank: 2, Alpha: 4},
		DP:        &api.DPConfig{NoiseMultiplier: 1, MaxGradNorm: 1, TargetEpsilon: 8, TargetDelta: 1e-5, DatasetSize: 100, ExpectedBatchSize: 2},
		Optimizer: api.OptimizerConfig{LearningRate: &lr}, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	batch := api.Batch{InputIDs: [][]int{{256, 104, 105}, {256, 111, 107}}, Labels: [][]int{{256, 104, 105}, {256, 111, 107}}}
	trainSteps(t, ctx, tc, batch, 3)
	fs, err := tc.Sample(ctx, api.SampleRequest{Prompt: "hello", MaxTokens: 12})
	if err != nil {
		t.Fatal(err)
	}
	sr, err := fs.Result(ctx)
	if err != nil {
		t.Fatal(err)
	}
	fsv, err := tc.SaveState(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	sv, err := fsv.Result(ctx)
	if err != nil {
		t.Fatal(err)
	}

	for _, k := range []string{"alice", "eve"} {
		if out, _, err := runPackageCLI(t, "keys", "recipient", "new", "--out", filepath.Join(dir, k)); err != nil {
			t.Fatal(err, out)
		}
	}
	if out, _, err := runPackageCLI(t, "keys", "signer", "new", "--out", filepath.Join(dir, "other")); err != nil {
		t.Fatal(err, out)
	}
	signerPub := filepath.Join(dir, "server.pub")
	if out, code, err := runPackageCLI(t, "package", "signer", "--server", url, "--out", signerPub); err != nil || code != 0 {
		t.Fatalf("package signer: %v\n%s", err, out)
	}
	out, _, err := runPackageCLI(t, "package", "signer", "--server", url)
	if pub, _ := os.ReadFile(signerPub); err != nil || out != string(pub) || !strings.HasPrefix(out, "tensafe-sign-pub-v1:") {
		t.Fatalf("package signer prints %q (%v), wrote %q", out, err, pub)
	}

	t.Setenv("TENSAFE_API_KEY", token)
	pkg := filepath.Join(dir, "model.tssp")
	create := func(out string, extra ...string) (string, int, error) {
		return runPackageCLI(t, append([]string{"package", "create", "--artifact", sv.ArtifactID, "--server", url,
			"--recipient", filepath.Join(dir, "alice.pub"), "--out", out}, extra...)...)
	}
	// A pin that is not the server's key: refused, nothing written.
	wrongPin := filepath.Join(dir, "pinned-wrong.tssp")
	if _, code, err := create(wrongPin, "--trusted-key", filepath.Join(dir, "other.pub")); !errors.Is(err, tssp.ErrUntrustedSigner) || code != 3 {
		t.Fatalf("create with a wrong pin: code %d, %v", code, err)
	}
	if _, err := os.Stat(wrongPin); !os.IsNotExist(err) {
		t.Fatal("a refused create wrote --out")
	}
	if out, code, err := create(pkg, "--trusted-key", signerPub, "--tenant-key"); err != nil || code != 0 || !strings.Contains(out, "verified") {
		t.Fatalf("create --artifact: code %d, %v\n%s", code, err, out)
	}
	if _, code, err := create(pkg, "--trusted-key", signerPub); err == nil || code != 2 {
		t.Fatalf("create over an existing file: code %d, %v", code, err)
	}
	if ents, _ := filepath.Glob(filepath.Join(dir, ".tssp-*")); len(ents) != 0 {
		t.Fatalf("temporary files left: %v", ents)
	}
	if _, code, err := runPackageCLI(t, "package", "create", "--artifact", sv.ArtifactID, "--server", url,
		"--recipient", filepath.Join(dir, "alice.pub"), "--signer", filepath.Join(dir, "other.sec"), "--out", filepath.Join(dir, "x.tssp")); err == nil || code != 2 {
		t.Fatalf("--artifact with --signer: code %d, %v", code, err)
	}
	if _, code, err := runPackageCLI(t, "package", "create", "--artifact", "art_nope", "--server", url,
		"--recipient", filepath.Join(dir, "alice.pub"), "--out", filepath.Join(dir, "y.tssp")); !client.IsNotFound(err) || code == 0 {
		t.Fatalf("unknown artifact: code %d, %v", code, err)
	}

	trusted := []string{"--trusted-key", signerPub}
	if out, code, err := runPackageCLI(t, append([]string{"package", "verify", pkg}, trusted...)...); err != nil || code != 0 || !strings.HasPrefix(out, "OK ") {
		t.Fatalf("verify: code %d, %v\n%s", code, err, out)
	}
	// The evidence's inclusion proofs, against the audit checkpoint key.
	auditPub := filepath.Join(dir, "audit.pub")
	if out, code, err := runPackageCLI(t, "package", "signer", "--server", url, "--audit", "--out", auditPub); err != nil || code != 0 {
		t.Fatalf("package signer --audit: %v\n%s", err, out)
	}
	if out, code, err := runPackageCLI(t, append([]string{"package", "verify", pkg, "--audit-key", auditPub}, trusted...)...); err != nil || code != 0 ||
		!strings.Contains(out, "8 audit entries proven") {
		t.Fatalf("verify --audit-key: code %d, %v\n%s", code, err, out)
	}
	if _, code, err := runPackageCLI(t, append([]string{"package", "verify", pkg, "--audit-key", signerPub}, trusted...)...); !errors.Is(err, tssp.ErrEvidence) || code != 3 {
		t.Fatalf("verify with the wrong audit key: code %d, %v", code, err)
	}
	out, _, err = runPackageCLI(t, "package", "inspect", pkg, "--json")
	var ins struct {
		Manifest tssp.Manifest       `json:"manifest"`
		Cert     privacy.Certificate `json:"dp_certificate"`
	}
	if err != nil || json.Unmarshal([]byte(out), &ins) != nil || ins.Cert.Steps != 3 || ins.Cert.AdapterHash != ins.Manifest.Weights.PlaintextSHA256 ||
		ins.Manifest.TenantKEK == nil || len(ins.Manifest.Recipients) != 1 {
		t.Fatalf("inspect: %v\n%s", err, out)
	}
	if out, _, err := runPackageCLI(t, "package", "inspect", pkg); err != nil || !strings.Contains(out, "evidence:    checkpoint "+sv.ArtifactID) ||
		!strings.Contains(out, "8 entries proven") {
		t.Fatalf("inspect: %v\n%s", err, out)
	}
	got := sampleTokens(t, "--package", pkg, "--identity", filepath.Join(dir, "alice.sec"), "--trusted-key", signerPub)
	want := make([]any, len(sr.Sequences[0].Tokens))
	for i, tok := range sr.Sequences[0].Tokens {
		want[i] = float64(tok)
	}
	if !jsonEqual(got, want) {
		t.Fatalf("edge loader tokens %v, the server sampled %v", got, want)
	}
	if _, code, err := runPackageCLI(t, "package", "open", pkg, "--identity", filepath.Join(dir, "eve.sec"), "--out", filepath.Join(dir, "eve"), "--trusted-key", signerPub); !errors.Is(err, tssp.ErrNotRecipient) || code != 3 {
		t.Fatalf("open by a non-recipient: code %d, %v", code, err)
	}
}

// TestServePackageSigner: --package-signer names the key the server signs
// packages with and publishes; a named file that does not exist is an error,
// never silently replaced by a new key.
func TestServePackageSigner(t *testing.T) {
	dir := t.TempDir()
	if out, _, err := runPackageCLI(t, "keys", "signer", "new", "--out", filepath.Join(dir, "pkg")); err != nil {
		t.Fatal(err, out)
	}
	if err := os.Chmod(filepath.Join(dir, "pkg.sec"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	o := serveOptions{dataDir: filepath.Join(dir, "data"), addr: "127.0.0.1:0", rateLimit: -1, grace: time.Second,
		packageSigner: filepath.Join(dir, "missing.sec")}
	if err := runServe(ctx, o, io.Discard, nil); err == nil || !strings.Contains(err.Error(), "--package-signer") {
		t.Fatalf("serve with a missing --package-signer: %v", err)
	}
	o.packageSigner = filepath.Join(dir, "pkg.sec")
	addrc := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- runServe(ctx, o, io.Discard, func(a string) { addrc <- a }) }()
	var url string
	select {
	case a := <-addrc:
		url = "http://" + a
	case err := <-done:
		t.Fatalf("serve: %v", err)
	}
	out, _, err := runPackageCLI(t, "package", "signer", "--server", url)
	pub, _ := os.ReadFile(filepath.Join(dir, "pkg.pub"))
	if err != nil || strings.TrimSpace(out) != strings.TrimSpace(string(pub)) {
		t.Fatalf("the server publishes %q (%v), --package-signer's public key is %q", out, err, pub)
	}
	if _, err := os.Stat(filepath.Join(o.dataDir, "package-signing.key")); !os.IsNotExist(err) {
		t.Fatalf("a default key was generated beside --package-signer: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
