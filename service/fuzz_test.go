package service

import (
	"bytes"
	"testing"
)

// FuzzParseCheckpoint: the checkpoint parser never panics, and whatever it
// accepts re-encodes to the same bytes' payloads.
func FuzzParseCheckpoint(f *testing.F) {
	valid, err := marshalCheckpoint(checkpointHeader{BaseModel: "tensafe-tiny", Config: tinyConfig(1, 8, 2, 100), Step: 2},
		[]byte("budget"), []byte("engine"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(valid)
	f.Fuzz(func(t *testing.T, data []byte) {
		cp, err := parseCheckpoint(data)
		if err != nil {
			return
		}
		again, err := marshalCheckpoint(cp.header, cp.budget, cp.engine)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		cp2, err := parseCheckpoint(again)
		if err != nil {
			t.Fatalf("re-parse: %v", err)
		}
		if !bytes.Equal(cp2.budget, cp.budget) || !bytes.Equal(cp2.engine, cp.engine) || cp2.header.Step != cp.header.Step ||
			cp2.header.BaseModel != cp.header.BaseModel {
			t.Fatalf("round trip changed the checkpoint")
		}
	})
}

func TestParseCheckpointRejects(t *testing.T) {
	valid, err := marshalCheckpoint(checkpointHeader{BaseModel: "tensafe-tiny", Config: tinyConfig(1, 8, 2, 100), Step: 2},
		[]byte("budget"), []byte("engine"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := parseCheckpoint(valid); err != nil {
		t.Fatalf("valid: %v", err)
	}
	for name, data := range map[string][]byte{
		"empty":     nil,
		"truncated": valid[:len(valid)-1],
		"trailing":  append(append([]byte{}, valid...), 0),
		"magic":     append([]byte("TSSVCKP0"), valid[8:]...),
	} {
		if _, err := parseCheckpoint(data); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
