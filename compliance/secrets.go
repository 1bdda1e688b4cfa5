package compliance

import (
	"bytes"
	"encoding/base64"
	"math"
)

// KindURLCredentials is a password inside a URL (scheme://user:pass@host).
const KindURLCredentials Kind = "url_credentials"

// tokenRule recognizes one provider's token format by its prefix, length and
// alphabet. The formats are the ones the providers document (and that
// gitleaks' and GitHub secret scanning's rules encode).
type tokenRule struct {
	kind     Kind
	prefixes []string
	min, max int   // length of the whole token, prefix included
	alpha    uint8 // classes every byte after the prefix must belong to
	extra    string
	contains string // a marker the token must contain, if set
}

const (
	aUpperDigit = cUpper | cDigit
	aAlnum      = cUpper | cLower | cDigit
	aToken      = cToken // [A-Za-z0-9_-]
	aLetters    = cUpper | cLower
)

var tokenRules = []tokenRule{
	{kind: KindAWSAccessKeyID, prefixes: []string{"AKIA", "ASIA", "ABIA", "ACCA", "AGPA", "AIDA", "AROA", "ANPA", "ANVA", "AIPA"}, min: 20, max: 20, alpha: aUpperDigit},
	{kind: KindGitHubToken, prefixes: []string{"ghp_", "gho_", "ghu_", "ghs_", "ghr_"}, min: 40, max: 255, alpha: aAlnum},
	{kind: KindGitHubToken, prefixes: []string{"github_pat_"}, min: 82, max: 255, alpha: aToken},
	{kind: KindGitLabToken, prefixes: []string{"glpat-", "gldt-", "glrt-"}, min: 26, max: 255, alpha: aToken},
	{kind: KindSlackToken, prefixes: []string{"xoxb-", "xoxp-", "xoxa-", "xoxr-", "xoxs-", "xoxe-", "xapp-"}, min: 20, max: 255, alpha: aToken},
	{kind: KindStripeSecretKey, prefixes: []string{"sk_live_", "sk_test_", "rk_live_", "rk_test_"}, min: 32, max: 255, alpha: aAlnum},
	{kind: KindGoogleAPIKey, prefixes: []string{"AIza"}, min: 39, max: 39, alpha: aToken},
	{kind: KindAnthropicKey, prefixes: []string{"sk-ant-"}, min: 40, max: 255, alpha: aToken},
	{kind: KindOpenAIKey, prefixes: []string{"sk-proj-", "sk-svcacct-", "sk-admin-"}, min: 40, max: 255, alpha: aToken},
	{kind: KindOpenAIKey, prefixes: []string{"sk-"}, min: 40, max: 255, alpha: aToken, contains: "T3BlbkFJ"},
	{kind: KindHuggingFaceToken, prefixes: []string{"hf_"}, min: 37, max: 37, alpha: aLetters},
	{kind: KindNPMToken, prefixes: []string{"npm_"}, min: 40, max: 40, alpha: aAlnum},
}

// secretScanner holds per-scan settings; read-only, safe for concurrent use.
type secretScanner struct {
	minEntropy float64 // bits per byte for an unlabeled high-entropy string
}

// keyState is carried from line to line within one file.
type keyState struct {
	inKey bool // inside a -----BEGIN ... PRIVATE KEY----- block
	inPEM bool // inside another PEM block (a certificate, a public key)
}

var (
	beginMarker = []byte("-----BEGIN ")
	endMarker   = []byte("-----END ")
	privKey     = []byte("PRIVATE KEY")
	slackHook   = []byte("hooks.slack.com/services/")
)

var secretKeywords = []string{"secret", "token", "password", "passwd", "pwd", "api_key", "apikey",
	"api-key", "access_key", "accesskey", "auth", "credential", "private_key", "client_secret", "bearer", "basic"}

// notSecretWords start with a secret keyword but name something else; ML
// configs are full of "tokenizer" and datasets of "author".
var notSecretWords = []string{"tokeniz", "tokenis", "tokens", "secretar", "authent",
	"author_", "author-", "author\"", "author ", "author:", "author=", "authors", "authored", "authorship"}

