package compliance

import (
	"bytes"
	"net/netip"
	"slices"

	"github.com/nyaruka/phonenumbers"
)

// match is one detection within a line: [start, end) in bytes.
type match struct {
	kind       Kind
	start, end int
}

// byte classes
const (
	cDigit = 1 << iota
	cUpper
	cLower
	cHex
	cToken  // [A-Za-z0-9_-]: the alphabet of provider tokens
	cLocal  // e-mail local part
	cDomain // e-mail domain
	cV6     // [0-9A-Fa-f:.]
)

var class [256]uint8

func init() {
	for c := 0; c < 256; c++ {
		var k uint8
		switch {
		case c >= '0' && c <= '9':
			k |= cDigit | cHex | cToken | cLocal | cDomain | cV6
		case c >= 'A' && c <= 'Z':
			k |= cUpper | cToken | cLocal | cDomain
			if c <= 'F' {
				k |= cHex | cV6
			}
		case c >= 'a' && c <= 'z':
			k |= cLower | cToken | cLocal | cDomain
			if c <= 'f' {
				k |= cHex | cV6
			}
		}
		switch c {
		case '_':
			k |= cToken | cLocal
		case '-':
			k |= cToken | cLocal | cDomain
		case '.':
			k |= cLocal | cDomain | cV6
		case '+', '%', '\'':
			k |= cLocal
		case ':':
			k |= cV6
		}
		class[c] = k
	}
}

func isAlnum(c byte) bool { return class[c]&(cDigit|cUpper|cLower) != 0 }
func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// wordBefore reports whether position i is preceded by a letter, digit or _.
// The letter of a JSON or C escape (\n, \t, \r, \b, \f) does not count:
// in "line\n415-555-2671" the number starts a word.
func wordBefore(b []byte, i int) bool {
	if i == 0 || !(isAlnum(b[i-1]) || b[i-1] == '_') {
		return false
	}
	return !escapeLetterAt(b, i-1)
}

// escapeLetterAt reports whether b[k] is the letter of a backslash escape.
func escapeLetterAt(b []byte, k int) bool {
	if k == 0 || b[k-1] != '\\' {
		return false
	}
	switch b[k] {
	case 'n', 'r', 't', 'b', 'f':
		// an escaped backslash before it ("\\n") makes the n a letter
		return k < 2 || b[k-2] != '\\'
	}
	return false
}

// wordAt reports whether position i holds a letter, digit or _.
func wordAt(b []byte, i int) bool { return i < len(b) && (isAlnum(b[i]) || b[i] == '_') }

// piiScanner holds the per-scan settings of the PII detectors. It is
// read-only after construction and safe for concurrent use.
type piiScanner struct {
	region  string // default region for phone numbers without +CC
	nanp    bool   // region is in the North American Numbering Plan (+1)
	maxYear int    // latest plausible year of birth
}

// claimed answers "is byte i inside one of these spans?" for positions that
// mostly increase, in time linear in the spans and positions (a line with
// thousands of findings must not cost a quadratic walk).
type claimed struct {
	spans []match // sorted by start
	k     int
	last  int
}

func newClaimed(ms []match) claimed {
	if len(ms) == 0 {
		return claimed{}
	}
	spans := slices.Clone(ms)
	slices.SortFunc(spans, func(a, b match) int { return a.start - b.start })
	return claimed{spans: spans}
}

func (c *claimed) has(i int) bool {
	if len(c.spans) == 0 {
		return false
	}
	if i < c.last {
		c.k = 0 // a new ascending run of queries
	}
	c.last = i
	for c.k < len(c.spans) && c.spans[c.k].end <= i {
		c.k++
	}
	// Now spans[k] ends after i. If it starts after i, so do all later
	// spans (sorted by start); a span before k that ended at or before i
	// cannot hold i. So spans[k] decides.
	return c.k < len(c.spans) && c.spans[c.k].start <= i
}

// --- e-mail ---

