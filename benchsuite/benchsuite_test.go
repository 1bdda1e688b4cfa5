package benchsuite

import (
	"bytes"
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSummarize(t *testing.T) {
	tests := []struct {
		name string
		in   []float64
		want Stats
	}{
		{"empty", nil, Stats{}},
		{"one", []float64{3}, Stats{P50: 3, P95: 3, Mean: 3, Min: 3, Max: 3}},
		{"even", []float64{4, 1, 3, 2}, Stats{P50: 2, P95: 4, Mean: 2.5, Min: 1, Max: 4}},
		// 1..20: nearest rank p50 = 10th value, p95 = 19th value.
		{"twenty", seq(20), Stats{P50: 10, P95: 19, Mean: 10.5, Min: 1, Max: 20}},
		{"hundred", seq(100), Stats{P50: 50, P95: 95, Mean: 50.5, Min: 1, Max: 100}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := append([]float64(nil), tt.in...)
			if got := Summarize(in); got != tt.want {
				t.Fatalf("Summarize = %+v, want %+v", got, tt.want)
			}
			for i := range in {
				if in[i] != tt.in[i] {
					t.Fatal("Summarize reordered its input")
				}
			}
		})
	}
}

func seq(n int) []float64 {
	s := make([]float64, n)
	for i := range s {
		s[n-1-i] = float64(i + 1) // reversed: Summarize must sort
	}
	return s
}

// fakeClock advances by the next step on every reading pair.
func fakeRunner(steps []time.Duration) *Runner {
	r := NewRunner("t", "test", true, Machine{Backend: "go"}, nil)
	var now time.Time
	i, calls := 0, 0
	r.now = func() time.Time {
		calls++
		if calls%2 == 0 && i < len(steps) { // the reading after op
			now = now.Add(steps[i])
			i++
		}
		return now
	}
	return r
}

