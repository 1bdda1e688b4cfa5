package client

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/tensafe/tensafe/api"
)

// FuzzDecodeError feeds arbitrary error responses (status, Retry-After,
// body) to the envelope decoder: it must never panic, always yield a code,
// keep messages printable and bounded, and bound Retry-After.
func FuzzDecodeError(f *testing.F) {
	f.Add(400, "", []byte(`{"error":{"code":"invalid_argument","message":"bad","field":"batch.labels[0][3]"}}`))
	f.Add(429, "2", []byte(`{"error":{"code":"rate_limited","message":"slow down"}}`))
	f.Add(503, "Fri, 27 Nov 2026 07:00:30 GMT", []byte("<html>down</html>"))
	f.Add(500, "-1", []byte{0xff, 0x00, 0x1b})
	f.Fuzz(func(t *testing.T, status int, retryAfter string, body []byte) {
		h := http.Header{}
		h.Set("Retry-After", retryAfter)
		e := decodeError(status, h, body)
		if e.Code == "" {
			t.Fatal("empty code")
		}
		if e.RetryAfter < 0 || e.RetryAfter > maxRetryAfter {
			t.Fatalf("RetryAfter %v out of range", e.RetryAfter)
		}
		for _, s := range []string{e.Code, e.Message, e.Field} {
			if !utf8.ValidString(s) || strings.ContainsAny(s, "\x00\x1b\r\n") {
				t.Fatalf("unprintable %q", s)
			}
		}
		if len(e.Message) > 4096+len("…") {
			t.Fatalf("message of %d bytes", len(e.Message))
		}
		_ = e.Error()
	})
}

// FuzzResponses feeds arbitrary bodies to the decoders of success answers:
// a future and its result, and an audit page.
func FuzzResponses(f *testing.F) {
	f.Add([]byte(`{"id":"op_1","kind":"optim_step","state":"succeeded","result":{"step":1,"epsilon_spent":0.4}}`))
	f.Add([]byte(`{"id":"op_1","kind":"optim_step","state":"failed","error":{"code":"privacy_budget_exceeded","message":"no"}}`))
	f.Add([]byte(`{"entries":[{"seq":3,"details":{"step":"1"}}],"next_after":5}`))
	f.Add([]byte(`[{"seq":18446744073709551615}]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var st api.Future
		if json.Unmarshal(body, &st) == nil && st.Done() {
			r, err := decodeResult[api.OptimStepResult](&st)
			if (r == nil) == (err == nil) {
				t.Fatalf("result %v and error %v", r, err)
			}
			if st.State == api.FutureFailed && !isFutureError(err) {
				t.Fatalf("failed future gave %T", err)
			}
		}
		var p auditPage
		if json.Unmarshal(body, &p) == nil && len(body) > 0 && body[0] == '[' && len(p.Entries) > 0 && p.NextAfter < 0 {
			t.Fatalf("next_after %d after %d entries", p.NextAfter, len(p.Entries))
		}
	})
}

func isFutureError(err error) bool {
	fe, ok := err.(*FutureError)
	return ok && fe.Err != nil && fe.Err.Code != "" && fe.Err.Status != 0
}
