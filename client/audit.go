package client

import (
	"bytes"
	"encoding/json"
)

// auditPage decodes the audit route's answer, {"entries": [...],
// "next_after": seq}, and also a bare array of entries, whose next_after is
// its last seq.
type auditPage AuditPage

func (p *auditPage) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '[' {
		if err := json.Unmarshal(b, &p.Entries); err != nil {
			return err
		}
		p.NextAfter = -1
		if n := len(p.Entries); n > 0 {
			p.NextAfter = int64(min(p.Entries[n-1].Seq, 1<<63-1))
		}
		return nil
	}
	return json.Unmarshal(b, (*AuditPage)(p))
}