func scanEmails(b []byte, ms []match) []match {
	off := 0
	for {
		k := bytes.IndexByte(b[off:], '@')
		if k < 0 {
			return ms
		}
		at := off + k
		off = at + 1
		// local part
		s := at
		for s > 0 && class[b[s-1]]&cLocal != 0 && at-s < 64 {
			s--
		}
		if escapeLetterAt(b, s) {
			s++
		}
		for s < at && (b[s] == '.' || b[s] == '-' || b[s] == '+' || b[s] == '\'') {
			s++
		}
		if s == at || b[at-1] == '.' {
			continue
		}
		// domain
		e := at + 1
		for e < len(b) && class[b[e]]&cDomain != 0 && e-at <= 253 {
			e++
		}
		for e > at+1 && (b[e-1] == '.' || b[e-1] == '-') {
			e--
		}
		if !validDomain(b[at+1 : e]) {
			continue
		}
		if e < len(b) && (b[e] == '@' || b[e] == '_') {
			continue
		}
		ms = append(ms, match{KindEmail, s, e})
		off = e
	}
}

func validDomain(d []byte) bool {
	if len(d) < 4 {
		return false
	}
	labels := 0
	for len(d) > 0 {
		i := bytes.IndexByte(d, '.')
		var l []byte
		if i < 0 {
			l, d = d, nil
		} else {
			l, d = d[:i], d[i+1:]
		}
		if len(l) == 0 || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		labels++
		if d == nil { // top-level domain: letters only, at least two
			if len(l) < 2 {
				return false
			}
			for _, c := range l {
				if class[c]&(cUpper|cLower) == 0 {
					return false
				}
			}
		}
	}
	return labels >= 2
}

// --- IPv6 ---

func scanIPv6(b []byte, ms []match) []match {
	off := 0
	for {
		k := bytes.IndexByte(b[off:], ':')
		if k < 0 {
			return ms
		}
		c := off + k
		s, e := c, c+1
		for s > 0 && class[b[s-1]]&cV6 != 0 {
			s--
		}
		for e < len(b) && class[b[e]]&cV6 != 0 {
			e++
		}
		off = e
		for e > s && b[e-1] == '.' {
			e--
		}
		if e-s < 3 || e-s > 45 || wordBefore(b, s) || wordAt(b, e) || b[s] == '.' {
			continue
		}
		colons, digits := 0, 0
		for _, ch := range b[s:e] {
			if ch == ':' {
				colons++
			} else if isDigit(ch) {
				digits++
			}
		}
		// "a::b" and "dead::beef" parse, but in text they are C++ and words
		if colons < 2 || digits == 0 {
			continue
		}
		a, err := netip.ParseAddr(string(b[s:e]))
		// the unspecified and loopback addresses name no one
		if err != nil || !a.Is6() || a.IsUnspecified() || a.IsLoopback() {
			continue
		}
		ms = append(ms, match{KindIPv6, s, e})
	}
}

// --- digit-led types: IPv4, SSN, dates of birth, payment cards, IBANs, phones ---

func (p *piiScanner) scanDigits(b []byte, ms []match, first int) []match {
	taken := newClaimed(ms[first:])
	n := len(b)
	for i := 0; i < n; i++ {
		c := b[i]
		if !isDigit(c) && c != '+' && c != '(' {
			continue
		}
		if taken.has(i) {
			continue
		}
		if isDigit(c) && wordBefore(b, i) {
			// IBAN: two capitals, then the check digits
			if i >= 2 && class[b[i-1]]&cUpper != 0 && class[b[i-2]]&cUpper != 0 && !wordBefore(b, i-2) {
				if e, ok := matchIBAN(b, i-2); e > 0 {
					// IBAN-shaped: a failed check still makes it no phone or card
					if ok {
						ms = append(ms, match{KindIBAN, i - 2, e})
					}
					i = e - 1
					continue
				}
			}
			for i+1 < n && wordAt(b, i+1) {
				i++
			}
			continue
		}
		if c == '+' || c == '(' {
			if wordBefore(b, i) || i+1 >= n {
				continue
			}
			if e, ok := p.matchPhone(b, i); ok {
				ms = append(ms, match{KindPhone, i, e})
				i = e - 1
			}
			continue
		}
		// a digit at a word start; a digit run after "3." is a decimal fraction
		if i >= 2 && b[i-1] == '.' && isDigit(b[i-2]) {
			for i+1 < n && wordAt(b, i+1) {
				i++
			}
			continue
		}
		if e, ok := matchIPv4(b, i); e > 0 {
			if ok {
				ms = append(ms, match{KindIPv4, i, e})
			}
			i = e - 1
			continue
		}
		if s, e, ok := p.matchDOB(b, i); ok {
			ms = append(ms, match{KindDateOfBirth, s, e})
			i = e - 1
			continue
		}
		if e, ok := matchSSN(b, i); ok {
			ms = append(ms, match{KindSSN, i, e})
			i = e - 1
			continue
		}
		if e, ok := matchSSNBare(b, i); ok {
			ms = append(ms, match{KindSSN, i, e})
			i = e - 1
			continue
		}
		if e, ok := matchCard(b, i); ok {
			ms = append(ms, match{KindPaymentCard, i, e})
			i = e - 1
			continue
		}
		if e, ok := p.matchPhone(b, i); ok {
			ms = append(ms, match{KindPhone, i, e})
			i = e - 1
			continue
		}
		for i+1 < n && isDigit(b[i+1]) {
			i++
		}
	}
	return ms
}

