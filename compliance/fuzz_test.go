package compliance

import (
	"bytes"
	"context"
	"net/netip"
	"slices"
	"testing"
	"testing/iotest"
)

func fuzzSeeds(f *testing.F) {
	for _, s := range []string{
		"mail bob@example.com, call +44 20 7946 0958",
		"card 4111 1111 1111 1111 ssn 536-22-1234 IBAN GB82 WEST 1234 5698 7654 32",
		`{"date_of_birth": "1990-05-17", "ip": "2001:db8::1", "v4": "10.1.2.3"}`,
		"-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----",
		"ghp_1a2B3c4D5e6F7g8H9i0J1k2L3m4N5o6P7q8R AKIAZ7QWERTY12345678",
		"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
		"born May 17, 1990 (415) 555-2671 x@y.z",
		"postgres://u:p4ssw0rd@db.example.com/x SG.aaaaaaaaaaaaaaaaaaaaaa.bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
		"\x00\xff@@::..++((--",
	} {
		f.Add([]byte(s))
	}
}

// FuzzScan checks that any input scans without a panic, that every location
// lies inside the input, and that reading the input one byte at a time gives
// the same findings as reading it whole.
func FuzzScan(f *testing.F) {
	fuzzSeeds(f)
	s := testScanner(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		ctx := context.Background()
		whole, err := s.ScanBytes(ctx, "f.env", data)
		if err != nil {
			t.Fatal(err)
		}
		lines := bytes.Split(data, []byte("\n"))
		for _, x := range whole {
			if x.Line < 1 || x.Line > len(lines) {
				t.Fatalf("line %d outside 1..%d", x.Line, len(lines))
			}
			if x.Column < 1 || x.Column > len(lines[x.Line-1]) {
				t.Fatalf("line %d column %d outside the line of %d bytes", x.Line, x.Column, len(lines[x.Line-1]))
			}
		}
		bytewise, _, err := s.Scan(ctx, "f.env", iotest.OneByteReader(bytes.NewReader(data)))
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(whole, bytewise) {
			t.Fatalf("whole %v, byte by byte %v", whole, bytewise)
		}
	})
}

// FuzzDetectors checks every match against an independent validation of its
// kind: what the scanner reports must really be what it says it is.
func FuzzDetectors(f *testing.F) {
	fuzzSeeds(f)
	s := testScanner(f)
	f.Fuzz(func(t *testing.T, line []byte) {
		if bytes.IndexByte(line, '\n') >= 0 {
			return
		}
		st := newFileState("f.txt")
		st.line = 2
		for _, m := range s.scanLine(line, st, nil) {
			if m.start < 0 || m.end > len(line) || m.start >= m.end {
				t.Fatalf("%s: span [%d,%d) outside the line of %d bytes", m.kind, m.start, m.end, len(line))
			}
			v := line[m.start:m.end]
			var digits []byte
			for _, c := range v {
				if isDigit(c) {
					digits = append(digits, c)
				}
			}
			switch m.kind {
			case KindEmail:
				if bytes.Count(v, []byte("@")) != 1 {
					t.Fatalf("email %q", v)
				}
			case KindPaymentCard:
				if len(digits) < 12 || !luhn(digits) {
					t.Fatalf("card %q fails Luhn", v)
				}
			case KindIBAN:
				if !ibanValid(bytes.ReplaceAll(v, []byte(" "), nil)) {
					t.Fatalf("IBAN %q fails mod-97", v)
				}
			case KindIPv4, KindIPv6:
				a, err := netip.ParseAddr(string(v))
				if err != nil || a.Is4() != (m.kind == KindIPv4) {
					t.Fatalf("%s %q: %v", m.kind, v, err)
				}
			case KindSSN:
				if len(digits) != 9 {
					t.Fatalf("SSN %q", v)
				}
				area := int(digits[0]-'0')*100 + int(digits[1]-'0')*10 + int(digits[2]-'0')
				if area == 0 || area == 666 || area >= 900 {
					t.Fatalf("SSN %q in a range never issued", v)
				}
			case KindPhone:
				if len(digits) < 7 || len(digits) > 15 {
					t.Fatalf("phone %q has %d digits", v, len(digits))
				}
			case KindDateOfBirth:
				if len(digits) < 5 {
					t.Fatalf("date %q", v)
				}
			}
		}
	})
}
