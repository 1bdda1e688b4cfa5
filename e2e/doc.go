// Package e2e holds TenSafe's end-to-end tests: the `tensafe` binary is
// built and started as a user would start it (`tensafe serve` on a loopback
// port over a fresh data directory), and the tests drive it from the
// outside — the Go SDK, the Python SDK when a python3 is present, the CLI —
// through a whole DP fine-tune: train, sample, checkpoint, package as TSSP,
// verify and open the package, verify the audit chain (through the API and
// again offline from the database after the server has stopped) and
// produce a compliance evidence pack.
//
// Why a package of its own: the unit and integration tests run the server in
// process; only a separate process catches what a user meets first —
// flags, the data directory's files and modes, the printed address, signal
// handling, a second client language.
//
// The short run is part of `go test ./...` (well under five minutes).
// TENSAFE_E2E_FULL=1 (make test-e2e-full) trains for ten minutes
// (TENSAFE_E2E_DURATION to change it) and writes the step metrics to
// reports/e2e/<id>.json. A step whose piece is not in this build (server-
// side packaging, evidence packs) is skipped with a "not available" line.
package e2e
