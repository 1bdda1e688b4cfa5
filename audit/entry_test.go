package audit

import (
	"bytes"
	"encoding/hex"
	"strings"
	"testing"
	"time"
)

// The test vector of docs/AUDIT_LOG.md §2, computed independently (a
// Python script following the spec).
var (
	vectorEntry = Entry{
		Seq:  1,
		Time: time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC),
		Record: Record{
			TenantID:  "tenant-a",
			Actor:     "key:ak_123",
			Operation: "training.optim_step",
			Resource:  "session/s-1",
			Outcome:   OutcomeSuccess,
			Details:   map[string]string{"step": "7", "epsilon": "0.5"},
		},
		PrevHash: Hash(bytes.Repeat([]byte{0x11}, 32)),
	}
	vectorCanonical = "74656e736166652e61756469742e656e7472792e76310000000000000000011886caf223f1ff150000000874656e616e742d610000000a6b65793a616b5f31323300000013747261696e696e672e6f7074696d5f737465700000000b73657373696f6e2f732d3100000007737563636573730000000200000007657073696c6f6e00000003302e35000000047374657000000001371111111111111111111111111111111111111111111111111111111111111111"
	vectorHash      = "ce75e4d939564844853bc6904e595157d9b84711c82addb3d0c6ca48ac44bb2c"
	vectorLeafHash  = "df15f3a260b55878faafbd905bb2135ecdaf6bb2665cd78fcfd2240d7bfced08"
)

func TestCanonicalVector(t *testing.T) {
	e := vectorEntry
	if got := hex.EncodeToString(e.Canonical()); got != vectorCanonical {
		t.Fatalf("canonical encoding\n got %s\nwant %s", got, vectorCanonical)
	}
	if got := e.ComputeHash().String(); got != vectorHash {
		t.Fatalf("entry hash %s, want %s", got, vectorHash)
	}
	e.EntryHash = e.ComputeHash()
	if got := e.LeafHash().String(); got != vectorLeafHash {
		t.Fatalf("leaf hash %s, want %s", got, vectorLeafHash)
	}
}

func TestCanonicalCoversEveryField(t *testing.T) {
	base := vectorEntry
	h0 := base.ComputeHash()
	mods := map[string]func(e *Entry){
		"seq":          func(e *Entry) { e.Seq++ },
		"time":         func(e *Entry) { e.Time = e.Time.Add(time.Nanosecond) },
		"tenant_id":    func(e *Entry) { e.TenantID += "x" },
		"actor":        func(e *Entry) { e.Actor += "x" },
		"operation":    func(e *Entry) { e.Operation += "x" },
		"resource":     func(e *Entry) { e.Resource += "x" },
		"outcome":      func(e *Entry) { e.Outcome = OutcomeDenied },
		"details add":  func(e *Entry) { e.Details = map[string]string{"step": "7", "epsilon": "0.5", "x": ""} },
		"details val":  func(e *Entry) { e.Details = map[string]string{"step": "8", "epsilon": "0.5"} },
		"details key":  func(e *Entry) { e.Details = map[string]string{"stepx": "7", "epsilon": "0.5"} },
		"prev_hash":    func(e *Entry) { e.PrevHash[31] ^= 1 },
		"field shift":  func(e *Entry) { e.TenantID, e.Actor = "tenant-", "akey:ak_123" },
		"details move": func(e *Entry) { e.Details = map[string]string{"step": "", "epsilon": "0.57"} },
	}
	for name, mod := range mods {
		e := base
		mod(&e)
		if e.ComputeHash() == h0 {
			t.Errorf("%s: changing it does not change the entry hash", name)
		}
	}
}

func TestEntryJSONRoundTrip(t *testing.T) {
	e := vectorEntry
	e.EntryHash = e.ComputeHash()
	b, err := e.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	want := `{"v":1,"seq":1,"time":"2026-01-02T03:04:05.123456789Z","tenant_id":"tenant-a","actor":"key:ak_123","operation":"training.optim_step","resource":"session/s-1","outcome":"success","details":{"epsilon":"0.5","step":"7"},"prev_hash":"1111111111111111111111111111111111111111111111111111111111111111","entry_hash":"` + vectorHash + `"}`
	if string(b) != want {
		t.Fatalf("stored form\n got %s\nwant %s", b, want)
	}
	d, err := DecodeEntry(b)
	if err != nil {
		t.Fatal(err)
	}
	if !entriesEqual(d, e) {
		t.Fatalf("round trip changed the entry: %+v", d)
	}
}

func entriesEqual(a, b Entry) bool {
	if a.Seq != b.Seq || !a.Time.Equal(b.Time) || a.TenantID != b.TenantID || a.Actor != b.Actor ||
		a.Operation != b.Operation || a.Resource != b.Resource || a.Outcome != b.Outcome ||
		a.PrevHash != b.PrevHash || a.EntryHash != b.EntryHash || len(a.Details) != len(b.Details) {
		return false
	}
	for k, v := range a.Details {
		if bv, ok := b.Details[k]; !ok || bv != v {
			return false
		}
	}
	return true
}

func TestDecodeEntryRejects(t *testing.T) {
	e := vectorEntry
	e.EntryHash = e.ComputeHash()
	good, _ := e.MarshalJSON()
	tests := []struct {
		name, from, to, wantErr string
	}{
		{"unknown field", `"v":1,`, `"v":1,"extra":1,`, "unknown field"},
		{"version", `"v":1,`, `"v":2,`, "field v"},
		{"time offset", `05.123456789Z`, `05.123456789+00:00`, "field time"},
		{"time trailing zero", `05.123456789Z`, `05.123456780Z`, "field time"},
		{"time not canonical", `05.123456789Z`, `05.1234567890Z`, "field time"},
		{"time before 1970", `2026-01-02`, `1969-01-02`, "field time"},
		{"prev_hash short", `"prev_hash":"11`, `"prev_hash":"1`, "field prev_hash"},
		{"entry_hash upper", `"entry_hash":"c`, `"entry_hash":"C`, "field entry_hash"},
		{"outcome", `"success"`, `"ok"`, "field outcome"},
		{"operation", `"training.optim_step"`, `"Training"`, "field operation"},
		{"control char", `"tenant-a"`, `"tenant\u0007a"`, "field tenant_id"},
		{"bidi override", `"tenant-a"`, `"tenant\u202ea"`, "field tenant_id"},
		{"empty actor", `"key:ak_123"`, `""`, "field actor"},
		{"detail key", `"epsilon"`, `"Epsilon"`, "details key"},
		{"trailing data", vectorHash + `"}`, vectorHash + `"} {}`, "after the JSON object"},
		{"not json", `{"v"`, `{v"`, "decode entry"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := strings.Replace(string(good), tc.from, tc.to, 1)
			if in == string(good) {
				t.Fatalf("test case does not change the input")
			}
			_, err := DecodeEntry([]byte(in))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("DecodeEntry: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("DecodeEntry error = %v, want one mentioning %q", err, tc.wantErr)
			}
		})
	}
}

func TestParseHash(t *testing.T) {
	h := vectorEntry.ComputeHash()
	if got, err := ParseHash(h.String()); err != nil || got != h {
		t.Fatalf("ParseHash(%s) = %s, %v", h, got, err)
	}
	for _, s := range []string{"", "00", strings.Repeat("g", 64), strings.ToUpper(h.String()), h.String() + "00"} {
		if _, err := ParseHash(s); err == nil {
			t.Errorf("ParseHash(%q) accepted", s)
		}
	}
}