// wide: the base64 and base64url alphabets
func isWide(c byte) bool { return class[c]&cToken != 0 || c == '+' || c == '/' || c == '=' }

func (s *secretScanner) scanLine(b []byte, st *keyState, ms []match) []match {
	if st.inKey || st.inPEM {
		if bytes.Contains(b, endMarker) {
			st.inKey, st.inPEM = false, false
		}
		return ms
	}
	if k := bytes.Index(b, beginMarker); k >= 0 {
		rest := b[k+len(beginMarker):]
		if e := bytes.Index(rest, []byte("-----")); e > 0 {
			open := !bytes.Contains(rest[e:], endMarker)
			if bytes.Contains(rest[:e], privKey) {
				ms = append(ms, match{KindPrivateKey, k, len(b)})
				st.inKey = open
			} else {
				// certificates and public keys are not secret; their
				// base64 body is not a high-entropy finding either
				st.inPEM = open
			}
			return ms
		}
	}
	if k := bytes.Index(b, slackHook); k >= 0 {
		e := k + len(slackHook)
		for e < len(b) && (isAlnum(b[e]) || b[e] == '/') {
			e++
		}
		if e-k-len(slackHook) >= 20 {
			s0 := k
			if p := bytes.LastIndex(b[:k], []byte("https://")); p >= 0 && p+8 == k {
				s0 = p
			}
			ms = append(ms, match{KindSlackWebhook, s0, e})
		}
	}
	ms = scanURLCredentials(b, ms)
	n := len(b)
	for i := 0; i < n; {
		if !isWide(b[i]) {
			i++
			continue
		}
		start := i
		for i < n && isWide(b[i]) {
			i++
		}
		if i-start < 16 {
			if i-start == 2 && b[start] == 'S' && b[start+1] == 'G' && i < n && b[i] == '.' && !wordBefore(b, start) {
				if e, ok := matchDotted(b, start, []int{2, 22, 43}); ok {
					ms = append(ms, match{KindSendGridKey, start, e})
					i = e
				}
			}
			continue
		}
		if m, ok := s.classify(b, start, i); ok {
			ms = append(ms, m)
			if m.end > i {
				i = m.end
			}
		}
	}
	return ms
}

// classify looks at one run [s, e) of base64 alphabet bytes.
func (s *secretScanner) classify(b []byte, start, end int) (match, bool) {
	// '=' is base64 padding only at the end; inside a run it is key=value
	for k := start + 1; k < end-1; k++ {
		if b[k] == '=' && b[k+1] != '=' {
			if end-(k+1) >= 16 {
				return s.classify(b, k+1, end)
			}
			break
		}
	}
	// provider tokens start a [A-Za-z0-9_-] run inside the wide run
	for a := start; a < end; {
		if class[b[a]]&cToken == 0 {
			a++
			continue
		}
		c := a
		for c < end && class[b[c]]&cToken != 0 {
			c++
		}
		if c-a >= 16 {
			if bytes.HasPrefix(b[a:], []byte("eyJ")) {
				if e, ok := matchJWT(b, a); ok {
					return match{KindJWT, a, e}, true
				}
			}
			if k, ok := matchRule(b[a:c]); ok {
				return match{k, a, c}, true
			}
		}
		a = c
	}
	tok := b[start:end]
	for len(tok) > 0 && tok[len(tok)-1] == '=' {
		tok = tok[:len(tok)-1]
	}
	if len(tok) < 16 || !mixed(tok) {
		return match{}, false
	}
	h := entropy(tok)
	if h >= 3.5 && secretKeyBefore(b, start) {
		return match{KindGenericSecret, start, end}, true
	}
	if len(tok) >= 32 && h >= s.minEntropy && !wordy(tok) {
		return match{KindHighEntropy, start, end}, true
	}
	return match{}, false
}

