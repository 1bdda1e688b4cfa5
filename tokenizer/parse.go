package tokenizer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"

	"golang.org/x/text/unicode/norm"
)

// maxID bounds the ids a tokenizer file may use (the largest vocabularies
// in use have about 260,000 entries), so that a hostile file cannot make us
// allocate tables of billions of entries.
const maxID = 1 << 22

// idSpace is the most id slots a file with n tokens may use: ids are dense
// in real files, so a small file with one huge id is refused rather than
// allowed to make us allocate tables a thousand times its size.
func idSpace(n int) int { return min(2*n+1024, maxID) }

// maxDepth bounds the nesting of Sequence components.
const maxDepth = 8

// Parse reads the contents of a Hugging Face tokenizer.json describing a
// byte-level BPE. Unknown fields, unsupported components and inconsistent
// vocabularies are errors naming the field.
func Parse(tokenizerJSON []byte) (*BPE, error) {
	return ParseWithConfig(tokenizerJSON, nil, nil)
}

// ParseWithConfig is Parse, with the contents of tokenizer_config.json and
// generation_config.json (either may be nil) naming the BOS, EOS and PAD
// tokens.
func ParseWithConfig(tokenizerJSON, tokenizerConfig, generationConfig []byte) (*BPE, error) {
	t, err := parseTokenizer(tokenizerJSON)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: parse tokenizer.json: %w", err)
	}
	if err := t.applyTokenizerConfig(tokenizerConfig); err != nil {
		return nil, fmt.Errorf("tokenizer: parse tokenizer_config.json: %w", err)
	}
	if err := t.applyGenerationConfig(generationConfig); err != nil {
		return nil, fmt.Errorf("tokenizer: parse generation_config.json: %w", err)
	}
	return t, nil
}

// object decodes raw as a JSON object whose keys are all in allowed.
func object(path string, raw json.RawMessage, allowed ...string) (map[string]json.RawMessage, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("%s: %w: %v", path, ErrInvalid, err)
	}
	if m == nil {
		return nil, fmt.Errorf("%s: %w: must be an object", path, ErrInvalid)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !slices.Contains(allowed, k) {
			return nil, fmt.Errorf("%s: field %q: %w", path, k, ErrUnsupported)
		}
	}
	return m, nil
}

// field decodes m[key] into dst if present and not null, and reports
// whether it did.
func field(path string, m map[string]json.RawMessage, key string, dst any) (bool, error) {
	raw, ok := m[key]
	if !ok || isNull(raw) {
		return false, nil
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		return false, fmt.Errorf("%s.%s: %w: %v", path, key, ErrInvalid, err)
	}
	return true, nil
}

func isNull(raw json.RawMessage) bool {
	return len(raw) == 0 || string(bytes.TrimSpace(raw)) == "null"
}

// typeOf returns the "type" of a component object.
func typeOf(path string, raw json.RawMessage) (string, error) {
	var c struct {
		Type *string `json:"type"`
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		return "", fmt.Errorf("%s: %w: %v", path, ErrInvalid, err)
	}
	if c.Type == nil {
		return "", fmt.Errorf("%s: %w: missing \"type\"", path, ErrInvalid)
	}
	return *c.Type, nil
}

func parseTokenizer(data []byte) (*BPE, error) {
	top, err := object("(top level)", data, "version", "truncation", "padding", "added_tokens",
		"normalizer", "pre_tokenizer", "post_processor", "decoder", "model")
	if err != nil {
		return nil, err
	}
	t := &BPE{unk: -1, bos: -1, pad: -1, cacheSize: cacheCapacity}
	if _, ok := top["model"]; !ok {
		return nil, fmt.Errorf("model: %w: missing", ErrInvalid)
	}
	// truncation and padding are settings of batch encoding, which the
	// engine does itself; they do not change the ids of a text.
	if err := t.parseModel(top["model"]); err != nil {
		return nil, err
	}
	if raw := top["normalizer"]; !isNull(raw) {
		if t.normalize, err = parseNormalizer("normalizer", raw, 0); err != nil {
			return nil, err
		}
	}
	if err := t.parsePreTokenizer(top["pre_tokenizer"]); err != nil {
		return nil, err
	}
	if err := t.parseAddedTokens(top["added_tokens"]); err != nil {
		return nil, err
	}
	if err := t.parseDecoder(top["decoder"]); err != nil {
		return nil, err
	}
	if raw := top["post_processor"]; !isNull(raw) {
		if err := t.parsePostProcessor("post_processor", raw, 0); err != nil {
			return nil, err
		}
	}
	t.finish()
	return t, nil
}

