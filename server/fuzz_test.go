package server

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/tensafe/tensafe/api"
)

// FuzzHandlerDecode drives untrusted bodies through the handlers' decoding
// path (api.Decode, then the service's validation) of every route with a
// body. Whatever the bytes, the answer is never a 5xx, and every refusal is
// the error envelope with a code.
func FuzzHandlerDecode(f *testing.F) {
	fx := newFixture(f, func(c *Config) { c.MaxBodyBytes = 16 << 10 })
	var tc api.TrainingClient
	fx.must(f, 201, fx.tok["A-trainer"], "POST", "/api/v1/training_clients", tinyConfig(1, 8, 2, 100), &tc)
	routes := fuzzRoutes(tc.ID, fx.tenA)
	good, _ := json.Marshal(tinyConfig(1, 8, 2, 100))
	f.Add(uint8(0), good)
	f.Add(uint8(1), []byte(`{"batch":{"input_ids":[[256,104]],"labels":[[256,104]]}}`))
	f.Add(uint8(2), []byte(`{"batch":{"input_ids":[[1,99999999]]}}`))
	f.Add(uint8(3), []byte(`{}`))
	f.Add(uint8(4), []byte(`{"prompt_tokens":[1],"max_tokens":-1}`))
	f.Add(uint8(5), []byte(`{"name":"x","evil":1}`))
	f.Add(uint8(6), []byte(`{"artifact_id":"../../etc/passwd"}`))
	f.Add(uint8(7), []byte(`{"role":"root"}`))
	f.Add(uint8(8), []byte(`{"name":`))
	f.Add(uint8(9), []byte(`{"batch":{"input_ids":[[256,104]],"labels":[[256,104]]},"logprob_grads":[[0,-1]]}`))
	f.Add(uint8(9), []byte(`{"batch":{"input_ids":[[256,104]]},"logprob_grads":[[0,1e308,-1e308]],"losses":[1,2]}`))
	f.Add(uint8(10), []byte(`{"loss":{"type":"dpo"}}`))
	f.Add(uint8(11), []byte(`{"name":"d","examples":[{"input_ids":[256,104],"weights":[1,-1]}]}`))
	f.Fuzz(func(t *testing.T, route uint8, body []byte) {
		target := routes[int(route)%len(routes)]
		tok := fx.tok["A-admin"]
		if target == "/api/v1/tenants" {
			tok = fx.tok["op"]
		}
		req := httptest.NewRequest("POST", target, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		w := httptest.NewRecorder()
		fx.srv.ServeHTTP(w, req)
		if w.Code >= 500 {
			t.Fatalf("POST %s: status %d: %s", target, w.Code, w.Body.Bytes())
		}
		if w.Code >= 400 {
			var e api.ErrorResponse
			if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e.Error.Code == "" || api.HTTPStatus(e.Error.Code) != w.Code {
				t.Fatalf("POST %s: status %d with body %s", target, w.Code, w.Body.Bytes())
			}
			if w.Code == http.StatusBadRequest && e.Error.Code != api.CodeInvalidArgument {
				t.Fatalf("400 with code %s", e.Error.Code)
			}
		}
	})
}

// fuzzRoutes are the POST routes FuzzHandlerDecode drives, for training
// client id and tenant; TestFuzzRoutesCoverBodies holds the list to the
// registered routes.
func fuzzRoutes(id, tenant string) []string {
	p := "/api/v1/training_clients/" + id
	return []string{"/api/v1/training_clients", p + "/forward_backward", p + "/forward", p + "/optim_step",
		p + "/sample", p + "/save_state", p + "/load_state", "/api/v1/tenants/" + tenant + "/api_keys", "/api/v1/tenants",
		p + "/forward_backward_custom", p + "/train_step", "/api/v1/datasets"}
}

// TestFuzzRoutesCoverBodies checks that every registered POST route of a
// training client, of tenants and of API keys is in the fuzzer's list, so
// that a new route with a body is not left out of FuzzHandlerDecode.
func TestFuzzRoutesCoverBodies(t *testing.T) {
	fuzzed := map[string]bool{}
	for _, r := range fuzzRoutes("{id}", "{id}") {
		fuzzed["POST "+r] = true
	}
	fx := newFixture(t, nil)
	n := 0
	for _, r := range fx.srv.Routes() {
		if !strings.HasPrefix(r, "POST /api/v1/training_clients") && !strings.HasPrefix(r, "POST /api/v1/tenants") {
			continue
		}
		n++
		if !fuzzed[r] {
			t.Errorf("route %q is not in fuzzRoutes", r)
		}
	}
	if n < 10 {
		t.Fatalf("only %d POST routes of clients and tenants are registered", n)
	}
}
