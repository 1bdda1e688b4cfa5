package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/tensafe/tensafe/seal"
)

// InclusionProof proves that an entry is in the log: the entry, the RFC
// 6962 audit path from its leaf to the root of a tree of TreeSize entries,
// and, when one was signed at that size, the checkpoint that commits to
// the root. Its JSON form is specified in docs/AUDIT_LOG.md §6.
type InclusionProof struct {
	Origin     string
	Seq        uint64
	TreeSize   uint64
	Entry      Entry
	Root       Hash
	Hashes     []Hash
	Checkpoint []byte // signed checkpoint note of TreeSize and Root, or nil
}

type inclusionProofJSON struct {
	V          int             `json:"v"`
	Origin     string          `json:"origin"`
	Seq        uint64          `json:"seq"`
	TreeSize   uint64          `json:"tree_size"`
	Entry      json.RawMessage `json:"entry"`
	LeafHash   string          `json:"leaf_hash"`
	RootHash   string          `json:"root_hash"`
	Proof      []string        `json:"proof"`
	Checkpoint string          `json:"checkpoint,omitempty"`
}

// MarshalJSON implements json.Marshaler.
func (p *InclusionProof) MarshalJSON() ([]byte, error) {
	eb, err := p.Entry.MarshalJSON()
	if err != nil {
		return nil, err
	}
	hs := make([]string, len(p.Hashes))
	for i, h := range p.Hashes {
		hs[i] = h.String()
	}
	return json.Marshal(inclusionProofJSON{
		V: FormatVersion, Origin: p.Origin, Seq: p.Seq, TreeSize: p.TreeSize, Entry: eb,
		LeafHash: p.Entry.LeafHash().String(), RootHash: p.Root.String(), Proof: hs, Checkpoint: string(p.Checkpoint),
	})
}

// UnmarshalJSON implements json.Unmarshaler.
func (p *InclusionProof) UnmarshalJSON(b []byte) error {
	var w inclusionProofJSON
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		return fmt.Errorf("audit: decode inclusion proof: %w", err)
	}
	if w.V != FormatVersion {
		return fmt.Errorf("audit: decode inclusion proof: field v: version %d, want %d", w.V, FormatVersion)
	}
	e, err := DecodeEntry(w.Entry)
	if err != nil {
		return fmt.Errorf("audit: decode inclusion proof: field entry: %w", err)
	}
	root, err := ParseHash(w.RootHash)
	if err != nil {
		return fmt.Errorf("audit: decode inclusion proof: field root_hash: %w", err)
	}
	if len(w.Proof) > 64 {
		return fmt.Errorf("audit: decode inclusion proof: field proof: %d hashes, at most 64 possible", len(w.Proof))
	}
	hs := make([]Hash, len(w.Proof))
	for i, s := range w.Proof {
		if hs[i], err = ParseHash(s); err != nil {
			return fmt.Errorf("audit: decode inclusion proof: field proof[%d]: %w", i, err)
		}
	}
	*p = InclusionProof{Origin: w.Origin, Seq: w.Seq, TreeSize: w.TreeSize, Entry: e, Root: root, Hashes: hs}
	if w.Checkpoint != "" {
		p.Checkpoint = []byte(w.Checkpoint)
	}
	return nil
}

// Verify checks the proof: the entry's content hashes to its entry_hash,
// its seq is the proven leaf index, the audit path leads to Root, and —
// when key is given — the checkpoint is signed by key for Origin and
// commits to TreeSize and Root. Without a checkpoint and key, Root is only
// as trustworthy as whoever supplied it.
func (p *InclusionProof) Verify(key *seal.VerifyingKey) error {
	if p.Entry.Seq != p.Seq {
		return fmt.Errorf("%w: entry has seq %d, the proof is for %d", ErrProof, p.Entry.Seq, p.Seq)
	}
	if h := p.Entry.ComputeHash(); h != p.Entry.EntryHash {
		return fmt.Errorf("%w: entry %d's content hashes to %s, not its entry_hash %s", ErrProof, p.Seq, h, p.Entry.EntryHash)
	}
	if err := VerifyInclusion(p.Entry.EntryHash, p.Seq, p.TreeSize, p.Hashes, p.Root); err != nil {
		return err
	}
	if key == nil {
		return nil
	}
	if p.Checkpoint == nil {
		return fmt.Errorf("%w: no checkpoint to check the root against", ErrProof)
	}
	c, err := OpenCheckpoint(p.Checkpoint, p.Origin, key)
	if err != nil {
		return err
	}
	if c.Size != p.TreeSize || c.Root != p.Root {
		return fmt.Errorf("%w: the checkpoint commits to size %d root %s, the proof to size %d root %s", ErrProof, c.Size, c.Root, p.TreeSize, p.Root)
	}
	return nil
}

