package server

import (
	"net/http"

	"github.com/tensafe/tensafe/api"
)

// dpCertificate answers GET /api/v1/training_clients/{id}/dp_certificate with
// the certificate's canonical JSON, byte for byte as the service made it
// (docs/DP_CERTIFICATE.md): re-encoding would change the signed form.
func (s *Server) dpCertificate(w http.ResponseWriter, r *http.Request, p principal) {
	b, err := s.cfg.Service.DPCertificate(r.Context(), p.Tenant, r.PathValue("id"))
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

// packageArtifact answers POST /api/v1/artifacts/{id}/package: it packages a
// checkpoint as a TSSP file stored as a new artifact (201).
func (s *Server) packageArtifact(w http.ResponseWriter, r *http.Request, p principal) {
	var req api.PackageRequest
	if !s.decode(w, r, &req) {
		return
	}
	res, err := s.cfg.Service.PackageArtifact(r.Context(), p.Tenant, r.PathValue("id"), req)
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, res)
}

// signer answers GET /api/v1/signer with the package signing public key. It
// is public: a verifying key is no secret, and clients pin it before they
// trust a package.
func (s *Server) signer(w http.ResponseWriter, r *http.Request, _ principal) {
	k, err := s.cfg.Service.PackageSigner()
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	out := api.Signer{KeyID: k.KeyID(), PublicKey: k.String()}
	if ak := s.cfg.Service.AuditCheckpointKey(); ak != nil {
		out.AuditPublicKey = ak.String()
	}
	writeJSON(w, http.StatusOK, out)
}