// secretKeyBefore reports whether the value at start is assigned to a key
// that names a secret: reading backwards, separators (space, quotes, ':',
// '=', '>') and then an identifier containing a secret keyword, as in
// `client_secret = "…"`, `"api_key": "…"`, `Authorization: Bearer …`.
func secretKeyBefore(b []byte, start int) bool {
	k := start
	seps := 0
	for k > 0 && seps < 8 {
		c := b[k-1]
		if c != ' ' && c != '\t' && c != '"' && c != '\'' && c != ':' && c != '=' && c != '>' {
			break
		}
		k--
		seps++
	}
	if seps == 0 {
		return false
	}
	e := k
	for k > 0 && e-k < 64 && (class[b[k-1]]&cToken != 0 || b[k-1] == '.') {
		k--
	}
	if k == e {
		return false
	}
	var low [64]byte
	key := low[:0]
	for _, c := range b[k:e] {
		if c >= 'A' && c <= 'Z' {
			c |= 0x20
		}
		key = append(key, c)
	}
	for _, kw := range secretKeywords {
		for off := 0; off+len(kw) <= len(key); off++ {
			if string(key[off:off+len(kw)]) == kw && !excluded(key[off:], notSecretWords) {
				return true
			}
		}
	}
	return false
}

// wordy reports whether words — a letter and two or more lower-case letters,
// as in ExampleParameters128BitLogN14 — cover at least 65% of t. Random
// base64 of 32 bytes reaches that about once in 200 (simulated), identifiers
// almost always.
func wordy(t []byte) bool {
	covered := 0
	for k := 0; k < len(t); {
		if class[t[k]]&(cUpper|cLower) == 0 {
			k++
			continue
		}
		e := k + 1
		for e < len(t) && class[t[e]]&cLower != 0 {
			e++
		}
		if e-k >= 3 {
			covered += e - k
		}
		k = e
	}
	return covered*100 >= 65*len(t)
}

func matchRule(t []byte) (Kind, bool) {
	for _, r := range tokenRules {
		if len(t) < r.min || len(t) > r.max {
			continue
		}
		for _, p := range r.prefixes {
			if !bytes.HasPrefix(t, []byte(p)) {
				continue
			}
			ok := true
			for _, c := range t[len(p):] {
				if class[c]&r.alpha == 0 {
					ok = false
					break
				}
			}
			if ok && r.contains != "" && !bytes.Contains(t, []byte(r.contains)) {
				ok = false
			}
			if ok && !hasDigit(t[len(p):]) && r.alpha != aLetters {
				ok = false // real tokens are random; all-letter bodies are words
			}
			if ok {
				return r.kind, true
			}
		}
	}
	return "", false
}

// matchJWT reads header.payload.signature at i and accepts it if the header
// is base64url JSON naming an "alg".
func matchJWT(b []byte, i int) (int, bool) {
	var segs [3][2]int
	j := i
	for k := 0; k < 3; k++ {
		s := j
		for j < len(b) && class[b[j]]&cToken != 0 {
			j++
		}
		segs[k] = [2]int{s, j}
		if j-s < 2 && k < 2 {
			return 0, false
		}
		if k < 2 {
			if j >= len(b) || b[j] != '.' {
				return 0, false
			}
			j++
		}
	}
	if j-segs[2][0] < 16 || wordAt(b, j) {
		return 0, false
	}
	hdr, err := base64.RawURLEncoding.DecodeString(string(b[segs[0][0]:segs[0][1]]))
	if err != nil || !bytes.Contains(hdr, []byte(`"alg"`)) {
		return 0, false
	}
	return j, true
}

// matchDotted reads dot-separated [A-Za-z0-9_-] segments of the given lengths.
func matchDotted(b []byte, i int, lens []int) (int, bool) {
	j := i
	for k, l := range lens {
		if k > 0 {
			if j >= len(b) || b[j] != '.' {
				return 0, false
			}
			j++
		}
		s := j
		for j < len(b) && class[b[j]]&cToken != 0 {
			j++
		}
		if j-s != l {
			return 0, false
		}
	}
	return j, !wordAt(b, j)
}

