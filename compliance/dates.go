package compliance

import "time"

var months = []string{"january", "february", "march", "april", "may", "june", "july",
	"august", "september", "october", "november", "december"}

// monthAt reads an English month name (full or three-letter) at i.
func monthAt(b []byte, i int) (month, end int) {
	for m, name := range months {
		for _, l := range []int{len(name), 3} {
			if i+l > len(b) {
				continue
			}
			ok := true
			for k := 0; k < l; k++ {
				if b[i+k]|0x20 != name[k] {
					ok = false
					break
				}
			}
			if ok && !(i+l < len(b) && class[b[i+l]]&(cUpper|cLower) != 0) {
				if l == 3 && i+l < len(b) && b[i+l] == '.' {
					l++
				}
				return m + 1, i + l
			}
		}
	}
	return 0, 0
}

func validDate(y, m, d, maxYear int) bool {
	if y < 1900 || y > maxYear || m < 1 || m > 12 || d < 1 {
		return false
	}
	return d <= time.Date(y, time.Month(m)+1, 0, 0, 0, 0, 0, time.UTC).Day()
}

// matchDate reads a calendar date whose first digit is at i and returns its
// span; start may lie before i when a month name leads ("May 17, 1990").
func matchDate(b []byte, i, maxYear int) (start, end int, ok bool) {
	v1, n1 := readNum(b, i, 9)
	j := i + n1
	var sep byte // 0 at the end of the line
	if j < len(b) {
		sep = b[j]
	}
	if n1 == 8 && !isDigit(sep) { // YYYYMMDD
		y, m, d := v1/10000, v1/100%100, v1%100
		if !validDate(y, m, d, maxYear) {
			return 0, 0, false
		}
		return i, j, true
	}
	switch {
	case n1 == 4 && (sep == '-' || sep == '/' || sep == '.'): // YYYY-MM-DD
		m, n2 := readNum(b, j+1, 3)
		if n2 < 1 || n2 > 2 || j+1+n2 >= len(b) || b[j+1+n2] != sep {
			return 0, 0, false
		}
		k := j + 2 + n2
		d, n3 := readNum(b, k, 3)
		if n3 < 1 || n3 > 2 || !validDate(v1, m, d, maxYear) {
			return 0, 0, false
		}
		return i, k + n3, true
	case n1 <= 2 && (sep == '/' || sep == '.' || sep == '-'): // DD/MM/YYYY or MM/DD/YYYY
		v2, n2 := readNum(b, j+1, 3)
		if n2 < 1 || n2 > 2 || j+1+n2 >= len(b) || b[j+1+n2] != sep {
			return 0, 0, false
		}
		k := j + 2 + n2
		y, n3 := readNum(b, k, 5)
		if n3 != 4 || !(validDate(y, v1, v2, maxYear) || validDate(y, v2, v1, maxYear)) {
			return 0, 0, false
		}
		return i, k + n3, true
	case n1 <= 2 && sep == ' ': // 17 May 1990
		m, k := monthAt(b, j+1)
		if m == 0 {
			break
		}
		if k < len(b) && b[k] == ',' {
			k++
		}
		if k >= len(b) || b[k] != ' ' {
			return 0, 0, false
		}
		y, n3 := readNum(b, k+1, 5)
		if n3 != 4 || !validDate(y, m, v1, maxYear) {
			return 0, 0, false
		}
		return i, k + 1 + n3, true
	}
	// May 17, 1990: the month name precedes the day
	if n1 <= 2 && sep == ',' && j+6 <= len(b) && b[j+1] == ' ' && i >= 4 && b[i-1] == ' ' {
		for s := i - 2; s >= 0 && s >= i-11; s-- {
			if class[b[s]]&(cUpper|cLower) == 0 {
				break
			}
			if s > 0 && class[b[s-1]]&(cUpper|cLower) != 0 {
				continue
			}
			m, e := monthAt(b, s)
			if m == 0 || e != i-1 {
				break
			}
			y, n3 := readNum(b, j+2, 5)
			if n3 != 4 || !validDate(y, m, v1, maxYear) {
				return 0, 0, false
			}
			return s, j + 2 + n3, true
		}
	}
	return 0, 0, false
}

var dobKeywords = []string{"birth", "dob", "born", "d.o.b", "geburt", "naissance"}

// matchDOB accepts a date only when a birth keyword precedes it closely on
// the same line: dates are everywhere in logs and datasets, dates of birth
// are those said to be.
func (p *piiScanner) matchDOB(b []byte, i int) (int, int, bool) {
	s, e, ok := matchDate(b, i, p.maxYear)
	if !ok || wordAt(b, e) || (e < len(b) && isDigitAfterSep(b, e)) {
		return 0, 0, false
	}
	if !keywordBefore(b, s, 40, dobKeywords) {
		return 0, 0, false
	}
	return s, e, true
}

func isDigitAfterSep(b []byte, e int) bool {
	return (b[e] == '-' || b[e] == '/' || b[e] == '.') && e+1 < len(b) && isDigit(b[e+1])
}

// keywordBefore reports whether one of kws (lower case) occurs, ASCII case
// folded, in the window bytes before s. A keyword must start at a word
// boundary, so "dob" does not match "adobe", and no digit may stand between
// it and s: in "DOB 1970-04-12, admitted 2023-08-01" only the first date is
// the date of birth.
func keywordBefore(b []byte, s, window int, kws []string) bool {
	return keywordBeforeExcept(b, s, window, kws, nil)
}

// keywordBeforeExcept is keywordBefore where a keyword occurrence that starts
// one of the words in except (lower case) does not count: "token" in
// "tokenizer", "auth" in "author".
func keywordBeforeExcept(b []byte, s, window int, kws, except []string) bool {
	from := s - window
	if from < 0 {
		from = 0
	}
	var low [128]byte
	w := low[:0]
	for _, c := range b[from:s] {
		if c >= 'A' && c <= 'Z' {
			c |= 0x20
		}
		w = append(w, c)
	}
	for _, kw := range kws {
		for k := 0; k+len(kw) <= len(w); k++ {
			if w[k] != kw[0] || string(w[k:k+len(kw)]) != kw {
				continue
			}
			if k > 0 && class[w[k-1]]&(cLower|cDigit) != 0 && !escapeLetterAt(w, k-1) {
				continue
			}
			if excluded(w[k:], except) {
				continue
			}
			if hasDigit(w[k+len(kw):]) {
				continue // another number stands between: the keyword is its
			}
			return true
		}
	}
	return false
}

func excluded(w []byte, except []string) bool {
	for _, x := range except {
		if len(w) >= len(x) && string(w[:len(x)]) == x {
			return true
		}
	}
	return false
}
