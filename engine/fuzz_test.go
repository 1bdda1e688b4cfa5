package engine

import (
	"encoding/json"
	"testing"

	"github.com/tensafe/tensafe/loss"
)

// FuzzPrepare: an untrusted batch (with RL inputs and custom gradients)
// never panics batch preparation, whatever the loss; an accepted batch is
// padded consistently and its loss inputs sit only at target positions.
func FuzzPrepare(f *testing.F) {
	specs := []loss.Spec{{}, {Type: "ppo", Kwargs: map[string]any{"kl_coef": 0.1}}, {Type: "dpo"},
		{Type: "contrastive"}, {Type: "mse", Kwargs: map[string]any{"head_token": 1}}, {Type: "token_ce", Kwargs: map[string]any{"ignore_index": 0}}}
	f.Add([]byte(`{"input_ids":[[1,2,3],[4,5,6]],"labels":[[1,2,3],[4,5,-100]],"advantages":[[0,1,1],[0,1,2]],"sampling_logprobs":[[0,-1,-1],[0,-2,-2]],"reference_logprobs":[[0,-1,-1],[0,-2,-2]]}`), uint8(1), []byte(`[[0,1,1],[0,1,1]]`))
	f.Add([]byte(`{"input_ids":[[1,2],[3,4]],"labels":[[1,2],[3,4]],"reference_logprobs":[[0,-1],[0,-2]]}`), uint8(2), []byte(`null`))
	f.Add([]byte(`{"input_ids":[[1,2],[3,4],[5,6]],"labels":[[1,2],[3,4],[5,6]],"attention_mask":[[1,1],[1,0],[1,1]]}`), uint8(3), []byte(`null`))
	f.Add([]byte(`{"input_ids":[[1,2]],"labels":[[1,2]],"targets":[0.5]}`), uint8(4), []byte(`[[1]]`))
	f.Add([]byte(`{"input_ids":[[0,0,7]],"labels":[[0,0,7]],"weights":[[1,0,2]]}`), uint8(5), []byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte, which uint8, grads []byte) {
		var b Batch
		if json.Unmarshal(data, &b) != nil {
			return
		}
		var lpg [][]float64
		if json.Unmarshal(grads, &lpg) != nil {
			lpg = nil
		}
		l, err := loss.Resolve(specs[int(which)%len(specs)])
		if err != nil {
			t.Fatal(err)
		}
		p, err := prepare(b, 16, 64, true, l, lpg)
		if err != nil {
			return
		}
		if p.B != len(b.InputIDs) || p.B%p.G != 0 || p.T%seqBucket != 0 || len(p.ids) != p.B*p.T || len(p.exTargets) != p.B/p.G {
			t.Fatalf("prepared B=%d T=%d G=%d ids=%d", p.B, p.T, p.G, len(p.ids))
		}
		for k := range p.ids {
			if p.weights[k] == 0 && (p.adv[k] != 0 || p.samp[k] != 0 || p.ref[k] != 0 || p.lpg[k] != 0) {
				t.Fatalf("a loss input at non-target position %d", k)
			}
		}
	})
}
