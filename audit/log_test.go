package audit

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestLogAppendVerifyReopen(t *testing.T) {
	key := newKey(t)
	l, dir := newTestLog(t, key, 10, 4)
	if got := l.Size(); got != 11 {
		t.Fatalf("Size = %d, want 11 (genesis + 10)", got)
	}
	res, err := l.Verify(context.Background(), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if res.Size != 11 || res.Checkpoints != 2 || res.Latest.Size != 8 || !res.SignaturesChecked {
		t.Fatalf("Verify result %+v: want 11 entries and checkpoints at 4 and 8", res)
	}
	if _, root := l.Head(); root != res.Root {
		t.Fatalf("Head root %s, Verify root %s", root, res.Root)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	// Close wrote a final checkpoint of all 11 entries.
	res, err = verifyDir(t, dir, VerifyOptions{Key: key.Public()})
	if err != nil {
		t.Fatal(err)
	}
	if res.Checkpoints != 3 || res.Latest.Size != 11 {
		t.Fatalf("after Close: %d checkpoints, latest %+v; want 3, size 11", res.Checkpoints, res.Latest)
	}

	// Reopen and continue the chain.
	fs, err := OpenFileStore(dir, FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	l2, err := Open(context.Background(), fs, Options{Origin: testOrigin, Signer: key, CheckpointInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	e, err := l2.Append(context.Background(), testRecord(99))
	if err != nil {
		t.Fatal(err)
	}
	if e.Seq != 11 {
		t.Fatalf("first seq after reopen = %d, want 11", e.Seq)
	}
	if err := l2.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := verifyDir(t, dir, VerifyOptions{Key: key.Public()}); err != nil {
		t.Fatal(err)
	}
}

func TestLogOpenRefuses(t *testing.T) {
	key := newKey(t)
	dir := buildLog(t, key, 3, 100)
	fs, err := OpenFileStore(dir, FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	if _, err := Open(context.Background(), fs, Options{Origin: "other.test/audit", Signer: key}); err == nil || !strings.Contains(err.Error(), "origin") {
		t.Fatalf("Open with another origin: %v", err)
	}
	if _, err := Open(context.Background(), fs, Options{Origin: "bad origin"}); err == nil || !strings.Contains(err.Error(), "origin") {
		t.Fatalf("Open with a bad origin: %v", err)
	}
	// A second writer of the same directory is refused.
	if _, err := OpenFileStore(dir, FileOptions{}); err == nil || !strings.Contains(err.Error(), "locked") {
		t.Fatalf("second OpenFileStore: %v", err)
	}
}

func TestLogOpenRefusesTamperedLog(t *testing.T) {
	key := newKey(t)
	dir := buildLog(t, key, 5, 100)
	path := filepath.Join(dir, EntriesFile)
	lines := readLines(t, path)
	lines[3] = []byte(strings.Replace(string(lines[3]), "tenant-", "tenant-x", 1))
	writeLines(t, path, lines)
	fs, err := OpenFileStore(dir, FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	_, err = Open(context.Background(), fs, Options{Origin: testOrigin, Signer: key})
	var ve *VerifyError
	if !errors.As(err, &ve) || ve.Seq != 3 || ve.Fault != FaultHash {
		t.Fatalf("Open of a tampered log = %v, want a VerifyError at seq 3", err)
	}
}

func TestLogRejectsInvalidRecordUnchanged(t *testing.T) {
	key := newKey(t)
	l, _ := newTestLog(t, key, 2, 100)
	defer l.Close()
	size, root := l.Head()
	r := testRecord(0)
	r.Details = map[string]string{"password": "hunter2"}
	if _, err := l.Append(context.Background(), r); !errors.Is(err, ErrInvalidRecord) {
		t.Fatalf("Append = %v, want ErrInvalidRecord", err)
	}
	if s2, r2 := l.Head(); s2 != size || r2 != root {
		t.Fatalf("a refused record changed the log")
	}
}

func TestLogConcurrentAppends(t *testing.T) {
	key := newKey(t)
	l, dir := newTestLog(t, key, 0, 50)
	const workers, each = 8, 60
	var wg sync.WaitGroup
	seqs := make(chan uint64, workers*each)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				r := testRecord(i)
				r.Actor = fmt.Sprintf("worker-%d", w)
				e, err := l.Append(context.Background(), r)
				if err != nil {
					t.Error(err)
					return
				}
				seqs <- e.Seq
			}
		}(w)
	}
	wg.Wait()
	close(seqs)
	seen := map[uint64]bool{}
	for s := range seqs {
		if seen[s] {
			t.Fatalf("seq %d returned twice", s)
		}
		seen[s] = true
	}
	for s := uint64(1); s <= workers*each; s++ {
		if !seen[s] {
			t.Fatalf("seq %d missing", s)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	res, err := verifyDir(t, dir, VerifyOptions{Key: key.Public()})
	if err != nil {
		t.Fatal(err)
	}
	if res.Size != workers*each+1 {
		t.Fatalf("log has %d entries, want %d", res.Size, workers*each+1)
	}
	// Every worker's entries are all there.
	fs, _ := OpenFileStore(dir, FileOptions{ReadOnly: true})
	per := map[string]int{}
	fs.Scan(context.Background(), 1, func(_ uint64, e Entry) error { per[e.Actor]++; return nil })
	for w := 0; w < workers; w++ {
		if n := per[fmt.Sprintf("worker-%d", w)]; n != each {
			t.Fatalf("worker %d has %d entries, want %d", w, n, each)
		}
	}
}

func TestLogCheckpointInterval(t *testing.T) {
	key := newKey(t)
	dir := filepath.Join(t.TempDir(), "audit")
	fs, err := OpenFileStore(dir, FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	l, err := Open(context.Background(), fs, Options{Origin: testOrigin, Signer: key, CheckpointEvery: 1 << 30, CheckpointInterval: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, err := l.Append(context.Background(), testRecord(1)); err != nil {
		t.Fatal(err)
	}
	// Wait (bounded) for the timer to write a checkpoint of both entries.
	for i := 0; i < 400 && l.LatestCheckpoint() == nil; i++ {
		time.Sleep(5 * time.Millisecond)
	}
	note := l.LatestCheckpoint()
	if note == nil {
		t.Fatal("no checkpoint after 2 s with a 5 ms interval")
	}
	c, err := OpenCheckpoint(note, testOrigin, key.Public())
	if err != nil {
		t.Fatal(err)
	}
	if c.Size != 2 {
		t.Fatalf("checkpoint size %d, want 2", c.Size)
	}
}

func TestLogClosed(t *testing.T) {
	key := newKey(t)
	l, _ := newTestLog(t, key, 1, 100)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(context.Background(), testRecord(0)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close = %v, want ErrClosed", err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestLogClockGoingBack(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "audit")
	fs, err := OpenFileStore(dir, FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	times := []time.Time{
		time.Date(2026, 1, 1, 0, 0, 2, 0, time.UTC), // genesis
		time.Date(2026, 1, 1, 0, 0, 1, 0, time.UTC), // clock stepped back
		time.Date(2026, 1, 1, 0, 0, 3, 0, time.UTC),
	}
	i := 0
	now := func() time.Time { t := times[min(i, len(times)-1)]; i++; return t }
	l, err := Open(context.Background(), fs, Options{Origin: testOrigin, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	e1, _ := l.Append(context.Background(), testRecord(1))
	e2, _ := l.Append(context.Background(), testRecord(2))
	if !e1.Time.Equal(times[0]) || !e2.Time.Equal(times[2]) {
		t.Fatalf("entry times %v, %v: want %v (held) and %v", e1.Time, e2.Time, times[0], times[2])
	}
	if _, err := l.Verify(context.Background(), 0, 0); err != nil {
		t.Fatal(err)
	}
	l.Close()
}

// failingStore fails every append after the first n entries; it checks
// that a Log stops at the first write failure.
type failingStore struct {
	Store
	left int
}

func (s *failingStore) Append(ctx context.Context, entries []Entry) error {
	if s.left < len(entries) {
		return errors.New("disk full")
	}
	s.left -= len(entries)
	return s.Store.Append(ctx, entries)
}

func TestLogStopsAfterWriteFailure(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "audit")
	fs, err := OpenFileStore(dir, FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	l, err := Open(context.Background(), &failingStore{Store: fs, left: 2}, Options{Origin: testOrigin})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, err := l.Append(context.Background(), testRecord(1)); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(context.Background(), testRecord(2)); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("Append = %v, want the store's error", err)
	}
	if _, err := l.Append(context.Background(), testRecord(3)); err == nil || !strings.Contains(err.Error(), "failed earlier") {
		t.Fatalf("Append after a failure = %v, want a refusal", err)
	}
	if l.Err() == nil {
		t.Fatal("Err() is nil after a failed write")
	}
	if s := l.Size(); s != 2 {
		t.Fatalf("Size = %d after a failed append, want 2", s)
	}
}

func TestFileStoreCreatesPrivateFiles(t *testing.T) {
	dir := buildLog(t, nil, 1, 100)
	for _, name := range []string{EntriesFile, CheckpointsFile} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", name, fi.Mode().Perm())
		}
	}
}

func TestLogAppendCanceled(t *testing.T) {
	l, _ := newTestLog(t, nil, 1, 100)
	defer l.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	size := l.Size()
	if _, err := l.Append(ctx, testRecord(2)); !errors.Is(err, context.Canceled) {
		t.Fatalf("Append with a canceled context = %v", err)
	}
	if l.Size() != size {
		t.Fatal("a canceled Append was appended")
	}
}
