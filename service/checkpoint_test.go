package service

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/tensafe/tensafe/api"
)

// TestCheckpointMetadata: metadata saved with a checkpoint comes back from
// load_state; include_optimizer false gives a smaller checkpoint whose load
// restores the adapter (same greedy sample) without the moments; bad
// metadata is refused at submission, naming the field.
func TestCheckpointMetadata(t *testing.T) {
	f := newFixture(t)
	ctx := WithActor(context.Background(), "key_test")
	s, ten := f.svc, f.tenA
	tc, err := s.CreateTrainingClient(ctx, ten, tinyConfig(1.0, 8, 2, 100))
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		fb, err := s.ForwardBackward(ctx, ten, tc.ID, api.ForwardBackwardRequest{Batch: textBatch("hello", "world")})
		await(t, s, ten, fb, err, nil)
		op, err := s.OptimStep(ctx, ten, tc.ID)
		await(t, s, ten, op, err, nil)
	}
	meta := json.RawMessage(`{"algorithm": "reinforce", "baseline": 0.25, "rng": "AAEC", "history": [0.1, 0.2]}`)
	var full, slim api.SaveStateResult
	sf, err := s.SaveState(ctx, ten, tc.ID, api.SaveStateRequest{Name: "full", Metadata: meta})
	await(t, s, ten, sf, err, &full)
	sf, err = s.SaveState(ctx, ten, tc.ID, api.SaveStateRequest{Name: "slim", Metadata: meta, IncludeOptimizer: ptr(false)})
	await(t, s, ten, sf, err, &slim)
	if slim.Size >= full.Size*2/3 {
		t.Errorf("checkpoint without optimizer %d bytes, with %d", slim.Size, full.Size)
	}
	// The artifact record (not encrypted) does not carry the metadata.
	art, err := f.st.GetArtifact(ctx, ten, full.ArtifactID)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(art.Metadata), "reinforce") {
		t.Errorf("artifact record leaks the checkpoint metadata: %s", art.Metadata)
	}
	var want map[string]any
	json.Unmarshal(meta, &want)
	for _, c := range []struct {
		id       string
		restored bool
	}{{full.ArtifactID, true}, {slim.ArtifactID, false}} {
		tc2, err := s.CreateTrainingClient(ctx, ten, tinyConfig(1.0, 8, 2, 100))
		if err != nil {
			t.Fatal(err)
		}
		var ls api.LoadStateResult
		lf, err := s.LoadState(ctx, ten, tc2.ID, api.LoadStateRequest{ArtifactID: c.id})
		await(t, s, ten, lf, err, &ls)
		var got map[string]any
		if err := json.Unmarshal(ls.Metadata, &got); err != nil {
			t.Fatalf("metadata %s: %v", ls.Metadata, err)
		}
		if gj, wj := mustJSON(t, got), mustJSON(t, want); gj != wj {
			t.Errorf("metadata %s, want %s", gj, wj)
		}
		if ls.OptimizerRestored != c.restored || ls.Step != 2 {
			t.Errorf("load_state %+v, want optimizer_restored %v step 2", ls, c.restored)
		}
		// Same adapter: the same greedy sample as the original client.
		var a, b api.SampleResult
		sa, err := s.Sample(ctx, ten, tc.ID, api.SampleRequest{Prompt: "he", MaxTokens: 6})
		await(t, s, ten, sa, err, &a)
		sb, err := s.Sample(ctx, ten, tc2.ID, api.SampleRequest{Prompt: "he", MaxTokens: 6})
		await(t, s, ten, sb, err, &b)
		if !equalInts(a.Sequences[0].Tokens, b.Sequences[0].Tokens) {
			t.Errorf("loaded adapter samples %v, original %v", b.Sequences[0].Tokens, a.Sequences[0].Tokens)
		}
	}
	// A checkpoint saved without metadata loads with none.
	var plain api.SaveStateResult
	sf, err = s.SaveState(ctx, ten, tc.ID, api.SaveStateRequest{})
	await(t, s, ten, sf, err, &plain)
	var ls api.LoadStateResult
	lf, err := s.LoadState(ctx, ten, tc.ID, api.LoadStateRequest{ArtifactID: plain.ArtifactID})
	await(t, s, ten, lf, err, &ls)
	if ls.Metadata != nil || !ls.OptimizerRestored {
		t.Errorf("plain load_state: %+v", ls)
	}

	big := json.RawMessage(`{"x":"` + strings.Repeat("a", api.MaxCheckpointMetadata) + `"}`)
	for name, m := range map[string]json.RawMessage{
		"array": json.RawMessage(`[1,2]`), "number": json.RawMessage(`3`), "string": json.RawMessage(`"x"`),
		"too large": big,
	} {
		_, err := s.SaveState(ctx, ten, tc.ID, api.SaveStateRequest{Metadata: m})
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != "metadata" {
			t.Errorf("%s metadata: %v, want a field error on metadata", name, err)
		}
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestParseCheckpointVersions: v1 checkpoints (no metadata) still parse; a
// v1 header with metadata, or v2 metadata that is not an object, does not.
func TestParseCheckpointVersions(t *testing.T) {
	cfg := tinyConfig(1, 8, 2, 100)
	v2, err := marshalCheckpoint(checkpointHeader{BaseModel: "tensafe-tiny", Config: cfg, Step: 2,
		Metadata: json.RawMessage(`{"a":1}`)}, []byte("budget"), []byte("engine"))
	if err != nil {
		t.Fatal(err)
	}
	cp, err := parseCheckpoint(v2)
	if err != nil || string(cp.header.Metadata) != `{"a":1}` {
		t.Fatalf("v2: %v %s", err, cp.header.Metadata)
	}
	rewrite := func(edit func(map[string]any)) []byte {
		n := int(uint32(v2[8])<<24 | uint32(v2[9])<<16 | uint32(v2[10])<<8 | uint32(v2[11]))
		var h map[string]any
		if err := json.Unmarshal(v2[12:12+n], &h); err != nil {
			t.Fatal(err)
		}
		edit(h)
		hj, _ := json.Marshal(h)
		out := append([]byte(checkpointMagic), byte(len(hj)>>24), byte(len(hj)>>16), byte(len(hj)>>8), byte(len(hj)))
		return append(append(out, hj...), v2[12+n:]...)
	}
	v1 := rewrite(func(h map[string]any) { h["format"] = CheckpointFormatV1; delete(h, "metadata") })
	if cp, err := parseCheckpoint(v1); err != nil || cp.header.Metadata != nil {
		t.Fatalf("v1: %v", err)
	}
	for name, data := range map[string][]byte{
		"v1 with metadata":   rewrite(func(h map[string]any) { h["format"] = CheckpointFormatV1 }),
		"metadata array":     rewrite(func(h map[string]any) { h["metadata"] = []int{1} }),
		"metadata null":      rewrite(func(h map[string]any) { h["metadata"] = nil }),
		"unknown format":     rewrite(func(h map[string]any) { h["format"] = "tensafe-service-checkpoint/v3" }),
		"unknown header key": rewrite(func(h map[string]any) { h["extra"] = 1 }),
		"metadata oversized": rewrite(func(h map[string]any) {
			h["metadata"] = map[string]string{"x": strings.Repeat("a", api.MaxCheckpointMetadata)}
		}),
	} {
		if _, err := parseCheckpoint(data); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