func (t *BPE) parseModel(raw json.RawMessage) error {
	const path = "model"
	m, err := object(path, raw, "type", "dropout", "unk_token", "continuing_subword_prefix",
		"end_of_word_suffix", "fuse_unk", "byte_fallback", "ignore_merges", "vocab", "merges")
	if err != nil {
		return err
	}
	var typ string
	if ok, err := field(path, m, "type", &typ); err != nil {
		return err
	} else if !ok {
		typ = "BPE" // files written before the field existed
	}
	if typ != "BPE" {
		return fmt.Errorf("model.type %q: %w (only byte-level BPE)", typ, ErrUnsupported)
	}
	var dropout float64
	if _, err := field(path, m, "dropout", &dropout); err != nil {
		return err
	}
	if dropout != 0 {
		return fmt.Errorf("model.dropout %v: %w (BPE dropout is random)", dropout, ErrUnsupported)
	}
	for _, k := range []string{"continuing_subword_prefix", "end_of_word_suffix"} {
		var s string
		if _, err := field(path, m, k, &s); err != nil {
			return err
		}
		if s != "" {
			return fmt.Errorf("model.%s %q: %w (not used by byte-level BPE)", k, s, ErrUnsupported)
		}
	}
	var byteFallback bool
	if _, err := field(path, m, "byte_fallback", &byteFallback); err != nil {
		return err
	}
	if byteFallback {
		return fmt.Errorf("model.byte_fallback true: %w (SentencePiece-style BPE, not byte-level)", ErrUnsupported)
	}
	if _, err := field(path, m, "fuse_unk", &t.fuseUnk); err != nil {
		return err
	}
	if _, err := field(path, m, "ignore_merges", &t.ignoreMerges); err != nil {
		return err
	}
	vocab := map[string]int{}
	if ok, err := field(path, m, "vocab", &vocab); err != nil {
		return err
	} else if !ok {
		return fmt.Errorf("model.vocab: %w: missing", ErrInvalid)
	}
	t.vocab = vocab
	maxSeen := -1
	limit := idSpace(len(vocab))
	for tok, id := range vocab {
		if id < 0 || id >= limit {
			return fmt.Errorf("model.vocab[%q]: %w: id %d outside [0, %d) (%d tokens)", tok, ErrInvalid, id, limit, len(vocab))
		}
		maxSeen = max(maxSeen, id)
	}
	t.tokens = make([]string, maxSeen+1)
	t.known = make([]bool, maxSeen+1)
	for tok, id := range vocab {
		if t.known[id] {
			a, b := min(tok, t.tokens[id]), max(tok, t.tokens[id])
			return fmt.Errorf("model.vocab: %w: id %d is given to both %q and %q", ErrInvalid, id, a, b)
		}
		t.tokens[id], t.known[id] = tok, true
	}
	var unk string
	if ok, err := field(path, m, "unk_token", &unk); err != nil {
		return err
	} else if ok {
		id, found := vocab[unk]
		if !found {
			return fmt.Errorf("model.unk_token %q: %w: not in the vocabulary", unk, ErrInvalid)
		}
		t.unk = int32(id)
	}
	for b := range t.byteID {
		t.byteID[b] = -1
		if id, ok := vocab[string(byteRune[b])]; ok {
			t.byteID[b] = int32(id)
		}
	}
	return t.parseMerges(m["merges"])
}

