package audit

import (
	"context"
	"errors"
	"fmt"

	"github.com/tensafe/tensafe/seal"
)

// Fault says what is wrong at the first bad seq.
type Fault int

// Faults, in the order Verify checks them at each seq.
const (
	// FaultDecode: the stored entry cannot be decoded.
	FaultDecode Fault = iota + 1
	// FaultSeq: the entry at this position has another seq: an entry was
	// deleted, inserted or moved here.
	FaultSeq
	// FaultGenesis: entry 0 is not a genesis entry, or the log is empty.
	FaultGenesis
	// FaultHash: the entry's content does not hash to its entry_hash: it
	// was modified.
	FaultHash
	// FaultLink: the entry's prev_hash is not its predecessor's entry_hash:
	// this entry, or its predecessor together with its entry_hash, was
	// modified (or an entry was inserted or removed before it and the seqs
	// renumbered).
	FaultLink
	// FaultTime: the entry is dated before its predecessor.
	FaultTime
	// FaultTornTail: a partial entry after the last complete one (a crash
	// in the middle of an append).
	FaultTornTail
	// FaultRewritten: the entries up to a signed checkpoint's size do not
	// have the root it signed: some entry from Seq on (up to the
	// checkpoint's size) was rewritten, chain and all.
	FaultRewritten
	// FaultTruncated: a signed checkpoint covers more entries than the log
	// has: entries from Seq on were deleted.
	FaultTruncated
)

var faultNames = map[Fault]string{
	FaultDecode:    "cannot be decoded",
	FaultSeq:       "out of place (deleted, inserted or reordered entry)",
	FaultGenesis:   "not a genesis entry",
	FaultHash:      "modified (content does not match entry_hash)",
	FaultLink:      "broken link (prev_hash does not match the previous entry)",
	FaultTime:      "dated before the previous entry",
	FaultTornTail:  "torn tail (partial entry)",
	FaultRewritten: "does not match a signed checkpoint (rewritten)",
	FaultTruncated: "missing (log truncated below a signed checkpoint)",
}

func (f Fault) String() string {
	if s, ok := faultNames[f]; ok {
		return s
	}
	return fmt.Sprintf("Fault(%d)", int(f))
}

// VerifyError names the first bad seq of a log.
type VerifyError struct {
	Seq        uint64      // the first seq that does not verify
	Fault      Fault       // what is wrong there
	Checkpoint *Checkpoint // for FaultRewritten and FaultTruncated, the checkpoint that shows it
	Err        error       // detail
}

func (e *VerifyError) Error() string {
	msg := fmt.Sprintf("audit: verify: first bad seq %d: %s", e.Seq, e.Fault)
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *VerifyError) Unwrap() error { return e.Err }

// CheckpointError reports a stored (or trusted) checkpoint that is
// malformed, forged, stale or out of order. Err wraps one of
// ErrMalformedCheckpoint, ErrForgedCheckpoint, ErrStaleCheckpoint,
// ErrInconsistentCheckpoint.
type CheckpointError struct {
	Index int // position in the store's checkpoints; -1 for the trusted checkpoint
	Err   error
}

func (e *CheckpointError) Error() string {
	if e.Index < 0 {
		return fmt.Sprintf("audit: verify: trusted checkpoint: %v", e.Err)
	}
	return fmt.Sprintf("audit: verify: checkpoint #%d: %v", e.Index, e.Err)
}

func (e *CheckpointError) Unwrap() error { return e.Err }

// VerifyOptions selects what Verify checks.
type VerifyOptions struct {
	// From and To bound the entries whose content, hash and links are
	// checked: seqs in [From, To); To == 0 means to the end of the log.
	// Entries before From are trusted for their stored entry_hash (they
	// still feed the Merkle tree that checkpoints are checked against).
	From, To uint64
	// Key verifies checkpoint signatures. Without it checkpoints' roots are
	// still checked against the log, but not who signed them
	// (VerifyResult.SignaturesChecked is false).
	Key *seal.VerifyingKey
	// Trusted is a checkpoint note known from outside the log's storage
	// (kept by a witness, a client or an earlier verification). The log
	// must contain it, and the stored checkpoints must not be older. It
	// needs Key.
	Trusted []byte
}

// VerifyResult describes a log that verified.
type VerifyResult struct {
	Origin            string
	Size              uint64      // entries scanned
	Root              Hash        // Merkle root of those entries
	From, To          uint64      // range whose entries were fully checked
	Checkpoints       int         // checkpoints whose roots matched the log
	Latest            *Checkpoint // the latest of them
	SignaturesChecked bool        // whether their signatures were verified
}

