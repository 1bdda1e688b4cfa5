package audit

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/tensafe/tensafe/seal"
)

// ErrClosed is returned by Append after Close.
var ErrClosed = errors.New("audit: log is closed")

// Defaults of Options.
const (
	DefaultCheckpointEvery    = 1024
	DefaultCheckpointInterval = time.Minute
	DefaultMaxBatch           = 512
)

// Options configures a Log.
type Options struct {
	// Origin names the log in its genesis entry and its checkpoints, in the
	// manner of a C2SP origin: a schema-less URL such as
	// "tensafe.example.com/audit". Required; it must match the genesis
	// entry of an existing log.
	Origin string
	// Signer signs checkpoints. Without it the log writes none.
	Signer *seal.SigningKey
	// CheckpointEvery writes a checkpoint once this many entries have been
	// appended since the last one (default DefaultCheckpointEvery).
	CheckpointEvery uint64
	// CheckpointInterval writes a checkpoint this long after the last one
	// when entries have been appended since (default
	// DefaultCheckpointInterval; negative: only by count).
	CheckpointInterval time.Duration
	// MaxBatch bounds how many concurrent appends share one write and one
	// fdatasync (group commit; default DefaultMaxBatch).
	MaxBatch int
	// Now is the clock (default time.Now). Entry times never go backwards:
	// if the clock does, entries keep the previous entry's time.
	Now func() time.Time
}

// Log is an append-only, hash-chained, checkpointed audit log over a
// Store. Its methods are safe for concurrent use. Appends are serialized by
// one writer goroutine that commits whatever has queued up while the
// previous write was syncing in one write and one sync (group commit), so
// that concurrent appends are never lost or interleaved and each is durable
// when Append returns.
type Log struct {
	store Store
	opts  Options

	reqs    chan *appendReq // unbuffered: a send succeeds only when the writer takes it
	cpReqs  chan chan appendRes
	closing chan struct{}
	done    chan struct{}
	once    sync.Once

	mu       sync.Mutex // guards the fields below, which the writer updates
	size     uint64
	root     Hash
	failed   error
	latestCP []byte
	closeErr error

	// Owned by the writer goroutine.
	last    Entry
	tracker rootTracker
	cpSize  uint64
	cpTime  time.Time
}

type appendReq struct {
	rec Record
	res chan appendRes
}

type appendRes struct {
	e   Entry
	err error
}