// parseMerges reads merges in either form tokenizer.json uses: ["a b", ...]
// (older files) or [["a", "b"], ...].
func (t *BPE) parseMerges(raw json.RawMessage) error {
	var pairs [][2]string
	if !isNull(raw) {
		// The first element decides the form: `["a b", ...` or `[["a", ...`.
		trimmed := bytes.TrimSpace(raw)
		if len(trimmed) > 0 && trimmed[0] == '[' {
			trimmed = bytes.TrimSpace(trimmed[1:])
		}
		if len(trimmed) > 0 && trimmed[0] == '"' {
			var lines []string
			if err := json.Unmarshal(raw, &lines); err != nil {
				return fmt.Errorf("model.merges: %w: %v", ErrInvalid, err)
			}
			pairs = make([][2]string, len(lines))
			for i, line := range lines {
				parts := strings.Split(line, " ")
				if len(parts) != 2 {
					return fmt.Errorf("model.merges[%d] %q: %w: want two tokens separated by one space", i, line, ErrInvalid)
				}
				pairs[i] = [2]string{parts[0], parts[1]}
			}
		} else {
			var list [][]string
			if err := json.Unmarshal(raw, &list); err != nil {
				return fmt.Errorf("model.merges: %w: %v", ErrInvalid, err)
			}
			pairs = make([][2]string, len(list))
			for i, p := range list {
				if len(p) != 2 {
					return fmt.Errorf("model.merges[%d]: %w: want a pair, got %d strings", i, ErrInvalid, len(p))
				}
				pairs[i] = [2]string{p[0], p[1]}
			}
		}
	}
	t.merges = make(map[uint64]merge, len(pairs))
	for rank, p := range pairs {
		a, okA := t.vocab[p[0]]
		b, okB := t.vocab[p[1]]
		if !okA || !okB {
			missing := p[0]
			if okA {
				missing = p[1]
			}
			return fmt.Errorf("model.merges[%d]: %w: token %q is not in the vocabulary", rank, ErrInvalid, missing)
		}
		id, ok := t.vocab[p[0]+p[1]]
		if !ok {
			return fmt.Errorf("model.merges[%d]: %w: merged token %q is not in the vocabulary", rank, ErrInvalid, p[0]+p[1])
		}
		// A repeated pair takes the later rank, as in the reference.
		t.merges[pairKey(int32(a), int32(b))] = merge{rank: int32(rank), id: int32(id)}
	}
	return nil
}

func parseNormalizer(path string, raw json.RawMessage, depth int) (func(string) string, error) {
	typ, err := typeOf(path, raw)
	if err != nil {
		return nil, err
	}
	forms := map[string]norm.Form{"NFC": norm.NFC, "NFD": norm.NFD, "NFKC": norm.NFKC, "NFKD": norm.NFKD}
	if form, ok := forms[typ]; ok {
		if _, err := object(path, raw, "type"); err != nil {
			return nil, err
		}
		return form.String, nil
	}
	if typ != "Sequence" {
		return nil, fmt.Errorf("%s.type %q: %w (normalizers: NFC, NFD, NFKC, NFKD, Sequence)", path, typ, ErrUnsupported)
	}
	if depth >= maxDepth {
		return nil, fmt.Errorf("%s: %w: Sequence nested deeper than %d", path, ErrInvalid, maxDepth)
	}
	m, err := object(path, raw, "type", "normalizers")
	if err != nil {
		return nil, err
	}
	var list []json.RawMessage
	if _, err := field(path, m, "normalizers", &list); err != nil {
		return nil, err
	}
	var steps []func(string) string
	for i, r := range list {
		if isNull(r) {
			continue
		}
		f, err := parseNormalizer(fmt.Sprintf("%s.normalizers[%d]", path, i), r, depth+1)
		if err != nil {
			return nil, err
		}
		steps = append(steps, f)
	}
	return func(s string) string {
		for _, f := range steps {
			s = f(s)
		}
		return s
	}, nil
}