// BuildTree reads the first size entries of store (all when size is 0)
// into a Tree, returning the tree and the entries' origin. It trusts the
// stored entry hashes; Verify is what checks them.
func BuildTree(ctx context.Context, store Store, size uint64) (*Tree, string, error) {
	t := NewTree()
	var origin string
	err := store.Scan(ctx, 0, func(pos uint64, e Entry) error {
		if size != 0 && pos >= size {
			return errStopScan
		}
		if e.Seq != pos {
			return &VerifyError{Seq: pos, Fault: FaultSeq, Err: fmt.Errorf("position %d holds an entry with seq %d", pos, e.Seq)}
		}
		if pos == 0 {
			origin = e.Origin()
		}
		t.Append(e.EntryHash)
		return nil
	})
	if err != nil && !errors.Is(err, errStopScan) {
		return nil, "", err
	}
	if size != 0 && t.Size() < size {
		return nil, "", fmt.Errorf("audit: the log has %d entries, fewer than %d", t.Size(), size)
	}
	return t, origin, nil
}

// Prove returns the inclusion proof of entry seq in the tree of treeSize
// entries of the log in store. With treeSize 0 it picks the size of the
// latest stored checkpoint that covers seq (so that the proof can be
// checked against a signed root), or else the whole log.
func Prove(ctx context.Context, store Store, seq, treeSize uint64) (*InclusionProof, error) {
	notes, err := store.Checkpoints(ctx)
	if err != nil {
		return nil, fmt.Errorf("audit: prove: %w", err)
	}
	t, origin, err := BuildTree(ctx, store, treeSize)
	if err != nil {
		return nil, fmt.Errorf("audit: prove: %w", err)
	}
	var note []byte
	if treeSize == 0 {
		treeSize = t.Size()
		for i := len(notes) - 1; i >= 0; i-- {
			if sc, err := ParseCheckpoint(notes[i]); err == nil && sc.Size > seq && sc.Size <= t.Size() {
				treeSize = sc.Size
				break
			}
		}
	}
	if seq >= treeSize || treeSize > t.Size() {
		return nil, fmt.Errorf("audit: prove: seq %d in tree size %d: the log has %d entries", seq, treeSize, t.Size())
	}
	root, err := t.RootAt(treeSize)
	if err != nil {
		return nil, fmt.Errorf("audit: prove: %w", err)
	}
	for i := len(notes) - 1; i >= 0; i-- {
		if sc, err := ParseCheckpoint(notes[i]); err == nil && sc.Size == treeSize && sc.Root == root {
			note = notes[i]
			break
		}
	}
	hs, err := t.InclusionProof(seq, treeSize)
	if err != nil {
		return nil, fmt.Errorf("audit: prove: %w", err)
	}
	var entry Entry
	found := false
	err = store.Scan(ctx, seq, func(pos uint64, e Entry) error {
		entry, found = e, true
		return errStopScan
	})
	if err != nil && !errors.Is(err, errStopScan) || !found {
		return nil, fmt.Errorf("audit: prove: read entry %d: %v", seq, err)
	}
	return &InclusionProof{Origin: origin, Seq: seq, TreeSize: treeSize, Entry: entry, Root: root, Hashes: hs, Checkpoint: note}, nil
}

// InclusionProof returns the proof of entry seq in the tree of treeSize
// entries (0: see Prove). It reads the log from its store.
func (l *Log) InclusionProof(ctx context.Context, seq, treeSize uint64) (*InclusionProof, error) {
	if treeSize == 0 {
		treeSize = l.Size()
		if sc, err := ParseCheckpoint(l.LatestCheckpoint()); err == nil && sc.Size > seq {
			treeSize = sc.Size
		}
	}
	return Prove(ctx, l.store, seq, treeSize)
}

// ConsistencyProof returns the proof that the tree of size2 entries
// extends the tree of size1 entries, for a Witness.
func (l *Log) ConsistencyProof(ctx context.Context, size1, size2 uint64) ([]Hash, error) {
	if size2 > l.Size() {
		return nil, fmt.Errorf("audit: consistency proof: size %d is beyond the log's %d entries", size2, l.Size())
	}
	t, _, err := BuildTree(ctx, l.store, size2)
	if err != nil {
		return nil, fmt.Errorf("audit: consistency proof: %w", err)
	}
	return t.ConsistencyProof(size1, size2)
}
