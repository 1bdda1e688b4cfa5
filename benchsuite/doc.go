// Package benchsuite is the measuring and reporting half of `tensafe bench`:
// it times operations (one untimed warm-up, then N timed runs), summarises
// them as p50, p95 and mean, records the machine they ran on, and writes one
// run as JSON and Markdown under reports/bench/<id>/.
//
// Why a package of its own: the numbers TenSafe publishes must be
// reproducible and honest about where they came from. Every figure in a
// report therefore carries its iteration count and a note on what one
// operation is, derived figures (a difference of two measured operations)
// say so, the machine's load average is taken at the start and at the end,
// and the published figures of the original Python TenSafe sit next to ours
// with the ratio, so that a reader compares like with like.
//
// The package measures and reports; it imports none of the components it
// measures. The benchmarks themselves live with the command
// (cmd/tensafe/bench_*.go), which calls the real packages.
package benchsuite
