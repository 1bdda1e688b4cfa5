//go:build xla

package compute

import _ "github.com/gomlx/gomlx/backends/xla" // XLA/PJRT backend (cgo)

const xlaCompiledIn = true
