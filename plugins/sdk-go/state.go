package weir

// Keyed state and processing-time timers (WIT interfaces `state` and `timers`, world
// `stateful-plugin`). Every function is scoped to the key of the record being handled,
// or of the timer that fired, and to the plugin's place in its pipeline. Writes are
// visible to later calls at once and become durable with the record that made them;
// a record that ends in the dead-letter queue leaves the state as it was.
//
// Calling any of them (or RegisterTimerHandler) makes the plugin a stateful-plugin:
// see the package documentation. In a wasm build they are the host's imports
// (abi_wasm.go); natively, an in-memory fake (state_native.go, driven by
// weir.local/weir/weirtest).

// LimitError is a write the host refused, having written nothing: a value or payload
// over `limits.state-value` bytes, a key with `limits.state-entries` entries already,
// a partition with `limits.timers` pending timers. A handler may react to it (write
// less, or fail with Invalid). If it returns the error as it is (possibly wrapped), or
// returns normally, the host dead-letters the record as `state-limit`.
type LimitError struct {
	// Message is the host's, naming the limit.
	Message string
}

func (e *LimitError) Error() string { return e.Message }

// StateEntry is one entry of the key's state.
type StateEntry struct {
	Name  string
	Value []byte
}

// StateGet returns the entry name, if set (a set entry's value is never nil).
func StateGet(name string) ([]byte, bool) { return stateGet(name) }

// StateSet sets the entry name. A *LimitError when the host refuses it.
func StateSet(name string, value []byte) error { return stateSet(name, value) }

// StateDelete deletes the entry name (nothing happens if it is not set).
func StateDelete(name string) { stateDelete(name) }

// StateExists reports whether the entry name is set.
func StateExists(name string) bool { return stateExists(name) }

// StateEntries returns the key's entries in name order: at most max of them, with
// names after *after (from the first when after is nil). Page on with the last name
// returned.
func StateEntries(after *string, max uint32) []StateEntry { return stateEntries(after, max) }

// TimerSet creates the key's timer name, or replaces it (new due time and payload),
// due at atMs milliseconds since the Unix epoch (a time already past fires as soon as
// possible). A *LimitError (nothing set) when the host refuses it.
func TimerSet(name string, atMs int64, payload []byte) error {
	return timerSet(name, atMs, payload)
}

// TimerCancel cancels the key's timer name (nothing happens if there is none).
func TimerCancel(name string) { timerCancel(name) }

// TimerDue returns when the key's timer name is due, if it is pending.
func TimerDue(name string) (int64, bool) { return timerDue(name) }

// NowMs is the host's clock, milliseconds since the Unix epoch: the clock timers
// follow (`weir test` moves it by its input's `advance` lines; natively, weirtest's).
func NowMs() int64 { return nowMs() }
