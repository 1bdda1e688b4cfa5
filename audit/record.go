package audit

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// ErrInvalidRecord is wrapped by every error Record.Validate returns.
var ErrInvalidRecord = errors.New("audit: invalid record")

// reservedOperationPrefix names operations only the log itself writes.
const reservedOperationPrefix = "audit."

// Validate reports whether r may be appended. Errors wrap ErrInvalidRecord
// and name the field and the reason; they never quote a value, which might
// be the very secret being refused.
//
// Beyond the structural rules that every stored entry obeys (valid UTF-8,
// no control or format characters, the Max* length limits, an operation of
// the form [a-z][a-z0-9_.-]*, a known outcome, detail keys of the form
// [a-z][a-z0-9_.-]*), Validate applies the metadata-only policy:
//
//   - detail keys with a word (split at '_', '.', '-') that names secret
//     material — secret, password, passphrase, credential, private,
//     apikey, auth, cookie, … — are refused, and so are keys with a word
//     that names key material or data — key, dek, kek, seed, token,
//     plaintext, prompt, completion, text, content, sample, example, data,
//     input, output — unless a metadata word follows it (id, hash, digest,
//     version, count, size, bytes, length, type, kind: "key_id",
//     "content_hash", "sample_count" are fine);
//   - values that look like secret material are refused: a PEM block, a
//     bearer or basic authorization, a JSON Web Token, a TenSafe secret key
//     text form, or a dense run of 40 or more base64/hex characters that is
//     not a labelled digest ("sha256:<hex>");
//   - operations starting with "audit." are reserved for the log itself.
//
// A filter cannot recognise every secret; the rule callers must follow is
// that details are identifiers and small facts only.
func (r *Record) Validate() error {
	if err := r.checkStructure(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidRecord, err)
	}
	if strings.HasPrefix(r.Operation, reservedOperationPrefix) {
		return fmt.Errorf("%w: field operation: the prefix %q is reserved for the log itself", ErrInvalidRecord, reservedOperationPrefix)
	}
	for k, v := range r.Details {
		if w := deniedKeyWord(k); w != "" {
			return fmt.Errorf("%w: details[%q]: key names secret material or data (%q); details are metadata only", ErrInvalidRecord, k, w)
		}
		if why := secretLooking(v); why != "" {
			return fmt.Errorf("%w: details[%q]: value looks like %s; details are metadata only", ErrInvalidRecord, k, why)
		}
	}
	for _, f := range []struct{ name, v string }{
		{"tenant_id", r.TenantID}, {"actor", r.Actor}, {"resource", r.Resource},
	} {
		if why := secretLooking(f.v); why != "" {
			return fmt.Errorf("%w: field %s: value looks like %s", ErrInvalidRecord, f.name, why)
		}
	}
	return nil
}

// checkStructure applies the rules every stored entry obeys. Decoding
// applies them too, so that the policy of Validate can evolve without
// making old logs unreadable.
func (r *Record) checkStructure() error {
	if err := checkText("tenant_id", r.TenantID, MaxTenantIDLen, false); err != nil {
		return err
	}
	if err := checkText("actor", r.Actor, MaxActorLen, true); err != nil {
		return err
	}
	if err := checkName("operation", r.Operation, MaxOperationLen); err != nil {
		return err
	}
	if err := checkText("resource", r.Resource, MaxResourceLen, false); err != nil {
		return err
	}
	if !r.Outcome.valid() {
		return fmt.Errorf("field outcome: must be %q, %q or %q", OutcomeSuccess, OutcomeFailure, OutcomeDenied)
	}
	if len(r.Details) > MaxDetails {
		return fmt.Errorf("field details: %d keys, at most %d allowed", len(r.Details), MaxDetails)
	}
	for k, v := range r.Details {
		if err := checkName("details key", k, MaxDetailKeyLen); err != nil {
			return err
		}
		if err := checkText("details value", v, MaxDetailValueLen, false); err != nil {
			return fmt.Errorf("details[%q]: %w", k, err)
		}
	}
	return nil
}

func checkText(field, s string, max int, required bool) error {
	if required && s == "" {
		return fmt.Errorf("field %s: required", field)
	}
	if len(s) > max {
		return fmt.Errorf("field %s: %d bytes, at most %d allowed", field, len(s), max)
	}
	ascii := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f {
			ascii = false
			break
		}
	}
	if ascii {
		return nil // printable ASCII: the common case, and fine
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("field %s: not valid UTF-8", field)
	}
	for _, c := range s {
		if unicode.Is(unicode.Cc, c) || unicode.Is(unicode.Cf, c) {
			return fmt.Errorf("field %s: contains a control or format character (U+%04X)", field, c)
		}
	}
	return nil
}

