package tssp

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/tensafe/tensafe/keys"
	"github.com/tensafe/tensafe/seal"
)

// Manifest is the signed description of a package. Its canonical JSON
// (fields in the order below, which is sorted by key; no whitespace) is
// manifest.json, the bytes manifest.sig signs. Field order here is the
// encoding order: keep it sorted.
type Manifest struct {
	// Adapter summarises adapter_config.json.
	Adapter AdapterInfo `json:"adapter"`
	// BaseModel names the model the adapter was trained on.
	BaseModel BaseModel `json:"base_model"`
	// Created is when the package was made: RFC 3339 in UTC.
	Created string `json:"created"`
	// Format is "tensafe-tssp/v1".
	Format string `json:"format"`
	// Members lists every member after manifest.sig, in archive order.
	Members []Member `json:"members"`
	// PackageID is "tssp-" and 32 lowercase hex digits, random.
	PackageID string `json:"package_id"`
	// Producer names the software that made the package.
	Producer string `json:"producer"`
	// Recipients hold the weights' DEK encrypted to each recipient.
	Recipients []Recipient `json:"recipients"`
	// Signer is the key id (seal.VerifyingKey.KeyID) of the signing key.
	Signer string `json:"signer"`
	// TenantKEK holds the DEK wrapped under the producing tenant's KEK, for
	// the tenant's own use (optional).
	TenantKEK *TenantKEK `json:"tenant_kek,omitempty"`
	// Weights describes the plaintext inside weights.bin.enc.
	Weights Weights `json:"weights"`
}

// AdapterInfo is the manifest's summary of adapter_config.json.
type AdapterInfo struct {
	LoRAAlpha     float64  `json:"lora_alpha"`
	PEFTType      string   `json:"peft_type"`
	Rank          int      `json:"rank"`
	TargetModules []string `json:"target_modules,omitempty"`
}

// BaseModel identifies the base model: a name and, where known, a hash
// ("sha256:" and 64 hex digits; docs/TSSP_SPEC.md says of what).
type BaseModel struct {
	Hash string `json:"hash,omitempty"`
	Name string `json:"name"`
}

// Member is one archive member's name, SHA-256 and size.
type Member struct {
	Name   string `json:"name"`
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

// Recipient is one recipient's copy of the DEK.
type Recipient struct {
	Alg        string `json:"alg"`
	KeyID      string `json:"key_id"`
	WrappedDEK string `json:"wrapped_dek"` // standard base64 with padding
}

// TenantKEK is the DEK wrapped under a version of a tenant's KEK
// (AES-256-KWP, RFC 5649; docs/KEYS.md).
type TenantKEK struct {
	Alg        string `json:"alg"`
	KEKVersion uint32 `json:"kek_version"`
	KeyID      string `json:"key_id"`      // "kek:" + tenant id
	WrappedDEK string `json:"wrapped_dek"` // standard base64 with padding
}

// Weights describes the encrypted adapter weights.
type Weights struct {
	Envelope        string `json:"envelope"`
	PlaintextSHA256 string `json:"plaintext_sha256"`
	PlaintextSize   int64  `json:"plaintext_size"`
}

var (
	sha256Ref    = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
	packageIDRe  = regexp.MustCompile(`^tssp-[0-9a-f]{32}$`)
	signerIDRe   = regexp.MustCompile(`^ts1-[0-9a-f]{24}$`)
	recipientIDR = regexp.MustCompile(`^tr1-[0-9a-f]{24}$`)
)

func manifestErr(field, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrMalformedManifest, field, fmt.Sprintf(format, args...))
}

// Marshal returns the canonical JSON of m.
func (m *Manifest) Marshal() ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(m); err != nil {
		return nil, fmt.Errorf("tssp: encode manifest: %w", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// ParseManifest decodes manifest.json. The bytes must be exactly the
// canonical encoding of a valid v1 manifest: unknown fields, duplicate keys,
// whitespace and any other spelling are refused, so that what is signed is
// what every reader sees. A format other than v1 is ErrUnsupportedVersion.
func ParseManifest(data []byte) (*Manifest, error) {
	if len(data) > MaxManifestSize {
		return nil, manifestErr("manifest.json", "%d bytes, at most %d allowed", len(data), MaxManifestSize)
	}
	// The version first, from a lenient read, so that a v2 (or v0)
	// manifest is reported as such and not as malformed.
	var probe struct {
		Format *string `json:"format"`
	}
	if err := json.Unmarshal(data, &probe); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformedManifest, err)
	}
	if probe.Format == nil {
		return nil, manifestErr("format", "missing")
	}
	if *probe.Format != Format {
		return nil, fmt.Errorf("%w: format %q, this reader knows only %q", ErrUnsupportedVersion, *probe.Format, Format)
	}
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformedManifest, err)
	}
	if dec.More() {
		return nil, manifestErr("manifest.json", "data after the object")
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	canon, err := m.Marshal()
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(canon, data) {
		return nil, manifestErr("manifest.json", "not in canonical form (sorted keys, no whitespace, shortest numbers, minimal escapes, no duplicate keys)")
	}
	return &m, nil
}

