//go:build !wasm

package weir

import "weir.local/weir/internal/fakehost"

// Natively the host is stderr for the log, and the in-memory fake of
// internal/fakehost (driven by weir.local/weir/weirtest) for state, timers and the
// span.

func hostLog(level Level, message string) { stderrLog(level, message) }

func linkTimers() {}

func stateGet(name string) ([]byte, bool) { return fakehost.Get(name) }

func stateSet(name string, value []byte) error {
	return limitError(fakehost.Set(name, value))
}

func stateDelete(name string) { fakehost.Delete(name) }

func stateExists(name string) bool { return fakehost.Exists(name) }

func stateEntries(after *string, max uint32) []StateEntry {
	var out []StateEntry
	for _, e := range fakehost.Entries(after, max) {
		out = append(out, StateEntry{Name: e.Name, Value: e.Value})
	}
	return out
}

func timerSet(name string, atMs int64, payload []byte) error {
	return limitError(fakehost.SetTimer(name, atMs, payload))
}

func timerCancel(name string) { fakehost.CancelTimer(name) }

func timerDue(name string) (int64, bool) { return fakehost.Due(name) }

func nowMs() int64 { return fakehost.NowMs() }

func spanRecording() bool { return fakehost.SpanRecording() }

func spanSetAttribute(key, value string) { fakehost.SpanSetAttribute(key, value) }

func spanAddEvent(name string, attributes []SpanAttribute) {
	pairs := make([][2]string, len(attributes))
	for i, a := range attributes {
		pairs[i] = [2]string{a.Key, a.Value}
	}
	fakehost.SpanAddEvent(name, pairs)
}

func limitError(refused string) error {
	if refused == "" {
		return nil
	}
	return &LimitError{Message: refused}
}
