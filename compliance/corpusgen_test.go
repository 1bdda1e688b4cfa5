package compliance

import (
	"flag"
	"fmt"
	"math/big"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nyaruka/phonenumbers"
)

// go test ./compliance -run TestGenerateCorpus -gen-corpus rewrites
// testdata/corpus/generated.jsonl; the file is committed, so the measured
// corpus does not change unless someone regenerates it on purpose.
var genCorpus = flag.Bool("gen-corpus", false, "regenerate testdata/corpus/generated.jsonl")

type corpusGen struct {
	r *rand.Rand
}

func (g *corpusGen) pick(xs ...string) string { return xs[g.r.IntN(len(xs))] }

func (g *corpusGen) digits(n int) string {
	var b strings.Builder
	for range n {
		b.WriteByte(byte('0' + g.r.IntN(10)))
	}
	return b.String()
}

var (
	firstNames = []string{"alice", "bob", "carol", "dmitri", "eve", "fatima", "gustav", "hana", "ines", "jun", "kwame", "lena", "mateo", "nora", "olu", "priya"}
	lastNames  = []string{"smith", "garcia", "nguyen", "mueller", "okafor", "rossi", "tanaka", "kowalski", "silva", "haddad", "o-brien", "lindqvist"}
	domains    = []string{"example.com", "mail.example.org", "corp.example.co.uk", "uni-example.edu", "example.io", "post.example.de", "example.com.br"}
)

func (g *corpusGen) email() string {
	f, l := g.pick(firstNames...), g.pick(lastNames...)
	local := g.pick(f+"."+l, f+"_"+l, f[:1]+l, f+l+g.digits(2), f+"+news", strings.ToUpper(f[:1])+f[1:]+"."+l)
	return local + "@" + g.pick(domains...)
}

var phoneRegions = []string{"US", "GB", "DE", "FR", "IN", "BR", "JP", "AU", "CA", "ES", "IT", "NL", "MX", "SE", "CH", "ZA"}

func (g *corpusGen) phone() string {
	for {
		reg := g.pick(phoneRegions...)
		ex := phonenumbers.GetExampleNumber(reg)
		n := phonenumbers.PhoneNumber{
			CountryCode:        ex.CountryCode,
			NationalNumber:     proto64(ex.GetNationalNumber()/100*100 + uint64(g.r.IntN(100))),
			ItalianLeadingZero: ex.ItalianLeadingZero,
		}
		if !phonenumbers.IsValidNumber(&n) {
			continue
		}
		if reg == "US" || reg == "CA" {
			nat := phonenumbers.Format(&n, phonenumbers.NATIONAL) // (201) 555-0123
			d := fmt.Sprint(n.GetNationalNumber())
			return g.pick(nat, d[:3]+"-"+d[3:6]+"-"+d[6:], d[:3]+"."+d[3:6]+"."+d[6:],
				phonenumbers.Format(&n, phonenumbers.INTERNATIONAL), "+1"+d)
		}
		return g.pick(phonenumbers.Format(&n, phonenumbers.INTERNATIONAL), phonenumbers.Format(&n, phonenumbers.E164))
	}
}

// nonLuhn returns n random digits that fail the Luhn check: a number that
// fails it cannot be a payment card.
func (g *corpusGen) nonLuhn(n int) string {
	for {
		if d := g.digits(n); !luhn([]byte(d)) {
			return d
		}
	}
}

func proto64(v uint64) *uint64 { return &v }

func luhnDigit(body string) byte {
	for c := byte('0'); c <= '9'; c++ {
		if luhn([]byte(body + string(c))) {
			return c
		}
	}
	panic("unreachable")
}

func (g *corpusGen) cardNumber(valid bool) string {
	type iin struct {
		p string
		n int
	}
	iins := []iin{{"4", 16}, {"4", 13}, {"51", 16}, {"55", 16}, {"2221", 16}, {"2720", 16}, {"34", 15}, {"37", 15}, {"6011", 16}, {"65", 16}, {"3530", 16}, {"36", 14}}
	c := iins[g.r.IntN(len(iins))]
	body := c.p + g.digits(c.n-len(c.p)-1)
	d := luhnDigit(body)
	if !valid {
		d = '0' + (d-'0'+byte(1+g.r.IntN(9)))%10
	}
	return body + string(d)
}