// checkText refuses strings that are empty, too long, not UTF-8, or hold
// control or line-separator characters (which would make the canonical
// encoding depend on escaping rules).
func checkText(field, s string, optional bool) error {
	switch {
	case s == "" && optional:
		return nil
	case s == "":
		return manifestErr(field, "empty")
	case len(s) > MaxStringLen:
		return manifestErr(field, "%d bytes, at most %d allowed", len(s), MaxStringLen)
	case !utf8.ValidString(s):
		return manifestErr(field, "not valid UTF-8")
	}
	for _, r := range s {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			return manifestErr(field, "holds control character %U", r)
		}
	}
	return nil
}

// Validate checks every field of m.
func (m *Manifest) Validate() error {
	if m.Format != Format {
		return fmt.Errorf("%w: format %q, this reader knows only %q", ErrUnsupportedVersion, m.Format, Format)
	}
	if !packageIDRe.MatchString(m.PackageID) {
		return manifestErr("package_id", `must be "tssp-" and 32 lowercase hex digits`)
	}
	t, err := time.Parse(time.RFC3339Nano, m.Created)
	if err != nil || t.Location() != time.UTC || t.UTC().Format(time.RFC3339Nano) != m.Created {
		return manifestErr("created", "must be an RFC 3339 time in UTC (Go RFC3339Nano form)")
	}
	if err := checkText("producer", m.Producer, false); err != nil {
		return err
	}
	if err := checkText("base_model.name", m.BaseModel.Name, false); err != nil {
		return err
	}
	if m.BaseModel.Hash != "" && !sha256Ref.MatchString(m.BaseModel.Hash) {
		return manifestErr("base_model.hash", `must be "sha256:" and 64 lowercase hex digits`)
	}
	if err := m.Adapter.validate(); err != nil {
		return err
	}
	if !signerIDRe.MatchString(m.Signer) {
		return manifestErr("signer", `must be a signing key id ("ts1-" and 24 hex digits)`)
	}
	if m.Weights.Envelope != EnvelopeAlg {
		return manifestErr("weights.envelope", "%q, want %q", m.Weights.Envelope, EnvelopeAlg)
	}
	if !sha256Ref.MatchString(m.Weights.PlaintextSHA256) {
		return manifestErr("weights.plaintext_sha256", `must be "sha256:" and 64 lowercase hex digits`)
	}
	if m.Weights.PlaintextSize < 0 || m.Weights.PlaintextSize > MaxWeightsSize {
		return manifestErr("weights.plaintext_size", "%d out of range", m.Weights.PlaintextSize)
	}
	if len(m.Recipients) > MaxRecipients {
		return manifestErr("recipients", "%d recipients, at most %d allowed", len(m.Recipients), MaxRecipients)
	}
	if len(m.Recipients) == 0 && m.TenantKEK == nil {
		return manifestErr("recipients", "none, and no tenant_kek: nobody could open the package")
	}
	if t := m.TenantKEK; t != nil {
		if t.Alg != TenantKEKAlg {
			return manifestErr("tenant_kek.alg", "%q, want %q", t.Alg, TenantKEKAlg)
		}
		tenant, ok := strings.CutPrefix(t.KeyID, "kek:")
		if !ok || keys.CheckTenantID(tenant) != nil {
			return manifestErr("tenant_kek.key_id", `must be "kek:" and a valid tenant id`)
		}
		if t.KEKVersion == 0 {
			return manifestErr("tenant_kek.kek_version", "must be at least 1")
		}
		w, err := base64.StdEncoding.Strict().DecodeString(t.WrappedDEK)
		if err != nil || len(w) != kwpWrappedSize || base64.StdEncoding.EncodeToString(w) != t.WrappedDEK {
			return manifestErr("tenant_kek.wrapped_dek", "must be the standard base64 of %d bytes", kwpWrappedSize)
		}
	}
	seen := map[string]bool{}
	for i, r := range m.Recipients {
		field := fmt.Sprintf("recipients[%d]", i)
		if r.Alg != RecipientAlg {
			return manifestErr(field+".alg", "%q, want %q", r.Alg, RecipientAlg)
		}
		if !recipientIDR.MatchString(r.KeyID) {
			return manifestErr(field+".key_id", `must be a recipient key id ("tr1-" and 24 hex digits)`)
		}
		if seen[r.KeyID] {
			return manifestErr(field+".key_id", "recipient %s listed twice", r.KeyID)
		}
		seen[r.KeyID] = true
		w, err := base64.StdEncoding.Strict().DecodeString(r.WrappedDEK)
		if err != nil || len(w) != seal.WrappedDEKSizeHPKE || base64.StdEncoding.EncodeToString(w) != r.WrappedDEK {
			return manifestErr(field+".wrapped_dek", "must be the standard base64 of %d bytes", seal.WrappedDEKSizeHPKE)
		}
	}
	// Members: the format's order, the required ones present.
	last := specIndex(NameSignature)
	var names []string
	for i, mem := range m.Members {
		field := fmt.Sprintf("members[%d]", i)
		k := specIndex(mem.Name)
		if k <= specIndex(NameSignature) {
			return manifestErr(field+".name", "%q is not a member a manifest lists", mem.Name)
		}
		if k <= last {
			return manifestErr(field+".name", "%q out of order or repeated", mem.Name)
		}
		last = k
		if !sha256Ref.MatchString(mem.SHA256) {
			return manifestErr(field+".sha256", `must be "sha256:" and 64 lowercase hex digits`)
		}
		if mem.Size < 0 || mem.Size > members[k].max {
			return manifestErr(field+".size", "%d out of range (at most %d)", mem.Size, members[k].max)
		}
		names = append(names, mem.Name)
	}
	for _, s := range members[specIndex(NameSignature)+1:] {
		if s.required && !contains(names, s.name) {
			return manifestErr("members", "%s not listed", s.name)
		}
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (a *AdapterInfo) validate() error {
	if a.PEFTType != "LORA" {
		return manifestErr("adapter.peft_type", "%q, only LORA is supported", a.PEFTType)
	}
	if a.Rank <= 0 || a.Rank > 1<<16 {
		return manifestErr("adapter.rank", "%d out of range", a.Rank)
	}
	if !(a.LoRAAlpha > 0) || a.LoRAAlpha > 1e9 {
		return manifestErr("adapter.lora_alpha", "%v out of range", a.LoRAAlpha)
	}
	if len(a.TargetModules) > 64 {
		return manifestErr("adapter.target_modules", "%d modules, at most 64", len(a.TargetModules))
	}
	for i, t := range a.TargetModules {
		if err := checkText(fmt.Sprintf("adapter.target_modules[%d]", i), t, false); err != nil {
			return err
		}
	}
	return nil
}

// member returns the manifest's entry for name.
func (m *Manifest) member(name string) (Member, bool) {
	for _, mem := range m.Members {
		if mem.Name == name {
			return mem, true
		}
	}
	return Member{}, false
}

// adapterInfoFromConfig reads the summary the manifest records from a PEFT
// adapter_config.json.
func adapterInfoFromConfig(data []byte) (AdapterInfo, error) {
	var pc struct {
		PEFTType      string          `json:"peft_type"`
		R             int             `json:"r"`
		Alpha         float64         `json:"lora_alpha"`
		TargetModules json.RawMessage `json:"target_modules"`
	}
	if len(data) > MaxAdapterConfigSize {
		return AdapterInfo{}, fmt.Errorf("%w: %d bytes, at most %d", ErrAdapterConfig, len(data), MaxAdapterConfigSize)
	}
	if err := json.Unmarshal(data, &pc); err != nil {
		return AdapterInfo{}, fmt.Errorf("%w: %v", ErrAdapterConfig, err)
	}
	info := AdapterInfo{PEFTType: pc.PEFTType, Rank: pc.R, LoRAAlpha: pc.Alpha}
	// target_modules is a list of names or a regular expression; the
	// manifest records the list form only.
	if t := bytes.TrimSpace(pc.TargetModules); len(t) > 0 && t[0] == '[' {
		if err := json.Unmarshal(t, &info.TargetModules); err != nil {
			return AdapterInfo{}, fmt.Errorf("%w: target_modules: %v", ErrAdapterConfig, err)
		}
	}
	if err := info.validate(); err != nil {
		return AdapterInfo{}, fmt.Errorf("%w: %v", ErrAdapterConfig, strings.TrimPrefix(err.Error(), ErrMalformedManifest.Error()+": "))
	}
	return info, nil
}