// readNum reads up to max digits at i and returns the value and the count.
func readNum(b []byte, i, max int) (v, n int) {
	for i+n < len(b) && n < max && isDigit(b[i+n]) {
		v = v*10 + int(b[i+n]-'0')
		n++
	}
	return v, n
}

func matchIPv4(b []byte, i int) (int, bool) {
	j := i
	for part := 0; part < 4; part++ {
		if part > 0 {
			if j >= len(b) || b[j] != '.' {
				return 0, false
			}
			j++
		}
		v, n := readNum(b, j, 3)
		if n == 0 || v > 255 || (n > 1 && b[j] == '0') {
			return 0, false
		}
		j += n
	}
	if wordAt(b, j) || (j+1 < len(b) && b[j] == '.' && isDigit(b[j+1])) {
		return 0, false
	}
	// 0.0.0.0 and 127.0.0.0/8 name no one; 3.0.0.1-beta is a version
	if b[i] == '0' || (j-i >= 4 && string(b[i:i+4]) == "127.") ||
		(j+1 < len(b) && b[j] == '-' && class[b[j+1]]&(cUpper|cLower) != 0) {
		return j, false
	}
	return j, true
}

// SSNs the SSA never issues or voided after publication: area 000, 666 and
// 900-999; group 00; serial 0000; and numbers printed in advertisements.
func validSSN(area, group, serial int) bool {
	if area == 0 || area == 666 || area >= 900 || group == 0 || serial == 0 {
		return false
	}
	switch area*1000000 + group*10000 + serial {
	case 78051120, 219099999, 123456789:
		return false
	}
	return true
}

func matchSSN(b []byte, i int) (int, bool) {
	area, n1 := readNum(b, i, 4)
	if n1 != 3 {
		return 0, false
	}
	j := i + 3
	if j+7 > len(b) {
		return 0, false
	}
	sep := b[j]
	if sep != '-' {
		return 0, false
	}
	group, n2 := readNum(b, j+1, 3)
	if n2 != 2 || b[j+3] != sep {
		return 0, false
	}
	serial, n3 := readNum(b, j+4, 5)
	if n3 != 4 {
		return 0, false
	}
	e := j + 8
	if wordAt(b, e) || (e < len(b) && b[e] == '-' && e+1 < len(b) && isDigit(b[e+1])) {
		return 0, false
	}
	if i > 0 && b[i-1] == '-' {
		return 0, false
	}
	return e, validSSN(area, group, serial)
}

// matchCard reads 13-19 digits, optionally in groups separated by one space
// or one hyphen used consistently, and accepts them if the Luhn check passes
// and the number starts with a known issuer prefix.
func matchCard(b []byte, i int) (int, bool) {
	var digits [19]byte
	nd := 0
	var sep byte
	j := i
	groups := 0
	firstGroup := 0
	for {
		g := 0
		for j < len(b) && isDigit(b[j]) {
			if nd == 19 {
				return 0, false
			}
			digits[nd] = b[j]
			nd++
			g++
			j++
		}
		groups++
		if groups == 1 {
			firstGroup = g
		}
		if j+1 < len(b) && (b[j] == ' ' || b[j] == '-') && isDigit(b[j+1]) && (sep == 0 || sep == b[j]) && nd < 19 {
			if sep == 0 && g != 4 {
				break
			}
			sep = b[j]
			j++
			continue
		}
		break
	}
	if nd < 13 || wordAt(b, j) || (groups > 1 && firstGroup != 4) {
		return 0, false
	}
	d := digits[:nd]
	if !issuerPrefix(d) || !luhn(d) {
		return 0, false
	}
	same := true
	for _, x := range d[1:] {
		if x != d[0] {
			same = false
			break
		}
	}
	return j, !same
}