func TestMeasure(t *testing.T) {
	r := fakeRunner([]time.Duration{time.Millisecond, 3 * time.Millisecond, 2 * time.Millisecond})
	calls := 0
	res, err := r.Measure(context.Background(), Spec{Group: "g", Name: "op", N: 3, Original: "ed25519_sign"}, func(context.Context) error {
		calls++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if calls != 4 { // one warm-up + three timed
		t.Errorf("op ran %d times, want 4", calls)
	}
	if res.Iterations != 3 || res.P50 != 2 || res.Mean != 2 || res.Max != 3 {
		t.Errorf("result %+v", res.Stats)
	}
	if res.Published == nil || res.Published.P50 != 1.09 || math.Abs(res.OursOverOriginal-2/1.09) > 1e-12 {
		t.Errorf("published comparison: %+v, ratio %v", res.Published, res.OursOverOriginal)
	}
	if got := r.Finish().Results; len(got) != 1 || got[0] != res {
		t.Errorf("report holds %v", got)
	}
}

func TestMeasureErrors(t *testing.T) {
	r := fakeRunner(nil)
	boom := errors.New("boom")
	n := 0
	_, err := r.Measure(context.Background(), Spec{Group: "g", Name: "op", N: 5}, func(context.Context) error {
		if n++; n == 3 {
			return boom
		}
		return nil
	})
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "g/op") {
		t.Fatalf("err = %v, want boom naming g/op", err)
	}
	if _, err := r.Measure(context.Background(), Spec{Group: "g", Name: "zero"}, nil); !errors.Is(err, ErrNoIterations) {
		t.Fatalf("N=0: err = %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := r.Measure(ctx, Spec{Group: "g", Name: "c", N: 2}, func(context.Context) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled: err = %v", err)
	}
	if len(r.Finish().Results) != 0 {
		t.Fatal("a failed measurement was recorded")
	}
}

func TestMeasureMaxTime(t *testing.T) {
	steps := make([]time.Duration, 100)
	for i := range steps {
		steps[i] = 40 * time.Millisecond
	}
	r := fakeRunner(steps)
	res, err := r.Measure(context.Background(), Spec{Group: "g", Name: "slow", N: 100, Warmup: -1, MaxTime: 100 * time.Millisecond},
		func(context.Context) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	if res.Iterations != 3 {
		t.Fatalf("ran %d iterations, want 3 (stop once past 100 ms with at least 3)", res.Iterations)
	}
}

func TestDerive(t *testing.T) {
	r := NewRunner("t", "test", true, Machine{}, nil)
	a := r.Add(Spec{Group: "g", Name: "a"}, []float64{10, 12, 11})
	b := r.Add(Spec{Group: "g", Name: "b"}, []float64{4, 5, 7})
	d := r.Derive(Spec{Group: "g", Name: "a-b", Original: "noise_injection"}, a, b)
	if !d.Derived || d.Iterations != 3 || d.P50 != 6 || d.Min != 4 || d.Max != 7 {
		t.Fatalf("paired derive: %+v", d)
	}
	if d.Published == nil || d.OursOverOriginal != 6/37.57 {
		t.Fatalf("derived figure beside the original: %+v, %v", d.Published, d.OursOverOriginal)
	}
	neg := r.Derive(specOf("g", "b-a", "noise_injection"), b, a)
	if neg.P50 >= 0 || neg.OursOverOriginal != 0 {
		t.Fatalf("a negative difference got a ratio: %+v", neg)
	}
	c := r.Add(Spec{Group: "g", Name: "c"}, []float64{1, 2})
	d2 := r.Derive(Spec{Group: "g", Name: "a-c"}, a, c)
	if d2.P50 != 11-1 || d2.Iterations != 2 {
		t.Fatalf("unpaired derive: %+v", d2)
	}
}

func specOf(group, name, original string) Spec {
	return Spec{Group: group, Name: name, Original: original}
}

func TestAddRatioAndSkip(t *testing.T) {
	var log bytes.Buffer
	r := NewRunner("t", "test", false, Machine{}, &log)
	rt := r.AddRatio("dp/plain", 3, 2, "x / y", "optim_step DP / plain (p50)")
	if rt.Value != 1.5 || rt.Original == nil || math.Abs(rt.Original.Value-65.05/8.42) > 1e-12 {
		t.Fatalf("ratio %+v", rt)
	}
	if z := r.AddRatio("zero", 1, 0, "", ""); z.Value != 0 {
		t.Fatalf("division by zero gave %v", z.Value)
	}
	r.Skip("rlvr", "package rlvr is not in this build")
	if !strings.Contains(log.String(), "rlvr     not available: package rlvr is not in this build") {
		t.Fatalf("progress log: %q", log.String())
	}
	rep := r.Finish()
	if len(rep.Ratios) != 2 || len(rep.Skipped) != 1 {
		t.Fatalf("report: %+v", rep)
	}
}

func TestWriteFilesRoundTrip(t *testing.T) {
	r := NewRunner("20261127T080000Z", "tensafe bench all --quick", true, ReadMachine("go"), nil)
	r.Param("shape", "tiny")
	fb := r.Add(Spec{Group: "engine", Name: "forward_backward (DP)", Original: "forward_backward", Unit: "batch of 8"}, []float64{20, 22, 21})
	plain := r.Add(Spec{Group: "engine", Name: "forward_backward (plain)", Unit: "batch | 8"}, []float64{10, 11, 12})
	r.Derive(Spec{Group: "dp", Name: "gradient_clipping", Original: "gradient_clipping"}, fb, plain)
	r.AddRatio("forward_backward DP / plain", fb.P50, plain.P50, "p50 / p50", "forward_backward DP / plain (p50)")
	r.Skip("he", "not in this build")
	rep := r.Finish()
	dir := filepath.Join(t.TempDir(), "reports", "bench", rep.ID)
	jp, mp, err := WriteFiles(dir, rep)
	if err != nil {
		t.Fatal(err)
	}
	back, err := ReadReport(jp)
	if err != nil {
		t.Fatal(err)
	}
	if len(back.Results) != 3 || back.Results[0].P50 != 21 || back.Results[0].Published.Text != "204.21 ms" ||
		back.Params["shape"] != "tiny" || back.Machine.Cores < 1 || back.Machine.GoVersion == "" {
		t.Fatalf("round trip: %+v", back)
	}
	md, err := os.ReadFile(mp)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"# TenSafe benchmark 20261127T080000Z",
		"| forward_backward (DP) | 21.0 | 22.0 | 21.0 | 3 | 204.21 ms | 0.103× | batch of 8 |",
		"batch / 8", // a | in a cell would break the table
		"gradient_clipping ‡",
		"| forward_backward DP / plain | 1.91× | p50 / p50 | 1.49× (204.21 ms / 136.63 ms) |",
		"- he: not available: not in this build",
		"load average (1/5/15 min) at start",
	} {
		if !strings.Contains(string(md), want) {
			t.Errorf("report.md lacks %q:\n%s", want, md)
		}
	}
	if err := os.WriteFile(jp, []byte(`{"format":"other"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadReport(jp); err == nil || !strings.Contains(err.Error(), "format") {
		t.Fatalf("ReadReport of a foreign format: %v", err)
	}
}

func TestFormatRatio(t *testing.T) {
	for in, want := range map[float64]string{0: "0×", 0.10285: "0.103×", 1.002: "1.00×", 1.4946: "1.49×", 7.7257: "7.73×", 38.86: "38.9×", 455.14: "455×", 6049.2: "6049×"} {
		if got := FormatRatio(in); got != want {
			t.Errorf("FormatRatio(%v) = %q, want %q", in, got, want)
		}
	}
}

func TestFormatMS(t *testing.T) {
	for in, want := range map[float64]string{0: "0", 204.21: "204", 12.34: "12.3", 1.234: "1.23", 0.0456: "0.046", 0.00123: "0.0012", -3.5: "-3.50"} {
		if got := FormatMS(in); got != want {
			t.Errorf("FormatMS(%v) = %q, want %q", in, got, want)
		}
	}
}
