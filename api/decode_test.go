package api

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestDecode(t *testing.T) {
	cases := []struct {
		name, body, field, reason string
		tooBig                    bool
	}{
		{"ok", `{"base_model":"tensafe-tiny","lora_config":{"rank":4,"alpha":8}}`, "", "", false},
		{"empty", ``, "", "empty", false},
		{"array", `[1]`, "", "not a JSON object", false},
		{"syntax", `{"base_model":`, "", "unexpected end", false},
		{"syntax2", `{"base_model" "x"}`, "", "malformed JSON at byte", false},
		{"unknown", `{"base_model":"x","model_path":"/etc"}`, "model_path", "unknown field", false},
		{"unknown nested", `{"lora_config":{"rank":4,"evil":1}}`, "evil", "unknown field", false},
		{"type", `{"lora_config":{"rank":"four"}}`, "lora_config.rank", "must be an integer", false},
		{"type float", `{"lora_config":{"rank":4.5}}`, "lora_config.rank", "must be an integer", false},
		{"trailing", `{"base_model":"x"} {}`, "", "trailing data", false},
		{"too big", `{"base_model":"` + strings.Repeat("x", 100) + `"}`, "", "exceeds 64 bytes", true},
	}
	for _, c := range cases {
		var cfg TrainingConfig
		err := Decode(strings.NewReader(c.body), 64+int64(len(c.body))*boolInt(!c.tooBig), &cfg)
		if c.reason == "" {
			if err != nil {
				t.Errorf("%s: %v", c.name, err)
			}
			continue
		}
		var de *DecodeError
		if !errors.As(err, &de) {
			t.Errorf("%s: %v is not a *DecodeError", c.name, err)
			continue
		}
		if de.Field != c.field || !strings.Contains(de.Reason, c.reason) || errors.Is(err, ErrTooLarge) != c.tooBig {
			t.Errorf("%s: got field %q reason %q (too big %v)", c.name, de.Field, de.Reason, errors.Is(err, ErrTooLarge))
		}
	}
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// FuzzDecodeTrainingConfig: the decoder never panics, and what it accepts
// survives a round trip.
func FuzzDecodeTrainingConfig(f *testing.F) {
	f.Add([]byte(`{"base_model":"tensafe-tiny","lora_config":{"rank":4,"alpha":8},"dp_config":{"noise_multiplier":1,"max_grad_norm":1,"target_epsilon":8,"target_delta":1e-5,"dataset_size":100,"expected_batch_size":2},"optimizer":{"learning_rate":0.001},"loss":{"type":"token_ce","kwargs":{"label_smoothing":0.1}},"seed":3}`))
	fuzzRoundTrip[TrainingConfig](f)
}

// FuzzDecodeForwardBackward: the same for the batch request.
func FuzzDecodeForwardBackward(f *testing.F) {
	f.Add([]byte(`{"batch":{"input_ids":[[256,1,2]],"labels":[[256,1,-100]],"attention_mask":[[1,1,1]],"weights":[[1,0.5,1]]},"loss":{"type":"token_ce"}}`))
	fuzzRoundTrip[ForwardBackwardRequest](f)
}

func fuzzRoundTrip[T any](f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		var v T
		if err := DecodeBytes(data, &v); err != nil {
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("error %v is not a *DecodeError", err)
			}
			return
		}
		again, err := json.Marshal(v)
		if err != nil {
			return // e.g. a NaN cannot be written back; the decoder never makes one
		}
		var w T
		if err := DecodeBytes(again, &w); err != nil {
			t.Fatalf("re-decode of %s: %v", again, err)
		}
		if !reflect.DeepEqual(normalize(t, v), normalize(t, w)) {
			t.Fatalf("round trip changed %s", again)
		}
	})
}

// normalize compares through JSON, where nil and empty collections that
// omitempty drops are alike.
func normalize(t *testing.T, v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
