package server

import (
	"net/http"

	"github.com/tensafe/tensafe/api"
)

// MaxDatasetBodyBytes bounds the body of POST /api/v1/datasets: a dataset
// is uploaded once, so its limit is above the rest of the API's
// (Config.MaxBodyBytes), and below what service.MaxDatasetTokens allows
// in the largest JSON.
const MaxDatasetBodyBytes = 64 << 20

// Dataset routes (docs/API.md, "Server-sampled training").

func (s *Server) createDataset(w http.ResponseWriter, r *http.Request, p principal) {
	var req api.CreateDatasetRequest
	limit := int64(MaxDatasetBodyBytes)
	if s.cfg.MaxBodyBytes > limit {
		limit = s.cfg.MaxBodyBytes
	}
	if err := api.Decode(r.Body, limit, &req); err != nil {
		s.writeErr(w, r, err)
		return
	}
	d, err := s.cfg.Service.CreateDataset(r.Context(), p.Tenant, req)
	s.answer(w, r, http.StatusCreated, d, err)
}

func (s *Server) getDataset(w http.ResponseWriter, r *http.Request, p principal) {
	d, err := s.cfg.Service.GetDataset(r.Context(), p.Tenant, r.PathValue("id"))
	s.answer(w, r, http.StatusOK, d, err)
}

func (s *Server) deleteDataset(w http.ResponseWriter, r *http.Request, p principal) {
	s.answerNoContent(w, r, s.cfg.Service.DeleteDataset(r.Context(), p.Tenant, r.PathValue("id")))
}

// trainStep is POST .../{id}/train_step: a future of one server-drawn
// Poisson batch, its forward_backward and optim_step.
func (s *Server) trainStep(w http.ResponseWriter, r *http.Request, p principal) {
	submit(s, w, r, p, s.cfg.Service.TrainStep)
}
