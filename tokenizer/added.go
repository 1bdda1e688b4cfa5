package tokenizer

import (
	"unicode"
	"unicode/utf8"
)

// addedToken is an entry of tokenizer.json's added_tokens: a string that is
// matched in the text before any other processing and becomes one id.
type addedToken struct {
	id         int
	content    string
	singleWord bool // only matched as a whole word
	lstrip     bool // swallows the white space before it
	rstrip     bool // swallows the white space after it
	normalized bool // matched in the normalized text instead of the raw text
	special    bool // skipped by Decode(ids, skipSpecial=true)
}

// addedMatcher finds added tokens in text: at the leftmost position where
// any matches, the longest one (the LeftmostLongest rule of the reference's
// Aho-Corasick automaton), by walking a byte trie.
type addedMatcher struct {
	first  [256]bool        // bytes some token starts with
	edges  map[uint64]int32 // node<<8 | byte -> child node; node 0 is the root
	ends   []int32          // node -> index into tokens, -1 if no token ends there
	tokens []*addedToken
}

func newAddedMatcher() *addedMatcher {
	return &addedMatcher{edges: map[uint64]int32{}, ends: []int32{-1}}
}

func edge(node int32, c byte) uint64 { return uint64(node)<<8 | uint64(c) }

// add registers tok under the string pattern (its content, normalized when
// the token is matched in normalized text). A later pattern equal to an
// earlier one replaces it.
func (m *addedMatcher) add(pattern string, tok *addedToken) {
	if pattern == "" {
		return
	}
	m.first[pattern[0]] = true
	n := int32(0)
	for i := 0; i < len(pattern); i++ {
		next, ok := m.edges[edge(n, pattern[i])]
		if !ok {
			next = int32(len(m.ends))
			m.edges[edge(n, pattern[i])] = next
			m.ends = append(m.ends, -1)
		}
		n = next
	}
	if m.ends[n] >= 0 {
		m.tokens[m.ends[n]] = tok
		return
	}
	m.ends[n] = int32(len(m.tokens))
	m.tokens = append(m.tokens, tok)
}

func (m *addedMatcher) empty() bool { return len(m.tokens) == 0 }

// longestAt returns the longest token that matches at i and its end.
func (m *addedMatcher) longestAt(s string, i int) (*addedToken, int) {
	n, best, end := int32(0), int32(-1), -1
	for j := i; j < len(s); j++ {
		next, ok := m.edges[edge(n, s[j])]
		if !ok {
			break
		}
		n = next
		if t := m.ends[n]; t >= 0 {
			best, end = t, j+1
		}
	}
	if best < 0 {
		return nil, -1
	}
	return m.tokens[best], end
}

// split walks s and calls text for each stretch of ordinary text and token
// for each added token found, in order, applying the single_word, lstrip
// and rstrip rules as AddedVocabulary::find_matches of Hugging Face
// tokenizers does.
//
// With ordinary set, special tokens are not split out: like the reference's
// encode_special_tokens, the match is skipped and the search goes on after
// it, so "<|im_start|>" stays text.
func (m *addedMatcher) split(s string, ordinary bool, text func(string), token func(*addedToken)) {
	if m.empty() {
		if s != "" {
			text(s)
		}
		return
	}
	start := 0 // start of the pending ordinary text
	for i := 0; i < len(s); {
		if !m.first[s[i]] {
			i++
			continue
		}
		tok, end := m.longestAt(s, i)
		if tok == nil {
			i++
			continue
		}
		if ordinary && tok.special {
			i = end
			continue
		}
		if tok.singleWord && !(wordBoundaryBefore(s, i) && wordBoundaryAfter(s, end)) {
			i = end // the reference skips the match and searches on after it
			continue
		}
		mstart, mend := i, end
		if tok.lstrip {
			for mstart > start {
				r, n := utf8.DecodeLastRuneInString(s[start:mstart])
				if !unicode.IsSpace(r) {
					break
				}
				mstart -= n
			}
		}
		if tok.rstrip {
			for mend < len(s) {
				r, n := utf8.DecodeRuneInString(s[mend:])
				if !unicode.IsSpace(r) {
					break
				}
				mend += n
			}
		}
		if start < mstart {
			text(s[start:mstart])
		}
		token(tok)
		start, i = mend, end
		if i < mend {
			i = mend
		}
	}
	if start < len(s) {
		text(s[start:])
	}
}

// isWordRune approximates \w of Rust's regex crate (letters, marks, decimal
// digits, connector punctuation), the word characters of the single_word
// rule.
func isWordRune(r rune) bool {
	return unicode.IsLetter(r) || unicode.IsMark(r) || unicode.IsDigit(r) || unicode.Is(unicode.Pc, r)
}

func wordBoundaryBefore(s string, i int) bool {
	if i == 0 {
		return true
	}
	r, _ := utf8.DecodeLastRuneInString(s[:i])
	return !isWordRune(r)
}

func wordBoundaryAfter(s string, i int) bool {
	if i == len(s) {
		return true
	}
	r, _ := utf8.DecodeRuneInString(s[i:])
	return !isWordRune(r)
}