// checkName accepts [a-z][a-z0-9_.-]*.
func checkName(field, s string, max int) error {
	if s == "" {
		return fmt.Errorf("field %s: required", field)
	}
	if len(s) > max {
		return fmt.Errorf("field %s: %d bytes, at most %d allowed", field, len(s), max)
	}
	if c := s[0]; c < 'a' || c > 'z' {
		return fmt.Errorf("field %s: must start with a lowercase letter", field)
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_' || c == '.' || c == '-') {
			return fmt.Errorf("field %s: character %d is not one of a-z 0-9 _ . -", field, i)
		}
	}
	return nil
}

// deniedWords are words of a detail key that name secret material or data.
// The value says whether a following metadata word ("content_hash",
// "kek_version", "sample_count") makes the key acceptable: it does for
// words that name data or key material, never for passwords and the like.
var deniedWords = map[string]bool{
	"secret": false, "secrets": false, "password": false, "passwd": false, "passphrase": false,
	"credential": false, "credentials": false, "private": false, "privkey": false, "apikey": false,
	"auth": false, "authorization": false, "cookie": false, "bearer": false, "mnemonic": false,
	"token": true, "tokens": true, "dek": true, "kek": true, "seed": true, "key": true, "keys": true,
	"plaintext": true, "prompt": true, "prompts": true, "completion": true, "completions": true,
	"text": true, "content": true, "contents": true, "sample": true, "samples": true,
	"example": true, "examples": true, "data": true, "input": true, "inputs": true,
	"output": true, "outputs": true,
}

// metadataWords, following a denied word, make a key name metadata about
// the thing rather than the thing.
var metadataWords = map[string]bool{
	"id": true, "ids": true, "hash": true, "digest": true, "version": true, "count": true,
	"size": true, "bytes": true, "len": true, "length": true, "type": true, "kind": true,
}

// deniedKeyWord returns the word of key that names secret material or
// data, or "".
func deniedKeyWord(key string) string {
	words := strings.FieldsFunc(key, func(r rune) bool { return r == '_' || r == '.' || r == '-' })
	for i, w := range words {
		exempt, denied := deniedWords[w]
		if !denied {
			continue
		}
		if exempt && i+1 < len(words) && metadataWords[words[i+1]] {
			continue
		}
		return w
	}
	return ""
}

// secretLooking returns a description of the kind of secret s looks like,
// or "".
func secretLooking(s string) string {
	l := strings.ToLower(s)
	switch {
	case strings.Contains(s, "-----BEGIN"):
		return "a PEM block"
	case strings.HasPrefix(l, "bearer ") || strings.HasPrefix(l, "basic "):
		return "an authorization header"
	case strings.Contains(l, "tensafe-sign-secret-") || strings.Contains(l, "secret-v1:"):
		return "a TenSafe secret key"
	case strings.HasPrefix(s, "eyJ") && strings.Count(s, ".") >= 2:
		return "a JSON Web Token"
	}
	// Long, dense runs of base64 or hex characters are key material unless
	// they are a labelled digest such as "sha256:<hex>". Paths and names
	// have separators every few characters; encoded keys almost never do.
	if keyLikeRun(s, "+/=", '/', 0) || keyLikeRun(s, "-_", '-', '_') {
		return "key material (a long base64 or hex string)"
	}
	return ""
}

// keyLikeRun reports whether s has a run of at least 40 characters from
// [A-Za-z0-9] plus extra, with separator characters (sep1, sep2, which are
// among extra) at most one in 16, that is not preceded by a digest label. A
// run that has separators must also mix upper case, lower case and digits.
func keyLikeRun(s, extra string, sep1, sep2 byte) bool {
	start := 0
	for i := 0; i <= len(s); i++ {
		if i < len(s) {
			c := s[i]
			if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte(extra, c) >= 0 {
				continue
			}
		}
		run := s[start:i]
		start = i + 1
		if len(run) < 40 || labelledDigest(s[:i-len(run)]) {
			continue
		}
		var seps int
		var upper, lower, digit bool
		for j := 0; j < len(run); j++ {
			switch c := run[j]; {
			case c == sep1 || c == sep2 && sep2 != 0:
				seps++
			case 'A' <= c && c <= 'Z':
				upper = true
			case 'a' <= c && c <= 'z':
				lower = true
			case '0' <= c && c <= '9':
				digit = true
			}
		}
		if seps == 0 || seps*16 < len(run) && upper && lower && digit {
			return true
		}
	}
	return false
}

// labelledDigest reports whether prefix (the text before a long run) ends
// with a digest label like "sha256:".
func labelledDigest(prefix string) bool {
	for _, l := range []string{"sha256:", "sha384:", "sha512:", "sha3-256:", "blake2b:", "blake3:"} {
		if strings.HasSuffix(strings.ToLower(prefix), l) {
			return true
		}
	}
	return false
}
