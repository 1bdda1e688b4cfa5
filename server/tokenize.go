package server

import (
	"net/http"

	"github.com/tensafe/tensafe/api"
)

// tokenize answers POST /api/v1/tokenize: a registered model's tokenizer
// applied to untrusted texts (special tokens never forged from text).
func (s *Server) tokenize(w http.ResponseWriter, r *http.Request, _ principal) {
	var req api.TokenizeRequest
	if !s.decode(w, r, &req) {
		return
	}
	res, err := s.cfg.Service.Tokenize(r.Context(), req)
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// detokenize answers POST /api/v1/detokenize.
func (s *Server) detokenize(w http.ResponseWriter, r *http.Request, _ principal) {
	var req api.DetokenizeRequest
	if !s.decode(w, r, &req) {
		return
	}
	res, err := s.cfg.Service.Detokenize(r.Context(), req)
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}
