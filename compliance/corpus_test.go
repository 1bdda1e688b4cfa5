package compliance

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"testing"
)

// The labeled corpora in testdata/corpus mark every item that must be found
// inline as {{kind:value}}. The test strips the markers, which gives the text
// to scan and the expected (line, column, kind) of each item; anything else
// the scanner reports is a false positive.

var corpusGlob = flag.String("corpus", "*", "which files of testdata/corpus to score")

var marker = regexp.MustCompile(`\{\{([a-z0-9_]+):(.*?)\}\}`)

type loc struct {
	line, col int
	kind      Kind
}

func loadCorpus(t testing.TB, path string) ([]byte, map[loc]bool) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := map[loc]bool{}
	var out bytes.Buffer
	for n, line := range bytes.Split(raw, []byte("\n")) {
		if n > 0 {
			out.WriteByte('\n')
		}
		var clean []byte
		last := 0
		for _, m := range marker.FindAllSubmatchIndex(line, -1) {
			clean = append(clean, line[last:m[0]]...)
			want[loc{n + 1, len(clean) + 1, Kind(line[m[2]:m[3]])}] = true
			clean = append(clean, line[m[4]:m[5]]...)
			last = m[1]
		}
		clean = append(clean, line[last:]...)
		out.Write(clean)
	}
	return out.Bytes(), want
}

type score struct{ tp, fp, fn int }

func (s score) precision() float64 {
	if s.tp+s.fp == 0 {
		return 1
	}
	return float64(s.tp) / float64(s.tp+s.fp)
}

func (s score) recall() float64 {
	if s.tp+s.fn == 0 {
		return 1
	}
	return float64(s.tp) / float64(s.tp+s.fn)
}

func TestCorpusPrecisionRecall(t *testing.T) {
	s := testScanner(t)
	files, err := filepath.Glob(filepath.Join("testdata", "corpus", *corpusGlob))
	if err != nil || len(files) == 0 {
		t.Fatalf("no corpus files: %v", err)
	}
	scores := map[Kind]*score{}
	get := func(k Kind) *score {
		if scores[k] == nil {
			scores[k] = &score{}
		}
		return scores[k]
	}
	for _, f := range files {
		text, want := loadCorpus(t, f)
		// the base name selects CSV and .env handling
		found, err := s.ScanBytes(context.Background(), filepath.Base(f), text)
		if err != nil {
			t.Fatal(err)
		}
		got := map[loc]bool{}
		for _, x := range found {
			l := loc{x.Line, x.Column, x.Kind}
			got[l] = true
			if want[l] {
				get(x.Kind).tp++
			} else {
				get(x.Kind).fp++
				t.Logf("false positive %s:%d:%d %s", f, x.Line, x.Column, x.Kind)
			}
		}
		for l := range want {
			if !got[l] {
				get(l.kind).fn++
				t.Logf("missed %s:%d:%d %s", f, l.line, l.col, l.kind)
			}
		}
	}
	kinds := make([]string, 0, len(scores))
	for k := range scores {
		kinds = append(kinds, string(k))
	}
	sort.Strings(kinds)
	var table bytes.Buffer
	fmt.Fprintf(&table, "%-20s %5s %4s %4s %9s %6s\n", "kind", "items", "fp", "fn", "precision", "recall")
	for _, k := range kinds {
		sc := scores[Kind(k)]
		fmt.Fprintf(&table, "%-20s %5d %4d %4d %9.3f %6.3f\n", k, sc.tp+sc.fn, sc.fp, sc.fn, sc.precision(), sc.recall())
	}
	t.Logf("corpus scores:\n%s", table.String())
	if *corpusGlob != "*" {
		return // a subset is scored for its figures, not held to the thresholds
	}
	var secrets score
	for k, sc := range scores {
		if k.Category() == CategorySecret {
			secrets.tp += sc.tp
			secrets.fp += sc.fp
			secrets.fn += sc.fn
		}
	}
	t.Logf("secrets, all kinds: %d items, precision %.3f, recall %.3f", secrets.tp+secrets.fn, secrets.precision(), secrets.recall())
	if secrets.tp+secrets.fn < 50 || secrets.precision() < 0.95 || secrets.recall() < 0.9 {
		t.Errorf("secrets: %d items, precision %.3f (want ≥ 0.95), recall %.3f (want ≥ 0.9)", secrets.tp+secrets.fn, secrets.precision(), secrets.recall())
	}
	for _, k := range PIIKinds() {
		sc := scores[k]
		if sc == nil || sc.tp+sc.fn < 20 {
			t.Errorf("%s: corpus has too few labeled items to measure (%v)", k, sc)
			continue
		}
		if sc.precision() < 0.95 || sc.recall() < 0.9 {
			t.Errorf("%s: precision %.3f (want ≥ 0.95), recall %.3f (want ≥ 0.9)", k, sc.precision(), sc.recall())
		}
	}
}
