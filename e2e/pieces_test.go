package e2e

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// available reports whether the binary has a subcommand (its --help runs).
func available(ctx context.Context, args ...string) bool {
	_, err := tensafe(ctx, append(args, "--help")...)
	return err == nil
}

// tensafeEnv runs the binary with extra environment variables.
func tensafeEnv(ctx context.Context, env []string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// packageArtifact packages a saved checkpoint as TSSP on the server (CLI
// `package create --artifact`), then verifies it, refuses a tampered copy,
// opens it and samples from it with the edge loader.
func packageArtifact(ctx context.Context, t *testing.T, s *server, tr *trainer, artifactID string) {
	if !available(ctx, "package", "signer") {
		t.Skip("not available: server-side TSSP packaging (tensafe package signer / create --artifact) is not in this build")
	}
	dir := t.TempDir()
	env := []string{"TENSAFE_API_KEY=" + tr.token}
	url := s.base
	run := func(args ...string) string {
		t.Helper()
		out, err := tensafeEnv(ctx, env, args...)
		if err != nil {
			t.Fatalf("tensafe %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		if strings.Contains(out, tr.token) {
			t.Fatalf("tensafe %s printed the API key", args[0])
		}
		return out
	}
	rcpt, signer, pkg := filepath.Join(dir, "rcpt"), filepath.Join(dir, "signer.pub"), filepath.Join(dir, "adapter.tssp")
	run("keys", "recipient", "new", "--out", rcpt)
	run("package", "signer", "--server", url, "--out", signer)
	run("package", "create", "--artifact", artifactID, "--server", url, "--recipient", rcpt+".pub", "--trusted-key", signer, "--out", pkg)
	run("package", "verify", pkg, "--trusted-key", signer)

	// A flipped byte anywhere in the package fails verification (exit 3).
	data, err := os.ReadFile(pkg)
	if err != nil {
		t.Fatal(err)
	}
	bad := append([]byte(nil), data...)
	bad[len(bad)/2] ^= 0x01
	badPath := filepath.Join(dir, "tampered.tssp")
	if err := os.WriteFile(badPath, bad, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := tensafe(ctx, "package", "verify", badPath, "--trusted-key", signer)
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() == 0 {
		t.Fatalf("a tampered package verified: %v\n%s", err, out)
	}

	adapter := filepath.Join(dir, "adapter")
	run("package", "open", pkg, "--identity", rcpt+".sec", "--trusted-key", signer, "--out", adapter)
	for _, f := range []string{"adapter_config.json", "adapter_model.safetensors"} {
		if fi, err := os.Stat(filepath.Join(adapter, f)); err != nil || fi.Size() == 0 {
			t.Fatalf("opened package lacks %s: %v", f, err)
		}
	}
	certs, _ := filepath.Glob(filepath.Join(adapter, "*certificate*"))
	if len(certs) == 0 {
		t.Errorf("opened package has no DP certificate (files: %v)", ls(adapter))
	}
	out = run("sample", "--model", "tensafe-tiny", "--package", pkg, "--identity", rcpt+".sec", "--trusted-key", signer,
		"--prompt", "note 1: the patient", "--max-tokens", "8", "--json")
	if !json.Valid([]byte(lastJSON(out))) {
		t.Fatalf("sample --package --json printed %q", out)
	}
	t.Logf("TSSP: %d-byte package verified, tampered copy refused, opened (%v), sampled", len(data), ls(adapter))
}

func ls(dir string) []string {
	ents, _ := os.ReadDir(dir)
	var n []string
	for _, e := range ents {
		n = append(n, e.Name())
	}
	return n
}

// lastJSON returns the output from its first '{' or '[' on.
func lastJSON(out string) string {
	if i := strings.IndexAny(out, "{["); i >= 0 {
		return strings.TrimSpace(out[i:])
	}
	return out
}

// evidencePack produces a compliance evidence pack of the running server
// with the CLI, scanning the training corpus.
func evidencePack(ctx context.Context, t *testing.T, s *server, tr *trainer) {
	if !available(ctx, "compliance", "evidence") {
		t.Skip("not available: `tensafe compliance evidence` is not in this build")
	}
	// A short folder name: the scan's target path goes into the audit log,
	// whose filter refuses long base64-looking values, and t.TempDir()'s
	// names are long runs of letters and digits.
	dir, err := os.MkdirTemp("", "e2e-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	corpus := filepath.Join(dir, "corpus.txt")
	var lines []string
	for i := range 8 {
		lines = append(lines, "note "+string(rune('0'+i))+": the patient reports mild symptoms and is advised to rest.")
	}
	if err = os.WriteFile(corpus, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	pack := filepath.Join(dir, "pack")
	out, err := tensafe(ctx, "compliance", "evidence", "--server", s.base, "--api-key-file", filepath.Join(s.dataDir, "admin.key"),
		"--out", pack, "--scan", corpus)
	if err != nil {
		t.Fatalf("compliance evidence: %v\n%s", err, out)
	}
	admin := s.adminKey(t)
	for _, f := range []string{"evidence.json", "evidence.md", "metrics.json"} {
		b, err := os.ReadFile(filepath.Join(pack, f))
		if err != nil {
			t.Fatalf("evidence pack lacks %s: %v (files: %v)", f, err, ls(pack))
		}
		if strings.Contains(string(b), admin) || strings.Contains(string(b), tr.token) {
			t.Fatalf("evidence pack file %s holds an API key", f)
		}
	}
	var ev struct {
		Controls []struct {
			ID, Status string
		} `json:"controls"`
	}
	b, _ := os.ReadFile(filepath.Join(pack, "evidence.json"))
	if err := json.Unmarshal(b, &ev); err != nil {
		t.Fatalf("evidence.json: %v", err)
	}
	if len(ev.Controls) == 0 {
		t.Fatalf("evidence.json lists no controls")
	}
	t.Logf("compliance evidence: %d controls; %s", len(ev.Controls), strings.SplitN(out, "\n", 2)[0])
}
