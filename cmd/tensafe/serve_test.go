package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestServe starts `tensafe serve` twice on one data directory: the first
// start bootstraps the operator key (file mode 0600, the key never printed),
// the key works against the running server, and the second start reuses it.
func TestServe(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	run := func() (stdout string, token string) {
		ctx, cancel := context.WithCancel(context.Background())
		var out bytes.Buffer
		addrc := make(chan string, 1)
		done := make(chan error, 1)
		go func() {
			done <- runServe(ctx, serveOptions{dataDir: dir, addr: "127.0.0.1:0", rateLimit: -1, grace: 5 * time.Second}, &out,
				func(a string) { addrc <- a })
		}()
		var addr string
		select {
		case addr = <-addrc:
		case err := <-done:
			t.Fatalf("serve: %v", err)
		}
		b, err := os.ReadFile(filepath.Join(dir, "admin.key"))
		if err != nil {
			t.Fatal(err)
		}
		token = strings.TrimSpace(string(b))
		req, _ := http.NewRequest("POST", "http://"+addr+"/api/v1/tenants", strings.NewReader(`{"name":"acme"}`))
		req.Header.Set("Authorization", "Bearer "+token)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		var tn struct{ ID string }
		if res.StatusCode != 201 || json.Unmarshal(body, &tn) != nil || tn.ID == "" {
			t.Fatalf("create tenant with the bootstrap key: %d %s", res.StatusCode, body)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		return out.String(), token
	}
	out1, tok1 := run()
	if !strings.Contains(out1, filepath.Join(dir, "admin.key")) || strings.Contains(out1, tok1) {
		t.Fatalf("first start output:\n%s", out1)
	}
	for _, name := range []string{"admin.key", "master.key", "audit-signing.key"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v", name, fi.Mode(), err)
		}
	}
	out2, tok2 := run()
	if tok2 != tok1 || strings.Contains(out2, "admin.key") {
		t.Fatalf("second start re-bootstrapped:\n%s", out2)
	}
}
