# TenSafe developer targets. Everything here is a thin wrapper over `go` and
# the `tensafe` binary; see docs/PERFORMANCE.md for the benchmark targets.

GO       ?= go
BIN      ?= ./tensafe
DATA_DIR ?= tensafe-data
ADDR     ?= 127.0.0.1:8080
NOTE     ?=

# Packages whose tests drive a server (in process, or the binary).
INTEGRATION_PKGS := ./client/ ./server/ ./service/ ./cmd/tensafe/

.PHONY: build dev serve test test-unit test-integration test-e2e test-e2e-full \
        bench bench-full bench-comparison compliance gpu-bench clean-reports

build:
	$(GO) build -o $(BIN) ./cmd/tensafe

# dev: build, vet and format-check, then the quickstart against an embedded
# server in a throwaway data dir (a one-minute smoke test of the whole stack).
dev: build
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }
	$(BIN) quickstart --steps 5 --data-dir "$$(mktemp -d)"

# serve: the API server on embedded defaults (SQLite, local keyring,
# encrypted artifacts and the audit log under $(DATA_DIR)).
serve: build
	$(BIN) serve --data-dir $(DATA_DIR) --addr $(ADDR)

# test: the README's test command (unit, integration and the short e2e).
test:
	$(GO) test ./...

test-unit:
	$(GO) test -short $$($(GO) list ./... | grep -v -e /e2e -e /client -e /server -e /service -e /cmd/tensafe)

test-integration:
	$(GO) test $(INTEGRATION_PKGS)

# test-e2e: the binary as a process: Go and Python SDKs, TSSP, audit, evidence.
test-e2e:
	$(GO) test -count=1 -v -run TestEndToEnd ./e2e/

# test-e2e-full: the same with ten minutes of DP training; the step metrics
# go to reports/e2e/<id>-full.json (TENSAFE_E2E_DURATION=5m to change).
test-e2e-full:
	TENSAFE_E2E_FULL=1 $(GO) test -count=1 -v -timeout 45m -run TestEndToEnd ./e2e/

# bench: every part of the suite, quick (a few minutes); writes
# reports/bench/<id>/report.json and report.md.
bench: build
	$(BIN) bench all --quick --note "$(NOTE)"

bench-full: build
	$(BIN) bench all --note "$(NOTE)"

# bench-comparison: the same training with every privacy feature and without,
# alternating; reports DP step / plain step and encrypted / plaintext checkpoint.
bench-comparison: build
	$(BIN) bench comparison --note "$(NOTE)"

# compliance: an evidence pack from the server `make serve` runs (admin key
# from $(DATA_DIR)/admin.key), written to reports/compliance/<id>/.
compliance: build
	$(BIN) compliance evidence --server http://$(ADDR) --api-key-file $(DATA_DIR)/admin.key

# gpu-bench: the engine on an NVIDIA GPU through GoMLX's XLA backend (needs cgo
# and JAX's CUDA plugin; see scripts/gpu/bench.sh). Reports in reports/gpu/.
gpu-bench:
	$(GO) build -tags xla -o tensafe-xla ./cmd/tensafe
	TENSAFE_BIN=./tensafe-xla scripts/gpu/bench.sh

clean-reports:
	rm -rf reports/bench reports/e2e
