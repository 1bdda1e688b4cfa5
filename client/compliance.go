package client

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/tensafe/tensafe/api"
)

// ComplianceMetrics returns the deployment's measured compliance metrics
// (GET /api/v1/compliance/metrics; an admin key: an operator admin sees
// every tenant, a tenant admin its own). The server opens every artifact,
// verifies the audit log and runs the determinism check for it: its cost
// grows with the number and size of the artifacts.
func (c *ServiceClient) ComplianceMetrics(ctx context.Context) (*api.ComplianceMetrics, error) {
	var out api.ComplianceMetrics
	if err := c.do(ctx, http.MethodGet, "/api/v1/compliance/metrics", nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// EventFilter selects compliance events. Zero fields do not filter.
type EventFilter struct {
	Categories   []string  // api.Category* values
	Since, Until time.Time // Since ≤ time < Until
	After        int64     // events with seq > After (0: from the start; seq 0 is the genesis entry, never an event)
	Limit        int       // per page (server default when 0)
}

// ComplianceEvents returns one page of compliance events
// (GET /api/v1/compliance/events; an admin key).
func (c *ServiceClient) ComplianceEvents(ctx context.Context, f EventFilter) (*api.ComplianceEventsPage, error) {
	q := url.Values{}
	if len(f.Categories) > 0 {
		q.Set("category", strings.Join(f.Categories, ","))
	}
	if !f.Since.IsZero() {
		q.Set("since", f.Since.UTC().Format(time.RFC3339Nano))
	}
	if !f.Until.IsZero() {
		q.Set("until", f.Until.UTC().Format(time.RFC3339Nano))
	}
	if f.After >= 0 {
		q.Set("after", strconv.FormatInt(f.After, 10))
	}
	if f.Limit > 0 {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	var out api.ComplianceEventsPage
	if err := c.do(ctx, http.MethodGet, "/api/v1/compliance/events", q, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// AllComplianceEvents pages through every compliance event f selects
// (f.After and f.Limit are the starting cursor and page size).
func (c *ServiceClient) AllComplianceEvents(ctx context.Context, f EventFilter) ([]api.ComplianceEvent, error) {
	out := []api.ComplianceEvent{}
	if f.Limit == 0 {
		f.Limit = 1000
	}
	for {
		p, err := c.ComplianceEvents(ctx, f)
		if err != nil {
			return nil, err
		}
		out = append(out, p.Events...)
		if !p.More || p.NextAfter <= f.After {
			return out, nil
		}
		f.After = p.NextAfter
	}
}

// RecordScan records the counts of a PII or secrets scan in the server's
// audit log as a PII_SCAN or SECRETS_SCAN event
// (POST /api/v1/compliance/scans; an admin key).
func (c *ServiceClient) RecordScan(ctx context.Context, s api.ScanSummaryRequest) (*api.ScanSummaryResult, error) {
	var out api.ScanSummaryResult
	if err := c.doR(ctx, repeatRefusedOnly, http.MethodPost, "/api/v1/compliance/scans", nil, s, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
