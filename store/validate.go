package store

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Limits on stored fields. They bound rows and keep a tenant from storing
// arbitrary payloads in metadata.
const (
	MaxIDLen             = 128
	MaxNameLen           = 256
	MaxKindLen           = 64
	MaxIdempotencyKeyLen = 256
	MaxErrorMessageLen   = 4096
	MaxLocationLen       = 4096
	MaxConfigLen         = 1 << 20  // TrainingClient.Config
	MaxBudgetStateLen    = 1 << 20  // TrainingClient.BudgetState
	MaxResultLen         = 16 << 20 // Operation.Result
	MaxMetadataLen       = 64 << 10 // Artifact.Metadata
)

func fieldErr(field, format string, args ...any) error {
	return &FieldError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// checkID checks an object id: 1 to MaxIDLen characters from
// [A-Za-z0-9._-], starting with a letter or digit.
func checkID(field, s string) error {
	if s == "" {
		return fieldErr(field, "required")
	}
	if len(s) > MaxIDLen {
		return fieldErr(field, "%d bytes, more than %d", len(s), MaxIDLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
		if i == 0 && !alnum {
			return fieldErr(field, "must start with a letter or digit")
		}
		if !alnum && c != '_' && c != '-' && c != '.' {
			return fieldErr(field, "character %q at %d is not a letter, digit, '_', '-' or '.'", c, i)
		}
	}
	return nil
}

// checkOptionalID is checkID for a field that may be empty.
func checkOptionalID(field, s string) error {
	if s == "" {
		return nil
	}
	return checkID(field, s)
}

// checkText checks human-readable text: valid UTF-8 without control
// characters or bidirectional formatting characters (which can make a name
// display as something else), at most max bytes.
func checkText(field, s string, max int, required bool) error {
	if s == "" {
		if required {
			return fieldErr(field, "required")
		}
		return nil
	}
	if len(s) > max {
		return fieldErr(field, "%d bytes, more than %d", len(s), max)
	}
	if !utf8.ValidString(s) {
		return fieldErr(field, "not valid UTF-8")
	}
	for i, r := range s {
		if unicode.IsControl(r) {
			return fieldErr(field, "control character %U at %d", r, i)
		}
		if unicode.Is(unicode.Bidi_Control, r) {
			return fieldErr(field, "bidirectional formatting character %U at %d", r, i)
		}
	}
	return nil
}

// checkName checks a lowercase name such as an operation kind or an error
// code: [a-z0-9_.], starting with a letter.
func checkName(field, s string, max int, required bool) error {
	if s == "" {
		if required {
			return fieldErr(field, "required")
		}
		return nil
	}
	if len(s) > max {
		return fieldErr(field, "%d bytes, more than %d", len(s), max)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if i == 0 && !('a' <= c && c <= 'z') {
			return fieldErr(field, "must start with a lowercase letter")
		}
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_' || c == '.') {
			return fieldErr(field, "character %q at %d is not a lowercase letter, digit, '_' or '.'", c, i)
		}
	}
	return nil
}

// checkJSON checks an optional JSON document.
func checkJSON(field string, b json.RawMessage, max int) error {
	if len(b) == 0 {
		return nil
	}
	if len(b) > max {
		return fieldErr(field, "%d bytes, more than %d", len(b), max)
	}
	if !json.Valid(b) {
		return fieldErr(field, "not valid JSON")
	}
	return nil
}

// checkContentHash checks "sha256:" followed by 64 lowercase hex digits.
func checkContentHash(field, s string) error {
	const p = "sha256:"
	if !strings.HasPrefix(s, p) {
		return fieldErr(field, `must be "sha256:" followed by 64 lowercase hex digits`)
	}
	h := s[len(p):]
	if len(h) != 64 {
		return fieldErr(field, "digest has %d hex digits, want 64", len(h))
	}
	for i := 0; i < len(h); i++ {
		if c := h[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return fieldErr(field, "digest character %q at %d is not lowercase hex", c, i)
		}
	}
	return nil
}

// checkTime refuses times that cannot be stored as microseconds since the
// Unix epoch in an int64 with room to spare (years 1 to 9999).
func checkTime(field string, t time.Time) error {
	if y := t.UTC().Year(); y < 1 || y > 9999 {
		return fieldErr(field, "year %d outside 1..9999", y)
	}
	return nil
}

func checkOptionalTime(field string, t *time.Time) error {
	if t == nil {
		return nil
	}
	return checkTime(field, *t)
}

func validateTenant(t *Tenant) error {
	if err := checkID("id", t.ID); err != nil {
		return err
	}
	if err := checkText("name", t.Name, MaxNameLen, true); err != nil {
		return err
	}
	if t.CreatedBy != "" || t.IdempotencyKey != "" {
		if err := checkID("created_by", t.CreatedBy); err != nil {
			return err
		}
	}
	if err := checkText("idempotency_key", t.IdempotencyKey, MaxIdempotencyKeyLen, false); err != nil {
		return err
	}
	if t.RequestHash != "" {
		if err := checkContentHash("request_hash", t.RequestHash); err != nil {
			return err
		}
	}
	return checkTime("created_at", t.CreatedAt)
}

func validateAPIKey(k *APIKey) error {
	if err := checkID("id", k.ID); err != nil {
		return err
	}
	if err := checkID("tenant_id", k.TenantID); err != nil {
		return err
	}
	if !k.Role.Valid() {
		return fieldErr("role", "%q is not one of admin, trainer, viewer", string(k.Role))
	}
	if err := checkPrefix("prefix", k.Prefix); err != nil {
		return err
	}
	if len(k.Hash) != hashLen {
		return fieldErr("hash", "%d bytes, want a %d-byte SHA-256", len(k.Hash), hashLen)
	}
	if err := checkTime("created_at", k.CreatedAt); err != nil {
		return err
	}
	return checkOptionalTime("revoked_at", k.RevokedAt)
}

func validateClient(c *TrainingClient) error {
	if err := validateClientUpdate(c); err != nil {
		return err
	}
	if err := checkText("idempotency_key", c.IdempotencyKey, MaxIdempotencyKeyLen, false); err != nil {
		return err
	}
	if c.RequestHash != "" {
		if err := checkContentHash("request_hash", c.RequestHash); err != nil {
			return err
		}
	}
	if err := checkText("base_model", c.BaseModel, MaxNameLen, true); err != nil {
		return err
	}
	if err := checkTime("created_at", c.CreatedAt); err != nil {
		return err
	}
	return checkTime("updated_at", c.UpdatedAt)
}

// validateClientUpdate checks the fields UpdateClient writes or matches.
func validateClientUpdate(c *TrainingClient) error {
	if err := checkID("id", c.ID); err != nil {
		return err
	}
	if err := checkID("tenant_id", c.TenantID); err != nil {
		return err
	}
	if err := checkJSON("config", c.Config, MaxConfigLen); err != nil {
		return err
	}
	if !c.Status.Valid() {
		return fieldErr("status", "%q is not one of active, deleted", string(c.Status))
	}
	if c.Step < 0 {
		return fieldErr("step", "%d is negative", c.Step)
	}
	if len(c.BudgetState) > MaxBudgetStateLen {
		return fieldErr("budget_state", "%d bytes, more than %d", len(c.BudgetState), MaxBudgetStateLen)
	}
	return nil
}

func validateOperation(op *Operation) error {
	if err := checkOptionalID("client_id", op.ClientID); err != nil {
		return err
	}
	if err := checkName("kind", op.Kind, MaxKindLen, true); err != nil {
		return err
	}
	if err := checkText("idempotency_key", op.IdempotencyKey, MaxIdempotencyKeyLen, false); err != nil {
		return err
	}
	if err := checkTime("created_at", op.CreatedAt); err != nil {
		return err
	}
	return validateOpUpdate(op)
}

// validateOpUpdate checks the fields UpdateOperation writes or matches.
func validateOpUpdate(op *Operation) error {
	if err := checkID("id", op.ID); err != nil {
		return err
	}
	if err := checkID("tenant_id", op.TenantID); err != nil {
		return err
	}
	if !op.State.Valid() {
		return fieldErr("state", "%q is not one of queued, running, succeeded, failed", string(op.State))
	}
	if err := checkJSON("result", op.Result, MaxResultLen); err != nil {
		return err
	}
	if err := checkName("error_code", op.ErrorCode, MaxKindLen, false); err != nil {
		return err
	}
	if err := checkText("error_message", op.ErrorMessage, MaxErrorMessageLen, false); err != nil {
		return err
	}
	if err := checkOptionalTime("started_at", op.StartedAt); err != nil {
		return err
	}
	return checkOptionalTime("finished_at", op.FinishedAt)
}

func validateArtifact(a *Artifact) error {
	if err := checkID("id", a.ID); err != nil {
		return err
	}
	if err := checkID("tenant_id", a.TenantID); err != nil {
		return err
	}
	if err := checkOptionalID("client_id", a.ClientID); err != nil {
		return err
	}
	if err := checkName("kind", a.Kind, MaxKindLen, true); err != nil {
		return err
	}
	if err := checkText("name", a.Name, MaxNameLen, true); err != nil {
		return err
	}
	if a.Size < 0 {
		return fieldErr("size", "%d is negative", a.Size)
	}
	if err := checkContentHash("content_hash", a.ContentHash); err != nil {
		return err
	}
	if err := checkText("location", a.Location, MaxLocationLen, true); err != nil {
		return err
	}
	if err := checkText("key_id", a.KeyID, MaxNameLen, false); err != nil {
		return err
	}
	if err := checkJSON("metadata", a.Metadata, MaxMetadataLen); err != nil {
		return err
	}
	if err := checkTime("created_at", a.CreatedAt); err != nil {
		return err
	}
	return checkOptionalTime("expires_at", a.ExpiresAt)
}
