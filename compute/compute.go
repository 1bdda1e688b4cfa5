// Package compute chooses and configures the GoMLX backend TenSafe's model
// and engine run on, and carries the fixes TenSafe needs on top of GoMLX
// v0.26.0 (the only version the module proxy serves).
//
// The pure-Go backend ("go") is the default everywhere: it needs no C
// libraries and runs in CI. The XLA backend (GPUs) is compiled in with the
// build tag "xla" and chosen with GOMLX_BACKEND (e.g. "xla:cuda"); see the
// README.
//
// Two v0.26.0 traps are handled here:
//
//   - The pure-Go backend can deadlock on small machines with its default
//     parallel op scheduling (all workers waiting in WaitToStart). The default
//     configuration is therefore "go:ops_sequential", which still runs each
//     matrix multiplication on all cores.
//   - The stock gradient of DotGeneral (every matmul and einsum) is a
//     broadcast multiply followed by ReduceSum, about 10× slower than a
//     matmul. matmulVJP replaces it with two DotGenerals; see vjp.go.
package compute

import (
	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/gomlx/gomlx/backends"
	_ "github.com/gomlx/gomlx/backends/simplego" // the pure-Go backend
)

// DefaultConfig is the backend configuration used when GOMLX_BACKEND is unset.
const DefaultConfig = "go:ops_sequential"

var (
	shared     backends.Backend
	sharedErr  error
	sharedOnce sync.Once
)

// Backend returns the process's backend, created on first use from
// GOMLX_BACKEND or DefaultConfig. A backend owns device memory and worker
// pools, so a process uses one.
func Backend() (backends.Backend, error) {
	sharedOnce.Do(func() {
		config := os.Getenv(backends.ConfigEnvVar)
		if config == "" {
			config = DefaultConfig
		}
		shared, sharedErr = New(config)
	})
	return shared, sharedErr
}

// New creates a backend from a configuration string such as "go",
// "go:ops_sequential" or "xla:cuda".
func New(config string) (b backends.Backend, err error) {
	InstallFixes()
	name, _, _ := strings.Cut(config, ":")
	if name == "xla" && !xlaCompiledIn {
		return nil, fmt.Errorf("compute: backend %q needs a build with -tags xla (cgo and the PJRT plugin)", config)
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("compute: backend %q: %v", config, r)
		}
	}()
	b, err = backends.NewWithConfig(config)
	if err != nil {
		return nil, fmt.Errorf("compute: backend %q: %w", config, err)
	}
	return b, nil
}
