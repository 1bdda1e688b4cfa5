package client

import (
	"bytes"
	"encoding/json"
)

// auditPage decodes the audit route's answer: a bare array of entries or an
// object with an "entries" array.
type auditPage struct{ entries []AuditEntry }

func (p *auditPage) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '[' {
		return json.Unmarshal(b, &p.entries)
	}
	var obj struct {
		Entries []AuditEntry `json:"entries"`
	}
	if err := json.Unmarshal(b, &obj); err != nil {
		return err
	}
	p.entries = obj.Entries
	return nil
}