func luhn(d []byte) bool {
	sum := 0
	double := false
	for k := len(d) - 1; k >= 0; k-- {
		v := int(d[k] - '0')
		if double {
			v *= 2
			if v > 9 {
				v -= 9
			}
		}
		sum += v
		double = !double
	}
	return sum%10 == 0
}

func prefixNum(d []byte, n int) int {
	v := 0
	for _, c := range d[:n] {
		v = v*10 + int(c-'0')
	}
	return v
}

// issuerPrefix checks the IIN ranges of the major networks against the length.
func issuerPrefix(d []byte) bool {
	n := len(d)
	p2, p3, p4, p6 := prefixNum(d, 2), prefixNum(d, 3), prefixNum(d, 4), prefixNum(d, 6)
	switch {
	case d[0] == '4': // Visa
		return n == 13 || n == 16 || n == 19
	case (p2 >= 51 && p2 <= 55) || (p4 >= 2221 && p4 <= 2720): // Mastercard
		return n == 16
	case p2 == 34 || p2 == 37: // American Express
		return n == 15
	case p4 == 6011 || p2 == 65 || (p3 >= 644 && p3 <= 649) || (p6 >= 622126 && p6 <= 622925): // Discover
		return n >= 16 && n <= 19
	case p4 >= 3528 && p4 <= 3589: // JCB
		return n >= 16 && n <= 19
	case p2 == 36 || p2 == 38 || p2 == 39 || (p3 >= 300 && p3 <= 305) || p3 == 309: // Diners Club
		return n >= 14 && n <= 19
	case p2 == 62: // UnionPay
		return n >= 16 && n <= 19
	case p2 == 50 || (p2 >= 56 && p2 <= 69): // Maestro
		return n >= 12 && n <= 19
	}
	return false
}

// matchPhone reads a phone-shaped run (digits with spaces, hyphens, dots and
// parentheses, optionally led by +) and asks libphonenumber whether it, or
// the longest prefix of whole digit groups, is a valid number. A bare digit
// run without + and without separators is not taken: order numbers and ids
// look the same, and precision matters more there than recall.
func (p *piiScanner) matchPhone(b []byte, i int) (int, bool) {
	j := i
	if b[j] == '+' {
		j++
	}
	var ends [8]int // end offsets of digit groups
	ng, nd := 0, 0
	seps := 0
	parens := 0
	for j < len(b) && nd <= 15 {
		c := b[j]
		switch {
		case isDigit(c):
			for j < len(b) && isDigit(b[j]) {
				j++
				nd++
			}
			if ng < len(ends) {
				ends[ng] = j
				ng++
			} else {
				nd = 99
			}
			continue
		case c == '(' && parens == 0 && j+1 < len(b) && isDigit(b[j+1]):
			parens++
		case c == ')' && parens == 1:
			parens++
			if j+1 < len(b) && b[j+1] == ' ' {
				j++
			}
		case (c == ' ' || c == '-' || c == '.') && j+1 < len(b) && (isDigit(b[j+1]) || b[j+1] == '('):
			seps++
		default:
			goto done
		}
		j++
	}
done:
	if nd > 15 || ng == 0 {
		return 0, false
	}
	plus := b[i] == '+'
	if !plus && seps == 0 && parens == 0 {
		return 0, false
	}
	for g := ng; g >= 1; g-- {
		e := ends[g-1]
		if g == ng && (wordAt(b, e) || (e < len(b) && (b[e] == '/' || b[e] == ':'))) {
			return 0, false // glued to something else: not a standalone number
		}
		if g < ng && !cutOK(b[i:e], b[e]) {
			break
		}
		cnt := 0
		lead := byte(0)
		for _, c := range b[i:e] {
			if isDigit(c) {
				if cnt == 0 {
					lead = c
				}
				cnt++
			}
		}
		if cnt < 7 {
			break
		}
		// libphonenumber parses with regular expressions; skip the call
		// where the plan's lengths already rule the number out
		if !plus && p.nanp && cnt != 10 && !(cnt == 11 && lead == '1') {
			continue
		}
		// libphonenumber's parser runs regular expressions over its input:
		// hand it the digits alone (with the +), which read the same
		var buf [17]byte
		cand := buf[:0]
		if plus {
			cand = append(cand, '+')
		}
		for _, c := range b[i:e] {
			if isDigit(c) {
				cand = append(cand, c)
			}
		}
		num, err := phonenumbers.Parse(string(cand), p.region)
		if err == nil && phonenumbers.IsValidNumber(num) {
			return e, true
		}
	}
	return 0, false
}

