package audit

import (
	"errors"
	"fmt"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
)

// The log's Merkle tree is the RFC 6962 tree (SHA-256, leaf prefix 0x00,
// node prefix 0x01) whose leaf i is the 32-byte EntryHash of entry seq i.

var (
	hasher       = rfc6962.DefaultHasher
	rangeFactory = &compact.RangeFactory{Hash: hasher.HashChildren}
)

// ErrProof is wrapped by errors from VerifyInclusion and VerifyConsistency
// when a proof does not verify.
var ErrProof = errors.New("audit: proof does not verify")

// Tree is an in-memory Merkle tree over entry hashes that keeps every
// complete subtree, so that roots of earlier sizes and inclusion and
// consistency proofs cost O(log n). It takes about 64 bytes per entry.
type Tree struct {
	levels [][]Hash // levels[l][i] is the root of the complete subtree at level l, index i
	cr     *compact.Range
}

// NewTree returns an empty tree.
func NewTree() *Tree {
	return &Tree{cr: rangeFactory.NewEmptyRange(0)}
}

// Append adds the leaf for an entry hash.
func (t *Tree) Append(entryHash Hash) {
	t.appendLeaf(hasher.HashLeaf(entryHash[:]))
}

// appendLeaf adds a leaf by its RFC 6962 leaf hash.
func (t *Tree) appendLeaf(lh []byte) {
	// The visitor sees the leaf and every complete node the append creates,
	// always at the next free index of its level.
	err := t.cr.Append(lh, func(id compact.NodeID, h []byte) {
		for uint(len(t.levels)) <= id.Level {
			t.levels = append(t.levels, nil)
		}
		t.levels[id.Level] = append(t.levels[id.Level], Hash(h))
	})
	if err != nil {
		panic("audit: compact range append: " + err.Error()) // only on internal corruption
	}
}

// Size returns the number of leaves.
func (t *Tree) Size() uint64 { return t.cr.End() }

// LeafHash returns the leaf hash at index.
func (t *Tree) LeafHash(index uint64) (Hash, error) {
	if index >= t.Size() {
		return Hash{}, fmt.Errorf("audit: leaf %d is beyond tree size %d", index, t.Size())
	}
	return t.levels[0][index], nil
}

// Root returns the root of the whole tree.
func (t *Tree) Root() Hash {
	r, _ := t.RootAt(t.Size())
	return r
}

// RootAt returns the root of the tree of the first size leaves.
func (t *Tree) RootAt(size uint64) (Hash, error) {
	if size > t.Size() {
		return Hash{}, fmt.Errorf("audit: root at size %d: tree has %d leaves", size, t.Size())
	}
	if size == 0 {
		return Hash(hasher.EmptyRoot()), nil
	}
	ids := compact.RangeNodes(0, size, nil)
	hs, err := t.nodes(ids)
	if err != nil {
		return Hash{}, err
	}
	r, err := rangeFactory.NewRange(0, size, hs)
	if err != nil {
		return Hash{}, fmt.Errorf("audit: root at size %d: %w", size, err)
	}
	root, err := r.GetRootHash(nil)
	if err != nil {
		return Hash{}, fmt.Errorf("audit: root at size %d: %w", size, err)
	}
	return Hash(root), nil
}

// InclusionProof returns the RFC 6962 inclusion proof of leaf index in the
// tree of the first size leaves.
func (t *Tree) InclusionProof(index, size uint64) ([]Hash, error) {
	if size > t.Size() {
		return nil, fmt.Errorf("audit: inclusion proof: tree size %d is beyond the log's %d", size, t.Size())
	}
	n, err := proof.Inclusion(index, size)
	if err != nil {
		return nil, fmt.Errorf("audit: inclusion proof: %w", err)
	}
	return t.rehash(n)
}

// ConsistencyProof returns the RFC 6962 consistency proof between the trees
// of size1 and size2 leaves.
func (t *Tree) ConsistencyProof(size1, size2 uint64) ([]Hash, error) {
	if size2 > t.Size() {
		return nil, fmt.Errorf("audit: consistency proof: tree size %d is beyond the log's %d", size2, t.Size())
	}
	n, err := proof.Consistency(size1, size2)
	if err != nil {
		return nil, fmt.Errorf("audit: consistency proof: %w", err)
	}
	return t.rehash(n)
}

func (t *Tree) rehash(n proof.Nodes) ([]Hash, error) {
	hs, err := t.nodes(n.IDs)
	if err != nil {
		return nil, err
	}
	hs, err = n.Rehash(hs, hasher.HashChildren)
	if err != nil {
		return nil, fmt.Errorf("audit: proof: %w", err)
	}
	return toHashes(hs), nil
}

func (t *Tree) nodes(ids []compact.NodeID) ([][]byte, error) {
	hs := make([][]byte, len(ids))
	for i, id := range ids {
		if id.Level >= uint(len(t.levels)) || id.Index >= uint64(len(t.levels[id.Level])) {
			return nil, fmt.Errorf("audit: merkle node (%d, %d) is not in the tree", id.Level, id.Index)
		}
		h := t.levels[id.Level][id.Index]
		hs[i] = h[:]
	}
	return hs, nil
}

// VerifyInclusion checks, in O(log size) hashes, that the entry with
// entryHash is leaf seq of the tree of the given size and root.
func VerifyInclusion(entryHash Hash, seq, size uint64, proofHashes []Hash, root Hash) error {
	lh := leafHash(entryHash)
	if err := proof.VerifyInclusion(hasher, seq, size, lh[:], fromHashes(proofHashes), root[:]); err != nil {
		return fmt.Errorf("%w: inclusion of seq %d in tree size %d: %v", ErrProof, seq, size, err)
	}
	return nil
}

// VerifyConsistency checks that the tree of size2 with root2 extends the
// tree of size1 with root1.
func VerifyConsistency(size1, size2 uint64, proofHashes []Hash, root1, root2 Hash) error {
	if err := proof.VerifyConsistency(hasher, size1, size2, fromHashes(proofHashes), root1[:], root2[:]); err != nil {
		return fmt.Errorf("%w: consistency of tree size %d with %d: %v", ErrProof, size1, size2, err)
	}
	return nil
}

// rootTracker computes roots incrementally in O(log n) memory.
type rootTracker struct{ cr *compact.Range }

func newRootTracker() rootTracker { return rootTracker{cr: rangeFactory.NewEmptyRange(0)} }

func (r rootTracker) append(entryHash Hash) {
	if err := r.cr.Append(hasher.HashLeaf(entryHash[:]), nil); err != nil {
		panic("audit: compact range append: " + err.Error())
	}
}

func (r rootTracker) size() uint64 { return r.cr.End() }

func (r rootTracker) root() Hash {
	if r.cr.End() == 0 {
		return Hash(hasher.EmptyRoot())
	}
	h, err := r.cr.GetRootHash(nil)
	if err != nil {
		panic("audit: compact range root: " + err.Error())
	}
	return Hash(h)
}

func toHashes(b [][]byte) []Hash {
	out := make([]Hash, len(b))
	for i, h := range b {
		out[i] = Hash(h)
	}
	return out
}

func fromHashes(h []Hash) [][]byte {
	out := make([][]byte, len(h))
	for i := range h {
		out[i] = h[i][:]
	}
	return out
}