// Verify checks the log in store: every entry in the range (seq in place,
// genesis, content hash, link, time order), the absence of a torn tail,
// and every stored checkpoint (well-formed, signed by opts.Key, in order,
// and matching the Merkle root of the log at its size). It returns a
// *VerifyError naming the first bad seq, a *CheckpointError for a bad
// checkpoint, or another error when the store cannot be read.
func Verify(ctx context.Context, store Store, opts VerifyOptions) (*VerifyResult, error) {
	st, err := scan(ctx, store, opts)
	if err != nil {
		return nil, err
	}
	return st.result, nil
}

// scanState is what a scan leaves: the result and the state a Log
// continues from.
type scanState struct {
	result   *VerifyResult
	last     Entry
	tracker  rootTracker
	latestCP []byte // note of the latest checkpoint
}

var errStopScan = errors.New("stop scan")

func scan(ctx context.Context, store Store, opts VerifyOptions) (*scanState, error) {
	if opts.To != 0 && opts.To <= opts.From {
		return nil, fmt.Errorf("audit: verify: empty range [%d, %d)", opts.From, opts.To)
	}
	if opts.Trusted != nil && opts.Key == nil {
		return nil, errors.New("audit: verify: a trusted checkpoint needs the log's verifying key")
	}
	notes, err := store.Checkpoints(ctx)
	if err != nil {
		var tt *TornTailError
		if errors.As(err, &tt) {
			return nil, fmt.Errorf("audit: verify: checkpoints: %w", err)
		}
		return nil, err
	}
	cps := make([]*SignedCheckpoint, len(notes))
	for i, n := range notes {
		sc, err := ParseCheckpoint(n)
		if err != nil {
			return nil, &CheckpointError{Index: i, Err: err}
		}
		if i > 0 {
			p := cps[i-1]
			if sc.Size < p.Size || sc.Time.Before(p.Time) {
				return nil, &CheckpointError{Index: i, Err: fmt.Errorf("%w: older than checkpoint #%d (size %d at %s, after size %d at %s): the checkpoints were rolled back or spliced",
					ErrStaleCheckpoint, i-1, sc.Size, formatTime(sc.Time), p.Size, formatTime(p.Time))}
			}
		}
		cps[i] = sc
	}
	var trusted *SignedCheckpoint
	if opts.Trusted != nil {
		if trusted, err = ParseCheckpoint(opts.Trusted); err != nil {
			return nil, &CheckpointError{Index: -1, Err: err}
		}
		if n := len(cps); n == 0 || cps[n-1].Size < trusted.Size {
			have := uint64(0)
			if n > 0 {
				have = cps[n-1].Size
			}
			return nil, &CheckpointError{Index: -1, Err: fmt.Errorf("%w: the log's latest checkpoint (size %d) is older than the trusted one (size %d): its checkpoints were rolled back",
				ErrStaleCheckpoint, have, trusted.Size)}
		}
	}

	st := &scanState{tracker: newRootTracker(), result: &VerifyResult{From: opts.From, To: opts.To, SignaturesChecked: opts.Key != nil}}
	// Checkpoints to compare, in size order: the stored ones, then the
	// trusted one (sizes are nondecreasing among the stored ones).
	type pending struct {
		sc    *SignedCheckpoint
		index int
	}
	var queue []pending
	for i, sc := range cps {
		queue = append(queue, pending{sc, i})
	}
	if trusted != nil {
		// Insert keeping the order by size.
		at := len(queue)
		for i, p := range queue {
			if p.sc.Size > trusted.Size {
				at = i
				break
			}
		}
		queue = append(queue[:at], append([]pending{{trusted, -1}}, queue[at:]...)...)
	}
	var matched uint64 // size of the last checkpoint that matched
	checkCheckpoints := func() error {
		for len(queue) > 0 && queue[0].sc.Size <= st.tracker.size() {
			p := queue[0]
			if p.sc.Size < st.tracker.size() {
				return nil // only possible for size 0 or before scanning; checked at the end
			}
			queue = queue[1:]
			root := st.tracker.root()
			if p.sc.Root != root {
				return &VerifyError{Seq: matched, Fault: FaultRewritten, Checkpoint: &p.sc.Checkpoint,
					Err: fmt.Errorf("entries [%d, %d) have root %s, checkpoint %s signed %s", matched, p.sc.Size, root, describeCP(p.index), p.sc.Root)}
			}
			matched = p.sc.Size
			st.result.Checkpoints++
			c := p.sc.Checkpoint
			st.result.Latest = &c
			if p.index >= 0 {
				st.latestCP = p.sc.Note
			}
		}
		return nil
	}

	var origin string
	var prev Entry
	scanErr := store.Scan(ctx, 0, func(pos uint64, e Entry) error {
		if opts.To != 0 && pos >= opts.To {
			return errStopScan
		}
		full := pos >= opts.From
		if e.Seq != pos {
			return &VerifyError{Seq: pos, Fault: FaultSeq, Err: fmt.Errorf("position %d holds an entry with seq %d", pos, e.Seq)}
		}
		if pos == 0 {
			if !e.IsGenesis() || checkOrigin(e.Origin()) != nil {
				return &VerifyError{Seq: 0, Fault: FaultGenesis, Err: errors.New("entry 0 must be an audit.genesis entry with a zero prev_hash and a valid origin")}
			}
			origin = e.Origin()
		}
		if full {
			if e.ComputeHash() != e.EntryHash {
				return &VerifyError{Seq: pos, Fault: FaultHash, Err: fmt.Errorf("content hashes to %s, entry_hash is %s", e.ComputeHash(), e.EntryHash)}
			}
			if pos > 0 && e.PrevHash != prev.EntryHash {
				return &VerifyError{Seq: pos, Fault: FaultLink, Err: fmt.Errorf("prev_hash is %s, entry %d has entry_hash %s (entry %d or %d was altered)", e.PrevHash, pos-1, prev.EntryHash, pos-1, pos)}
			}
			if pos > 0 && e.Time.Before(prev.Time) {
				return &VerifyError{Seq: pos, Fault: FaultTime, Err: fmt.Errorf("time %s is before entry %d's %s", formatTime(e.Time), pos-1, formatTime(prev.Time))}
			}
		}
		if pos == 0 {
			// Signatures and origins of checkpoints are checked once the
			// genesis entry, and with it the origin, is known.
			if err := checkSignatures(cps, trusted, origin, opts.Key); err != nil {
				return err
			}
		}
		st.tracker.append(e.EntryHash)
		prev = e
		return checkCheckpoints()
	})
	var tt *TornTailError
	var ce *CorruptError
	switch {
	case scanErr == nil || errors.Is(scanErr, errStopScan):
	case errors.As(scanErr, &tt):
		return nil, &VerifyError{Seq: tt.Pos, Fault: FaultTornTail, Err: scanErr}
	case errors.As(scanErr, &ce):
		return nil, &VerifyError{Seq: ce.Pos, Fault: FaultDecode, Err: ce.Err}
	default:
		return nil, scanErr
	}
	size := st.tracker.size()
	if size == 0 {
		return nil, &VerifyError{Seq: 0, Fault: FaultGenesis, Err: errors.New("the log is empty")}
	}
	if opts.From >= size {
		return nil, fmt.Errorf("audit: verify: from %d is beyond the log's %d entries", opts.From, size)
	}
	if opts.To == 0 || opts.To > size {
		// Checkpoints beyond the end of the log mean entries were deleted.
		for _, p := range queue {
			if p.sc.Size > size {
				return nil, &VerifyError{Seq: size, Fault: FaultTruncated, Checkpoint: &p.sc.Checkpoint,
					Err: fmt.Errorf("checkpoint %s covers %d entries, the log has %d", describeCP(p.index), p.sc.Size, size)}
			}
		}
	}
	if len(queue) > 0 && queue[0].sc.Size == 0 {
		return nil, &CheckpointError{Index: queue[0].index, Err: fmt.Errorf("%w: a checkpoint of an empty tree", ErrMalformedCheckpoint)}
	}
	st.last = prev
	st.result.Origin = origin
	st.result.Size = size
	st.result.Root = st.tracker.root()
	if st.result.To == 0 || st.result.To > size {
		st.result.To = size
	}
	return st, nil
}

func describeCP(index int) string {
	if index < 0 {
		return "(trusted)"
	}
	return fmt.Sprintf("#%d", index)
}

func checkSignatures(cps []*SignedCheckpoint, trusted *SignedCheckpoint, origin string, key *seal.VerifyingKey) error {
	check := func(i int, sc *SignedCheckpoint) error {
		if sc.Origin != origin {
			return &CheckpointError{Index: i, Err: fmt.Errorf("%w: checkpoint is for origin %q, the log is %q", ErrForgedCheckpoint, sc.Origin, origin)}
		}
		if key != nil {
			if err := sc.verify(key); err != nil {
				return &CheckpointError{Index: i, Err: err}
			}
		}
		return nil
	}
	for i, sc := range cps {
		if err := check(i, sc); err != nil {
			return err
		}
	}
	if trusted != nil {
		return check(-1, trusted)
	}
	return nil
}
