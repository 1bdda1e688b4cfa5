package tokenizer

import (
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/dlclark/regexp2"
)

// The split expressions of the byte-level BPE families, as written in their
// tokenizer.json files. The reference implementation runs them with the
// Oniguruma engine (a backtracking engine, leftmost-first alternation,
// Unicode classes: \s is the White_Space property, \p{L} letters, \p{N}
// numbers); Go's regexp cannot express the lookahead (?!\S), so each one is
// matched by hand below, alternative by alternative, in the order and with
// the backtracking that Oniguruma would take.
const (
	// gpt2Pattern is GPT-2's expression, built into the ByteLevel
	// pre-tokenizer (use_regex) and sometimes spelled out in a Split.
	gpt2Pattern = `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
	// llama3Pattern is the expression of Llama 3 (and of OpenAI's cl100k).
	llama3Pattern = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	// qwen2Pattern is the expression of Qwen2, Qwen2.5 and Qwen3: Llama 3's
	// with single digits.
	qwen2Pattern = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
)

// matcher finds the matches of a split pattern: for each position it
// returns the end of the match starting there, or -1 when none starts
// there. Matches are found left to right without overlap, as a regex
// engine's find-all does.
type matcher interface {
	matchAt(s string, i int) int
}

// knownPattern is one of the hand-matched expressions above.
type knownPattern int

const (
	patternGPT2 knownPattern = iota + 1
	patternLlama3
	patternQwen2
)

func lookupPattern(expr string) (knownPattern, bool) {
	switch expr {
	case gpt2Pattern:
		return patternGPT2, true
	case llama3Pattern:
		return patternLlama3, true
	case qwen2Pattern:
		return patternQwen2, true
	}
	return 0, false
}

func (p knownPattern) matchAt(s string, i int) int {
	switch p {
	case patternGPT2:
		return matchGPT2(s, i)
	case patternLlama3:
		return matchLlama3(s, i, 3)
	default:
		return matchLlama3(s, i, 1)
	}
}

// splitter finds the matches of a Split pattern in s and returns them with
// the gaps between them, as Hugging Face's Pattern::find_matches does.
type splitter interface {
	segments(dst []segment, s string) ([]segment, error)
}

func (p knownPattern) segments(dst []segment, s string) ([]segment, error) {
	return findSegments(dst, s, p), nil
}

func (p literalPattern) segments(dst []segment, s string) ([]segment, error) {
	return findSegments(dst, s, p), nil
}

// regexPattern is any other Split expression, run by regexp2, a
// backtracking engine whose syntax and Unicode classes (\s is White_Space,
// \d is Nd, \p{..} categories, (?i:..), lookaround) match Oniguruma's for
// the expressions tokenizer files use. It is slower than the hand-written
// matchers and is checked against the reference on the o200k expression
// (GPT-4o, Llama 4) and on DeepSeek V3's sequence of splits.
type regexPattern struct{ re *regexp2.Regexp }

// regexTimeout bounds one search, so that a hostile expression with
// catastrophic backtracking fails Encode instead of hanging it.
const regexTimeout = 5 * time.Second

func compileRegex(expr string) (regexPattern, error) {
	re, err := regexp2.Compile(expr, regexp2.None)
	if err != nil {
		return regexPattern{}, err
	}
	re.MatchTimeout = regexTimeout
	return regexPattern{re}, nil
}

func (p regexPattern) segments(dst []segment, s string) ([]segment, error) {
	m, err := p.re.FindStringMatch(s)
	if err != nil {
		return dst, err
	}
	// regexp2 counts in runes; convert to byte offsets as we go (matches
	// come in increasing order).
	runeIdx, byteIdx := 0, 0
	toByte := func(r int) int {
		for runeIdx < r {
			_, n := utf8.DecodeRuneInString(s[byteIdx:])
			byteIdx += n
			runeIdx++
		}
		return byteIdx
	}
	prev := 0
	for m != nil {
		start := toByte(m.Index)
		end := toByte(m.Index + m.Length)
		if end > start {
			if prev < start {
				dst = append(dst, segment{prev, start, false})
			}
			dst = append(dst, segment{start, end, true})
			prev = end
		}
		if m, err = p.re.FindNextMatch(m); err != nil {
			return dst, err
		}
	}
	if prev < len(s) {
		dst = append(dst, segment{prev, len(s), false})
	}
	return dst, nil
}

// literalPattern is a Split pattern given as {"String": "..."}.
type literalPattern string

func (p literalPattern) matchAt(s string, i int) int {
	if p != "" && strings.HasPrefix(s[i:], string(p)) {
		return i + len(p)
	}
	return -1
}

func runeAt(s string, i int) (rune, int) {
	if c := s[i]; c < utf8.RuneSelf {
		return rune(c), 1
	}
	return utf8.DecodeRuneInString(s[i:])
}

// isLetter is \p{L}.
func isLetter(r rune) bool {
	if r < utf8.RuneSelf {
		return 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z'
	}
	return unicode.IsLetter(r)
}

// isNumber is \p{N} (Nd, Nl, No), which is also Rust's char::is_numeric.
func isNumber(r rune) bool {
	if r < utf8.RuneSelf {
		return '0' <= r && r <= '9'
	}
	return unicode.IsNumber(r)
}

// isSpace is Oniguruma's Unicode \s: the White_Space property.
func isSpace(r rune) bool {
	if r < utf8.RuneSelf {
		return r == ' ' || '\t' <= r && r <= '\r'
	}
	return unicode.IsSpace(r)
}

// isOther is [^\s\p{L}\p{N}].
func isOther(r rune) bool { return !isSpace(r) && !isLetter(r) && !isNumber(r) }

// scan returns the end of the longest run, starting at i, of runes in class.
func scan(s string, i int, class func(rune) bool) int {
	for i < len(s) {
		r, n := runeAt(s, i)
		if !class(r) {
			break
		}
		i += n
	}
	return i
}

// contraction matches 's|'t|'re|'ve|'m|'ll|'d at i, where s[i] is an apostrophe,
// ignoring ASCII case when fold is set, and returns its end or -1.
func contraction(s string, i int, fold bool) int {
	if i+1 >= len(s) {
		return -1
	}
	lower := func(c byte) byte {
		if fold && 'A' <= c && c <= 'Z' {
			return c + 'a' - 'A'
		}
		return c
	}
	switch lower(s[i+1]) {
	case 's', 't', 'm', 'd':
		return i + 2
	case 'r', 'v':
		if i+2 < len(s) && lower(s[i+2]) == 'e' {
			return i + 3
		}
	case 'l':
		if i+2 < len(s) && lower(s[i+2]) == 'l' {
			return i + 3
		}
	}
	return -1
}

// spaceTail matches \s+(?!\S)|\s+ at i, where s[i] is white space: the
// whole run of white space if it ends the text, else the run less its last
// rune (which then joins the word that follows), or a run of one.
func spaceTail(s string, i int) int {
	end := scan(s, i, isSpace)
	if end == len(s) {
		return end
	}
	_, n := utf8.DecodeLastRuneInString(s[i:end])
	if end-n > i {
		return end - n
	}
	return end
}

// matchGPT2 matches gpt2Pattern at i.
func matchGPT2(s string, i int) int {
	r, n := runeAt(s, i)
	if r == '\'' {
		if e := contraction(s, i, false); e > 0 {
			return e
		}
	}
	// ` ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+`: the optional space is taken
	// when the class matches after it; a space itself is in none of the
	// three classes, so without it the class must match at i.
	j, c, m := i, r, n
	if r == ' ' && i+1 < len(s) {
		c, m = runeAt(s, i+1)
		j = i + 1
	}
	switch {
	case isLetter(c):
		return scan(s, j+m, isLetter)
	case isNumber(c):
		return scan(s, j+m, isNumber)
	case isOther(c):
		return scan(s, j+m, isOther)
	}
	if isSpace(r) {
		return spaceTail(s, i)
	}
	return -1
}

// matchLlama3 matches llama3Pattern (maxDigits 3) or qwen2Pattern
// (maxDigits 1) at i.
func matchLlama3(s string, i int, maxDigits int) int {
	r, n := runeAt(s, i)
	// (?i:'s|'t|'re|'ve|'m|'ll|'d)
	if r == '\'' {
		if e := contraction(s, i, true); e > 0 {
			return e
		}
	}
	// [^\r\n\p{L}\p{N}]?\p{L}+
	if isLetter(r) {
		return scan(s, i+n, isLetter)
	}
	if r != '\r' && r != '\n' && !isNumber(r) && i+n < len(s) {
		if r2, n2 := runeAt(s, i+n); isLetter(r2) {
			return scan(s, i+n+n2, isLetter)
		}
	}
	// \p{N}{1,maxDigits}
	if isNumber(r) {
		j := i + n
		for k := 1; k < maxDigits && j < len(s); k++ {
			r2, n2 := runeAt(s, j)
			if !isNumber(r2) {
				break
			}
			j += n2
		}
		return j
	}
	// ` ?[^\s\p{L}\p{N}]+[\r\n]*`
	j := -1
	if isOther(r) {
		j = i
	} else if r == ' ' && i+1 < len(s) {
		if r2, _ := runeAt(s, i+1); isOther(r2) {
			j = i + 1
		}
	}
	if j >= 0 {
		j = scan(s, j, isOther)
		for j < len(s) && (s[j] == '\r' || s[j] == '\n') {
			j++
		}
		return j
	}
	if !isSpace(r) {
		return -1 // unreachable: every rune is a letter, number, space or other
	}
	// \s*[\r\n]+: backtracking from the longest run of white space, the
	// match ends just after the run's last line break, if it has one.
	end := scan(s, i, isSpace)
	if k := strings.LastIndexAny(s[i:end], "\r\n"); k >= 0 {
		return i + k + 1
	}
	// \s+(?!\S)|\s+
	return spaceTail(s, i)
}

// segment is a piece of a string split by a pattern: [start, end), and
// whether the pattern matched it.
type segment struct {
	start, end int
	match      bool
}

// findSegments splits s into the matches of m and the gaps between them,
// as Hugging Face's Pattern::find_matches does.
func findSegments(dst []segment, s string, m matcher) []segment {
	prev := 0
	for i := 0; i < len(s); {
		e := m.matchAt(s, i)
		if e < 0 {
			_, n := runeAt(s, i)
			i += n
			continue
		}
		if prev < i {
			dst = append(dst, segment{prev, i, false})
		}
		if e == i { // an empty match splits nothing
			_, n := runeAt(s, i)
			prev, i = i, i+n
			continue
		}
		dst = append(dst, segment{i, e, true})
		prev, i = e, e
	}
	if prev < len(s) {
		dst = append(dst, segment{prev, len(s), false})
	}
	return dst
}

// numericSegments splits s into single numeric runes (matches) and the
// runs between them, as Hugging Face's char-predicate pattern does.
func numericSegments(dst []segment, s string) []segment {
	prev := 0
	for i := 0; i < len(s); {
		r, n := runeAt(s, i)
		if isNumber(r) {
			if prev < i {
				dst = append(dst, segment{prev, i, false})
			}
			dst = append(dst, segment{i, i + n, true})
			prev = i + n
		}
		i += n
	}
	if prev < len(s) {
		dst = append(dst, segment{prev, len(s), false})
	}
	return dst
}

// behavior is Hugging Face's SplitDelimiterBehavior: what becomes of the
// matches when a string is split.
type behavior int

const (
	behaviorRemoved behavior = iota + 1
	behaviorIsolated
	behaviorMergedWithPrevious
	behaviorMergedWithNext
	behaviorContiguous
)

var behaviors = map[string]behavior{
	"Removed":            behaviorRemoved,
	"Isolated":           behaviorIsolated,
	"MergedWithPrevious": behaviorMergedWithPrevious,
	"MergedWithNext":     behaviorMergedWithNext,
	"Contiguous":         behaviorContiguous,
}

// appendPieces appends to dst the non-empty pieces of s that segs and b
// make, following NormalizedString::split of Hugging Face tokenizers.
func appendPieces(dst []string, s string, segs []segment, b behavior) []string {
	switch b {
	case behaviorRemoved:
		for _, g := range segs {
			if !g.match && g.end > g.start {
				dst = append(dst, s[g.start:g.end])
			}
		}
		return dst
	case behaviorIsolated:
		for _, g := range segs {
			if g.end > g.start {
				dst = append(dst, s[g.start:g.end])
			}
		}
		return dst
	}
	// The merging behaviors: fold segments into spans, then emit them.
	spans := make([]segment, 0, len(segs))
	switch b {
	case behaviorMergedWithPrevious:
		prevMatch := false
		for _, g := range segs {
			if g.match && !prevMatch && len(spans) > 0 {
				spans[len(spans)-1].end = g.end
			} else {
				spans = append(spans, g)
			}
			prevMatch = g.match
		}
	case behaviorMergedWithNext:
		prevMatch := false
		for k := len(segs) - 1; k >= 0; k-- {
			g := segs[k]
			if g.match && !prevMatch && len(spans) > 0 {
				spans[len(spans)-1].start = g.start
			} else {
				spans = append(spans, g)
			}
			prevMatch = g.match
		}
		for l, r := 0, len(spans)-1; l < r; l, r = l+1, r-1 {
			spans[l], spans[r] = spans[r], spans[l]
		}
	case behaviorContiguous:
		prevMatch := false
		for _, g := range segs {
			if g.match == prevMatch && len(spans) > 0 {
				spans[len(spans)-1].end = g.end
			} else {
				spans = append(spans, g)
			}
			prevMatch = g.match
		}
	}
	for _, g := range spans {
		if g.end > g.start {
			dst = append(dst, s[g.start:g.end])
		}
	}
	return dst
}
