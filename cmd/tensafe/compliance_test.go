package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tensafe/tensafe/api"
	"github.com/tensafe/tensafe/client"
	"github.com/tensafe/tensafe/compliance"
	"github.com/tensafe/tensafe/model"
)

func TestComplianceScanCLI(t *testing.T) {
	dir := t.TempDir()
	clean := filepath.Join(dir, "clean")
	dirty := filepath.Join(dir, "dirty")
	for _, d := range []string{clean, dirty} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	const email, card, token = "zed.quist@example.org", "4012 8888 8888 1881", "ghp_1a2B3c4D5e6F7g8H9i0J1k2L3m4N5o6P7q8R"
	if err := os.WriteFile(filepath.Join(clean, "a.txt"), []byte("hello world\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dirty, "b.jsonl"), []byte(`{"text": "mail `+email+` card `+card+`"}`+"\n"+token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	out, err := runCLI(t, "compliance", "scan", clean)
	if err != nil || !strings.Contains(out, "0 PII, 0 secrets") {
		t.Fatalf("clean scan: %v\n%s", err, out)
	}

	for _, args := range [][]string{{"compliance", "scan", dirty}, {"compliance", "scan", "--json", clean, dirty}} {
		out, err = runCLI(t, args...)
		if exitCode(err) != complianceExitFound {
			t.Fatalf("%v: exit %d (%v), want %d", args, exitCode(err), err, complianceExitFound)
		}
		for _, v := range []string{email, card, token, "zed.quist", "8888"} {
			if strings.Contains(out, v) || strings.Contains(err.Error(), v) {
				t.Errorf("%v: output or error shows a matched value", args)
			}
		}
	}
	var rep compliance.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("--json output: %v\n%s", err, out)
	}
	if rep.Format != compliance.ReportFormat || rep.Files != 2 || rep.PII != 2 || rep.Secrets != 1 ||
		rep.Counts[compliance.KindEmail] != 1 || rep.Counts[compliance.KindPaymentCard] != 1 || rep.Counts[compliance.KindGitHubToken] != 1 {
		t.Errorf("report %+v", rep)
	}
	if f := rep.Findings[0]; f.Kind != compliance.KindEmail || f.Line != 1 || f.Column != 16 {
		t.Errorf("first finding %+v", f)
	}

	_, err = runCLI(t, "compliance", "scan", filepath.Join(dir, "missing"))
	if exitCode(err) != complianceExitError {
		t.Errorf("missing path: exit %d (%v)", exitCode(err), err)
	}
	out, err = runCLI(t, "compliance", "scan", "--max-findings", "1", dirty)
	if exitCode(err) != complianceExitFound || !strings.Contains(out, "2 more findings not listed") || strings.Count(out, "b.jsonl:") != 1 {
		t.Errorf("--max-findings 1: exit %d\n%s", exitCode(err), out)
	}
	_, err = runCLI(t, "compliance", "scan", "--region", "XX", clean)
	if exitCode(err) != complianceExitError || !strings.Contains(err.Error(), "PhoneRegion") {
		t.Errorf("bad region: exit %d (%v)", exitCode(err), err)
	}
}

// liveServer runs `tensafe serve` in-process with artifact TTL ttl on a
// fresh data directory until the test ends; it returns the base URL and the
// data directory.
func liveServer(t *testing.T, ttl time.Duration) (string, string) {
	t.Helper()
	return serveInProcess(t, serveOptions{artifactTTL: ttl})
}

// trainAndSave creates a tenant with a trainer key, runs a short DP
// training run (two steps) and saves a checkpoint; it returns the trainer
// client's token and the artifact id.
func trainAndSave(t *testing.T, base, dir string) (string, string) {
	t.Helper()
	ctx := context.Background()
	c, token := newTrainer(t, serveAdmin(t, base, dir), base, "acme")
	lr := 0.01
	tc, err := c.CreateTrainingClient(ctx, api.TrainingConfig{BaseModel: model.TinyName, LoRA: api.LoRAConfig{Rank: 4, Alpha: 8},
		DP:        &api.DPConfig{NoiseMultiplier: 1.1, MaxGradNorm: 1, TargetEpsilon: 8, TargetDelta: 1e-5, DatasetSize: 100, ExpectedBatchSize: 2},
		Optimizer: api.OptimizerConfig{LearningRate: &lr}, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	batch := api.Batch{InputIDs: [][]int{{1, 72, 105, 33}, {1, 66, 121, 101}}, Labels: [][]int{{1, 72, 105, 33}, {1, 66, 121, 101}}}
	trainSteps(t, ctx, tc, batch, 2)
	sf, err := tc.SaveState(ctx, "after-two-steps")
	if err != nil {
		t.Fatal(err)
	}
	sv, err := sf.Result(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return token, sv.ArtifactID
}

func statuses(t *testing.T, p *compliance.Pack) map[string]compliance.Status {
	t.Helper()
	out := map[string]compliance.Status{}
	for _, c := range p.Evidence.Controls {
		out[c.ID] = c.Status
	}
	return out
}

// TestEvidencePackLive: an evidence pack built against a live in-process
// server after a short DP training run, a minimized dataset and scans
// has evidence for every control but authentication (failures are not
// audited: Partial); then a checkpoint file replaced by plaintext and an
// audit entry rewritten in the database make their controls Gaps. No
// API token appears in any pack.
func TestEvidencePackLive(t *testing.T) {
	if testing.Short() {
		t.Skip("trains through a live server")
	}
	base, dir := liveServer(t, time.Hour)
	token, artID := trainAndSave(t, base, dir)
	admKey, _ := os.ReadFile(filepath.Join(dir, serveAdminKeyFile))

	// A dataset with personal data, minimized with the default policy.
	work := t.TempDir()
	raw := filepath.Join(work, "raw.jsonl")
	if err := os.WriteFile(raw, []byte(`{"text":"write to ann@example.com","uid":"7"}`+"\n"+
		`{"text":"card 4111 1111 1111 1111","uid":"8"}`+"\n"+`{"text":"plain","uid":"9"}`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	minimized := filepath.Join(work, "train.jsonl")
	if out, err := runCLI(t, "compliance", "filter", raw, "--out", minimized, "--drop-fields", "uid"); err != nil {
		t.Fatalf("filter: %v\n%s", err, out)
	}
	report := minimized + ".minimization.json"

	pack := func(name string) *compliance.Pack {
		t.Helper()
		p, _, err := runEvidence(context.Background(), evidenceOptions{server: base, apiKeyFile: filepath.Join(dir, serveAdminKeyFile),
			out: filepath.Join(work, name), scan: []string{minimized}, minimization: []string{report}, region: "US",
			keyRotationDays: compliance.DefaultKeyRotationDays})
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{"metrics.json", "evidence.json", "evidence.md", "events.json", "pii_scan.json", "secrets_scan.json"} {
			b, err := os.ReadFile(filepath.Join(work, name, f))
			if err != nil {
				t.Fatal(err)
			}
			for _, secret := range []string{token, strings.TrimSpace(string(admKey))} {
				if bytes.Contains(b, []byte(secret)) {
					t.Fatalf("%s/%s holds an API token", name, f)
				}
			}
		}
		return p
	}

	p := pack("healthy")
	got := statuses(t, p)
	// Every control, TS-AUTH-1 included: refused requests are audited
	// (auth.denied).
	for _, c := range compliance.Controls() {
		want := compliance.StatusPresent
		if got[c.ID] != want {
			r, _ := p.Control(c.ID)
			t.Errorf("healthy %s: %s (%s), want %s", c.ID, got[c.ID], r.Reason, want)
		}
	}
	d := p.Metrics.Deployment
	if d == nil || len(d.TrainingClients) != 1 || d.TrainingClients[0].Steps != 2 || d.TrainingClients[0].EpsilonSpent <= 0 ||
		!d.AuditLog.Verified || d.AuditLog.Root == "" || len(d.Artifacts) != 1 || d.Artifacts[0].ID != artID {
		t.Fatalf("deployment metrics %+v", d)
	}
	cats := p.Events.Counts
	for _, c := range []string{api.CategoryChange, api.CategoryEncryption, api.CategoryPIIScan, api.CategorySecretsScan, api.CategoryAuditLog} {
		if cats[c] == 0 {
			t.Errorf("no %s event: %v", c, cats)
		}
	}

	// Break encryption at rest: the checkpoint replaced by plaintext.
	artPath := filepath.Join(dir, serveArtifactDir, artID+".tsenv")
	if err := os.WriteFile(artPath, []byte("TSSVCKP1 {\"format\":\"plaintext\"}"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Break the audit log: rewrite an entry in the database, past the
	// append-only triggers, as an intruder with file access would.
	db, err := sql.Open("sqlite", filepath.Join(dir, serveDBFile)+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range []string{
		"DROP TRIGGER audit_entries_no_update",
		"UPDATE audit_entries SET entry = replace(entry, 'training.optim_step', 'training.optim_stop') WHERE log = 'main' AND seq = (SELECT min(seq) FROM audit_entries WHERE log = 'main' AND entry LIKE '%training.optim_step%')",
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	p = pack("broken")
	got = statuses(t, p)
	if got["TS-ENC-1"] != compliance.StatusGap || got["TS-AUD-1"] != compliance.StatusGap {
		t.Fatalf("broken controls: encryption %s, audit %s", got["TS-ENC-1"], got["TS-AUD-1"])
	}
	for _, id := range []string{"TS-DP-1", "TS-DET-1", "TS-MIN-1", "TS-KEY-1"} {
		if got[id] != compliance.StatusPresent {
			t.Errorf("unbroken %s: %s", id, got[id])
		}
	}
	md, _ := os.ReadFile(filepath.Join(work, "broken", "evidence.md"))
	if !strings.Contains(string(md), "Gaps to close") || !strings.Contains(string(md), "TS-AUD-1") {
		t.Errorf("evidence.md:\n%s", md)
	}
}

// TestRetentionLive: `serve --artifact-ttl` deletes an expired checkpoint:
// the file is gone, the download answers 404, and the RETENTION event is
// exported.
func TestRetentionLive(t *testing.T) {
	if testing.Short() {
		t.Skip("trains through a live server")
	}
	base, dir := liveServer(t, time.Second)
	token, artID := trainAndSave(t, base, dir)
	ctx := context.Background()
	c, err := client.New(base, token)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		_, err := c.Artifact(ctx, artID)
		var ae *client.APIError
		if errors.As(err, &ae) && ae.Status == 404 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("artifact not deleted within a minute of its 1 s TTL: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if rc, err := c.DownloadArtifact(ctx, artID); err == nil {
		rc.Close()
		t.Fatal("download of an expired artifact succeeded")
	}
	if _, err := os.Stat(filepath.Join(dir, serveArtifactDir, artID+".tsenv")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("artifact file: %v", err)
	}
	adm := serveAdmin(t, base, dir)
	evs, err := adm.AllComplianceEvents(ctx, client.EventFilter{Categories: []string{api.CategoryRetention}})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, e := range evs {
		if e.Category != api.CategoryRetention {
			t.Errorf("filter let through %+v", e)
		}
		found = found || e.Resource == artID && e.Operation == "retention.delete_artifact" && !e.Derived
	}
	if !found {
		t.Fatalf("no RETENTION event for %s in %+v", artID, evs)
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestComplianceFilterCLI(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in.jsonl")
	if err := os.WriteFile(in, []byte(`{"text":"call +1 415-555-0132","uid":"1"}`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out", "o.jsonl")
	if s, err := runCLI(t, "compliance", "filter", in, "--out", out, "--drop-fields", "uid"); err != nil ||
		!strings.Contains(s, "1 examples in, 1 out") {
		t.Fatalf("filter: %v\n%s", err, s)
	}
	b, _ := os.ReadFile(out)
	if string(b) != `{"text":"call [REDACTED:phone]"}`+"\n" {
		t.Fatalf("output %q", b)
	}
	rep, err := compliance.ReadMinimizationReport(out + ".minimization.json")
	if err != nil || rep.FieldsDropped["uid"] != 1 || rep.RedactedByKind[compliance.KindPhone] != 1 || rep.Output != "o.jsonl" {
		t.Fatalf("report %+v, %v", rep, err)
	}
	// A bad policy names its field; nothing is written.
	pol := filepath.Join(dir, "policy.json")
	os.WriteFile(pol, []byte(`{"format":"tensafe.compliance.policy/v1","pii":{"email":"shred"},"secrets":"allow"}`), 0o600)
	out2 := filepath.Join(dir, "o2.jsonl")
	if _, err := runCLI(t, "compliance", "filter", in, "--out", out2, "--policy", pol); err == nil || !strings.Contains(err.Error(), "pii.email") {
		t.Fatalf("bad policy: %v", err)
	}
	if _, err := os.Stat(out2); !os.IsNotExist(err) {
		t.Fatalf("output written for a bad policy: %v", err)
	}
	// A line that is not an object names the line, not its content.
	os.WriteFile(in, []byte(`{"a":"b"}`+"\n"+`secret-looking text`+"\n"), 0o600)
	if _, err := runCLI(t, "compliance", "filter", in, "--out", out2); err == nil || !strings.Contains(err.Error(), "line 2") ||
		strings.Contains(err.Error(), "secret-looking") {
		t.Fatalf("bad line: %v", err)
	}
	if _, err := runCLI(t, "compliance", "filter", in); err == nil || !strings.Contains(err.Error(), "--out") {
		t.Fatalf("no --out: %v", err)
	}
}

// TestComplianceEvidenceOffline: without a server the scans and reports are
// evaluated and every deployment control is a Gap; a secret in the scanned
// data is a Gap too; --server without a key is refused.
func TestComplianceEvidenceOffline(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "d.txt")
	os.WriteFile(data, []byte("token ghp_1a2B3c4D5e6F7g8H9i0J1k2L3m4N5o6P7q8R\n"), 0o600)
	pack := filepath.Join(dir, "pack")
	s, err := runCLI(t, "compliance", "evidence", "--out", pack, "--scan", data)
	if err != nil {
		t.Fatalf("%v\n%s", err, s)
	}
	e, err := compliance.ReadEvidence(pack)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range e.Controls {
		want := compliance.StatusGap
		if c.ID == "TS-PII-1" {
			want = compliance.StatusPresent
		}
		if c.Status != want {
			t.Errorf("%s: %s (%s), want %s", c.ID, c.Status, c.Reason, want)
		}
	}
	b, _ := os.ReadFile(filepath.Join(pack, "secrets_scan.json"))
	if bytes.Contains(b, []byte("ghp_")) || !bytes.Contains(b, []byte("github_token")) {
		t.Fatalf("secrets_scan.json: %s", b)
	}
	t.Setenv("TENSAFE_API_KEY", "")
	if _, err := runCLI(t, "compliance", "evidence", "--server", "http://127.0.0.1:1", "--out", pack); err == nil ||
		!strings.Contains(err.Error(), "API key") {
		t.Fatalf("no key: %v", err)
	}
}
