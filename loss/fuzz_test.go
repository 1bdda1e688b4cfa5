package loss

import (
	"encoding/json"
	"testing"
)

// FuzzResolve: a loss spec from an untrusted request never panics the
// resolver; what it accepts is usable (a function, a group size ≥ 1) and
// resolves the same way again from its canonical form.
func FuzzResolve(f *testing.F) {
	for _, s := range []string{
		`{"type":"token_ce","kwargs":{"label_smoothing":0.1,"ignore_index":0}}`,
		`{"type":"ppo","kwargs":{"clip_low_threshold":0.7,"kl_coef":0.1}}`,
		`{"type":"contrastive","kwargs":{"group_size":4,"temperature":0.1}}`,
		`{"type":"mse","kwargs":{"head_token":3,"pooling":"last"}}`,
		`{"type":"dpo","kwargs":{"beta":"x"}}`,
		`{"type":"margin_ranking","kwargs":{"margin":1e308,"normalize":"mean"}}`,
		`{"type":"importance_sampling","kwargs":{"entropy_coef":[1]}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var s Spec
		if json.Unmarshal(data, &s) != nil {
			return
		}
		l, err := Resolve(s)
		if err != nil {
			return
		}
		if l.Func == nil || l.Group() < 1 {
			t.Fatalf("%s: resolved to %+v", data, l)
		}
		var again Spec
		canon, _ := json.Marshal(s)
		if err := json.Unmarshal(canon, &again); err != nil {
			t.Fatal(err)
		}
		if again.Key() != s.Key() {
			t.Fatalf("key %q changed to %q", s.Key(), again.Key())
		}
		if _, err := Resolve(again); err != nil {
			t.Fatalf("canonical form %s refused: %v", canon, err)
		}
	})
}