func (g *corpusGen) card(valid bool) string {
	s := g.cardNumber(valid)
	if len(s) != 16 || g.r.IntN(3) == 0 {
		return s
	}
	sep := g.pick(" ", "-")
	return s[:4] + sep + s[4:8] + sep + s[8:12] + sep + s[12:]
}

func (g *corpusGen) ssn(valid bool) string {
	for {
		a, gr, s := 1+g.r.IntN(999), g.r.IntN(100), g.r.IntN(10000)
		if !valid {
			switch g.r.IntN(4) {
			case 0:
				a = 0
			case 1:
				a = 666
			case 2:
				a = 900 + g.r.IntN(100)
			case 3:
				gr = 0
			}
		}
		if validSSN(a, gr, s) == valid {
			return fmt.Sprintf("%03d-%02d-%04d", a, gr, s)
		}
	}
}

func (g *corpusGen) iban(valid bool) string {
	cs := []string{"DE", "GB", "FR", "NL", "ES", "IT", "BE", "CH", "PL", "NO", "SE", "AT", "IE", "PT"}
	cc := cs[g.r.IntN(len(cs))]
	n := ibanLength[cc] - 4
	var bban strings.Builder
	for k := range n {
		if (cc == "GB" || cc == "NL" || cc == "IE") && k < 4 {
			bban.WriteByte(byte('A' + g.r.IntN(26)))
		} else {
			bban.WriteByte(byte('0' + g.r.IntN(10)))
		}
	}
	num := new(big.Int)
	var conv strings.Builder
	for _, c := range bban.String() + cc + "00" {
		if c >= 'A' && c <= 'Z' {
			conv.WriteString(fmt.Sprint(int(c-'A') + 10))
		} else {
			conv.WriteRune(c)
		}
	}
	num.SetString(conv.String(), 10)
	check := 98 - int(new(big.Int).Mod(num, big.NewInt(97)).Int64())
	if !valid {
		check = (check + 1 + g.r.IntN(50)) % 100
		if check < 2 {
			check += 2
		}
	}
	s := fmt.Sprintf("%s%02d%s", cc, check, bban.String())
	if g.r.IntN(2) == 0 {
		var b strings.Builder
		for k := 0; k < len(s); k += 4 {
			if k > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(s[k:min(k+4, len(s))])
		}
		return b.String()
	}
	return s
}

func (g *corpusGen) ipv4() string {
	return fmt.Sprintf("%d.%d.%d.%d", 1+g.r.IntN(223), g.r.IntN(256), g.r.IntN(256), 1+g.r.IntN(254))
}

func (g *corpusGen) ipv6() string {
	var a [16]byte
	a[0], a[1] = 0x20, 0x01
	for k := 2; k < 16; k++ {
		if g.r.IntN(3) > 0 {
			a[k] = byte(g.r.IntN(256))
		}
	}
	return netip.AddrFrom16(a).String()
}

var monthNames = []string{"January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"}

func (g *corpusGen) date() (y, m, d int) {
	return 1930 + g.r.IntN(80), 1 + g.r.IntN(12), 1 + g.r.IntN(28)
}

func (g *corpusGen) dobLine() string {
	y, m, d := g.date()
	switch g.r.IntN(5) {
	case 0:
		return fmt.Sprintf(`{"name": "%s", "date_of_birth": "{{date_of_birth:%04d-%02d-%02d}}"}`, g.pick(firstNames...), y, m, d)
	case 1:
		return fmt.Sprintf("Patient was born {{date_of_birth:%s %d, %d}} and admitted last week.", monthNames[m-1], d, y)
	case 2:
		return fmt.Sprintf("DOB: {{date_of_birth:%02d/%02d/%04d}}", d, m, y)
	case 3:
		return fmt.Sprintf(`{"dob":"{{date_of_birth:%02d.%02d.%04d}}","plan":"gold"}`, d, m, y)
	default:
		return fmt.Sprintf("Birthday {{date_of_birth:%d %s %d}} (confirmed)", d, monthNames[m-1][:3], y)
	}
}

