package server

import (
	"context"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/tensafe/tensafe/api"
	"github.com/tensafe/tensafe/he"
)

// MaxHEBodyBytes bounds the body of an HE request. HE bodies are large (a
// CKKS ciphertext of the default preset at the LoRA input level is 384 KiB
// to 512 KiB, evaluation keys with Galois keys tens of MiB), so the HE
// routes have their own limit; the rest of the API keeps
// Config.MaxBodyBytes.
const MaxHEBodyBytes = 1 << 30

// HE routes (docs/API.md, "Homomorphic encryption"). Bodies are JSON
// (ciphertexts and keys base64) or, with Content-Type application/cbor,
// CBOR; the answer is CBOR when the request's Accept names
// application/cbor, JSON otherwise.

// heDecode reads an HE request body (JSON or CBOR by Content-Type, at most
// MaxHEBodyBytes) into v; on failure it writes the error and returns false.
func (s *Server) heDecode(w http.ResponseWriter, r *http.Request, v any) bool {
	ct := r.Header.Get("Content-Type")
	mt, _, _ := mime.ParseMediaType(ct)
	switch {
	case mt == he.MediaTypeCBOR:
		data, err := io.ReadAll(io.LimitReader(r.Body, MaxHEBodyBytes+1))
		if err != nil {
			s.writeError(w, r, http.StatusBadRequest, api.CodeInvalidArgument, "reading the body: "+err.Error(), "body")
			return false
		}
		if len(data) > MaxHEBodyBytes {
			s.writeError(w, r, http.StatusRequestEntityTooLarge, api.CodeTooLarge, fmt.Sprintf("body exceeds %d bytes", MaxHEBodyBytes), "")
			return false
		}
		if len(data) == 0 {
			s.writeError(w, r, http.StatusBadRequest, api.CodeInvalidArgument, "body is empty; send a CBOR map", "body")
			return false
		}
		if err := he.UnmarshalWireCBOR(data, v); err != nil {
			s.writeError(w, r, http.StatusBadRequest, api.CodeInvalidArgument, err.Error(), "body")
			return false
		}
		return true
	case ct == "" || mt == he.MediaTypeJSON:
		if err := api.Decode(r.Body, MaxHEBodyBytes, v); err != nil {
			s.writeErr(w, r, err)
			return false
		}
		return true
	}
	s.writeError(w, r, http.StatusUnsupportedMediaType, api.CodeInvalidArgument,
		fmt.Sprintf("Content-Type must be %s or %s", he.MediaTypeJSON, he.MediaTypeCBOR), "Content-Type")
	return false
}

// heWrite answers v in CBOR when the client accepts it, else JSON.
func (s *Server) heWrite(w http.ResponseWriter, r *http.Request, status int, v any) {
	if !acceptsCBOR(r.Header.Get("Accept")) {
		writeJSON(w, status, v)
		return
	}
	b, err := he.MarshalWireCBOR(v)
	if err != nil {
		s.writeErr(w, r, fmt.Errorf("server: encode HE response: %w", err))
		return
	}
	w.Header().Set("Content-Type", he.MediaTypeCBOR)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func acceptsCBOR(accept string) bool {
	for _, part := range strings.Split(accept, ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err == nil && mt == he.MediaTypeCBOR && params["q"] != "0" {
			return true
		}
	}
	return false
}

// heCall decodes a request of type Req, calls fn and answers its result.
func heCall[Req, Res any](s *Server, w http.ResponseWriter, r *http.Request, p principal, status int,
	fn func(ctx context.Context, tenant string, req Req) (Res, error)) {
	var req Req
	if !s.heDecode(w, r, &req) {
		return
	}
	res, err := fn(r.Context(), p.Tenant, req)
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	s.heWrite(w, r, status, res)
}

func (s *Server) heRegisterKeys(w http.ResponseWriter, r *http.Request, p principal) {
	heCall(s, w, r, p, http.StatusCreated, s.cfg.Service.RegisterHEKeys)
}

func (s *Server) heListKeys(w http.ResponseWriter, r *http.Request, p principal) {
	ks, err := s.cfg.Service.ListHEKeys(r.Context(), p.Tenant)
	answerList(s, w, r, ks, err)
}

func (s *Server) heGetKey(w http.ResponseWriter, r *http.Request, p principal) {
	k, err := s.cfg.Service.GetHEKey(r.Context(), p.Tenant, r.PathValue("id"))
	s.answer(w, r, http.StatusOK, k, err)
}

func (s *Server) heRegisterAdapter(w http.ResponseWriter, r *http.Request, p principal) {
	heCall(s, w, r, p, http.StatusCreated, s.cfg.Service.RegisterHEAdapter)
}

func (s *Server) heDeltas(w http.ResponseWriter, r *http.Request, p principal) {
	heCall(s, w, r, p, http.StatusOK, s.cfg.Service.HEDeltas)
}

func (s *Server) heRegisterModel(w http.ResponseWriter, r *http.Request, p principal) {
	heCall(s, w, r, p, http.StatusCreated, s.cfg.Service.RegisterHEModel)
}

func (s *Server) heInference(w http.ResponseWriter, r *http.Request, p principal) {
	heCall(s, w, r, p, http.StatusOK, s.cfg.Service.HEInference)
}

func (s *Server) heDeleteKey(w http.ResponseWriter, r *http.Request, p principal) {
	s.answerNoContent(w, r, s.cfg.Service.DeleteHEKey(r.Context(), p.Tenant, r.PathValue("id")))
}

func (s *Server) heListAdapters(w http.ResponseWriter, r *http.Request, p principal) {
	as, err := s.cfg.Service.ListHEAdapters(r.Context(), p.Tenant)
	answerList(s, w, r, as, err)
}

func (s *Server) heDeleteAdapter(w http.ResponseWriter, r *http.Request, p principal) {
	s.answerNoContent(w, r, s.cfg.Service.DeleteHEAdapter(r.Context(), p.Tenant, r.PathValue("module")))
}

func (s *Server) heListModels(w http.ResponseWriter, r *http.Request, p principal) {
	ms, err := s.cfg.Service.ListHEModels(r.Context(), p.Tenant)
	answerList(s, w, r, ms, err)
}

func (s *Server) heDeleteModel(w http.ResponseWriter, r *http.Request, p principal) {
	s.answerNoContent(w, r, s.cfg.Service.DeleteHEModel(r.Context(), p.Tenant, r.PathValue("name")))
}