// Open opens the log in store, writing the genesis entry if the store is
// empty. It verifies the whole existing log first (Verify with the
// signer's key), so that nothing is appended to a log that does not
// verify; the error is then the *VerifyError, *CheckpointError or
// *TornTailError found. The Log owns store and closes it on Close.
func Open(ctx context.Context, store Store, opts Options) (*Log, error) {
	if err := checkOrigin(opts.Origin); err != nil {
		return nil, fmt.Errorf("audit: open: options: %w", err)
	}
	if opts.CheckpointEvery == 0 {
		opts.CheckpointEvery = DefaultCheckpointEvery
	}
	if opts.CheckpointInterval == 0 {
		opts.CheckpointInterval = DefaultCheckpointInterval
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = DefaultMaxBatch
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	l := &Log{
		store:   store,
		opts:    opts,
		reqs:    make(chan *appendReq),
		cpReqs:  make(chan chan appendRes),
		closing: make(chan struct{}),
		done:    make(chan struct{}),
	}
	var key *seal.VerifyingKey
	if opts.Signer != nil {
		key = opts.Signer.Public()
	}
	st, err := scan(ctx, store, VerifyOptions{Key: key})
	var ve *VerifyError
	switch {
	case err == nil:
		if st.result.Origin != opts.Origin {
			return nil, fmt.Errorf("audit: open: the log's origin is %q, options say %q", st.result.Origin, opts.Origin)
		}
		l.last, l.tracker = st.last, st.tracker
		if c := st.result.Latest; c != nil {
			l.cpSize, l.cpTime, l.latestCP = c.Size, c.Time, st.latestCP
		}
	case errors.As(err, &ve) && ve.Fault == FaultGenesis && isEmpty(ctx, store):
		g := newGenesis(opts.Origin, l.now(time.Time{}))
		if err := store.Append(ctx, []Entry{g}); err != nil {
			return nil, fmt.Errorf("audit: open: write genesis: %w", err)
		}
		l.last, l.tracker = g, newRootTracker()
		l.tracker.append(g.EntryHash)
	default:
		return nil, err
	}
	l.size, l.root = l.tracker.size(), l.tracker.root()
	go l.writer()
	return l, nil
}

// isEmpty reports whether store holds nothing at all: no entries and no
// checkpoints (checkpoints without entries are a truncated log).
func isEmpty(ctx context.Context, store Store) bool {
	if cps, err := store.Checkpoints(ctx); err != nil || len(cps) > 0 {
		return false
	}
	empty := true
	err := store.Scan(ctx, 0, func(uint64, Entry) error { empty = false; return errStopScan })
	return empty && err == nil
}

// now returns the clock, never earlier than floor.
func (l *Log) now(floor time.Time) time.Time {
	t := l.opts.Now().UTC()
	if t.Before(floor) {
		return floor
	}
	return t
}

// Append validates r (Record.Validate), appends it and returns the entry
// once it is durable. If ctx ends after the record was handed to the
// writer, Append returns ctx's error and the entry may still be appended.
func (l *Log) Append(ctx context.Context, r Record) (Entry, error) {
	if r.Details != nil {
		r.Details = cloneMap(r.Details) // the caller may reuse its map
	}
	if err := r.Validate(); err != nil {
		return Entry{}, err
	}
	return l.append(ctx, r)
}

// append hands r, validated, to the writer.
func (l *Log) append(ctx context.Context, r Record) (Entry, error) {
	if err := ctx.Err(); err != nil {
		return Entry{}, fmt.Errorf("audit: append: %w", err)
	}
	req := &appendReq{rec: r, res: make(chan appendRes, 1)}
	select {
	case l.reqs <- req:
	case <-l.closing:
		return Entry{}, ErrClosed
	case <-ctx.Done():
		return Entry{}, fmt.Errorf("audit: append: %w", ctx.Err())
	}
	select {
	case res := <-req.res:
		return res.e, res.err
	case <-ctx.Done():
		return Entry{}, fmt.Errorf("audit: append: %w (the entry may still be appended)", ctx.Err())
	}
}

func cloneMap(m map[string]string) map[string]string {
	c := make(map[string]string, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// writer is the only goroutine that appends to the store.
func (l *Log) writer() {
	defer close(l.done)
	var tick <-chan time.Time
	if l.opts.Signer != nil && l.opts.CheckpointInterval > 0 {
		t := time.NewTicker(l.opts.CheckpointInterval)
		defer t.Stop()
		tick = t.C
	}
	batch := make([]*appendReq, 0, l.opts.MaxBatch)
	for {
		batch = batch[:0]
		select {
		case r := <-l.reqs:
			batch = append(batch, r)
		case res := <-l.cpReqs:
			err := l.err()
			if err == nil && l.opts.Signer != nil && l.tracker.size() > l.cpSize {
				err = l.checkpoint()
				l.fail(err)
			}
			res <- appendRes{err: err}
			continue
		case <-tick:
			if l.err() == nil && l.tracker.size() > l.cpSize && l.opts.now().Sub(l.cpTime) >= l.opts.CheckpointInterval {
				l.fail(l.checkpoint())
			}
			continue
		case <-l.closing:
			// Requests already handed over were answered; senders still
			// waiting see closing.
			var err error
			if l.opts.Signer != nil && l.tracker.size() > l.cpSize && l.err() == nil {
				err = l.checkpoint()
			}
			l.mu.Lock()
			l.closeErr = errors.Join(err, l.store.Close())
			l.mu.Unlock()
			return
		}
	drain:
		for len(batch) < cap(batch) {
			select {
			case r := <-l.reqs:
				batch = append(batch, r)
			default:
				break drain
			}
		}
		l.commit(batch)
	}
}

func (o *Options) now() time.Time { return o.Now().UTC() }

func (l *Log) err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.failed
}

func (l *Log) fail(err error) {
	if err == nil {
		return
	}
	l.mu.Lock()
	if l.failed == nil {
		l.failed = err
	}
	l.mu.Unlock()
}

// commit appends a batch with one Store.Append.
func (l *Log) commit(batch []*appendReq) {
	if err := l.err(); err != nil {
		for _, r := range batch {
			r.res <- appendRes{err: fmt.Errorf("audit: append: the log failed earlier and must be reopened: %w", err)}
		}
		return
	}
	entries := make([]Entry, len(batch))
	prev := l.last
	for i, r := range batch {
		e := Entry{Seq: prev.Seq + 1, Time: l.now(prev.Time), Record: r.rec, PrevHash: prev.EntryHash}
		e.EntryHash = e.ComputeHash()
		entries[i] = e
		prev = e
	}
	// The context of a single caller must not cancel a write shared with
	// others; each caller's own context bounds only its wait.
	if err := l.store.Append(context.Background(), entries); err != nil {
		l.fail(err)
		for _, r := range batch {
			r.res <- appendRes{err: fmt.Errorf("audit: append: %w", err)}
		}
		return
	}
	for _, e := range entries {
		l.tracker.append(e.EntryHash)
	}
	l.last = prev
	l.mu.Lock()
	l.size, l.root = l.tracker.size(), l.tracker.root()
	l.mu.Unlock()
	for i, r := range batch {
		r.res <- appendRes{e: entries[i]}
	}
	if l.opts.Signer != nil && l.tracker.size()-l.cpSize >= l.opts.CheckpointEvery {
		l.fail(l.checkpoint())
	}
}

// checkpoint signs and stores a checkpoint of the current tree. Writer
// goroutine only.
func (l *Log) checkpoint() error {
	c := Checkpoint{Origin: l.opts.Origin, Size: l.tracker.size(), Root: l.tracker.root(), Time: l.now(later(l.cpTime, l.last.Time))}
	note, err := SignCheckpoint(c, l.opts.Signer)
	if err != nil {
		return err
	}
	if err := l.store.AppendCheckpoint(context.Background(), note); err != nil {
		return fmt.Errorf("audit: checkpoint: %w", err)
	}
	l.cpSize, l.cpTime = c.Size, c.Time
	l.mu.Lock()
	l.latestCP = note
	l.mu.Unlock()
	return nil
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// Checkpoint signs and stores a checkpoint of the current tree, unless the
// latest one already covers it, and returns the latest checkpoint note.
func (l *Log) Checkpoint(ctx context.Context) ([]byte, error) {
	if l.opts.Signer == nil {
		return nil, errors.New("audit: checkpoint: the log has no signer")
	}
	res := make(chan appendRes, 1)
	select {
	case l.cpReqs <- res:
	case <-l.closing:
		return nil, ErrClosed
	case <-ctx.Done():
		return nil, fmt.Errorf("audit: checkpoint: %w", ctx.Err())
	}
	select {
	case r := <-res:
		if r.err != nil {
			return nil, fmt.Errorf("audit: checkpoint: %w", r.err)
		}
		return l.LatestCheckpoint(), nil
	case <-ctx.Done():
		return nil, fmt.Errorf("audit: checkpoint: %w", ctx.Err())
	}
}

// Size returns the number of entries, genesis included.
func (l *Log) Size() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.size
}

// Head returns the current tree size and root (unsigned).
func (l *Log) Head() (size uint64, root Hash) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.size, l.root
}

// LatestCheckpoint returns the note of the latest signed checkpoint, or nil.
func (l *Log) LatestCheckpoint() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.latestCP
}

