package compliance

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestReportNeverHoldsValues scans every labeled corpus and checks that no
// labeled value appears anywhere in the JSON report.
func TestReportNeverHoldsValues(t *testing.T) {
	dir := t.TempDir()
	files, _ := filepath.Glob(filepath.Join("testdata", "corpus", "*"))
	var values []string
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range marker.FindAllSubmatch(raw, -1) {
			values = append(values, string(m[2]))
		}
		text, _ := loadCorpus(t, f)
		writeFile(t, filepath.Join(dir, filepath.Base(f)), text)
	}
	rep, err := testScanner(t).ScanPaths(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Clean() || len(rep.Findings) < len(values)*9/10 {
		t.Fatalf("found %d of %d labeled items", len(rep.Findings), len(values))
	}
	out, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range values {
		// short values (a 7-digit date) could occur by chance in paths or counts
		if len(v) >= 10 && bytes.Contains(out, []byte(v)) {
			t.Errorf("report contains a matched value of %d bytes", len(v))
		}
	}
}

func TestScanPaths(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "clean.txt"), []byte("nothing to see\nhere\n"))
	writeFile(t, filepath.Join(dir, "sub", "data.jsonl"), []byte(`{"a": "x"}`+"\n"+`{"email": "ana@example.org"}`+"\n"))
	writeFile(t, filepath.Join(dir, "sub", "people.csv"), []byte("name,birth_date\nana,1984-07-21\nbo,12/31/1999\n"))
	writeFile(t, filepath.Join(dir, ".env"), []byte("PORT=1\nDB_PASSWORD=Tr0ub4dor&3\n"))
	writeFile(t, filepath.Join(dir, "model.bin"), []byte("ana@example.org\x00\x01"))
	writeFile(t, filepath.Join(dir, ".git", "config"), []byte("bob@example.org\n"))
	if err := os.Symlink(filepath.Join(dir, "clean.txt"), filepath.Join(dir, "link.txt")); err != nil {
		t.Fatal(err)
	}
	rep, err := testScanner(t).ScanPaths(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	type fl struct {
		file      string
		line, col int
		kind      Kind
	}
	var got []fl
	for _, f := range rep.Findings {
		rel, _ := filepath.Rel(dir, f.File)
		got = append(got, fl{rel, f.Line, f.Column, f.Kind})
	}
	want := []fl{
		{".env", 2, 13, KindDotEnvSecret},
		{"sub/data.jsonl", 2, 12, KindEmail},
		{"sub/people.csv", 2, 5, KindDateOfBirth},
		{"sub/people.csv", 3, 4, KindDateOfBirth},
	}
	if len(got) != len(want) {
		t.Fatalf("findings %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("finding %d: %v, want %v", i, got[i], want[i])
		}
	}
	if rep.Files != 4 || rep.PII != 3 || rep.Secrets != 1 || rep.Counts[KindDateOfBirth] != 2 {
		t.Errorf("files %d, pii %d, secrets %d, counts %v", rep.Files, rep.PII, rep.Secrets, rep.Counts)
	}
	if len(rep.Skipped) != 3 || !strings.HasSuffix(rep.Skipped[0].File, ".git") ||
		!strings.HasSuffix(rep.Skipped[1].File, "link.txt") || !strings.HasSuffix(rep.Skipped[2].File, "model.bin") {
		t.Errorf("skipped %v", rep.Skipped)
	}
	// links named as roots are followed
	other := t.TempDir()
	if err := os.Symlink(filepath.Join(dir, "sub"), filepath.Join(other, "sublink")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, ".env"), filepath.Join(other, "envlink")); err != nil {
		t.Fatal(err)
	}
	rep, err = testScanner(t).ScanPaths(context.Background(), filepath.Join(other, "sublink"), filepath.Join(other, "envlink"))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Files != 3 || rep.PII != 3 {
		t.Errorf("through links: files %d, pii %d, skipped %v", rep.Files, rep.PII, rep.Skipped)
	}
	if rep.Format != ReportFormat {
		t.Errorf("format %q", rep.Format)
	}
}

func TestScanPathsErrors(t *testing.T) {
	s := testScanner(t)
	_, err := s.ScanPaths(context.Background(), filepath.Join(t.TempDir(), "missing"))
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "missing") {
		t.Errorf("missing path: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.txt"), []byte("a@example.com\n"))
	if _, err := s.ScanPaths(ctx, dir); !errors.Is(err, context.Canceled) {
		t.Errorf("canceled: %v", err)
	}
}

