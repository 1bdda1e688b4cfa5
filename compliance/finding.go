package compliance

import (
	"errors"
	"sort"
)

// ReportFormat names the version of the JSON form of a [Report].
const ReportFormat = "tensafe.compliance.scan/v1"

// Category separates personal data from secrets.
type Category string

// Categories of findings.
const (
	CategoryPII    Category = "pii"
	CategorySecret Category = "secret"
)

// Kind names one type of finding. Its string form is stable: it appears in
// reports and in the control matrix.
type Kind string

// Personal data.
const (
	KindEmail       Kind = "email"
	KindPhone       Kind = "phone"
	KindPaymentCard Kind = "payment_card"
	KindSSN         Kind = "us_ssn"
	KindIBAN        Kind = "iban"
	KindIPv4        Kind = "ipv4"
	KindIPv6        Kind = "ipv6"
	KindDateOfBirth Kind = "date_of_birth"
)

// Secrets.
const (
	KindPrivateKey       Kind = "private_key"
	KindAWSAccessKeyID   Kind = "aws_access_key_id"
	KindGitHubToken      Kind = "github_token"
	KindGitLabToken      Kind = "gitlab_token"
	KindSlackToken       Kind = "slack_token"
	KindSlackWebhook     Kind = "slack_webhook"
	KindStripeSecretKey  Kind = "stripe_secret_key"
	KindGoogleAPIKey     Kind = "google_api_key"
	KindJWT              Kind = "jwt"
	KindOpenAIKey        Kind = "openai_api_key"
	KindAnthropicKey     Kind = "anthropic_api_key"
	KindHuggingFaceToken Kind = "huggingface_token"
	KindNPMToken         Kind = "npm_token"
	KindSendGridKey      Kind = "sendgrid_api_key"
	KindGenericSecret    Kind = "generic_secret"
	KindHighEntropy      Kind = "high_entropy_string"
	KindDotEnvSecret     Kind = "dotenv_secret"
)

var piiKinds = map[Kind]bool{
	KindEmail: true, KindPhone: true, KindPaymentCard: true, KindSSN: true,
	KindIBAN: true, KindIPv4: true, KindIPv6: true, KindDateOfBirth: true,
}

// PIIKinds lists the personal-data kinds, in report order.
func PIIKinds() []Kind {
	return []Kind{KindEmail, KindPhone, KindPaymentCard, KindSSN, KindIBAN, KindIPv4, KindIPv6, KindDateOfBirth}
}

// SecretKinds lists the secret kinds, in report order.
func SecretKinds() []Kind {
	return []Kind{KindPrivateKey, KindAWSAccessKeyID, KindGitHubToken, KindGitLabToken, KindSlackToken,
		KindSlackWebhook, KindStripeSecretKey, KindGoogleAPIKey, KindJWT, KindOpenAIKey, KindAnthropicKey,
		KindHuggingFaceToken, KindNPMToken, KindSendGridKey, KindURLCredentials, KindGenericSecret,
		KindHighEntropy, KindDotEnvSecret}
}

// Category reports whether k is personal data or a secret.
func (k Kind) Category() Category {
	if piiKinds[k] {
		return CategoryPII
	}
	return CategorySecret
}

// Finding is one detected item: its kind and where it is. It deliberately has
// no field for the matched text.
type Finding struct {
	Kind   Kind   `json:"kind"`
	File   string `json:"file"`
	Line   int    `json:"line"`   // 1-based
	Column int    `json:"column"` // 1-based, in bytes
}

// Skipped names a file the scan did not read, and why.
type Skipped struct {
	File   string `json:"file"`
	Reason string `json:"reason"`
}

// Report is the result of a scan.
type Report struct {
	Format   string       `json:"format"`
	Files    int          `json:"files_scanned"`
	Bytes    int64        `json:"bytes_scanned"`
	PII      int          `json:"pii_findings"`
	Secrets  int          `json:"secret_findings"`
	Counts   map[Kind]int `json:"counts"`
	Findings []Finding    `json:"findings"`
	// FindingsOmitted counts findings beyond Options.MaxFindings: they are
	// in the counts but not listed.
	FindingsOmitted int       `json:"findings_omitted,omitempty"`
	Skipped         []Skipped `json:"skipped,omitempty"`
}

// Clean reports whether the scan found neither personal data nor secrets.
func (r *Report) Clean() bool { return r.PII == 0 && r.Secrets == 0 }

func newReport() *Report {
	return &Report{Format: ReportFormat, Counts: map[Kind]int{}, Findings: []Finding{}}
}

func (r *Report) add(f Finding, max int) {
	if max > 0 && len(r.Findings) >= max {
		r.FindingsOmitted++
	} else {
		r.Findings = append(r.Findings, f)
	}
	r.Counts[f.Kind]++
	if f.Kind.Category() == CategoryPII {
		r.PII++
	} else {
		r.Secrets++
	}
}

// sortFindings orders one file's findings by line, then column.
func sortFindings(fs []Finding) {
	sort.SliceStable(fs, func(i, j int) bool {
		if fs[i].Line != fs[j].Line {
			return fs[i].Line < fs[j].Line
		}
		return fs[i].Column < fs[j].Column
	})
}

// ErrBadOption is returned by [NewScanner] for an invalid option; the error
// names the field.
var ErrBadOption = errors.New("compliance: bad option")
