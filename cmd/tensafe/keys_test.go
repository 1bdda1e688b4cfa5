package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tensafe/tensafe/seal"
)

func TestKeysCLI(t *testing.T) {
	t.Setenv(envMasterKey, "")
	t.Setenv(envPassphrase, "")
	t.Setenv(envKeyring, "")
	dir := t.TempDir()
	ring := filepath.Join(dir, "data", "keyring.tsk")
	mk := filepath.Join(dir, "master.key")
	if _, err := runCLI(t, "keys", "init", "--keyring", ring, "--new-master-key", mk); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(mk); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("master key file: %v, mode %v", err, fi.Mode())
	}
	flags := []string{"--keyring", ring, "--master-key-file", mk}
	for range 2 {
		if _, err := runCLI(t, append([]string{"keys", "rotate", "acme"}, flags...)...); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := runCLI(t, append([]string{"keys", "retire", "acme", "1"}, flags...)...); err != nil {
		t.Fatal(err)
	}
	out, err := runCLI(t, append([]string{"keys", "list", "--json"}, flags...)...)
	if err != nil {
		t.Fatal(err)
	}
	var list []struct {
		Tenant   string `json:"tenant"`
		Current  uint32 `json:"current"`
		Versions []struct {
			Version uint32 `json:"version"`
			Retired string `json:"retired"`
		} `json:"versions"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("list --json: %v\n%s", err, out)
	}
	if len(list) != 1 || list[0].Tenant != "acme" || list[0].Current != 2 || list[0].Versions[0].Retired == "" || list[0].Versions[1].Retired != "" {
		t.Fatalf("list --json = %s", out)
	}
	if _, err := runCLI(t, "keys", "list", "--keyring", ring); err == nil || exitCode(err) != 2 {
		t.Fatalf("list without a master key: err = %v (exit %d), want exit 2", err, exitCode(err))
	}
	if _, err := runCLI(t, append([]string{"keys", "shred", "acme"}, flags...)...); err == nil || !strings.Contains(err.Error(), "--yes") {
		t.Fatalf("shred without --yes: err = %v", err)
	}

	prefix := filepath.Join(dir, "signer")
	out, err = runCLI(t, "keys", "signer", "new", "--out", prefix)
	if err != nil {
		t.Fatal(err)
	}
	sec, _ := os.ReadFile(prefix + ".sec")
	pub, _ := os.ReadFile(prefix + ".pub")
	sk, err := seal.ParseSigningKeyText(string(sec))
	if err != nil {
		t.Fatal(err)
	}
	vk, err := seal.ParseVerifyingKeyText(string(pub))
	if err != nil || !vk.Equal(sk.Public()) || !strings.HasPrefix(out, vk.KeyID()+"\n") {
		t.Fatalf("signer files do not match (%v); output %q", err, out[:40])
	}
	if fi, _ := os.Stat(prefix + ".sec"); fi.Mode().Perm() != 0o600 {
		t.Fatalf("secret key mode %04o", fi.Mode().Perm())
	}
	if _, err := runCLI(t, "keys", "signer", "new", "--out", prefix); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("overwriting a signer key: err = %v", err)
	}

	rprefix := filepath.Join(dir, "recipient")
	if _, err := runCLI(t, "keys", "recipient", "new", "--out", rprefix); err != nil {
		t.Fatal(err)
	}
	rsec, _ := os.ReadFile(rprefix + ".sec")
	rpub, _ := os.ReadFile(rprefix + ".pub")
	rk, err := seal.ParseRecipientKeyText(string(rsec))
	if err != nil {
		t.Fatal(err)
	}
	if rp, err := seal.ParseRecipientPublicKeyText(string(rpub)); err != nil || !rp.Equal(rk.Public()) {
		t.Fatalf("recipient files do not match: %v", err)
	}
}
