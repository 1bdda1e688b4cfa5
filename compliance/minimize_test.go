package compliance

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
)

func newTestScanner(t testing.TB) *Scanner {
	t.Helper()
	s, err := NewScanner(Options{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestMinimize: the default policy redacts contact data, drops examples
// with card numbers, SSNs or secrets, removes the named fields, and the
// report counts all of it with the hashes of what was read and written.
func TestMinimize(t *testing.T) {
	in := strings.Join([]string{
		`{"text":"mail me at jane.doe@example.com or call +1 415-555-0132","user_id":"u1","meta":{"ip":"10.1.2.3","src":"web"}}`,
		`{"text":"my card is 4111 1111 1111 1111","user_id":"u2"}`,
		``,
		`{"text":"nothing personal here","user_id":"u3","tags":["a","write to bob@example.org"]}`,
		`{"text":"ssn 536-22-8741","user_id":"u4"}`,
		`{"text":"token ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789","user_id":"u5"}`,
	}, "\n") + "\n"
	p := DefaultPolicy()
	p.DropFields = []string{"user_id", "meta.src"}
	var out bytes.Buffer
	rep, err := newTestScanner(t).Minimize(context.Background(), strings.NewReader(in), &out, p)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("output:\n%s", out.String())
	}
	var first map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
		t.Fatal(err)
	}
	if first["text"] != "mail me at [REDACTED:email] or call [REDACTED:phone]" {
		t.Errorf("text %q", first["text"])
	}
	if _, ok := first["user_id"]; ok {
		t.Error("user_id kept")
	}
	if meta := first["meta"].(map[string]any); meta["ip"] != "[REDACTED:ipv4]" || meta["src"] != nil {
		t.Errorf("meta %v", meta)
	}
	if !strings.Contains(lines[1], `"write to [REDACTED:email]"`) {
		t.Errorf("second line %s", lines[1])
	}
	for _, leak := range []string{"jane.doe", "415-555", "4111", "536-22", "ghp_", "bob@"} {
		if strings.Contains(out.String(), leak) {
			t.Errorf("output holds %q", leak)
		}
	}
	if rep.ExamplesIn != 5 || rep.ExamplesOut != 2 || rep.ExamplesDropped != 3 {
		t.Errorf("counts in %d out %d dropped %d", rep.ExamplesIn, rep.ExamplesOut, rep.ExamplesDropped)
	}
	want := map[Kind]int{KindPaymentCard: 1, KindSSN: 1, KindGitHubToken: 1}
	for k, n := range want {
		if rep.DroppedByKind[k] != n {
			t.Errorf("dropped %s: %d, want %d (%v)", k, rep.DroppedByKind[k], n, rep.DroppedByKind)
		}
	}
	if rep.RedactedByKind[KindEmail] != 2 || rep.RedactedByKind[KindPhone] != 1 || rep.RedactedByKind[KindIPv4] != 1 {
		t.Errorf("redacted %v", rep.RedactedByKind)
	}
	if rep.FieldsDropped["user_id"] != 5 || rep.FieldsDropped["meta.src"] != 1 {
		t.Errorf("fields dropped %v", rep.FieldsDropped)
	}
	ih, oh := sha256.Sum256([]byte(in)), sha256.Sum256(out.Bytes())
	if rep.InputSHA256 != "sha256:"+hex.EncodeToString(ih[:]) || rep.OutputSHA256 != "sha256:"+hex.EncodeToString(oh[:]) {
		t.Errorf("hashes %s %s", rep.InputSHA256, rep.OutputSHA256)
	}
	// The report carries no value from the data.
	rj, _ := json.Marshal(rep)
	for _, leak := range []string{"jane", "4111", "example.com", "ghp_", "u1"} {
		if bytes.Contains(rj, []byte(leak)) {
			t.Errorf("report holds %q", leak)
		}
	}
}

func TestMinimizeAllowAndPEM(t *testing.T) {
	p := DefaultPolicy()
	p.PII[KindEmail] = ActionAllow
	p.Secrets = ActionRedact
	in := `{"a":"x@example.com","k":"-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA1234\nabcd\n-----END RSA PRIVATE KEY-----\nafter"}` + "\n"
	var out bytes.Buffer
	rep, err := newTestScanner(t).Minimize(context.Background(), strings.NewReader(in), &out, p)
	if err != nil {
		t.Fatal(err)
	}
	if rep.AllowedByKind[KindEmail] != 1 || !strings.Contains(out.String(), "x@example.com") {
		t.Errorf("allowed e-mail: %v %s", rep.AllowedByKind, out.String())
	}
	if strings.Contains(out.String(), "MIIE") || strings.Contains(out.String(), "abcd") || !strings.Contains(out.String(), `[REDACTED:private_key]\nafter`) {
		t.Errorf("private key not redacted whole: %s", out.String())
	}
}

func TestMinimizeBadInput(t *testing.T) {
	for _, in := range []string{"not json\n", "[1,2]\n", `{"a":1} {"b":2}` + "\n", `{"a":` + "\n"} {
		var out bytes.Buffer
		_, err := newTestScanner(t).Minimize(context.Background(), strings.NewReader(`{"ok":"x"}`+"\n"+in), &out, DefaultPolicy())
		if !errors.Is(err, ErrBadExample) || !strings.Contains(err.Error(), "line 2") {
			t.Errorf("%q: %v", in, err)
		}
		if strings.Contains(err.Error(), "json\n") {
			t.Errorf("error quotes the input: %v", err)
		}
	}
}

func TestParsePolicy(t *testing.T) {
	good, _ := json.Marshal(DefaultPolicy())
	if _, err := ParsePolicy(good); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ in, field string }{
		{`{"format":"x"}`, "format"},
		{strings.Replace(string(good), `"email":"redact"`, `"email":"shred"`, 1), "pii.email"},
		{strings.Replace(string(good), `"email":"redact",`, ``, 1), "pii.email"},
		{strings.Replace(string(good), `"email":"redact"`, `"ssn":"redact"`, 1), "pii"},
		{strings.Replace(string(good), `"secrets":"drop-example"`, `"secrets":""`, 1), "secrets"},
		{strings.TrimSuffix(string(good), `}`) + `,"extra":1}`, "extra"},
		{`{"format":"tensafe.compliance.policy/v1","pii":{},"secrets":"allow","drop_fields":["a..b"]}`, "pii."},
	} {
		_, err := ParsePolicy([]byte(c.in))
		if !errors.Is(err, ErrBadPolicy) || !strings.Contains(err.Error(), c.field) {
			t.Errorf("%s: %v (want field %s)", c.in, err, c.field)
		}
	}
}

// BenchmarkMinimize measures the default policy over a JSONL dataset with
// some personal data (bytes of input per second).
func BenchmarkMinimize(b *testing.B) {
	var in bytes.Buffer
	for i := range 2000 {
		switch i % 10 {
		case 0:
			in.WriteString(`{"prompt":"contact jane.doe@example.com about the order","completion":"done","user":"u"}` + "\n")
		case 5:
			in.WriteString(`{"prompt":"card 4111 1111 1111 1111 on file","completion":"ok","user":"u"}` + "\n")
		default:
			in.WriteString(`{"prompt":"Summarize the discharge note: patient stable, follow up in two weeks.","completion":"Stable; follow up in 2 weeks.","user":"u"}` + "\n")
		}
	}
	s := newTestScanner(b)
	p := DefaultPolicy()
	p.DropFields = []string{"user"}
	b.SetBytes(int64(in.Len()))
	for b.Loop() {
		if _, err := s.Minimize(context.Background(), bytes.NewReader(in.Bytes()), io.Discard, p); err != nil {
			b.Fatal(err)
		}
	}
}
