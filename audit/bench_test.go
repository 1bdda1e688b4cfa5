package audit

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tensafe/tensafe/seal"
)

// Benchmarks measure; tests never assert on time. Run:
//
//	go test -run '^$' -bench 'Append|Fdatasync' -benchtime 3000x ./audit
//	go test -run '^$' -bench Verify100k -benchtime 3x ./audit
//
// The append benchmarks report latency percentiles of Log.Append with the
// file store (write + fdatasync per batch) as p50-ns and p99-ns.

func reportLatencies(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Nanoseconds()) }
	b.ReportMetric(pct(0.50), "p50-ns")
	b.ReportMetric(pct(0.99), "p99-ns")
	b.ReportMetric(float64(lat[len(lat)-1].Nanoseconds()), "max-ns")
}

func benchLog(b *testing.B) *Log {
	dir := filepath.Join(b.TempDir(), "audit")
	fs, err := OpenFileStore(dir, FileOptions{})
	if err != nil {
		b.Fatal(err)
	}
	l, err := Open(context.Background(), fs, Options{Origin: testOrigin, Signer: newKey(b)})
	if err != nil {
		b.Fatal(err)
	}
	return l
}

// BenchmarkAppend: one appender, every Append durable before the next.
// Checkpoints (hybrid-signed, every 1024 entries) are included.
func BenchmarkAppend(b *testing.B) {
	l := benchLog(b)
	defer l.Close()
	ctx := context.Background()
	r := testRecord(1)
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if _, err := l.Append(ctx, r); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	reportLatencies(b, lat)
}

// BenchmarkAppendConcurrent: 16 appenders; group commit shares one write
// and one fdatasync among the appends that queue up during the previous.
func BenchmarkAppendConcurrent(b *testing.B) {
	l := benchLog(b)
	defer l.Close()
	ctx := context.Background()
	r := testRecord(1)
	var mu sync.Mutex
	lat := make([]time.Duration, 0, b.N)
	b.SetParallelism(8) // 8 × GOMAXPROCS goroutines
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		local := make([]time.Duration, 0, 1024)
		for pb.Next() {
			t0 := time.Now()
			if _, err := l.Append(ctx, r); err != nil {
				b.Error(err)
				return
			}
			local = append(local, time.Since(t0))
		}
		mu.Lock()
		lat = append(lat, local...)
		mu.Unlock()
	})
	b.StopTimer()
	reportLatencies(b, lat)
}

// BenchmarkFdatasyncBaseline is the floor under BenchmarkAppend: one
// 300-byte append and fdatasync(2) on the same file system, with nothing
// else. Compare their percentiles from the same run.
func BenchmarkFdatasyncBaseline(b *testing.B) {
	f, err := os.OpenFile(filepath.Join(b.TempDir(), "f"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	line := make([]byte, 300)
	line[299] = '\n'
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if _, err := f.Write(line); err != nil {
			b.Fatal(err)
		}
		if err := syncData(f); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	reportLatencies(b, lat)
}

// writeSyntheticLog writes a valid log of n entries (genesis included)
// with checkpoints every cpEvery entries straight to a file store, in
// batches: much faster than n durable appends, and the same bytes.
func writeSyntheticLog(tb testing.TB, dir string, n int, key *seal.SigningKey, cpEvery int) {
	fs, err := OpenFileStore(dir, FileOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	defer fs.Close()
	ctx := context.Background()
	clk := newClock()
	rt := newRootTracker()
	prev := newGenesis(testOrigin, clk.Now())
	batch := []Entry{prev}
	rt.append(prev.EntryHash)
	flush := func() {
		if err := fs.Append(ctx, batch); err != nil {
			tb.Fatal(err)
		}
		batch = batch[:0]
	}
	for i := 1; i < n; i++ {
		e := Entry{Seq: uint64(i), Time: clk.Now(), Record: testRecord(i), PrevHash: prev.EntryHash}
		e.EntryHash = e.ComputeHash()
		batch = append(batch, e)
		rt.append(e.EntryHash)
		prev = e
		if (i+1)%cpEvery == 0 || i == n-1 {
			flush()
			note, err := SignCheckpoint(Checkpoint{Origin: testOrigin, Size: rt.size(), Root: rt.root(), Time: prev.Time}, key)
			if err != nil {
				tb.Fatal(err)
			}
			if err := fs.AppendCheckpoint(ctx, note); err != nil {
				tb.Fatal(err)
			}
		}
	}
}

// BenchmarkVerify100k: full verification (decode, hash, link, Merkle
// tree, ~100 hybrid-signed checkpoints) of a 100,000-entry file log.
func BenchmarkVerify100k(b *testing.B) {
	const n = 100_000
	key := newKey(b)
	dir := filepath.Join(b.TempDir(), "audit")
	writeSyntheticLog(b, dir, n, key, 1024)
	fs, err := OpenFileStore(dir, FileOptions{ReadOnly: true})
	if err != nil {
		b.Fatal(err)
	}
	opts := VerifyOptions{Key: key.Public()}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		res, err := Verify(context.Background(), fs, opts)
		if err != nil {
			b.Fatal(err)
		}
		if res.Size != n {
			b.Fatalf("verified %d entries", res.Size)
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "entries/s")
}

func BenchmarkDecodeEntry(b *testing.B) {
	e := vectorEntry
	e.EntryHash = e.ComputeHash()
	line, _ := e.MarshalJSON()
	b.SetBytes(int64(len(line)))
	for i := 0; i < b.N; i++ {
		if _, err := DecodeEntry(line); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEntryHash(b *testing.B) {
	e := vectorEntry
	for i := 0; i < b.N; i++ {
		e.ComputeHash()
	}
}
