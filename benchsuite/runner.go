package benchsuite

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
)

// Format names the report's JSON format.
const Format = "tensafe-bench-report/v1"

// Spec says what one measurement is.
type Spec struct {
	Group string // "engine", "privacy", "crypto", ...
	Name  string // the operation, e.g. "forward_backward (DP)"
	// Original names the original TenSafe's component whose published
	// figure this one compares with (see Published); "" for none.
	Original string
	N        int    // timed iterations (at least 1)
	Warmup   int    // untimed iterations first; 0 means 1, negative none
	Unit     string // what one operation is, e.g. "step of 8 examples"
	Note     string
	// MaxTime stops the measurement early, after at least 3 timed
	// iterations, once the timed iterations have taken this long (0: no
	// limit). The report gives the iterations actually run.
	MaxTime time.Duration
}

// Result is one measured (or derived) operation.
type Result struct {
	Group      string  `json:"group"`
	Name       string  `json:"name"`
	Iterations int     `json:"iterations"`
	Unit       string  `json:"unit,omitempty"`
	Note       string  `json:"note,omitempty"`
	Derived    bool    `json:"derived,omitempty"` // a difference of measured operations, not timed itself
	Original   string  `json:"original_component,omitempty"`
	Published  *Figure `json:"original,omitempty"`
	// OursOverOriginal is our p50 over the original's published p50 (0
	// where the original published no comparable p50).
	OursOverOriginal float64 `json:"ours_over_original,omitempty"`
	Stats

	samples []float64
}

// Samples returns the timed durations in milliseconds, in run order.
func (r *Result) Samples() []float64 { return r.samples }

// Ratio is a quotient of two measured figures.
type Ratio struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	Of    string  `json:"of"` // what was divided by what
	// Original is the original TenSafe's published ratio, where there is one.
	Original *OriginalRatio `json:"original,omitempty"`
}

// Skip records a part that was not measured and why.
type Skip struct {
	Group  string `json:"group"`
	Reason string `json:"reason"`
}

// Report is one run of the suite.
type Report struct {
	Format     string            `json:"format"`
	ID         string            `json:"id"`
	Command    string            `json:"command"`
	Quick      bool              `json:"quick"`
	Started    time.Time         `json:"started"`
	Finished   time.Time         `json:"finished"`
	DurationS  float64           `json:"duration_s"`
	Machine    Machine           `json:"machine"`
	LoadAvgEnd [3]float64        `json:"load_avg_end"`
	Params     map[string]string `json:"params,omitempty"` // workload parameters (model shape, batch, ...)
	Results    []*Result         `json:"results"`
	Ratios     []Ratio           `json:"ratios,omitempty"`
	Skipped    []Skip            `json:"skipped,omitempty"`
}

// Runner times operations and collects them into a Report. It is not safe
// for concurrent use: measurements run one at a time so that they do not
// disturb each other.
type Runner struct {
	rep      *Report
	progress io.Writer
	bars     bool // progress bars only on a terminal; a log gets the result lines
	now      func() time.Time
}

// NewRunner starts a run: it reads the machine (load average included) now.
// progress, if not nil, gets a line for each result and, on a terminal, a
// progress bar for each measurement.
func NewRunner(id, command string, quick bool, m Machine, progress io.Writer) *Runner {
	return &Runner{
		rep: &Report{Format: Format, ID: id, Command: command, Quick: quick, Started: time.Now().UTC(),
			Machine: m, Params: map[string]string{}},
		progress: progress,
		bars:     isTerminal(progress),
		now:      time.Now,
	}
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// Quick reports whether this is a quick run.
func (r *Runner) Quick() bool { return r.rep.Quick }

// Param records a workload parameter.
func (r *Runner) Param(key, value string) { r.rep.Params[key] = value }

// Logf writes a line of progress.
func (r *Runner) Logf(format string, args ...any) {
	if r.progress != nil {
		fmt.Fprintf(r.progress, format+"\n", args...)
	}
}

// ErrNoIterations is returned for a Spec with N < 1.
var ErrNoIterations = errors.New("benchsuite: a measurement needs at least one iteration")

// Measure runs op Warmup times untimed, then up to s.N times timed, and
// records the result. The first error from op ends the measurement and is
// returned wrapped with the operation's name; nothing is recorded then.
func (r *Runner) Measure(ctx context.Context, s Spec, op func(ctx context.Context) error) (*Result, error) {
	if s.N < 1 {
		return nil, fmt.Errorf("%s/%s: %w", s.Group, s.Name, ErrNoIterations)
	}
	warm := s.Warmup
	if warm == 0 {
		warm = 1
	}
	for range max(0, warm) {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err := op(ctx); err != nil {
			return nil, fmt.Errorf("%s/%s (warm-up): %w", s.Group, s.Name, err)
		}
	}
	bar := r.bar(s)
	samples := make([]float64, 0, s.N)
	var total time.Duration
	for i := 0; i < s.N; i++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		t0 := r.now()
		err := op(ctx)
		d := r.now().Sub(t0)
		if err != nil {
			if bar != nil {
				_ = bar.Clear()
			}
			return nil, fmt.Errorf("%s/%s: %w", s.Group, s.Name, err)
		}
		samples = append(samples, float64(d.Nanoseconds())/1e6)
		total += d
		if bar != nil {
			_ = bar.Add(1)
		}
		if s.MaxTime > 0 && total > s.MaxTime && len(samples) >= 3 {
			break
		}
	}
	if bar != nil {
		_ = bar.Finish()
	}
	res := &Result{Group: s.Group, Name: s.Name, Iterations: len(samples), Unit: s.Unit, Note: s.Note,
		Stats: Summarize(samples), samples: samples}
	r.attach(res, s.Original)
	return res, nil
}

