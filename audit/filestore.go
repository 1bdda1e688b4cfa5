package audit

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
)

// Files of a FileStore directory (docs/AUDIT_LOG.md §4).
const (
	EntriesFile     = "entries.jsonl"
	CheckpointsFile = "checkpoints.jsonl"
	lockFileName    = "LOCK"
	tornSuffix      = ".torn"
)

// FileOptions configures OpenFileStore.
type FileOptions struct {
	// ReadOnly opens an existing store for Scan and Checkpoints only,
	// without taking the writer's lock, so that a running server's log can
	// be verified. A record being appended at that moment may be reported
	// as a torn tail; verify again.
	ReadOnly bool
}

// FileStore keeps a log in a directory: entries as JSON lines in
// entries.jsonl, signed checkpoints as JSON lines in checkpoints.jsonl,
// each append written with one write(2) and made durable with fdatasync(2)
// before it returns. One process at a time may open it for writing (an
// flock(2) on the LOCK file).
type FileStore struct {
	dir      string
	readOnly bool

	mu       sync.Mutex // serializes writers of each file
	lock     *os.File
	ents     *os.File
	cps      *os.File
	entsSize int64
	cpsSize  int64
	failed   error // sticky: after a failed write or sync the file state is unknown
}

// OpenFileStore opens (creating, unless read-only) the file store in dir.
//
// Opening for writing fails with a *TornTailError when either file ends in
// a partial record, as a crash in the middle of an append leaves it: the
// bytes are evidence, and nothing appends after them until RepairTornTail
// has moved them aside.
func OpenFileStore(dir string, opts FileOptions) (*FileStore, error) {
	s := &FileStore{dir: dir, readOnly: opts.ReadOnly}
	if opts.ReadOnly {
		if _, err := os.Stat(filepath.Join(dir, EntriesFile)); err != nil {
			return nil, fmt.Errorf("audit: open %s: %w", dir, err)
		}
		return s, nil
	}
	if err := s.openWriter(); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func (s *FileStore) openWriter() error {
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return fmt.Errorf("audit: open %s: %w", s.dir, err)
	}
	lock, err := os.OpenFile(filepath.Join(s.dir, lockFileName), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("audit: open %s: %w", s.dir, err)
	}
	s.lock = lock
	if err := lockFile(lock); err != nil {
		return fmt.Errorf("audit: open %s for writing: %w", s.dir, err)
	}
	created := false
	if s.ents, s.entsSize, err = openAppend(filepath.Join(s.dir, EntriesFile), &created); err != nil {
		return err
	}
	if s.cps, s.cpsSize, err = openAppend(filepath.Join(s.dir, CheckpointsFile), &created); err != nil {
		return err
	}
	if created {
		if err := syncDir(s.dir); err != nil {
			return fmt.Errorf("audit: open %s: %w", s.dir, err)
		}
	}
	for _, f := range []*os.File{s.ents, s.cps} {
		if tt, err := findTornTail(f.Name()); err != nil {
			return err
		} else if tt != nil {
			return tt
		}
	}
	return nil
}

func openAppend(path string, created *bool) (*os.File, int64, error) {
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		*created = true
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, 0, fmt.Errorf("audit: open %s: %w", path, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("audit: open %s: %w", path, err)
	}
	return f, fi.Size(), nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// findTornTail returns a *TornTailError when the file at path does not end
// in a newline, nil when it does (or is empty).
func findTornTail(path string) (*TornTailError, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	size := fi.Size()
	if size == 0 {
		return nil, nil
	}
	var last [1]byte
	if _, err := f.ReadAt(last[:], size-1); err != nil {
		return nil, fmt.Errorf("audit: read %s: %w", path, err)
	}
	if last[0] == '\n' {
		return nil, nil
	}
	// Count complete records and find where the partial one starts.
	var pos uint64
	var off, start int64
	buf := make([]byte, 256<<10)
	for {
		n, err := f.ReadAt(buf, off)
		for i, c := range buf[:n] {
			if c == '\n' {
				pos++
				start = off + int64(i) + 1
			}
		}
		off += int64(n)
		if err == io.EOF || off >= size {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("audit: read %s: %w", path, err)
		}
	}
	return &TornTailError{File: path, Offset: start, Length: size - start, Pos: pos}, nil
}

// Dir returns the store's directory.
func (s *FileStore) Dir() string { return s.dir }

// Append implements Store: one write(2) of all entries, then fdatasync(2).
func (s *FileStore) Append(ctx context.Context, entries []Entry) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("audit: append: %w", err)
	}
	var buf bytes.Buffer
	for i := range entries {
		b, err := entries[i].MarshalJSON()
		if err != nil {
			return fmt.Errorf("audit: append: %w", err)
		}
		buf.Write(b)
		buf.WriteByte('\n')
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.appendLocked(s.ents, &s.entsSize, buf.Bytes())
}

