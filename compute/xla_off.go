//go:build !xla

package compute

const xlaCompiledIn = false