func (t *BPE) parsePreTokenizer(raw json.RawMessage) error {
	const path = "pre_tokenizer"
	if isNull(raw) {
		return fmt.Errorf("%s: null: %w (a byte-level BPE needs the ByteLevel pre-tokenizer)", path, ErrUnsupported)
	}
	if err := t.appendPreSteps(path, raw, 0); err != nil {
		return err
	}
	for i, s := range t.pre {
		if _, ok := s.(byteLevelStep); ok && i != len(t.pre)-1 {
			return fmt.Errorf("%s: %w: ByteLevel must be the last step", path, ErrUnsupported)
		}
	}
	if len(t.pre) == 0 {
		return fmt.Errorf("%s: %w (a byte-level BPE needs the ByteLevel pre-tokenizer)", path, ErrUnsupported)
	}
	if _, ok := t.pre[len(t.pre)-1].(byteLevelStep); !ok {
		return fmt.Errorf("%s: %w: no ByteLevel step (only byte-level BPE is implemented)", path, ErrUnsupported)
	}
	return nil
}

func (t *BPE) appendPreSteps(path string, raw json.RawMessage, depth int) error {
	typ, err := typeOf(path, raw)
	if err != nil {
		return err
	}
	switch typ {
	case "Sequence":
		if depth >= maxDepth {
			return fmt.Errorf("%s: %w: Sequence nested deeper than %d", path, ErrInvalid, maxDepth)
		}
		m, err := object(path, raw, "type", "pretokenizers")
		if err != nil {
			return err
		}
		var list []json.RawMessage
		if _, err := field(path, m, "pretokenizers", &list); err != nil {
			return err
		}
		for i, r := range list {
			if err := t.appendPreSteps(fmt.Sprintf("%s.pretokenizers[%d]", path, i), r, depth+1); err != nil {
				return err
			}
		}
	case "ByteLevel":
		m, err := object(path, raw, "type", "add_prefix_space", "trim_offsets", "use_regex")
		if err != nil {
			return err
		}
		s := byteLevelStep{useRegex: true} // the reference's default
		if _, err := field(path, m, "add_prefix_space", &s.addPrefixSpace); err != nil {
			return err
		}
		if _, err := field(path, m, "use_regex", &s.useRegex); err != nil {
			return err
		}
		var trim bool // only changes offsets, which we do not report
		if _, err := field(path, m, "trim_offsets", &trim); err != nil {
			return err
		}
		t.pre = append(t.pre, s)
	case "Split":
		m, err := object(path, raw, "type", "pattern", "behavior", "invert")
		if err != nil {
			return err
		}
		var s splitStep
		pm, err := object(path+".pattern", m["pattern"], "Regex", "String")
		if err != nil {
			return err
		}
		var expr, lit string
		okRe, err := field(path+".pattern", pm, "Regex", &expr)
		if err != nil {
			return err
		}
		okLit, err := field(path+".pattern", pm, "String", &lit)
		if err != nil {
			return err
		}
		switch {
		case okRe == okLit:
			return fmt.Errorf("%s.pattern: %w: want exactly one of Regex and String", path, ErrInvalid)
		case okRe:
			if p, ok := lookupPattern(expr); ok {
				s.pattern = p
				break
			}
			p, err := compileRegex(expr)
			if err != nil {
				return fmt.Errorf("%s.pattern.Regex %q: %w: %v", path, expr, ErrUnsupported, err)
			}
			s.pattern = p
		default:
			if lit == "" {
				return fmt.Errorf("%s.pattern.String: %w: empty", path, ErrInvalid)
			}
			s.pattern = literalPattern(lit)
		}
		var b string
		if _, err := field(path, m, "behavior", &b); err != nil {
			return err
		}
		if s.behavior = behaviors[b]; s.behavior == 0 {
			return fmt.Errorf("%s.behavior %q: %w", path, b, ErrUnsupported)
		}
		if _, err := field(path, m, "invert", &s.invert); err != nil {
			return err
		}
		t.pre = append(t.pre, s)
	case "Digits":
		m, err := object(path, raw, "type", "individual_digits")
		if err != nil {
			return err
		}
		var s digitsStep
		if _, err := field(path, m, "individual_digits", &s.individual); err != nil {
			return err
		}
		t.pre = append(t.pre, s)
	default:
		return fmt.Errorf("%s.type %q: %w (pre-tokenizers: ByteLevel, Split, Digits, Sequence)", path, typ, ErrUnsupported)
	}
	return nil
}

