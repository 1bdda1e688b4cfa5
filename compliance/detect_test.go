package compliance

import (
	"context"
	"slices"
	"testing"
	"time"
)

func testScanner(t testing.TB) *Scanner {
	t.Helper()
	s, err := NewScanner(Options{Now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func kindsOf(t testing.TB, s *Scanner, name, text string) []Kind {
	t.Helper()
	fs, err := s.ScanBytes(context.Background(), name, []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	var ks []Kind
	for _, f := range fs {
		ks = append(ks, f.Kind)
	}
	return ks
}

func TestDetectors(t *testing.T) {
	s := testScanner(t)
	tests := []struct {
		name string
		text string
		want []Kind
	}{
		{"email", "contact alice.smith+tag@mail.example.co.uk today", []Kind{KindEmail}},
		{"email no tld", "user@localhost", nil},
		{"email in url creds", "postgres://app:s3cr3tPw9@db.example.com:5432/x", []Kind{KindURLCredentials}},
		{"phone intl", "call +44 20 7946 0958 now", []Kind{KindPhone}},
		{"phone us", "tel (415) 555-2671.", []Kind{KindPhone}},
		{"phone us dashes", "415-555-2671", []Kind{KindPhone}},
		{"phone bare digits", "order 4155552671", nil},
		{"card visa", "card 4111 1111 1111 1111 exp", []Kind{KindPaymentCard}},
		{"card amex", "378282246310005", []Kind{KindPaymentCard}},
		{"card bad luhn", "4111 1111 1111 1112", nil},
		{"ssn", "ssn 536-22-1234", []Kind{KindSSN}},
		{"ssn 666", "536-22-1234 666-22-1234 900-12-1234 123-00-1234 123-45-0000", []Kind{KindSSN}},
		{"ssn bare with keyword", "SSN: 536221234", []Kind{KindSSN}},
		{"ssn bare no keyword", "id 536221234", nil},
		{"iban", "IBAN GB82 WEST 1234 5698 7654 32 ok", []Kind{KindIBAN}},
		{"iban compact", "DE89370400440532013000", []Kind{KindIBAN}},
		{"iban bad check", "DE89370400440532013001", nil},
		{"ipv4", "from 192.168.1.20:443", []Kind{KindIPv4}},
		{"ipv4 bad", "999.1.1.1 and 1.2.3 and v1.2.3.4", nil},
		{"ipv6", "addr 2001:db8::8a2e:370:7334 up", []Kind{KindIPv6}},
		{"time not ipv6", "at 12:34:56 and 10:30", nil},
		{"dob", `{"date_of_birth": "1990-05-17"}`, []Kind{KindDateOfBirth}},
		{"dob month", "She was born May 17, 1990 in Ohio", []Kind{KindDateOfBirth}},
		{"dob dmy", "DOB 17.05.1990", []Kind{KindDateOfBirth}},
		{"date not dob", "released 2024-01-05", nil},
		{"dob compact", "birthdate=19800102;", []Kind{KindDateOfBirth}},
		{"dob then other date", "DOB 1970-04-12, admitted 2023-08-01", []Kind{KindDateOfBirth}},
		{"ipv4 version", "release 3.0.0.1-beta", nil},
		{"ipv4 loopback", "127.0.0.1 0.0.0.0 ::1 [::]", nil},
		{"ipv6 words", "a::b dead::beef", nil},
		{"dotenv outside env", "DB_PASSWORD=hunter2", nil},
		{"url placeholder", "postgres://user:changeme@localhost/db", nil},
		{"card iin unknown", "9111111111111111", nil},
		{"json escape before email", `"hi\nbob@example.com"`, []Kind{KindEmail}},
		{"json escape before phone", `"call:\n415-555-2671\tcard\t4111111111111111"`, []Kind{KindPhone, KindPaymentCard}},
		{"escaped backslash", `"path C:\\n4111111111111111"`, nil},
		{"dob future", "born 2030-01-01", nil},
		{"private key", "-----BEGIN RSA PRIVATE KEY-----", []Kind{KindPrivateKey}},
		{"public key", "-----BEGIN PUBLIC KEY-----", nil},
		{"aws", "key AKIAZ7QWERTY12345678 x", []Kind{KindAWSAccessKeyID}},
		{"github", "ghp_1a2B3c4D5e6F7g8H9i0J1k2L3m4N5o6P7q8R", []Kind{KindGitHubToken}},
		{"slack", "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx", []Kind{KindSlackToken}},
		{"stripe", "sk_live_4eC39HqLyjWDarjtT1zdp7dc", []Kind{KindStripeSecretKey}},
		{"google", "AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY", []Kind{KindGoogleAPIKey}},
		{"jwt", "Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U", []Kind{KindJWT}},
		{"generic", `client_secret = "f8Kd93JslQ0pZx71Mvb2"`, []Kind{KindGenericSecret}},
		{"generic auth", `Authorization: Basic dXNlcjpwYXNzd29yZDEyMw==`, []Kind{KindGenericSecret}},
		{"tokenizer is no token", `"tokenizer": "meta-llama/Llama-3-8B-Instruct"`, nil},
		{"author is no auth", `"author_id": "a1b2c3d4e5f6g7h8i9"`, nil},
		{"keyword not the key", `loss_fn = resolve_loss("token_ce", ignore_index=-100)`, nil},
		{"identifier", "uses ckks.ExampleParameters128BitLogN14LogQP438 here", nil},
		{"yaml key", "  db_password: Zq8vN2xL5pW9rT3kY7mB", []Kind{KindGenericSecret}},
		{"cli flag", "run --api-key=Zq8vN2xL5pW9rT3kY7mB now", []Kind{KindGenericSecret}},
		{"high entropy", "blob Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MGFiY2RlZmdoaWprbG1ub3A9PQ==", []Kind{KindHighEntropy}},
		{"sha256 not secret", "digest e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", nil},
		{"prose", "The quick brown fox jumps over the lazy dog 3 times in 2024.", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := kindsOf(t, s, "x.txt", tt.text)
			if !slices.Equal(got, tt.want) {
				t.Errorf("%q: got %v, want %v", tt.text, got, tt.want)
			}
		})
	}
}
