package server

import (
	"net/http"
	"strings"
	"testing"

	"github.com/tensafe/tensafe/api"
	"github.com/tensafe/tensafe/he"
)

// TestHERoutesEncodings: the HE routes take JSON or CBOR and nothing else,
// answer in the encoding asked for, refuse unknown fields in both, and keep
// roles and tenant scoping. (Keys, deltas and inference end to end are in
// client/he_integration_test.go.)
func TestHERoutesEncodings(t *testing.T) {
	f := newFixture(t, nil)
	adapter := he.RegisterAdapterRequest{Module: "m.q", A: [][]float64{{0.1, 0.2, 0.3}}, B: [][]float64{{1}, {2}}, Scale: 2}
	cb, err := he.MarshalWireCBOR(adapter)
	if err != nil {
		t.Fatal(err)
	}

	// CBOR in, CBOR out.
	r := f.do(t, f.tok["A-trainer"], "POST", "/api/v1/he/adapters", cb, "Content-Type", he.MediaTypeCBOR, "Accept", he.MediaTypeCBOR)
	if r.code != http.StatusCreated || r.hdr.Get("Content-Type") != he.MediaTypeCBOR {
		t.Fatalf("CBOR register: %d %s", r.code, r.hdr.Get("Content-Type"))
	}
	var res he.RegisterAdapterResponse
	if err := he.UnmarshalWireCBOR(r.body, &res); err != nil || res.Shape != (he.LoRAShape{DIn: 3, DOut: 2, Rank: 1}) {
		t.Fatalf("CBOR answer %+v, %v", res, err)
	}
	if len(res.Packings) != 1 || res.Packings[0] != he.PackingThroughput {
		t.Fatalf("packings without a key: %v", res.Packings)
	}
	// JSON in, JSON out.
	f.must(t, http.StatusCreated, f.tok["A-trainer"], "POST", "/api/v1/he/adapters", adapter, &res)

	for _, tc := range []struct {
		name   string
		tok    string
		body   any
		hdr    []string
		status int
		code   string
		field  string
	}{
		{"text body", f.tok["A-trainer"], "module=x", []string{"Content-Type", "text/plain"}, http.StatusUnsupportedMediaType, api.CodeInvalidArgument, "Content-Type"},
		{"empty CBOR", f.tok["A-trainer"], []byte{}, []string{"Content-Type", he.MediaTypeCBOR}, http.StatusBadRequest, api.CodeInvalidArgument, "body"},
		{"CBOR trailing byte", f.tok["A-trainer"], append(append([]byte{}, cb...), 0), []string{"Content-Type", he.MediaTypeCBOR}, http.StatusBadRequest, api.CodeInvalidArgument, "body"},
		{"JSON unknown field", f.tok["A-trainer"], `{"module":"m","bogus":1}`, nil, http.StatusBadRequest, api.CodeInvalidArgument, "bogus"},
		{"bad module name", f.tok["A-trainer"], `{"module":"../x","a":[[1]],"b":[[1]],"scale":1}`, nil, http.StatusBadRequest, api.CodeInvalidArgument, "module"},
		{"NaN-free but zero scale", f.tok["A-trainer"], `{"module":"m","a":[[1]],"b":[[1]],"scale":0}`, nil, http.StatusBadRequest, api.CodeInvalidArgument, "scale"},
		{"viewer", f.tok["A-viewer"], adapter, nil, http.StatusForbidden, api.CodePermissionDenied, ""},
		{"no such key", f.tok["A-trainer"], he.DeltaRequest{KeyID: "hek_" + strings.Repeat("ab", 16), Modules: []string{"m.q"}}, nil, http.StatusNotFound, api.CodeNotFound, ""},
		{"model without a key", f.tok["B-trainer"], he.RegisterModelRequest{Name: "mlp", Profile: he.ProfileFull,
			Model: he.MLP{Layers: []he.Layer{{W: [][]float64{{1, 2}}, Act: he.Activation{Kind: he.ActSquare}}}}}, nil, http.StatusConflict, api.CodeFailedPrecondition, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := "/api/v1/he/adapters"
			switch tc.body.(type) {
			case he.DeltaRequest:
				path = "/api/v1/he/deltas"
			case he.RegisterModelRequest:
				path = "/api/v1/he/models"
			}
			r := f.do(t, tc.tok, "POST", path, tc.body, tc.hdr...)
			if r.code != tc.status {
				t.Fatalf("status %d, want %d: %s", r.code, tc.status, r.body)
			}
			if e := r.envelope(t); e.Code != tc.code || e.Field != tc.field {
				t.Fatalf("error %+v, want code %s field %q", e, tc.code, tc.field)
			}
		})
	}
	// Keys: none yet; another tenant's id reads as missing; ids that are
	// not key ids too.
	var keys []he.KeyInfo
	f.must(t, http.StatusOK, f.tok["A-viewer"], "GET", "/api/v1/he/keys", nil, &keys)
	if len(keys) != 0 {
		t.Fatalf("keys %v", keys)
	}
	for _, id := range []string{"hek_" + strings.Repeat("0", 32), "not-a-key"} {
		if r := f.do(t, f.tok["A-viewer"], "GET", "/api/v1/he/keys/"+id, nil); r.code != http.StatusNotFound {
			t.Fatalf("GET key %s: %d", id, r.code)
		}
	}
	// The HE routes accept bodies over the general limit (here an A row of
	// 1.4 M columns); the other routes keep it.
	big := `{"module":"m.big","a":[[` + strings.Repeat("0.125,", api.MaxRequestBytes/6) + `1]],"b":[[1]],"scale":1}`
	if len(big) <= api.MaxRequestBytes {
		t.Fatalf("body of %d bytes is not over the general limit", len(big))
	}
	if r := f.do(t, f.tok["A-trainer"], "POST", "/api/v1/he/adapters", big); r.code != http.StatusCreated {
		t.Fatalf("HE body of %d bytes: %d %s", len(big), r.code, r.body)
	}
	if r := f.do(t, f.tok["A-trainer"], "POST", "/api/v1/training_clients", big); r.code != http.StatusRequestEntityTooLarge {
		t.Fatalf("training body of %d bytes: %d, want 413", len(big), r.code)
	}
}
