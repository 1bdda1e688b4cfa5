package compliance

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// benchDataset builds about size bytes of chat-style JSONL: mostly prose,
// numbers, timestamps and ids, with one line in dense of the labeled PII
// corpus mixed in, the shape of a fine-tuning dataset.
func benchDataset(tb testing.TB, size, dense int) []byte {
	tb.Helper()
	var pii [][]byte
	files, _ := filepath.Glob(filepath.Join("testdata", "corpus", "*"))
	for _, f := range files {
		text, _ := loadCorpus(tb, f)
		pii = append(pii, bytes.Split(text, []byte("\n"))...)
	}
	words := bytes.Fields([]byte(`the model should answer briefly and cite the source when asked about
		privacy budgets, training steps, learning rates of 0.0003, batch sizes like 64 or 128,
		and the results from 2024-05-01T08:00:03Z where loss fell to 0.4817 after 1200 steps;
		users wrote in English, Deutsch, français and 日本語 about their orders #88213 and
		invoices, asking how to reset passwords, update addresses or cancel subscriptions`))
	r := rand.New(rand.NewPCG(1, 2))
	var b bytes.Buffer
	for n := 0; b.Len() < size; n++ {
		if dense > 0 && n%dense == 0 {
			b.Write(pii[r.IntN(len(pii))])
			b.WriteByte('\n')
			continue
		}
		fmt.Fprintf(&b, `{"id": "%016x", "messages": [{"role": "user", "content": "`, r.Uint64())
		for k := 0; k < 20+r.IntN(40); k++ {
			b.Write(words[r.IntN(len(words))])
			b.WriteByte(' ')
		}
		b.WriteString(`"}, {"role": "assistant", "content": "`)
		for k := 0; k < 30+r.IntN(60); k++ {
			b.Write(words[r.IntN(len(words))])
			b.WriteByte(' ')
		}
		b.WriteString("\"}]}\n")
	}
	return b.Bytes()
}

func benchScan(b *testing.B, opts Options, dense int) {
	data := benchDataset(b, 8<<20, dense)
	s, err := NewScanner(opts)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for b.Loop() {
		if _, err := s.ScanBytes(context.Background(), "bench.jsonl", data); err != nil {
			b.Fatal(err)
		}
	}
}

// One core, one stream.
func BenchmarkScan(b *testing.B) {
	b.Run("dataset/pii+secrets", func(b *testing.B) { benchScan(b, Options{}, 20) })
	b.Run("dataset/pii", func(b *testing.B) { benchScan(b, Options{SkipSecrets: true}, 20) })
	b.Run("dataset/secrets", func(b *testing.B) { benchScan(b, Options{SkipPII: true}, 20) })
	b.Run("dense/pii+secrets", func(b *testing.B) { benchScan(b, Options{}, 1) })
	b.Run("clean/pii+secrets", func(b *testing.B) { benchScan(b, Options{}, 0) })
}

// ScanPaths over a directory of files, all cores.
func BenchmarkScanPaths(b *testing.B) {
	dir := b.TempDir()
	var total int64
	for k := range 8 {
		data := benchDataset(b, 2<<20, 20)
		total += int64(len(data))
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("part-%d.jsonl", k)), data, 0o600); err != nil {
			b.Fatal(err)
		}
	}
	s, err := NewScanner(Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(total)
	b.ResetTimer()
	for b.Loop() {
		if _, err := s.ScanPaths(context.Background(), dir); err != nil {
			b.Fatal(err)
		}
	}
}
