package client_test

import (
	"encoding/json"
	"errors"
	"slices"
	"testing"

	"github.com/tensafe/tensafe/api"
	"github.com/tensafe/tensafe/client"
)

// TestTokenizeAgainstServer: tokenize and detokenize through the real
// server; a viewer key may use them, no key may not; bad ids are 400s
// naming the element.
func TestTokenizeAgainstServer(t *testing.T) {
	e := newEnv(t)
	c := e.client(t, e.viewerA)
	res, err := c.Tokenize(e.ctx, "tensafe-tiny", []string{"hi <eos>", ""})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.InputIDs[0], []int{'h', 'i', ' ', '<', 'e', 'o', 's', '>'}) || len(res.InputIDs[1]) != 0 ||
		res.BOSTokenID != 256 || res.EOSTokenID != 257 {
		t.Errorf("tokenize: %+v", res)
	}
	withBOS, err := c.TokenizeRequest(e.ctx, api.TokenizeRequest{Model: "tensafe-tiny", Texts: []string{"a"}, AddSpecialTokens: true})
	if err != nil || !slices.Equal(withBOS.InputIDs[0], []int{256, 'a'}) {
		t.Errorf("with special tokens: %+v, %v", withBOS, err)
	}
	texts, err := c.Detokenize(e.ctx, "tensafe-tiny", [][]int{{256, 'o', 'k', 257}})
	if err != nil || !slices.Equal(texts, []string{"<bos>ok<eos>"}) {
		t.Errorf("detokenize: %q, %v", texts, err)
	}
	_, err = c.Detokenize(e.ctx, "tensafe-tiny", [][]int{{1}, {2, 300}})
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.Status != 400 || ae.Field != "input_ids[1][1]" {
		t.Errorf("bad id: %v", err)
	}
	_, err = c.Tokenize(e.ctx, "no-such-model", []string{"x"})
	if !errors.As(err, &ae) || ae.Status != 400 || ae.Field != "model" {
		t.Errorf("unknown model: %v", err)
	}
	anon := e.client(t, "")
	if _, err := anon.Tokenize(e.ctx, "tensafe-tiny", []string{"x"}); !client.IsUnauthenticated(err) {
		t.Errorf("without a key: %v", err)
	}
}

// TestSaveStateMetadataAgainstServer: metadata and include_optimizer
// through the SDK and the real server.
func TestSaveStateMetadataAgainstServer(t *testing.T) {
	e := newEnv(t)
	c := e.client(t, e.trainerA)
	tc, err := c.CreateTrainingClient(e.ctx, tinyConfig(1, 8))
	if err != nil {
		t.Fatal(err)
	}
	fut, err := tc.SaveStateWith(e.ctx, api.SaveStateRequest{Name: "meta", Metadata: json.RawMessage(`{"step": 3}`),
		IncludeOptimizer: ptr(false)})
	if err != nil {
		t.Fatal(err)
	}
	saved, err := fut.Result(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	lf, err := tc.LoadState(e.ctx, saved.ArtifactID)
	if err != nil {
		t.Fatal(err)
	}
	loaded, err := lf.Result(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if string(loaded.Metadata) != `{"step":3}` || loaded.OptimizerRestored {
		t.Errorf("load_state: %+v (metadata %s)", loaded, loaded.Metadata)
	}
	_, err = tc.SaveStateWith(e.ctx, api.SaveStateRequest{Metadata: json.RawMessage(`[1]`)})
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.Field != "metadata" {
		t.Errorf("array metadata: %v", err)
	}
}