// Derive records a figure computed as minuend − subtrahend, pairing their
// samples in run order where both have the same count (measurements that
// alternated), else from their summaries. It is marked Derived.
func (r *Runner) Derive(s Spec, minuend, subtrahend *Result) *Result {
	res := &Result{Group: s.Group, Name: s.Name, Unit: s.Unit, Note: s.Note, Derived: true}
	a, b := minuend.samples, subtrahend.samples
	if len(a) == len(b) && len(a) > 0 {
		d := make([]float64, len(a))
		for i := range a {
			d[i] = a[i] - b[i]
		}
		res.Stats, res.samples, res.Iterations = Summarize(d), d, len(d)
	} else {
		res.Stats = Stats{P50: minuend.P50 - subtrahend.P50, P95: minuend.P95 - subtrahend.P95,
			Mean: minuend.Mean - subtrahend.Mean, Min: minuend.Min - subtrahend.Max, Max: minuend.Max - subtrahend.Min}
		res.Iterations = min(minuend.Iterations, subtrahend.Iterations)
	}
	r.attach(res, s.Original)
	return res
}

// Add records a result measured elsewhere (its samples in milliseconds).
func (r *Runner) Add(s Spec, samplesMS []float64) *Result {
	res := &Result{Group: s.Group, Name: s.Name, Iterations: len(samplesMS), Unit: s.Unit, Note: s.Note,
		Stats: Summarize(samplesMS), samples: samplesMS}
	r.attach(res, s.Original)
	return res
}

func (r *Runner) attach(res *Result, original string) {
	if original != "" {
		res.Original = original
		if f, ok := Published(original); ok {
			res.Published = &f
			if f.P50 > 0 && res.P50 > 0 { // a derived difference may be ≤ 0: no ratio then
				res.OursOverOriginal = res.P50 / f.P50
			}
		}
	}
	r.rep.Results = append(r.rep.Results, res)
	if r.progress != nil {
		d := ""
		if res.Derived {
			d = " (derived)"
		}
		fmt.Fprintf(r.progress, "%-8s %-44s p50 %10s  p95 %10s  mean %10s ms  n=%d%s\n",
			res.Group, res.Name, FormatMS(res.P50), FormatMS(res.P95), FormatMS(res.Mean), res.Iterations, d)
	}
}

// AddRatio records num/den (both p50) under name; original, if not empty,
// names the original's published ratio (PublishedRatios) to show beside it.
func (r *Runner) AddRatio(name string, num, den float64, of, original string) Ratio {
	rt := Ratio{Name: name, Of: of}
	if den != 0 {
		rt.Value = num / den
	}
	for _, o := range PublishedRatios() {
		if o.Name == original {
			rt.Original = &o
		}
	}
	r.rep.Ratios = append(r.rep.Ratios, rt)
	r.Logf("ratio    %-44s %.3f× (%s)", name, rt.Value, of)
	return rt
}

// Skip records that group (or a part of it) was not measured, and says so.
func (r *Runner) Skip(group, reason string) {
	r.rep.Skipped = append(r.rep.Skipped, Skip{Group: group, Reason: reason})
	r.Logf("%-8s not available: %s", group, reason)
}

// Finish closes the run (end time, load average at the end) and returns
// the report.
func (r *Runner) Finish() *Report {
	r.rep.Finished = time.Now().UTC()
	r.rep.DurationS = r.rep.Finished.Sub(r.rep.Started).Seconds()
	r.rep.LoadAvgEnd, _ = LoadAvg()
	return r.rep
}

func (r *Runner) bar(s Spec) *progressbar.ProgressBar {
	if !r.bars || s.N < 5 {
		return nil
	}
	return progressbar.NewOptions(s.N,
		progressbar.OptionSetWriter(r.progress),
		progressbar.OptionSetDescription(fmt.Sprintf("%-8s %-30s", s.Group, s.Name)),
		progressbar.OptionSetWidth(24),
		progressbar.OptionShowCount(),
		progressbar.OptionThrottle(200*time.Millisecond),
		progressbar.OptionClearOnFinish(),
	)
}

// FormatMS prints milliseconds with precision that suits their size.
func FormatMS(ms float64) string {
	a := ms
	if a < 0 {
		a = -a
	}
	switch {
	case a == 0:
		return "0"
	case a >= 100:
		return fmt.Sprintf("%.0f", ms)
	case a >= 10:
		return fmt.Sprintf("%.1f", ms)
	case a >= 1:
		return fmt.Sprintf("%.2f", ms)
	case a >= 0.01:
		return fmt.Sprintf("%.3f", ms)
	default:
		return fmt.Sprintf("%.4f", ms)
	}
}

// Progress starts a progress bar of n steps for work timed outside Measure
// (measurements that alternate, for instance): tick advances it, done
// clears it. Without a progress writer both do nothing.
func (r *Runner) Progress(desc string, n int) (tick, done func()) {
	if !r.bars || n < 1 {
		return func() {}, func() {}
	}
	bar := r.bar(Spec{Name: desc, N: max(n, 5)})
	bar.ChangeMax(n)
	return func() { _ = bar.Add(1) }, func() { _ = bar.Finish() }
}