// scanURLCredentials finds scheme://user:password@host.
func scanURLCredentials(b []byte, ms []match) []match {
	off := 0
	for {
		k := bytes.Index(b[off:], []byte("://"))
		if k < 0 {
			return ms
		}
		s := off + k + 3
		off = s
		colon, at := -1, -1
		for j := s; j < len(b) && j-s < 256; j++ {
			c := b[j]
			if c == '/' || c == ' ' || c == '"' || c == '\'' || c == '\t' || c == '\\' || c == '<' || c == '>' {
				break
			}
			if c == ':' && colon < 0 {
				colon = j
			}
			if c == '@' {
				at = j
				break
			}
		}
		if colon > s && at > colon+1 {
			pw := b[colon+1 : at]
			if !placeholder(pw) {
				ms = append(ms, match{KindURLCredentials, s, at})
			}
			off = at + 1
		}
	}
}

// placeholder reports values that stand for a secret instead of being one.
func placeholder(v []byte) bool {
	if len(v) == 0 {
		return true
	}
	if v[0] == '$' || v[0] == '<' || v[0] == '{' || v[0] == '%' {
		return true
	}
	low := bytes.ToLower(v)
	for _, p := range []string{"password", "changeme", "example", "xxxx", "****", "redacted", "placeholder", "your_", "your-", "todo", "null", "none", "secret", "dummy", "test"} {
		if bytes.Contains(low, []byte(p)) {
			return true
		}
	}
	return false
}

func hasDigit(t []byte) bool {
	for _, c := range t {
		if isDigit(c) {
			return true
		}
	}
	return false
}

// mixed reports whether t has a digit and a letter: random tokens do, words
// and numbers do not.
func mixed(t []byte) bool {
	var k uint8
	for _, c := range t {
		k |= class[c]
	}
	return k&cDigit != 0 && k&(cUpper|cLower) != 0
}

// entropy is the Shannon entropy of t in bits per byte.
func entropy(t []byte) float64 {
	var counts [256]int
	for _, c := range t {
		counts[c]++
	}
	n := float64(len(t))
	h := 0.0
	for _, c := range counts {
		if c > 0 {
			p := float64(c) / n
			h -= p * math.Log2(p)
		}
	}
	return h
}

// dotenvName reports whether a file name is a .env file.
func dotenvName(base string) bool {
	return base == ".env" || bytes.HasPrefix([]byte(base), []byte(".env.")) || bytes.HasSuffix([]byte(base), []byte(".env"))
}

var dotenvKeyWords = []string{"SECRET", "TOKEN", "PASSWORD", "PASSWD", "PWD", "KEY", "CREDENTIAL", "AUTH", "PRIVATE", "DSN", "SALT"}

// scanDotenvLine reports KEY=VALUE in a .env file when the key names a
// secret and the value is not empty or a placeholder.
func scanDotenvLine(b []byte, ms []match) []match {
	t := bytes.TrimLeft(b, " \t")
	t = bytes.TrimPrefix(t, []byte("export "))
	eq := bytes.IndexByte(t, '=')
	if eq <= 0 || t[0] == '#' {
		return ms
	}
	key := bytes.ToUpper(bytes.TrimSpace(t[:eq]))
	named := false
	for _, w := range dotenvKeyWords {
		if bytes.Contains(key, []byte(w)) {
			named = true
			break
		}
	}
	if !named {
		return ms
	}
	v := bytes.TrimSpace(t[eq+1:])
	if h := bytes.Index(v, []byte(" #")); h >= 0 {
		v = bytes.TrimSpace(v[:h])
	}
	v = bytes.Trim(v, `"'`)
	if placeholder(v) {
		return ms
	}
	col := len(b) - len(t) + eq + 1
	for col < len(b) && (b[col] == ' ' || b[col] == '"' || b[col] == '\'') {
		col++
	}
	return append(ms, match{KindDotEnvSecret, col, len(b)})
}
