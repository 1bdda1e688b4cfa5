package privacy

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"
)

func testCertificate(t *testing.T, acc Accountant) *Certificate {
	t.Helper()
	b, err := NewBudget(BudgetConfig{TargetEpsilon: 8, Delta: 1e-5, Accountant: acc})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 30 {
		sigma := 1.1
		if i >= 20 {
			sigma = 1.3
		}
		if err := b.RecordStep(256.0/60000, sigma); err != nil {
			t.Fatal(err)
		}
	}
	h := sha256.Sum256([]byte("adapter"))
	f := sha256.Sum256([]byte("dataset"))
	start := time.Date(2026, 1, 2, 3, 4, 5, 600_000_000, time.UTC)
	c, err := NewCertificate(b, CertificateInput{
		Sampling:           SamplingServerPoisson,
		DatasetSize:        60000,
		ClippingNorm:       1,
		TenSafeVersion:     "0.1.0",
		AdapterHash:        "sha256:" + hex.EncodeToString(h[:]),
		DatasetFingerprint: "sha256:" + hex.EncodeToString(f[:]),
		SessionID:          "sess-1",
		StartedAt:          start,
		FinishedAt:         start.Add(time.Hour),
		IssuedAt:           start.Add(time.Hour + time.Second),
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCertificateRoundTrip(t *testing.T) {
	for _, acc := range []Accountant{AccountantRDP, AccountantPRV} {
		c := testCertificate(t, acc)
		if err := c.Verify(); err != nil {
			t.Fatalf("%s: %v", acc, err)
		}
		data, err := c.CanonicalJSON()
		if err != nil {
			t.Fatal(err)
		}
		p, err := ParseCertificate(data)
		if err != nil {
			t.Fatalf("%s: parse %s: %v", acc, data, err)
		}
		again, _ := p.CanonicalJSON()
		if !bytes.Equal(data, again) {
			t.Errorf("round trip changed bytes")
		}
		d1, _ := c.Digest()
		if d1 != sha256.Sum256(data) {
			t.Errorf("digest is not SHA-256 of the canonical JSON")
		}
		if p.Q != 256.0/60000 || p.Sigma != 1.1 || p.Steps != 30 || len(p.History) != 2 {
			t.Errorf("summary q=%v σ=%v steps=%d history=%v", p.Q, p.Sigma, p.Steps, p.History)
		}
	}
}

// TestCertificateCanonicalForm pins the canonical encoding: sorted keys, no
// whitespace, shortest numbers, only mandatory string escapes.
func TestCertificateCanonicalForm(t *testing.T) {
	c := testCertificate(t, AccountantRDP)
	c.SessionID = "a<b>&\"c\"\n\u00e9"
	data, err := c.CanonicalJSON()
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	for _, want := range []string{
		`{"accountant":"rdp","adapter_hash":"sha256:`,
		`"clipping_norm":1,"conversion":"improved","dataset_fingerprint":"sha256:`,
		`"dataset_size":60000,"delta":0.00001,"epsilon":`,
		`"format":"tensafe-dp-certificate/v1","history":[[0.004266666666666667,1.1,20],[0.004266666666666667,1.3,10]],"issued_at":"2026-01-02T04:04:06.6Z"`,
		`"mechanism":"poisson-subsampled-gaussian","neighboring":"add-or-remove-one","order":`,
		`"q":0.004266666666666667,"sampling":"server-poisson","session_id":"a<b>&\"c\"\né","sigma":1.1,"steps":30,"target_epsilon":8`,
		`"training_finished_at":"2026-01-02T04:04:05.6Z","training_started_at":"2026-01-02T03:04:05.6Z"}`,
	} {
		if !strings.Contains(s, want) {
			t.Errorf("canonical JSON lacks %s\n%s", want, s)
		}
	}
	if strings.ContainsAny(s, " \t") && !strings.Contains(c.SessionID, " ") {
		t.Errorf("whitespace in canonical JSON")
	}
}

func TestCertificateRejects(t *testing.T) {
	c := testCertificate(t, AccountantRDP)
	data, _ := c.CanonicalJSON()
	mutate := func(old, new string) []byte {
		if !bytes.Contains(data, []byte(old)) {
			t.Fatalf("no %q in %s", old, data)
		}
		return bytes.Replace(data, []byte(old), []byte(new), 1)
	}
	tests := map[string][]byte{
		"not canonical (whitespace)": append([]byte(" "), data...),
		"not canonical (number)":     mutate(`"clipping_norm":1,`, `"clipping_norm":1.0,`),
		"unknown field":              mutate(`"clipping_norm"`, `"extra":1,"clipping_norm"`),
		"duplicate key":              mutate(`"clipping_norm":1,`, `"clipping_norm":1,"clipping_norm":2,`),
		"format":                     mutate(`tensafe-dp-certificate/v1`, `tensafe-dp-certificate/v9`),
		"steps mismatch":             mutate(`"steps":30`, `"steps":31`),
		"hash":                       mutate(`"adapter_hash":"sha256:`, `"adapter_hash":"md5:`),
		"sampling":                   mutate(`"server-poisson"`, `"guessed"`),
		"time order":                 mutate(`"issued_at":"2026-01-02T04:04:06.6Z"`, `"issued_at":"2026-01-02T04:04:04.6Z"`),
		"time zone":                  mutate(`"issued_at":"2026-01-02T04:04:06.6Z"`, `"issued_at":"2026-01-02T05:04:06.6+01:00"`),
		"trailing":                   append(bytes.Clone(data), []byte(`{}`)...),
		"empty":                      nil,
	}
	for name, in := range tests {
		if _, err := ParseCertificate(in); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// A certificate whose ε was edited parses (it is well formed) but fails
	// verification: ε is recomputed from the history.
	p, err := ParseCertificate(data)
	if err != nil {
		t.Fatal(err)
	}
	p.Epsilon *= 0.9
	if err := p.Verify(); err == nil {
		t.Errorf("Verify accepted an edited ε")
	}
	p.Epsilon /= 0.9
	p.History[0].Count--
	p.Steps--
	if err := p.Verify(); err == nil {
		t.Errorf("Verify accepted an edited history")
	}
}

func TestNewCertificateErrors(t *testing.T) {
	b, _ := NewBudget(BudgetConfig{TargetEpsilon: 8, Delta: 1e-5})
	if _, err := NewCertificate(b, CertificateInput{}); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("empty budget: %v", err)
	}
	_ = b.RecordStep(0.01, 1)
	_, err := NewCertificate(b, CertificateInput{Sampling: SamplingClientDeclared, DatasetSize: 10, ClippingNorm: 1,
		TenSafeVersion: "x", AdapterHash: "sha256:00", DatasetFingerprint: "sha256:00"})
	var ie *InputError
	if !errors.As(err, &ie) || ie.Field != "adapter_hash" {
		t.Errorf("short hash: %v", err)
	}
}
