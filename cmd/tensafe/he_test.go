package main

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tensafe/tensafe/he"
)

// heServer runs tensafe serve in process and returns its base URL and the
// operator admin key file.
func heServer(t *testing.T) (string, string) {
	t.Helper()
	base, dir := serveInProcess(t, serveOptions{})
	return base, filepath.Join(dir, serveAdminKeyFile)
}

// TestHECLI: keygen (client keys sealed by a local keyring), register,
// adapter from a JSON file, and delta through a live server, equal to the
// plaintext delta; files are never overwritten.
func TestHECLI(t *testing.T) {
	t.Setenv(envMasterKey, "")
	t.Setenv(envPassphrase, "")
	t.Setenv(envKeyring, "")
	t.Setenv("TENSAFE_API_KEY", "")
	dir := t.TempDir()
	ring, mk := filepath.Join(dir, "client-keyring.tsk"), filepath.Join(dir, "master.key")
	if _, err := runCLI(t, "keys", "init", "--keyring", ring, "--new-master-key", mk); err != nil {
		t.Fatal(err)
	}
	kr := []string{"--keyring", ring, "--master-key-file", mk}
	prefix := filepath.Join(dir, "tenant")
	out, err := runCLI(t, append([]string{"he", "keygen", "--out", prefix, "--lora", "32,24,4", "--mlp-width", "32"}, kr...)...)
	if err != nil {
		t.Fatalf("keygen: %v\n%s", err, out)
	}
	if fi, err := os.Stat(prefix + ".hek"); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("client keys file: %v %v", err, fi)
	}
	sealed, _ := os.ReadFile(prefix + ".hek")
	if !bytes.Contains([]byte(out), []byte("hek_")) || bytes.Contains(sealed, []byte("tensafe.he.client_keys")) {
		t.Fatalf("keygen output %q, or the client keys are not sealed", out)
	}
	if _, err := runCLI(t, append([]string{"he", "keygen", "--out", prefix}, kr...)...); err == nil {
		t.Fatal("keygen overwrote existing key files")
	}

	base, adminKey := heServer(t)
	srv := []string{"--server", base, "--api-key-file", adminKey}
	out, err = runCLI(t, append([]string{"he", "register", "--evk", prefix + ".evk"}, srv...)...)
	if err != nil {
		t.Fatalf("register: %v\n%s", err, out)
	}
	var info he.KeyInfo
	if err := json.Unmarshal([]byte(out), &info); err != nil || info.State != he.KeyActive {
		t.Fatalf("register output %q: %v", out, err)
	}

	r := rand.New(rand.NewPCG(4, 4))
	mat := func(rows, cols int) [][]float64 {
		m := make([][]float64, rows)
		for i := range m {
			m[i] = make([]float64, cols)
			for j := range m[i] {
				m[i][j] = r.NormFloat64() * 0.05
			}
		}
		return m
	}
	ad := he.Adapter{A: mat(4, 32), B: mat(24, 4), Scale: 2}
	adFile := filepath.Join(dir, "adapter.json")
	b, _ := json.Marshal(map[string]any{"a": ad.A, "b": ad.B, "scale": ad.Scale})
	os.WriteFile(adFile, b, 0o600)
	out, err = runCLI(t, append([]string{"he", "adapter", "--module", "layers.0.q_proj", "--in", adFile}, srv...)...)
	if err != nil || !strings.Contains(out, string(he.PackingLatency)) {
		t.Fatalf("adapter: %v\n%s", err, out)
	}

	x := make([][]float64, 5)
	for i := range x {
		x[i] = make([]float64, 32)
		for j := range x[i] {
			x[i][j] = 2*r.Float64() - 1
		}
	}
	xFile, dFile := filepath.Join(dir, "x.json"), filepath.Join(dir, "delta.json")
	b, _ = json.Marshal(x)
	os.WriteFile(xFile, b, 0o600)
	for _, packing := range []string{"auto", "feature_major"} {
		os.Remove(dFile)
		args := append([]string{"he", "delta", "--keys", prefix + ".hek", "--module", "layers.0.q_proj", "--shape", "32,24,4",
			"--in", xFile, "--out", dFile, "--packing", packing}, srv...)
		if out, err := runCLI(t, append(args, kr...)...); err != nil {
			t.Fatalf("delta %s: %v\n%s", packing, err, out)
		}
		var got map[string][][]float64
		data, _ := os.ReadFile(dFile)
		if err := json.Unmarshal(data, &got); err != nil {
			t.Fatal(err)
		}
		var worst float64
		for i := range x {
			want := ad.Apply(x[i])
			for c := range want {
				worst = math.Max(worst, math.Abs(got["layers.0.q_proj"][i][c]-want[c]))
			}
		}
		if worst > 1e-4 {
			t.Fatalf("packing %s: max error %g", packing, worst)
		}
	}
	// Private inference: a 2-layer MLP, first layer under HE, the second
	// run by the CLI in plaintext.
	mlp := he.MLP{Layers: []he.Layer{
		{W: mat(24, 20), Bias: mat(1, 24)[0], Act: he.Activation{Kind: he.ActSquare}},
		{W: mat(10, 24), Act: he.Activation{Kind: he.ActNone}},
	}}
	mFile, yFile, x2File := filepath.Join(dir, "mlp.json"), filepath.Join(dir, "y.json"), filepath.Join(dir, "x2.json")
	b, _ = json.Marshal(mlp)
	os.WriteFile(mFile, b, 0o600)
	x2 := make([][]float64, 3)
	for i := range x2 {
		x2[i] = x[i][:20]
	}
	b, _ = json.Marshal(x2)
	os.WriteFile(x2File, b, 0o600)
	if out, err := runCLI(t, append([]string{"he", "model", "--name", "mlp", "--in", mFile, "--profile", "encrypted_input"}, srv...)...); err != nil {
		t.Fatalf("model: %v\n%s", err, out)
	}
	args := append([]string{"he", "infer", "--keys", prefix + ".hek", "--name", "mlp", "--in", x2File, "--model", mFile, "--out", yFile}, srv...)
	if out, err := runCLI(t, append(args, kr...)...); err != nil {
		t.Fatalf("infer: %v\n%s", err, out)
	}
	var y [][]float64
	data, _ := os.ReadFile(yFile)
	if err := json.Unmarshal(data, &y); err != nil || len(y) != len(x2) {
		t.Fatalf("infer output %s: %v", data, err)
	}
	for i := range x2 {
		want := mlp.Forward(x2[i])
		for c := range want {
			if d := math.Abs(y[i][c] - want[c]); d > 1e-3 {
				t.Fatalf("inference token %d output %d: error %g", i, c, d)
			}
		}
	}

	// Without the keyring's master key the client keys stay closed.
	if _, err := runCLI(t, append([]string{"he", "delta", "--keys", prefix + ".hek", "--module", "m", "--shape", "32,24,4",
		"--in", xFile, "--keyring", ring}, srv...)...); err == nil {
		t.Fatal("delta opened the client keys without a master key")
	}
}
