package server

import "net/http"

// forwardBackwardCustom is POST .../{id}/forward_backward_custom: a loss
// computed by the client, given as d loss / d logprobs per token, clipped per
// example and accumulated like forward_backward.
func (s *Server) forwardBackwardCustom(w http.ResponseWriter, r *http.Request, p principal) {
	submit(s, w, r, p, s.cfg.Service.ForwardBackwardCustom)
}