// Err returns the error that stopped the log, if any: after a failed write
// or sync every Append fails until the log is reopened (and verified).
func (l *Log) Err() error { return l.err() }

// Verify verifies entries [from, to) of the log (to == 0: up to its
// current size) and every checkpoint, with the signer's key; see Verify.
func (l *Log) Verify(ctx context.Context, from, to uint64) (*VerifyResult, error) {
	size := l.Size()
	if to == 0 || to > size {
		to = size
	}
	var key *seal.VerifyingKey
	if l.opts.Signer != nil {
		key = l.opts.Signer.Public()
	}
	return Verify(ctx, l.store, VerifyOptions{From: from, To: to, Key: key})
}

// RepairOperation is the operation of the entries RecordRepair writes.
const RepairOperation = "audit.torn_tail_repaired"

// RecordRepair appends one RepairOperation entry per repaired tail (from
// RepairTornTail), so that the repair is itself on the record: which file,
// where, how many bytes, the SHA-256 of the bytes moved aside and where
// they were saved.
func (l *Log) RecordRepair(ctx context.Context, actor string, repairs []Repair) error {
	for _, rp := range repairs {
		d := map[string]string{
			"file":         filepath.Base(rp.File),
			"offset":       strconv.FormatInt(rp.Offset, 10),
			"length":       strconv.FormatInt(rp.Length, 10),
			"record":       strconv.FormatUint(rp.Pos, 10),
			"moved_sha256": "sha256:" + rp.MovedSHA256.String(),
			"saved_to":     filepath.Base(rp.SavedTo),
		}
		r := Record{Actor: actor, Operation: RepairOperation, Resource: filepath.Base(rp.File), Outcome: OutcomeSuccess, Details: d}
		if err := r.checkStructure(); err != nil {
			return fmt.Errorf("audit: record repair: %w", err)
		}
		if _, err := l.append(ctx, r); err != nil {
			return err
		}
	}
	return nil
}

// Close stops the writer after the appends already handed to it, writes a
// final checkpoint when entries were appended since the last one, and
// closes the store.
func (l *Log) Close() error {
	l.once.Do(func() { close(l.closing) })
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.closeErr
}
