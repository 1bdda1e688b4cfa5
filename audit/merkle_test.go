package audit

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/merkle/testonly"
)

// treeOfData builds a Tree whose leaves are the RFC 6962 leaf hashes of
// arbitrary data, as in the transparency-dev test vectors (the log's own
// leaves are entry hashes).
func treeOfData(data [][]byte) *Tree {
	t := NewTree()
	for _, d := range data {
		t.appendLeaf(rfc6962.DefaultHasher.HashLeaf(d))
	}
	return t
}

// TestRFC6962Roots checks roots of every prefix of the transparency-dev
// reference leaves against their published root hashes.
func TestRFC6962Roots(t *testing.T) {
	leaves := testonly.LeafInputs()
	roots := testonly.RootHashes()
	tree := treeOfData(leaves)
	for size := 0; size <= len(leaves); size++ {
		got, err := tree.RootAt(uint64(size))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got[:], roots[size]) {
			t.Errorf("root at size %d = %x, want %x", size, got, roots[size])
		}
		// And incrementally.
		inc := treeOfData(leaves[:size])
		if r := inc.Root(); !bytes.Equal(r[:], roots[size]) {
			t.Errorf("incremental root at size %d = %x, want %x", size, r, roots[size])
		}
	}
	// Every complete subtree node matches the reference.
	for level, hs := range testonly.NodeHashes() {
		for i, want := range hs {
			if got := tree.levels[level][i]; !bytes.Equal(got[:], want) {
				t.Errorf("node (%d, %d) = %x, want %x", level, i, got, want)
			}
		}
	}
}

func dh(s string) Hash {
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != HashSize {
		panic("bad hex " + s)
	}
	return Hash(b)
}

// Inclusion and consistency proof vectors from
// github.com/transparency-dev/merkle proof/verify_test.go (Apache 2.0),
// over testonly.LeafInputs(). Leaf indices there are 1-based.
var rfc6962InclusionVectors = []struct {
	leaf, size uint64
	proof      []Hash
}{
	{1, 1, nil},
	{1, 8, []Hash{
		dh("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
		dh("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
		dh("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
	}},
	{6, 8, []Hash{
		dh("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
		dh("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
		dh("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
	}},
	{3, 3, []Hash{
		dh("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"),
	}},
	{2, 5, []Hash{
		dh("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
		dh("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
		dh("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
	}},
}

var rfc6962ConsistencyVectors = []struct {
	size1, size2 uint64
	proof        []Hash
}{
	{1, 1, nil},
	{1, 8, []Hash{
		dh("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
		dh("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
		dh("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
	}},
	{6, 8, []Hash{
		dh("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
		dh("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
		dh("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
	}},
	{2, 5, []Hash{
		dh("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
		dh("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
	}},
	{6, 7, []Hash{
		dh("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
		dh("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"),
		dh("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
	}},
}

func TestRFC6962ProofVectors(t *testing.T) {
	tree := treeOfData(testonly.LeafInputs())
	for _, v := range rfc6962InclusionVectors {
		got, err := tree.InclusionProof(v.leaf-1, v.size)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(got) != fmt.Sprint(v.proof) && !(len(got) == 0 && len(v.proof) == 0) {
			t.Errorf("inclusion proof of leaf %d in size %d = %x, want %x", v.leaf-1, v.size, got, v.proof)
		}
	}
	for _, v := range rfc6962ConsistencyVectors {
		got, err := tree.ConsistencyProof(v.size1, v.size2)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(got) != fmt.Sprint(v.proof) && !(len(got) == 0 && len(v.proof) == 0) {
			t.Errorf("consistency proof %d→%d = %x, want %x", v.size1, v.size2, got, v.proof)
		}
		r1, _ := tree.RootAt(v.size1)
		r2, _ := tree.RootAt(v.size2)
		if err := VerifyConsistency(v.size1, v.size2, v.proof, r1, r2); err != nil {
			t.Errorf("VerifyConsistency(%d, %d): %v", v.size1, v.size2, err)
		}
	}
}

// TestTreeMatchesReference compares roots and proofs with the
// transparency-dev reference tree for many sizes, and checks every proof
// with the library's verifier, and that a corrupted proof fails.
func TestTreeMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	ref := testonly.New(rfc6962.DefaultHasher)
	tree := NewTree()
	var hashes []Hash
	for n := 1; n <= 130; n++ {
		var h Hash
		for i := range h {
			h[i] = byte(rng.Uint32())
		}
		hashes = append(hashes, h)
		ref.AppendData(h[:])
		tree.Append(h)
		if r := tree.Root(); !bytes.Equal(r[:], ref.Hash()) {
			t.Fatalf("size %d: root %x, reference %x", n, r, ref.Hash())
		}
	}
	size := tree.Size()
	for s := uint64(1); s <= size; s += 7 {
		root, _ := tree.RootAt(s)
		if !bytes.Equal(root[:], ref.HashAt(s)) {
			t.Fatalf("root at %d differs from reference", s)
		}
		for i := uint64(0); i < s; i += 3 {
			p, err := tree.InclusionProof(i, s)
			if err != nil {
				t.Fatal(err)
			}
			rp, _ := ref.InclusionProof(i, s)
			if fmt.Sprint(fromHashes(p)) != fmt.Sprint(rp) {
				t.Fatalf("inclusion proof (%d, %d) differs from reference", i, s)
			}
			if err := VerifyInclusion(hashes[i], i, s, p, root); err != nil {
				t.Fatalf("VerifyInclusion(%d, %d): %v", i, s, err)
			}
			if len(p) > 0 {
				p[len(p)-1][0] ^= 1
				if err := VerifyInclusion(hashes[i], i, s, p, root); !errors.Is(err, ErrProof) {
					t.Fatalf("corrupted proof (%d, %d) verified: %v", i, s, err)
				}
			}
			if err := VerifyInclusion(hashes[(i+1)%s], i, s, p, root); err == nil && s > 1 {
				t.Fatalf("proof of another entry verified at (%d, %d)", i, s)
			}
		}
		for s2 := s; s2 <= size; s2 += 11 {
			p, err := tree.ConsistencyProof(s, s2)
			if err != nil {
				t.Fatal(err)
			}
			r2, _ := tree.RootAt(s2)
			if err := VerifyConsistency(s, s2, p, root, r2); err != nil {
				t.Fatalf("VerifyConsistency(%d, %d): %v", s, s2, err)
			}
			if s2 > s {
				bad := root
				bad[0] ^= 1
				if err := VerifyConsistency(s, s2, p, bad, r2); err == nil {
					t.Fatalf("consistency with a wrong old root verified (%d, %d)", s, s2)
				}
			}
		}
	}
}
