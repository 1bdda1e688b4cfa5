package client

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/tensafe/tensafe/api"
)

// TestAllComplianceEvents: the SDK sends the filter as the route's query
// and follows next_after while more is set.
func TestAllComplianceEvents(t *testing.T) {
	since := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	var queries []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/compliance/events" || r.Header.Get("Authorization") != "Bearer k" {
			http.Error(w, "bad", 400)
			return
		}
		q := r.URL.Query()
		queries = append(queries, r.URL.RawQuery)
		after, _ := strconv.Atoi(q.Get("after"))
		page := api.ComplianceEventsPage{Events: []api.ComplianceEvent{{Seq: uint64(after + 1), Category: api.CategoryChange}}, NextAfter: int64(after + 1), More: after+1 < 3}
		if q.Get("category") != "CHANGE,ACCESS" || q.Get("since") != since.Format(time.RFC3339Nano) || q.Get("limit") != "1" {
			http.Error(w, "bad query", 400)
			return
		}
		json.NewEncoder(w).Encode(page)
	}))
	defer srv.Close()
	c, err := New(srv.URL, "k")
	if err != nil {
		t.Fatal(err)
	}
	evs, err := c.AllComplianceEvents(context.Background(), EventFilter{Categories: []string{"CHANGE", "ACCESS"}, Since: since, Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 3 || evs[0].Seq != 1 || evs[2].Seq != 3 || len(queries) != 3 {
		t.Fatalf("events %+v after queries %v", evs, queries)
	}
}
