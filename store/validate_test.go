package store

import (
	"errors"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

func TestFieldErrorText(t *testing.T) {
	err := checkID("tenant_id", "a b")
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field != "tenant_id" || !errors.Is(err, ErrInvalid) ||
		!strings.Contains(err.Error(), "tenant_id") || !strings.Contains(err.Error(), "' '") {
		t.Fatalf("checkID error %v", err)
	}
}

func TestChecks(t *testing.T) {
	for _, c := range []struct {
		name string
		err  error
		ok   bool
	}{
		{"id", checkID("f", "tc_abc-1.2"), true},
		{"id dot start", checkID("f", ".x"), false},
		{"id unicode", checkID("f", "tö"), false},
		{"id max", checkID("f", strings.Repeat("a", MaxIDLen)), true},
		{"name", checkName("f", "optim_step", 64, true), true},
		{"name digit start", checkName("f", "1x", 64, true), false},
		{"name upper", checkName("f", "Sample", 64, true), false},
		{"name optional", checkName("f", "", 64, false), true},
		{"text", checkText("f", "Ünïcode name ✓", 100, true), true},
		{"text tab", checkText("f", "a\tb", 100, true), false},
		{"text bidi", checkText("f", "abc\u202etxt.exe", 100, true), false},
		{"text bad utf8", checkText("f", "a\xffb", 100, true), false},
		{"text long", checkText("f", "abcd", 3, true), false},
		{"json", checkJSON("f", []byte(`{"a":[1,2]}`), 100), true},
		{"json trailing", checkJSON("f", []byte(`{} x`), 100), false},
		{"json long", checkJSON("f", []byte(`"abcdef"`), 4), false},
		{"hash", checkContentHash("f", "sha256:"+strings.Repeat("ab", 32)), true},
		{"hash short", checkContentHash("f", "sha256:"+strings.Repeat("ab", 31)), false},
	} {
		if (c.err == nil) != c.ok {
			t.Errorf("%s: %v, want ok=%v", c.name, c.err, c.ok)
		}
	}
}

// FuzzFieldChecks: whatever the field checks accept has the documented
// form, and what they refuse is a *FieldError naming the field.
func FuzzFieldChecks(f *testing.F) {
	for _, s := range []string{"tc_abc", "", "a b", "sha256:" + strings.Repeat("0", 64), "x\x00y", "é", "optim_step", "{}"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		checks := map[string]error{
			"id":   checkID("id", s),
			"name": checkName("name", s, MaxKindLen, true),
			"text": checkText("text", s, MaxNameLen, true),
			"hash": checkContentHash("hash", s),
			"json": checkJSON("json", []byte(s), MaxNameLen),
		}
		for field, err := range checks {
			var fe *FieldError
			if err != nil && (!errors.As(err, &fe) || fe.Field != field) {
				t.Fatalf("%s(%q): %v is not a FieldError for %s", field, s, err, field)
			}
		}
		if checks["id"] == nil {
			if s == "" || len(s) > MaxIDLen || strings.ContainsFunc(s, func(r rune) bool {
				return !(r < utf8.RuneSelf && (unicode.IsLetter(r) || unicode.IsDigit(r) || r == '_' || r == '-' || r == '.'))
			}) {
				t.Fatalf("checkID accepted %q", s)
			}
		}
		if checks["text"] == nil && (!utf8.ValidString(s) || strings.ContainsFunc(s, unicode.IsControl) || strings.ContainsFunc(s, func(r rune) bool { return unicode.Is(unicode.Bidi_Control, r) }) || s == "") {
			t.Fatalf("checkText accepted %q", s)
		}
		if checks["hash"] == nil && (len(s) != 71 || !strings.HasPrefix(s, "sha256:") || strings.Trim(s[7:], "0123456789abcdef") != "") {
			t.Fatalf("checkContentHash accepted %q", s)
		}
		if checks["name"] == nil && (s == "" || strings.Trim(s, "abcdefghijklmnopqrstuvwxyz0123456789_.") != "" || s[0] < 'a' || s[0] > 'z') {
			t.Fatalf("checkName accepted %q", s)
		}
	})
}
