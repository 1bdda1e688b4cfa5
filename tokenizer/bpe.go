package tokenizer

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"
)

// BPE is a byte-level BPE tokenizer read from a Hugging Face tokenizer.json
// (GPT-2, Llama 3, Qwen2/Qwen3, SmolLM). It is immutable and safe for
// concurrent use.
type BPE struct {
	vocab        map[string]int // model vocabulary
	tokens       []string       // id -> token text (model and added)
	known        []bool         // id -> whether tokens[id] is assigned
	special      []bool         // id -> special added token
	merges       map[uint64]merge
	byteID       [256]int32 // byte -> id of its byte-level rune, -1 if none
	unk          int32      // -1 if none
	fuseUnk      bool
	ignoreMerges bool

	normalize func(string) string // nil: none
	pre       []preStep           // ends with a byteLevelStep

	added     map[string]*addedToken // by content
	raw, norm *addedMatcher          // tokens matched before / after normalizing

	hasTemplate    bool
	prefix, suffix []int // template ids around the text

	arena   []byte  // the bytes every id decodes to ...
	offsets []int32 // ... id's are arena[offsets[id]:offsets[id+1]]

	bos, pad int // -1 if none
	eos      []int

	scratch sync.Pool // *encoder, reused between Encode calls

	// cache maps short pre-tokens to their ids ([]int32), as the reference
	// does: natural text repeats its words, and merging is most of the
	// cost of encoding. It stops growing at cacheCapacity entries.
	cache     sync.Map
	cacheLen  atomic.Int64
	cacheSize int64 // capacity; 0 disables the cache
}

const (
	cacheCapacity = 10000
	cacheMaxWord  = 64 // bytes
)

var _ Tokenizer = (*BPE)(nil)

type merge struct {
	rank int32 // priority: lower merges first
	id   int32 // id of the merged token
}

func pairKey(a, b int32) uint64 { return uint64(uint32(a))<<32 | uint64(uint32(b)) }

// VocabSize implements Tokenizer.
func (t *BPE) VocabSize() int { return len(t.tokens) }

// BOS implements Tokenizer: the first token the post-processor puts before
// the text, or else tokenizer_config.json's bos_token.
func (t *BPE) BOS() (int, bool) { return t.bos, t.bos >= 0 }

// EOS implements Tokenizer: generation_config.json's eos_token_id followed by
// tokenizer_config.json's eos_token (LoadDir); none for Load.
func (t *BPE) EOS() []int { return append([]int(nil), t.eos...) }

// PAD implements Tokenizer: tokenizer_config.json's pad_token, or else
// generation_config.json's pad_token_id.
func (t *BPE) PAD() (int, bool) { return t.pad, t.pad >= 0 }

// SpecialID implements Tokenizer for the added tokens of the file.
func (t *BPE) SpecialID(name string) (int, bool) {
	if a, ok := t.added[name]; ok {
		return a.id, true
	}
	return 0, false
}

// TokenID returns the id of a token given as its vocabulary text (an added
// token's content, or a model token in the byte-level alphabet, such as
// "Ġthe").
func (t *BPE) TokenID(tok string) (int, bool) {
	if a, ok := t.added[tok]; ok {
		return a.id, true
	}
	id, ok := t.vocab[tok]
	return id, ok
}

// Token returns the vocabulary text of id.
func (t *BPE) Token(id int) (string, bool) {
	if id < 0 || id >= len(t.tokens) || !t.known[id] {
		return "", false
	}
	return t.tokens[id], true
}

// IsSpecial reports whether id is a special token (one Decode skips when
// asked to).
func (t *BPE) IsSpecial(id int) bool { return id >= 0 && id < len(t.special) && t.special[id] }

// Encode implements Tokenizer. The text must be valid UTF-8.
func (t *BPE) Encode(text string, addSpecial bool) ([]int, error) {
	return t.encode(text, addSpecial, false)
}

// EncodeOrdinary encodes text in which special tokens are plain text:
// "<|im_start|>" written by a user becomes the ids of its characters, not
// the control token, so untrusted text cannot forge a chat structure.
// Added tokens that are not special (such as Qwen's "<think>") are still
// recognised, and no template is applied. This is the reference's
// encode_special_tokens mode.
func (t *BPE) EncodeOrdinary(text string) ([]int, error) {
	return t.encode(text, false, true)
}