func TestNewScannerOptions(t *testing.T) {
	for _, tt := range []struct {
		opts  Options
		field string
	}{
		{Options{PhoneRegion: "XX"}, "PhoneRegion"},
		{Options{MinEntropy: 9}, "MinEntropy"},
		{Options{MaxLine: 100}, "MaxLine"},
		{Options{Workers: -1}, "Workers"},
	} {
		_, err := NewScanner(tt.opts)
		if !errors.Is(err, ErrBadOption) || !strings.Contains(err.Error(), tt.field) {
			t.Errorf("%+v: %v, want ErrBadOption naming %s", tt.opts, err, tt.field)
		}
	}
	s, err := NewScanner(Options{PhoneRegion: "GB", SkipSecrets: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := kindsOf(t, s, "a.txt", "call 020 7946 0958 key AKIAZ7QWERTY12345678"); len(got) != 1 || got[0] != KindPhone {
		t.Errorf("GB region, no secrets: %v", got)
	}
}

// A line longer than MaxLine is scanned in pieces; columns still count from
// the start of the line.
func TestLongLine(t *testing.T) {
	s, err := NewScanner(Options{MaxLine: 4096})
	if err != nil {
		t.Fatal(err)
	}
	line := strings.Repeat("a ", 10000) + "x ana@example.org y" + strings.Repeat(" b", 5000)
	fs, err := s.ScanBytes(context.Background(), "long.txt", []byte("first\n"+line+"\nc@example.net\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []Finding{{KindEmail, "long.txt", 2, 20003}, {KindEmail, "long.txt", 3, 1}}
	if len(fs) != 2 || fs[0] != want[0] || fs[1] != want[1] {
		t.Errorf("got %v, want %v", fs, want)
	}
}

// A private key's body is one finding at the BEGIN line, not one per line.
func TestPrivateKeyBlock(t *testing.T) {
	text := "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj\nMzEfYyjiWA4R4/M2bS1GB4t7NXp98C3SC6dVMvDuictGeurT8jNbvJZHtCSuYEvu\n-----END PRIVATE KEY-----\nafter ghp_1a2B3c4D5e6F7g8H9i0J1k2L3m4N5o6P7q8R\n"
	fs, err := testScanner(t).ScanBytes(context.Background(), "k.pem", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	if len(fs) != 2 || fs[0].Kind != KindPrivateKey || fs[0].Line != 1 || fs[1].Kind != KindGitHubToken || fs[1].Line != 5 {
		t.Errorf("got %v", fs)
	}
}

func TestMaxFindings(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"c.txt", "a.txt", "b.txt"} {
		writeFile(t, filepath.Join(dir, name), []byte("x@example.com y@example.com\n10.1.2.3\n"))
	}
	s, err := NewScanner(Options{MaxFindings: 4, Workers: 3})
	if err != nil {
		t.Fatal(err)
	}
	for range 5 { // the kept findings must not depend on worker timing
		rep, err := s.ScanPaths(context.Background(), dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.Findings) != 4 || rep.FindingsOmitted != 5 || rep.Counts[KindEmail] != 6 || rep.Counts[KindIPv4] != 3 || rep.PII != 9 {
			t.Fatalf("findings %d, omitted %d, counts %v", len(rep.Findings), rep.FindingsOmitted, rep.Counts)
		}
		last := rep.Findings[3]
		if filepath.Base(rep.Findings[0].File) != "a.txt" || filepath.Base(last.File) != "b.txt" || last.Line != 1 || last.Column != 1 {
			t.Fatalf("kept %v", rep.Findings)
		}
	}
}

func TestClaimed(t *testing.T) {
	c := newClaimed([]match{{start: 10, end: 20}, {start: 2, end: 4}, {start: 12, end: 30}})
	for _, tt := range []struct {
		i    int
		want bool
	}{{0, false}, {2, true}, {3, true}, {4, false}, {9, false}, {10, true}, {19, true}, {25, true}, {30, false}, {3, true}, {11, true}} {
		if got := c.has(tt.i); got != tt.want {
			t.Errorf("has(%d) = %v, want %v", tt.i, got, tt.want)
		}
	}
}

func TestScanGzip(t *testing.T) {
	dir := t.TempDir()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write([]byte("name,dob\nana,1984-07-21\nmail ana@example.org\n"))
	zw.Close()
	writeFile(t, filepath.Join(dir, "people.csv.gz"), buf.Bytes())
	writeFile(t, filepath.Join(dir, "broken.gz"), []byte{0x1f, 0x8b, 1, 2, 3})
	s := testScanner(t)
	_, err := s.ScanPaths(context.Background(), dir)
	if err == nil || !strings.Contains(err.Error(), "broken.gz") {
		t.Fatalf("broken gzip: %v", err)
	}
	os.Remove(filepath.Join(dir, "broken.gz"))
	rep, err := s.ScanPaths(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Counts[KindDateOfBirth] != 1 || rep.Counts[KindEmail] != 1 || rep.Bytes != 45 {
		t.Errorf("counts %v, bytes %d", rep.Counts, rep.Bytes)
	}
}

func TestKindLists(t *testing.T) {
	seen := map[Kind]bool{}
	for _, k := range PIIKinds() {
		if k.Category() != CategoryPII || seen[k] {
			t.Errorf("PII kind %s: category %s, duplicate %v", k, k.Category(), seen[k])
		}
		seen[k] = true
	}
	for _, k := range SecretKinds() {
		if k.Category() != CategorySecret || seen[k] {
			t.Errorf("secret kind %s: category %s, duplicate %v", k, k.Category(), seen[k])
		}
		seen[k] = true
	}
	for _, r := range tokenRules {
		if !seen[r.kind] {
			t.Errorf("rule kind %s missing from SecretKinds", r.kind)
		}
	}
}
