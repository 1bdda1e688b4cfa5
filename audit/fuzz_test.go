package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/tensafe/tensafe/seal"
)

// fuzzKey is a fixed signing key, so that seed checkpoints verify.
func fuzzKey(t testing.TB) *seal.SigningKey {
	k, err := seal.GenerateSigningKey(bytes.NewReader(bytes.Repeat([]byte{7}, 64)))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func seedEntries() [][]byte {
	e := vectorEntry
	e.EntryHash = e.ComputeHash()
	good, _ := e.MarshalJSON()
	g := newGenesis(testOrigin, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	gb, _ := g.MarshalJSON()
	return [][]byte{
		good,
		gb,
		[]byte(`{"v":1,"seq":2,"time":"2026-01-02T03:04:05Z","tenant_id":"","actor":"a","operation":"x","resource":"","outcome":"denied","details":null,"prev_hash":"` + vectorHash + `","entry_hash":"` + vectorHash + `"}`),
		[]byte(`{"v":1}`),
		[]byte(`{}`),
		[]byte(`[]`),
		[]byte(`{"v":1,"seq":18446744073709551615,"time":"2261-12-31T23:59:59.999999999Z"}`),
		bytes.Replace(good, []byte(`"tenant-a"`), []byte(`"\u00e9\ud83d\ude00"`), 1),
	}
}

func seedCheckpoints(t testing.TB) [][]byte {
	k := fuzzKey(t)
	c := Checkpoint{Origin: testOrigin, Size: 21, Root: vectorEntry.ComputeHash(), Time: time.Date(2026, 1, 1, 0, 0, 0, 5, time.UTC)}
	note, err := SignCheckpoint(c, k)
	if err != nil {
		t.Fatal(err)
	}
	two := append(bytes.Clone(note), note[bytes.LastIndex(note, []byte("\u2014")):]...)
	return [][]byte{
		note,
		two,
		[]byte("o\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\ntime 2026-01-01T00:00:00Z\n\n\u2014 o AAAAAAA=\n"),
		[]byte("o\n0\n\n\n"),
		[]byte(""),
	}
}

func seedProofs(t testing.TB) [][]byte {
	key := fuzzKey(t)
	dir := filepath.Join(t.TempDir(), "audit")
	fs, err := OpenFileStore(dir, FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	l, err := Open(context.Background(), fs, Options{Origin: testOrigin, Signer: key, CheckpointEvery: 4, CheckpointInterval: -1, Now: newClock().Now})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for i := 0; i < 6; i++ {
		l.Append(context.Background(), testRecord(i))
	}
	var out [][]byte
	for _, seq := range []uint64{0, 2, 6} {
		p, err := l.InclusionProof(context.Background(), seq, 0)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(p)
		out = append(out, b)
	}
	return append(out, []byte(`{"v":1,"proof":[]}`))
}

func FuzzDecodeEntry(f *testing.F) {
	for _, s := range seedEntries() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := DecodeEntry(b)
		if err != nil {
			return
		}
		_ = e.Canonical()
		_ = e.ComputeHash()
		enc, err := e.MarshalJSON()
		if err != nil {
			t.Fatalf("decoded entry does not encode: %v", err)
		}
		e2, err := DecodeEntry(enc)
		if err != nil {
			t.Fatalf("re-encoded entry does not decode: %v\n%s", err, enc)
		}
		if !entriesEqual(e, e2) || e.ComputeHash() != e2.ComputeHash() {
			t.Fatalf("round trip changed the entry:\n%+v\n%+v", e, e2)
		}
	})
}

func FuzzParseCheckpoint(f *testing.F) {
	for _, s := range seedCheckpoints(f) {
		f.Add(s)
	}
	key := fuzzKey(f).Public()
	f.Fuzz(func(t *testing.T, note []byte) {
		sc, err := ParseCheckpoint(note)
		if err != nil {
			return
		}
		if !bytes.HasPrefix(note, sc.Body()) {
			t.Fatalf("parsed body does not re-encode to the note's body:\n%q\n%q", sc.Body(), note)
		}
		c, err := OpenCheckpoint(note, sc.Origin, key)
		if err == nil && (c.Size != sc.Size || c.Root != sc.Root) {
			t.Fatal("OpenCheckpoint disagrees with ParseCheckpoint")
		}
		w := NewWitness(sc.Origin, key, &Checkpoint{Origin: sc.Origin, Size: 3, Root: Hash{1}, Time: time.Unix(0, 0)})
		w.Update(note, []Hash{{}, {2}})
	})
}

func FuzzInclusionProof(f *testing.F) {
	for _, s := range seedProofs(f) {
		f.Add(s)
	}
	key := fuzzKey(f).Public()
	f.Fuzz(func(t *testing.T, b []byte) {
		var p InclusionProof
		if err := json.Unmarshal(b, &p); err != nil {
			return
		}
		p.Verify(nil)
		p.Verify(key)
		enc, err := json.Marshal(&p)
		if err != nil {
			return // e.g. a time the stored form cannot hold
		}
		var q InclusionProof
		if err := json.Unmarshal(enc, &q); err != nil {
			t.Fatalf("re-encoded proof does not decode: %v", err)
		}
	})
}

// FuzzScan feeds arbitrary file contents to the file store's reader.
func FuzzScan(f *testing.F) {
	var log []byte
	for _, s := range seedEntries()[:3] {
		log = append(append(log, s...), '\n')
	}
	f.Add(log)
	f.Add(log[:len(log)-7])
	f.Add([]byte("\n\n\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		lines := uint64(bytes.Count(b, []byte("\n")))
		var n uint64
		err := scanLines(context.Background(), bytes.NewReader(b), "fuzz", func(pos uint64, off int64, line []byte) error {
			if pos != n || bytes.IndexByte(line, '\n') >= 0 || !bytes.Equal(b[off:off+int64(len(line))], line) {
				t.Fatalf("line %d at %d is wrong", pos, off)
			}
			n++
			_, _ = DecodeEntry(line)
			return nil
		})
		torn := len(b) > 0 && b[len(b)-1] != '\n'
		var tt *TornTailError
		switch {
		case torn && (err == nil || !asTorn(err, &tt) || tt.Pos != lines):
			t.Fatalf("torn input: err %v", err)
		case !torn && err != nil:
			t.Fatalf("complete input: %v", err)
		case n != lines:
			t.Fatalf("saw %d lines of %d", n, lines)
		}
	})
}

func asTorn(err error, tt **TornTailError) bool {
	t, ok := err.(*TornTailError)
	*tt = t
	return ok
}

// TestWriteFuzzCorpus writes the seed corpora under testdata/fuzz when
// AUDIT_WRITE_CORPUS=1 (go test -run TestWriteFuzzCorpus ./audit).
func TestWriteFuzzCorpus(t *testing.T) {
	if os.Getenv("AUDIT_WRITE_CORPUS") != "1" {
		t.Skip("set AUDIT_WRITE_CORPUS=1 to rewrite testdata/fuzz")
	}
	var log []byte
	for _, s := range seedEntries()[:3] {
		log = append(append(log, s...), '\n')
	}
	corpora := map[string][][]byte{
		"FuzzDecodeEntry":     seedEntries(),
		"FuzzParseCheckpoint": seedCheckpoints(t),
		"FuzzInclusionProof":  seedProofs(t),
		"FuzzScan":            {log, log[:len(log)-7], []byte("\n\n\n")},
	}
	for name, seeds := range corpora {
		dir := filepath.Join("testdata", "fuzz", name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for i, s := range seeds {
			content := "go test fuzz v1\n[]byte(" + strconv.Quote(string(s)) + ")\n"
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%02d", i)), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}