type addedTokenJSON struct {
	ID         *int    `json:"id"`
	Content    *string `json:"content"`
	SingleWord bool    `json:"single_word"`
	LStrip     bool    `json:"lstrip"`
	RStrip     bool    `json:"rstrip"`
	Normalized *bool   `json:"normalized"`
	Special    bool    `json:"special"`
}

func (t *BPE) parseAddedTokens(raw json.RawMessage) error {
	if isNull(raw) {
		return nil
	}
	var list []json.RawMessage
	if err := json.Unmarshal(raw, &list); err != nil {
		return fmt.Errorf("added_tokens: %w: %v", ErrInvalid, err)
	}
	t.added = make(map[string]*addedToken, len(list))
	limit := idSpace(len(t.vocab) + len(list))
	for i, r := range list {
		path := fmt.Sprintf("added_tokens[%d]", i)
		if _, err := object(path, r, "id", "content", "single_word", "lstrip", "rstrip", "normalized", "special"); err != nil {
			return err
		}
		var a addedTokenJSON
		if err := json.Unmarshal(r, &a); err != nil {
			return fmt.Errorf("%s: %w: %v", path, ErrInvalid, err)
		}
		if a.ID == nil || a.Content == nil {
			return fmt.Errorf("%s: %w: needs id and content", path, ErrInvalid)
		}
		id, content := *a.ID, *a.Content
		if id < 0 || id >= limit {
			return fmt.Errorf("%s.id: %w: %d outside [0, %d)", path, ErrInvalid, id, limit)
		}
		if content == "" {
			return fmt.Errorf("%s.content: %w: empty", path, ErrInvalid)
		}
		if v, ok := t.vocab[content]; ok && v != id {
			return fmt.Errorf("%s: %w: %q has id %d here but %d in model.vocab", path, ErrInvalid, content, id, v)
		}
		if prev, ok := t.added[content]; ok && prev.id != id {
			return fmt.Errorf("%s: %w: %q is added twice, with ids %d and %d", path, ErrInvalid, content, prev.id, id)
		}
		if id >= len(t.tokens) {
			t.tokens = append(t.tokens, make([]string, id+1-len(t.tokens))...)
			t.known = append(t.known, make([]bool, id+1-len(t.known))...)
		}
		if t.known[id] && t.tokens[id] != content {
			return fmt.Errorf("%s: %w: id %d is given to both %q and %q", path, ErrInvalid, id, t.tokens[id], content)
		}
		t.tokens[id], t.known[id] = content, true
		normalized := !a.Special // the reference's default
		if a.Normalized != nil {
			normalized = *a.Normalized
		}
		t.added[content] = &addedToken{id: id, content: content, singleWord: a.SingleWord,
			lstrip: a.LStrip, rstrip: a.RStrip, normalized: normalized, special: a.Special}
	}
	return nil
}

func (t *BPE) parseDecoder(raw json.RawMessage) error {
	const path = "decoder"
	if isNull(raw) {
		return fmt.Errorf("%s: null: %w (a byte-level BPE needs the ByteLevel decoder)", path, ErrUnsupported)
	}
	typ, err := typeOf(path, raw)
	if err != nil {
		return err
	}
	if typ != "ByteLevel" {
		return fmt.Errorf("%s.type %q: %w (decoders: ByteLevel)", path, typ, ErrUnsupported)
	}
	_, err = object(path, raw, "type", "add_prefix_space", "trim_offsets", "use_regex")
	return err
}

