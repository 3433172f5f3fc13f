//go:build !wasm

package weir

func hostLog(level Level, message string) { stderrLog(level, message) }