func (t *BPE) encode(text string, addSpecial, ordinary bool) ([]int, error) {
	if !utf8.ValidString(text) {
		return nil, fmt.Errorf("tokenizer: encode: %w (first bad byte at offset %d)", ErrInvalidUTF8, invalidOffset(text))
	}
	e, _ := t.scratch.Get().(*encoder)
	if e == nil {
		e = &encoder{t: t}
	}
	e.ordinary = ordinary
	e.ids = make([]int, 0, len(text)/3+len(t.prefix)+len(t.suffix)+1)
	if addSpecial {
		e.ids = append(e.ids, t.prefix...)
	}
	t.raw.split(text, ordinary, e.normalized, e.addedToken)
	if addSpecial {
		e.ids = append(e.ids, t.suffix...)
	}
	ids, err := e.ids, e.err
	e.ids, e.err = nil, nil
	t.scratch.Put(e)
	if err != nil {
		return nil, err
	}
	return ids, nil
}

func invalidOffset(s string) int {
	for i, r := range s {
		if r == utf8.RuneError {
			if _, n := utf8.DecodeRuneInString(s[i:]); n == 1 {
				return i
			}
		}
	}
	return -1
}

// Decode implements Tokenizer.
func (t *BPE) Decode(ids []int, skipSpecial bool) (string, error) {
	buf := make([]byte, 0, 4*len(ids))
	for i, id := range ids {
		if id < 0 || id >= len(t.tokens) || !t.known[id] {
			return "", fmt.Errorf("tokenizer: decode: ids[%d] = %d: %w (vocabulary size %d)", i, id, ErrUnknownID, len(t.tokens))
		}
		if skipSpecial && t.special[id] {
			continue
		}
		buf = append(buf, t.arena[t.offsets[id]:t.offsets[id+1]]...)
	}
	return string(appendLossyUTF8(make([]byte, 0, len(buf)), buf)), nil
}

// encoder holds the state of one Encode call, and scratch buffers kept for
// the next.
type encoder struct {
	t        *BPE
	ids      []int
	err      error // the first error, from a regexp2 split
	ordinary bool  // special tokens are text (EncodeOrdinary)
	pieces   []string
	scratch  []string
	segs     []segment
	buf      []byte
	word     bpeWord
}

func (e *encoder) addedToken(a *addedToken) { e.ids = append(e.ids, a.id) }

// normalized handles a stretch of text between raw-matched added tokens:
// normalize it, then split out the added tokens matched in normalized text.
func (e *encoder) normalized(s string) {
	if e.t.normalize != nil {
		s = e.t.normalize(s)
	}
	e.t.norm.split(s, e.ordinary, e.pretokenize, e.addedToken)
}

// pretokenize runs the pre-tokenizer steps over s and encodes each piece.
func (e *encoder) pretokenize(s string) {
	e.pieces = append(e.pieces[:0], s)
	for _, step := range e.t.pre {
		e.scratch = e.scratch[:0]
		for _, p := range e.pieces {
			e.scratch = step.apply(e, e.scratch, p)
		}
		e.pieces, e.scratch = e.scratch, e.pieces
	}
	for _, p := range e.pieces {
		e.encodeWord(p)
	}
}

// encodeWord appends the ids of one pre-token, whose bytes stand for their
// byte-level runes.
func (e *encoder) encodeWord(p string) {
	t := e.t
	if t.ignoreMerges {
		e.buf = appendByteLevel(e.buf[:0], p)
		if id, ok := t.vocab[string(e.buf)]; ok {
			e.ids = append(e.ids, id)
			return
		}
	}
	cacheable := t.cacheSize > 0 && len(p) <= cacheMaxWord
	if cacheable {
		if v, ok := t.cache.Load(p); ok {
			for _, id := range v.([]int32) {
				e.ids = append(e.ids, int(id))
			}
			return
		}
	}
	w := &e.word
	w.reset()
	for i := 0; i < len(p); i++ {
		id := t.byteID[p[i]]
		if id < 0 {
			// A byte missing from the vocabulary becomes the unknown
			// token, or is dropped when there is none, as in the reference.
			if t.unk < 0 {
				continue
			}
			if t.fuseUnk && len(w.syms) > 0 && w.syms[len(w.syms)-1].id == t.unk {
				continue
			}
			id = t.unk
		}
		w.syms = append(w.syms, symbol{id: id})
	}
	w.mergeAll(t.merges)
	start := len(e.ids)
	for i := 0; i >= 0 && i < len(w.syms); i = int(w.syms[i].next) {
		e.ids = append(e.ids, int(w.syms[i].id))
	}
	if cacheable && t.cacheLen.Load() < t.cacheSize {
		ids := make([]int32, len(e.ids)-start)
		for k, id := range e.ids[start:] {
			ids[k] = int32(id)
		}
		// Clone the key: p points into the caller's text.
		if _, loaded := t.cache.LoadOrStore(strings.Clone(p), ids); !loaded {
			t.cacheLen.Add(1)
		}
	}
}

// preStep is one step of the pre-tokenizer: it appends the pieces s splits
// into to dst.
type preStep interface {
	apply(e *encoder, dst []string, s string) []string
}