type templateItemJSON struct {
	SpecialToken *struct {
		ID     string `json:"id"`
		TypeID int    `json:"type_id"`
	} `json:"SpecialToken"`
	Sequence *struct {
		ID     string `json:"id"`
		TypeID int    `json:"type_id"`
	} `json:"Sequence"`
}

type templateSpecialJSON struct {
	ID     string   `json:"id"`
	IDs    []int    `json:"ids"`
	Tokens []string `json:"tokens"`
}

func (t *BPE) parsePostProcessor(path string, raw json.RawMessage, depth int) error {
	typ, err := typeOf(path, raw)
	if err != nil {
		return err
	}
	switch typ {
	case "ByteLevel":
		// Only adjusts offsets.
		_, err := object(path, raw, "type", "add_prefix_space", "trim_offsets", "use_regex")
		return err
	case "Sequence":
		if depth >= maxDepth {
			return fmt.Errorf("%s: %w: Sequence nested deeper than %d", path, ErrInvalid, maxDepth)
		}
		m, err := object(path, raw, "type", "processors")
		if err != nil {
			return err
		}
		var list []json.RawMessage
		if _, err := field(path, m, "processors", &list); err != nil {
			return err
		}
		for i, r := range list {
			if err := t.parsePostProcessor(fmt.Sprintf("%s.processors[%d]", path, i), r, depth+1); err != nil {
				return err
			}
		}
		return nil
	case "TemplateProcessing":
		if t.hasTemplate {
			return fmt.Errorf("%s: %w: a second TemplateProcessing", path, ErrUnsupported)
		}
		t.hasTemplate = true
		m, err := object(path, raw, "type", "single", "pair", "special_tokens")
		if err != nil {
			return err
		}
		var single []templateItemJSON
		if _, err := field(path, m, "single", &single); err != nil {
			return err
		}
		specials := map[string]templateSpecialJSON{}
		if _, err := field(path, m, "special_tokens", &specials); err != nil {
			return err
		}
		// "pair" concerns encoding two texts together, which we do not offer.
		seen := false
		for i, it := range single {
			switch {
			case it.Sequence != nil && it.SpecialToken == nil:
				if it.Sequence.ID != "A" || seen {
					return fmt.Errorf("%s.single[%d]: %w: sequence %q (want one A)", path, i, ErrUnsupported, it.Sequence.ID)
				}
				seen = true
			case it.SpecialToken != nil && it.Sequence == nil:
				sp, ok := specials[it.SpecialToken.ID]
				if !ok {
					return fmt.Errorf("%s.single[%d]: %w: special token %q not in special_tokens", path, i, ErrInvalid, it.SpecialToken.ID)
				}
				for _, id := range sp.IDs {
					if id < 0 || id >= len(t.known) || !t.known[id] {
						return fmt.Errorf("%s.special_tokens[%q]: %w: id %d is not in the vocabulary", path, it.SpecialToken.ID, ErrInvalid, id)
					}
				}
				if seen {
					t.suffix = append(t.suffix, sp.IDs...)
				} else {
					t.prefix = append(t.prefix, sp.IDs...)
				}
			default:
				return fmt.Errorf("%s.single[%d]: %w: want one of SpecialToken and Sequence", path, i, ErrInvalid)
			}
		}
		if !seen {
			return fmt.Errorf("%s.single: %w: no sequence A", path, ErrInvalid)
		}
		return nil
	}
	return fmt.Errorf("%s.type %q: %w (post-processors: ByteLevel, TemplateProcessing, Sequence)", path, typ, ErrUnsupported)
}