// cutOK reports whether a phone candidate may end before a separator cut: a
// number written "415-555-2671" followed by " 2024" may, but a run grouped
// by spaces throughout ("5137 8547 3468") is one number, not a phone and a
// remainder.
func cutOK(kept []byte, cut byte) bool {
	for _, c := range kept {
		if c == cut {
			return false
		}
	}
	return true
}

// --- IBAN ---

// ibanLength is the IBAN length per country (SWIFT IBAN registry).
var ibanLength = map[string]int{
	"AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BI": 27,
	"BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27, "DK": 18, "DO": 28,
	"EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
	"GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27,
	"JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25,
	"MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18,
	"NO": 15, "OM": 23, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33,
	"SA": 24, "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28,
	"TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}

// matchIBAN reads an IBAN at i (electronic form, or printed in groups of four
// separated by single spaces) and checks its length and ISO 7064 mod-97.
func matchIBAN(b []byte, i int) (int, bool) {
	if i+4 > len(b) || !isDigit(b[i+2]) || !isDigit(b[i+3]) {
		return 0, false
	}
	want, ok := ibanLength[string(b[i:i+2])]
	if !ok {
		return 0, false
	}
	var buf [34]byte
	n := 0
	j := i
	spaced := false
	for j < len(b) && n < want {
		c := b[j]
		if c == ' ' && n%4 == 0 && n > 0 && j+1 < len(b) && isAlnum(b[j+1]) && (spaced || n == 4) {
			spaced = true
			j++
			continue
		}
		if class[c]&(cDigit|cUpper) == 0 {
			return 0, false
		}
		buf[n] = c
		n++
		j++
	}
	if n != want || wordAt(b, j) {
		return 0, false
	}
	return j, ibanValid(buf[:n])
}

func ibanValid(s []byte) bool {
	rem := 0
	feed := func(c byte) {
		if isDigit(c) {
			rem = (rem*10 + int(c-'0')) % 97
		} else {
			v := int(c-'A') + 10
			rem = (rem*100 + v) % 97
		}
	}
	for _, c := range s[4:] {
		feed(c)
	}
	for _, c := range s[:4] {
		feed(c)
	}
	return rem == 1
}

var ssnKeywords = []string{"ssn", "social security", "soc sec", "ss#"}

// matchSSNBare reads an SSN written without hyphens (nine digits, or
// "ddd dd dddd"), which is accepted only after an SSN keyword.
func matchSSNBare(b []byte, i int) (int, bool) {
	area, n1 := readNum(b, i, 10)
	var group, serial, e int
	switch {
	case n1 == 9:
		serial = area % 10000
		group = area / 10000 % 100
		area /= 1000000
		e = i + 9
	case n1 == 3 && i+11 <= len(b) && b[i+3] == ' ' && b[i+6] == ' ':
		var n2, n3 int
		group, n2 = readNum(b, i+4, 3)
		serial, n3 = readNum(b, i+7, 5)
		if n2 != 2 || n3 != 4 {
			return 0, false
		}
		e = i + 11
	default:
		return 0, false
	}
	if wordAt(b, e) || !validSSN(area, group, serial) || !keywordBefore(b, i, 32, ssnKeywords) {
		return 0, false
	}
	return e, true
}
