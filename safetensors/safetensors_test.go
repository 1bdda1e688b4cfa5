package safetensors

import (
	"bytes"
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	in := map[string]*Tensor{
		"b": FromFloat32([]int{2, 3}, []float32{1, 2, 3, 4, 5, 6}),
		"a": FromFloat32([]int{1}, []float32{-1.5}),
	}
	var buf bytes.Buffer
	if err := Write(&buf, in, map[string]string{"format": "pt"}); err != nil {
		t.Fatal(err)
	}
	f, err := Parse(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if f.Metadata["format"] != "pt" {
		t.Errorf("metadata = %v", f.Metadata)
	}
	got, err := f.Tensors["b"].Float32()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 6 || got[5] != 6 {
		t.Errorf("b = %v", got)
	}
	// Deterministic: writing the parsed file again gives the same bytes.
	var buf2 bytes.Buffer
	if err := Write(&buf2, f.Tensors, f.Metadata); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), buf2.Bytes()) {
		t.Error("round trip is not byte-exact")
	}
}

func TestReadFixture(t *testing.T) {
	f, err := ReadFile(filepath.Join("..", "testdata", "fixtures", "tiny-llama", "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	e := f.Tensors["model.embed_tokens.weight"]
	if e == nil || e.Shape[0] != 512 || e.Shape[1] != 64 {
		t.Fatalf("embed_tokens = %+v", e)
	}
}

func TestHalfConversions(t *testing.T) {
	cases := []struct {
		dtype DType
		bits  uint16
		want  float32
	}{
		{BF16, 0x3f80, 1},
		{BF16, 0xc000, -2},
		{F16, 0x3c00, 1},
		{F16, 0xc000, -2},
		{F16, 0x0001, float32(math.Pow(2, -24))},
		{F16, 0x7bff, 65504},
	}
	for _, c := range cases {
		data := make([]byte, 2)
		binary.LittleEndian.PutUint16(data, c.bits)
		got, err := (&Tensor{DType: c.dtype, Shape: []int{1}, Data: data}).Float32()
		if err != nil || got[0] != c.want {
			t.Errorf("%s %#04x = %v, %v; want %v", c.dtype, c.bits, got, err, c.want)
		}
	}
}

func TestParseRejects(t *testing.T) {
	mk := func(header string, body int) []byte {
		b := make([]byte, 8, 8+len(header)+body)
		binary.LittleEndian.PutUint64(b, uint64(len(header)))
		b = append(b, header...)
		return append(b, make([]byte, body)...)
	}
	cases := map[string][]byte{
		"short":        {1, 2},
		"huge header":  mk(`{}`, 0)[:8],
		"bad json":     mk(`{`, 0),
		"bad dtype":    mk(`{"x":{"dtype":"Q8","shape":[1],"data_offsets":[0,1]}}`, 1),
		"out of body":  mk(`{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, 4),
		"size differs": mk(`{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}`, 4),
		"negative dim": mk(`{"x":{"dtype":"F32","shape":[-1],"data_offsets":[0,0]}}`, 0),
		"overlap":      mk(`{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"y":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, 4),
		"trailing":     mk(`{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, 8),
		"unknown key":  mk(`{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"z":1}}`, 4),
	}
	for name, data := range cases {
		if _, err := Parse(data); err == nil {
			t.Errorf("%s: Parse accepted it", name)
		}
	}
}

func FuzzParse(f *testing.F) {
	var buf bytes.Buffer
	_ = Write(&buf, map[string]*Tensor{"w": FromFloat32([]int{2}, []float32{1, 2})}, map[string]string{"k": "v"})
	f.Add(buf.Bytes())
	if data, err := os.ReadFile(filepath.Join("..", "testdata", "fixtures", "tiny-llama-lora", "adapter_model.safetensors")); err == nil {
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := Parse(data)
		if err != nil {
			return
		}
		for _, name := range file.Names() {
			tt := file.Tensors[name]
			if len(tt.Data) != tt.NumElements()*tt.DType.Size() {
				t.Fatalf("%s: inconsistent tensor accepted", name)
			}
		}
	})
}