// AppendCheckpoint implements Store.
func (s *FileStore) AppendCheckpoint(ctx context.Context, note []byte) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("audit: append checkpoint: %w", err)
	}
	b, err := jsonMarshalLine(checkpointLine{Note: string(note)})
	if err != nil {
		return fmt.Errorf("audit: append checkpoint: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.appendLocked(s.cps, &s.cpsSize, b)
}

// checkpointLine is one line of checkpoints.jsonl.
type checkpointLine struct {
	Note string `json:"note"`
}

func (s *FileStore) appendLocked(f *os.File, size *int64, b []byte) error {
	if s.readOnly || f == nil {
		return errors.New("audit: append: store is read-only or closed")
	}
	if s.failed != nil {
		return fmt.Errorf("audit: append: store failed earlier, reopen it: %w", s.failed)
	}
	n, err := f.Write(b)
	if err != nil {
		// Take a partial write back, so that the file ends in a complete
		// record. If that fails too, the torn tail is found at the next open.
		if n > 0 {
			if terr := f.Truncate(*size); terr != nil {
				s.failed = err
			}
		}
		return fmt.Errorf("audit: append to %s: %w", f.Name(), err)
	}
	if err := syncData(f); err != nil {
		// After a failed fsync the page cache cannot be trusted to say what
		// is on disk; refuse further writes until the store is reopened.
		s.failed = err
		return fmt.Errorf("audit: append to %s: sync: %w", f.Name(), err)
	}
	*size += int64(n)
	return nil
}

// Scan implements Store.
func (s *FileStore) Scan(ctx context.Context, from uint64, fn func(pos uint64, e Entry) error) error {
	path := filepath.Join(s.dir, EntriesFile)
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("audit: scan: %w", err)
	}
	defer f.Close()
	return scanLines(ctx, f, path, func(pos uint64, off int64, line []byte) error {
		if pos < from {
			return nil
		}
		e, err := DecodeEntry(line)
		if err != nil {
			return &CorruptError{File: path, Pos: pos, Offset: off, Err: err}
		}
		return fn(pos, e)
	})
}

// Checkpoints implements Store. Along with a *TornTailError it returns the
// complete checkpoints before the partial one.
func (s *FileStore) Checkpoints(ctx context.Context) ([][]byte, error) {
	path := filepath.Join(s.dir, CheckpointsFile)
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("audit: checkpoints: %w", err)
	}
	defer f.Close()
	var notes [][]byte
	err = scanLines(ctx, f, path, func(pos uint64, off int64, line []byte) error {
		var cl checkpointLine
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&cl); err != nil {
			return &CorruptError{File: path, Pos: pos, Offset: off, Err: err}
		}
		notes = append(notes, []byte(cl.Note))
		return nil
	})
	return notes, err
}

// scanLines calls fn for each newline-terminated line of r (without the
// newline) and returns a *TornTailError for bytes after the last newline.
func scanLines(ctx context.Context, r io.Reader, path string, fn func(pos uint64, off int64, line []byte) error) error {
	br := bufio.NewReaderSize(r, 256<<10)
	var pos uint64
	var off int64
	var long []byte
	for {
		if pos%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("audit: scan %s: %w", path, err)
			}
		}
		line, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			long = append(long[:0], line...)
			for err == bufio.ErrBufferFull && len(long) <= maxEncodedEntryLen {
				line, err = br.ReadSlice('\n')
				long = append(long, line...)
			}
			if len(long) > maxEncodedEntryLen {
				return &CorruptError{File: path, Pos: pos, Offset: off, Err: fmt.Errorf("record longer than %d bytes", maxEncodedEntryLen)}
			}
			line = long
		}
		if err == io.EOF {
			if len(line) > 0 {
				return &TornTailError{File: path, Offset: off, Length: int64(len(line)), Pos: pos}
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("audit: scan %s: %w", path, err)
		}
		if err := fn(pos, off, line[:len(line)-1]); err != nil {
			return err
		}
		pos++
		off += int64(len(line))
	}
}

// Close implements Store.
func (s *FileStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for _, f := range []*os.File{s.ents, s.cps, s.lock} {
		if f != nil {
			errs = append(errs, f.Close())
		}
	}
	s.ents, s.cps, s.lock = nil, nil, nil
	return errors.Join(errs...)
}

// Repair describes a torn tail that RepairTornTail moved aside.
type Repair struct {
	TornTailError
	MovedSHA256 Hash   // SHA-256 of the bytes moved
	SavedTo     string // the file they were appended to
}

// RepairTornTail moves a torn tail of either file of the store in dir
// aside — appending the partial bytes to "<file>.torn", then truncating the
// file after its last complete record — and returns what it moved (nil
// when both files were intact). The caller should then record the repair
// in the log (Log.RecordRepair). The store must not be open for writing.
func RepairTornTail(dir string) ([]Repair, error) {
	lock, err := os.OpenFile(filepath.Join(dir, lockFileName), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit: repair %s: %w", dir, err)
	}
	defer lock.Close()
	if err := lockFile(lock); err != nil {
		return nil, fmt.Errorf("audit: repair %s: %w", dir, err)
	}
	var repaired []Repair
	for _, name := range []string{EntriesFile, CheckpointsFile} {
		path := filepath.Join(dir, name)
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		tt, err := findTornTail(path)
		if err != nil {
			return repaired, err
		}
		if tt == nil {
			continue
		}
		sum, err := moveTail(path, tt)
		if err != nil {
			return repaired, fmt.Errorf("audit: repair %s: %w", path, err)
		}
		repaired = append(repaired, Repair{TornTailError: *tt, MovedSHA256: sum, SavedTo: path + tornSuffix})
	}
	return repaired, nil
}

func moveTail(path string, tt *TornTailError) (Hash, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return Hash{}, err
	}
	defer f.Close()
	tail := make([]byte, tt.Length)
	if _, err := f.ReadAt(tail, tt.Offset); err != nil {
		return Hash{}, err
	}
	side, err := os.OpenFile(path+tornSuffix, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return Hash{}, err
	}
	header := fmt.Sprintf("# %d bytes of a torn tail of %s at offset %d, moved aside before truncation:\n", tt.Length, filepath.Base(path), tt.Offset)
	_, err = side.Write(append(append([]byte(header), tail...), '\n'))
	if err == nil {
		err = side.Sync()
	}
	if cerr := side.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return Hash{}, err
	}
	if err := f.Truncate(tt.Offset); err != nil {
		return Hash{}, err
	}
	return sha256.Sum256(tail), f.Sync()
}

// jsonMarshalLine returns v as one JSON line, newline included.
func jsonMarshalLine(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}