// byteLevelStep is the ByteLevel pre-tokenizer. The mapping of bytes to the
// byte-level alphabet is done by encodeWord, so the step only splits.
type byteLevelStep struct {
	addPrefixSpace bool
	useRegex       bool
}

func (s byteLevelStep) apply(e *encoder, dst []string, p string) []string {
	if s.addPrefixSpace && !strings.HasPrefix(p, " ") {
		p = " " + p
	}
	if !s.useRegex {
		return append(dst, p)
	}
	e.segs = findSegments(e.segs[:0], p, patternGPT2)
	return appendPieces(dst, p, e.segs, behaviorIsolated)
}

// splitStep is the Split pre-tokenizer.
type splitStep struct {
	pattern  splitter
	behavior behavior
	invert   bool
}

func (s splitStep) apply(e *encoder, dst []string, p string) []string {
	var err error
	if e.segs, err = s.pattern.segments(e.segs[:0], p); err != nil {
		if e.err == nil {
			e.err = fmt.Errorf("tokenizer: encode: split: %w", err)
		}
		return dst
	}
	if s.invert {
		for i := range e.segs {
			e.segs[i].match = !e.segs[i].match
		}
	}
	return appendPieces(dst, p, e.segs, s.behavior)
}

// digitsStep is the Digits pre-tokenizer: numbers are split from the rest,
// one piece per digit when individual.
type digitsStep struct{ individual bool }

func (s digitsStep) apply(e *encoder, dst []string, p string) []string {
	e.segs = numericSegments(e.segs[:0], p)
	b := behaviorContiguous
	if s.individual {
		b = behaviorIsolated
	}
	return appendPieces(dst, p, e.segs, b)
}

// bpeWord applies merges to the symbols of one pre-token.
type bpeWord struct {
	syms []symbol
	heap []candidate
}

type symbol struct {
	id         int32
	prev, next int32 // neighbours in the linked list, -1 at the ends
	gone       bool  // merged into its left neighbour
}

// candidate is a possible merge of the symbol at pos with its right
// neighbour.
type candidate struct {
	rank, pos, id int32
}

func (w *bpeWord) reset() {
	w.syms = w.syms[:0]
	w.heap = w.heap[:0]
}

// mergeAll merges pairs lowest rank first (leftmost first among equal
// ranks), exactly as Word::merge_all of Hugging Face tokenizers.
func (w *bpeWord) mergeAll(merges map[uint64]merge) {
	n := len(w.syms)
	for i := range w.syms {
		w.syms[i].prev, w.syms[i].next = int32(i-1), int32(i+1)
	}
	if n == 0 {
		return
	}
	w.syms[n-1].next = -1
	for i := 0; i+1 < n; i++ {
		if m, ok := merges[pairKey(w.syms[i].id, w.syms[i+1].id)]; ok {
			w.push(candidate{m.rank, int32(i), m.id})
		}
	}
	for len(w.heap) > 0 {
		top := w.pop()
		s := &w.syms[top.pos]
		if s.gone || s.next < 0 {
			continue
		}
		right := w.syms[s.next]
		// Skip stale candidates: the pair has changed since it was pushed.
		if m, ok := merges[pairKey(s.id, right.id)]; !ok || m.id != top.id {
			continue
		}
		s.id = top.id
		w.syms[s.next].gone = true
		s.next = right.next
		if right.next >= 0 {
			w.syms[right.next].prev = top.pos
		}
		if s.prev >= 0 {
			if m, ok := merges[pairKey(w.syms[s.prev].id, s.id)]; ok {
				w.push(candidate{m.rank, s.prev, m.id})
			}
		}
		if s.next >= 0 {
			if m, ok := merges[pairKey(s.id, w.syms[s.next].id)]; ok {
				w.push(candidate{m.rank, top.pos, m.id})
			}
		}
	}
	// The survivors are syms[0], syms[syms[0].next], ...: the first
	// symbol is only ever merged into, never away.
}

func (a candidate) less(b candidate) bool {
	return a.rank < b.rank || a.rank == b.rank && a.pos < b.pos
}

func (w *bpeWord) push(c candidate) {
	h := append(w.heap, c)
	i := len(h) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !h[i].less(h[p]) {
			break
		}
		h[i], h[p] = h[p], h[i]
		i = p
	}
	w.heap = h
}

func (w *bpeWord) pop() candidate {
	h := w.heap
	top := h[0]
	last := len(h) - 1
	h[0] = h[last]
	h = h[:last]
	i := 0
	for {
		l := 2*i + 1
		if l >= len(h) {
			break
		}
		m := l
		if r := l + 1; r < len(h) && h[r].less(h[l]) {
			m = r
		}
		if !h[m].less(h[i]) {
			break
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
	w.heap = h
	return top
}
