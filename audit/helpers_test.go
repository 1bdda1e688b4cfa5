package audit

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tensafe/tensafe/seal"
)

const testOrigin = "tensafe.test/audit"

func newKey(t testing.TB) *seal.SigningKey {
	t.Helper()
	k, err := seal.GenerateSigningKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// fakeClock is a deterministic clock: each call advances it by one
// millisecond.
type fakeClock struct{ t time.Time }

func newClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.t = c.t.Add(time.Millisecond)
	return c.t
}

func testRecord(i int) Record {
	return Record{
		TenantID:  fmt.Sprintf("tenant-%d", i%3),
		Actor:     "key:ak_test",
		Operation: "training.forward_backward",
		Resource:  fmt.Sprintf("session/s-%d", i%5),
		Outcome:   OutcomeSuccess,
		Details:   map[string]string{"step": fmt.Sprint(i), "examples_count": "32"},
	}
}

// newTestLog creates a log in a temporary directory with n appended
// entries (genesis excluded) and checkpoints every cpEvery entries.
func newTestLog(t testing.TB, key *seal.SigningKey, n int, cpEvery uint64) (*Log, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "audit")
	fs, err := OpenFileStore(dir, FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	clk := newClock()
	l, err := Open(context.Background(), fs, Options{Origin: testOrigin, Signer: key, CheckpointEvery: cpEvery, CheckpointInterval: -1, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		if _, err := l.Append(context.Background(), testRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	return l, dir
}

// buildLog creates a closed log with n entries and returns its directory.
func buildLog(t testing.TB, key *seal.SigningKey, n int, cpEvery uint64) string {
	t.Helper()
	l, dir := newTestLog(t, key, n, cpEvery)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

func verifyDir(t testing.TB, dir string, opts VerifyOptions) (*VerifyResult, error) {
	t.Helper()
	fs, err := OpenFileStore(dir, FileOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	return Verify(context.Background(), fs, opts)
}

func readLines(t testing.TB, path string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.SplitAfter(b, []byte("\n"))
	if len(lines[len(lines)-1]) == 0 {
		lines = lines[:len(lines)-1]
	}
	return lines
}

func writeLines(t testing.TB, path string, lines [][]byte) {
	t.Helper()
	if err := os.WriteFile(path, bytes.Join(lines, nil), 0o600); err != nil {
		t.Fatal(err)
	}
}