func (g *corpusGen) negativeLine() string {
	y, m, d := g.date()
	return g.pick(
		fmt.Sprintf(`{"created_at": "%04d-%02d-%02dT10:%02d:00Z", "status": "ok"}`, 2020+g.r.IntN(5), m, d, g.r.IntN(60)),
		fmt.Sprintf("Invoice dated %02d/%02d/%04d, total $%d,%03d.%02d", m, d, 2000+g.r.IntN(24), g.r.IntN(9)+1, g.r.IntN(1000), g.r.IntN(100)),
		fmt.Sprintf("Order #%s shipped, tracking %s", g.digits(10), g.nonLuhn(16)),
		fmt.Sprintf("card on file %s was declined", g.card(false)),
		fmt.Sprintf("reference %s (not an SSN)", g.ssn(false)),
		fmt.Sprintf("IBAN typo %s rejected", g.iban(false)),
		fmt.Sprintf("upgraded to v%d.%d.%d.%d, pi is 3.%s", g.r.IntN(9), g.r.IntN(20), g.r.IntN(20), g.r.IntN(100), g.digits(12)),
		fmt.Sprintf("meeting at %02d:%02d:%02d, MAC 00:1a:2b:%02x:%02x:5e", g.r.IntN(24), g.r.IntN(60), g.r.IntN(60), g.r.IntN(256), g.r.IntN(256)),
		fmt.Sprintf("version %d.%d.%d released %04d-%02d-%02d", g.r.IntN(9), g.r.IntN(30), g.r.IntN(30), 2010+g.r.IntN(15), m, d),
		fmt.Sprintf(`{"id": "%08x-%04x-4%03x-a%03x-%012x", "score": 0.%s}`, g.r.Uint32(), g.r.IntN(65536), g.r.IntN(4096), g.r.IntN(4096), g.r.Uint64()&0xffffffffffff, g.digits(6)),
		fmt.Sprintf("sha256 %064x", g.r.Uint64()),
		fmt.Sprintf("population %d,%03d,%03d in %d", g.r.IntN(900)+1, g.r.IntN(1000), g.r.IntN(1000), 1950+y%70),
		fmt.Sprintf("use std::vector and a::b in C++, address 999.%d.%d.%d is invalid", g.r.IntN(256), g.r.IntN(256), g.r.IntN(256)),
		fmt.Sprintf("call extension %s or room %d-%d", g.digits(4), g.r.IntN(900)+100, g.r.IntN(90)+10),
		fmt.Sprintf("git@github invalid, user@localhost and %s@ alone", g.pick(firstNames...)),
	)
}

func (g *corpusGen) positiveLine() string {
	name := g.pick(firstNames...)
	switch g.r.IntN(9) {
	case 0:
		return fmt.Sprintf(`{"prompt": "Email me at {{email:%s}} about the refund", "completion": "Sure, %s."}`, g.email(), name)
	case 1:
		return fmt.Sprintf("You can reach %s on {{phone:%s}} or by email {{email:%s}}.", name, g.phone(), g.email())
	case 2:
		return fmt.Sprintf(`{"text": "my card is {{payment_card:%s}} please charge it"}`, g.card(true))
	case 3:
		return fmt.Sprintf("Employee %s, SSN {{us_ssn:%s}}, started %d.", name, g.ssn(true), 2000+g.r.IntN(24))
	case 4:
		return fmt.Sprintf("Wire the deposit to {{iban:%s}} by Friday", g.iban(true))
	case 5:
		return fmt.Sprintf("%04d-%02d-%02dT12:00:00Z INFO login user=%s ip={{ipv4:%s}} ok", 2024, 1+g.r.IntN(12), 1+g.r.IntN(28), name, g.ipv4())
	case 6:
		return fmt.Sprintf(`{"event":"connect","client":"{{ipv6:%s}}","port":%d}`, g.ipv6(), 1024+g.r.IntN(60000))
	case 7:
		return g.dobLine()
	default:
		return fmt.Sprintf(`{"messages":[{"role":"user","content":"Call {{phone:%s}}, card {{payment_card:%s}}"}]}`, g.phone(), g.card(true))
	}
}

func TestGenerateCorpus(t *testing.T) {
	if !*genCorpus {
		t.Skip("run with -gen-corpus to regenerate testdata/corpus/generated.jsonl")
	}
	g := &corpusGen{r: rand.New(rand.NewPCG(2026, 9))}
	var b strings.Builder
	for range 900 {
		if g.r.IntN(2) == 0 {
			b.WriteString(g.positiveLine())
		} else {
			b.WriteString(g.negativeLine())
		}
		b.WriteByte('\n')
	}
	p := filepath.Join("testdata", "corpus", "generated.jsonl")
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}