// finish builds the derived tables once everything is read.
func (t *BPE) finish() {
	t.raw, t.norm = newAddedMatcher(), newAddedMatcher()
	// Register in id order so the outcome does not depend on map order.
	list := make([]*addedToken, 0, len(t.added))
	for _, a := range t.added {
		list = append(list, a)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].id < list[j].id })
	t.special = make([]bool, len(t.tokens))
	for _, a := range list {
		if a.special {
			t.special[a.id] = true
		}
		if a.normalized && t.normalize != nil {
			t.norm.add(t.normalize(a.content), a)
		} else if a.normalized {
			t.norm.add(a.content, a)
		} else {
			t.raw.add(a.content, a)
		}
	}
	// The bytes each id decodes to, in one arena.
	t.offsets = make([]int32, len(t.tokens)+1)
	for id, tok := range t.tokens {
		if t.known[id] {
			t.arena = append(t.arena, byteLevelDecode(tok)...)
		}
		t.offsets[id+1] = int32(len(t.arena))
	}
	if len(t.prefix) > 0 {
		t.bos = t.prefix[0]
	}
}

// specialRef is how tokenizer_config.json names a token: a string, or an
// object with "content".
func specialRef(raw json.RawMessage) (string, bool, error) {
	if isNull(raw) {
		return "", false, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, true, nil
	}
	var o struct {
		Content *string `json:"content"`
	}
	if err := json.Unmarshal(raw, &o); err != nil || o.Content == nil {
		return "", false, fmt.Errorf("%w: want a string or an object with content", ErrInvalid)
	}
	return *o.Content, true, nil
}

func (t *BPE) applyTokenizerConfig(data []byte) error {
	if data == nil {
		return nil
	}
	var cfg map[string]json.RawMessage
	if err := json.Unmarshal(data, &cfg); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	for _, k := range []string{"bos_token", "eos_token", "pad_token"} {
		name, ok, err := specialRef(cfg[k])
		if err != nil {
			return fmt.Errorf("%s: %w", k, err)
		}
		if !ok {
			continue
		}
		id, ok := t.TokenID(name)
		if !ok {
			return fmt.Errorf("%s %q: %w: not in the vocabulary", k, name, ErrInvalid)
		}
		switch k {
		case "bos_token":
			if t.bos < 0 {
				t.bos = id
			}
		case "eos_token":
			t.eos = appendUnique(t.eos, id)
		case "pad_token":
			t.pad = id
		}
	}
	return nil
}

func (t *BPE) applyGenerationConfig(data []byte) error {
	if data == nil {
		return nil
	}
	var cfg struct {
		EOS json.RawMessage `json:"eos_token_id"`
		PAD *int            `json:"pad_token_id"`
	}
	if err := json.Unmarshal(data, &cfg); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	var eos []int
	if !isNull(cfg.EOS) {
		var one int
		if err := json.Unmarshal(cfg.EOS, &one); err == nil {
			eos = []int{one}
		} else if err := json.Unmarshal(cfg.EOS, &eos); err != nil {
			return fmt.Errorf("eos_token_id: %w: want an id or a list of ids", ErrInvalid)
		}
	}
	check := func(k string, id int) error {
		if id < 0 || id >= len(t.known) || !t.known[id] {
			return fmt.Errorf("%s %d: %w: not in the vocabulary", k, id, ErrInvalid)
		}
		return nil
	}
	// The generation config's ids come first: they are what generation
	// stops on.
	merged := []int(nil)
	for _, id := range eos {
		if err := check("eos_token_id", id); err != nil {
			return err
		}
		merged = appendUnique(merged, id)
	}
	for _, id := range t.eos {
		merged = appendUnique(merged, id)
	}
	t.eos = merged
	if cfg.PAD != nil && t.pad < 0 {
		if err := check("pad_token_id", *cfg.PAD); err != nil {
			return err
		}
		t.pad = *cfg.PAD
	}
	return nil
}

func appendUnique(s []int, id int) []int {
	if slices.Contains(s, id) {
		return s
	}
	return append(s, id)
}
