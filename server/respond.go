package server

import (
	"fmt"
	"net/http"
	"strconv"

	"github.com/tensafe/tensafe/api"
)

// The answers most handlers give: a value, a list, or no content, each
// or the error in the envelope.

// answer writes v with status, or err (when not nil) in the envelope.
func (s *Server) answer(w http.ResponseWriter, r *http.Request, status int, v any, err error) {
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	writeJSON(w, status, v)
}

// answerList writes list with 200 (an empty JSON array, never null, when
// there is nothing), or err in the envelope.
func answerList[T any](s *Server, w http.ResponseWriter, r *http.Request, list []T, err error) {
	if list == nil {
		list = []T{}
	}
	s.answer(w, r, http.StatusOK, list, err)
}

// answerNoContent writes 204, or err in the envelope.
func (s *Server) answerNoContent(w http.ResponseWriter, r *http.Request, err error) {
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// seqPage reads the paging parameters of the audit log's listings: after
// (a seq; default -1, from the start) and limit (1 to MaxAuditLimit,
// default DefaultAuditLimit). On a bad value it writes the error naming the
// parameter and returns ok false.
func (s *Server) seqPage(w http.ResponseWriter, r *http.Request) (after int64, limit int, ok bool) {
	q := r.URL.Query()
	after = -1
	if v := q.Get("after"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			s.writeError(w, r, http.StatusBadRequest, api.CodeInvalidArgument, "must be a non-negative integer (a seq)", "after")
			return 0, 0, false
		}
		after = n
	}
	limit = DefaultAuditLimit
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxAuditLimit {
			s.writeError(w, r, http.StatusBadRequest, api.CodeInvalidArgument, fmt.Sprintf("must be an integer in [1, %d]", MaxAuditLimit), "limit")
			return 0, 0, false
		}
		limit = n
	}
	return after, limit, true
}
