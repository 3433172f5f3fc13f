// Package weir is the weir plugin SDK for Go: the types of the weir:plugin worlds
// (wit/plugin.wit, whose doc comments are the reference), the host's log, keyed
// state and timers, the call span, and the glue that exports a plugin's functions as
// the world's `init`, `handle-event` and (world `stateful-plugin`) `handle-timer`.
//
// A plugin is a main package built with standard Go for wasip1 as a reactor
// (-buildmode=c-shared) and made a component with wasm-tools and the WASI reactor
// adapter (scripts/build-plugin does all of it):
//
//	package main
//
//	import "weir.local/weir"
//
//	func init() { weir.Register(configure, handle) }
//
//	func configure(config weir.Config) error { return nil } // an error refuses the config
//
//	func handle(e weir.Event) ([]weir.Output, error) {
//		if e.Value == nil {
//			return nil, weir.Invalid("a tombstone")
//		}
//		return []weir.Output{{To: "out", Key: e.Key, Value: e.Value}}, nil
//	}
//
//	func main() {}
//
// Failures map onto the WIT `failure` variant: Invalid (the event is bad and never
// will be good: dead-letter queue at once) and Transient (retry with backoff). Any
// other error a handler returns, and any panic, traps the instance, like a Rust
// panic: the host counts a `trap`, replaces the instance and retries.
//
// A plugin that uses keyed state or timers (StateGet, StateSet, ..., TimerSet, ...,
// NowMs), or registers a timer handler (RegisterTimerHandler), is a
// `stateful-plugin`: its module imports `weir:plugin/state` or `weir:plugin/timers`,
// and the build (cmd/weir-go-link) picks the world from that. Any other plugin is
// built against the plain `plugin` world, as before.
//
// Any plugin may add attributes and events to the span the host opens around each
// call (SpanRecording, SpanSetAttribute, SpanAddEvent); that does not change the
// world.
//
// Everything but the glue (abi_wasm.go) builds natively, so plugin logic can be
// unit-tested with `go test`; natively, state, timers and the span are an in-memory
// fake that package weir.local/weir/weirtest drives.
package weir

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"unicode/utf8"
)

// Header is one record header. A header whose value was null on the wire arrives
// with an empty Value.
type Header struct {
	Key   string
	Value []byte
}

// TextHeader is a header whose value is the text value in UTF-8, as the Rust SDK's
// Header::text. It only builds headers: a received header's value is bytes. A string
// that is not valid UTF-8 is not text: TextHeader panics.
func TextHeader(key, value string) Header {
	if !utf8.ValidString(value) {
		panic("weir.TextHeader(" + strconv.Quote(key) + "): the value is not valid UTF-8, so it is not text")
	}
	return Header{Key: key, Value: []byte(value)}
}

// Event is one record to handle. Key is nil for a record without a key, Value nil
// for a tombstone (an empty value is a non-nil empty slice).
type Event struct {
	Topic       string
	Partition   int32
	Offset      int64
	TimestampMs *int64
	Key         []byte
	Value       []byte
	Headers     []Header
}

// Header returns the value of the first header named key, if any.
func (e *Event) Header(key string) ([]byte, bool) {
	for _, h := range e.Headers {
		if h.Key == key {
			return h.Value, true
		}
	}
	return nil, false
}

// Output is one record to emit. To is a logical output name of the pipeline; a nil
// Key produces no key and a nil Value a tombstone.
type Output struct {
	To      string
	Key     []byte
	Value   []byte
	Headers []Header
}

// ConfigEntry is one entry of the pipeline's config table for the plugin.
type ConfigEntry struct {
	Key, Value string
}

// Config is the plugin's config table, in order.
type Config []ConfigEntry

// Get returns the first value of key, like the Rust SDK's config_value.
func (c Config) Get(key string) (string, bool) {
	for _, e := range c {
		if e.Key == key {
			return e.Value, true
		}
	}
	return "", false
}

// Failure is a handled failure: the WIT `failure` variant.
type Failure struct {
	// Transient is false for `invalid` (dead-letter queue at once) and true for
	// `transient` (retry with backoff).
	Transient bool
	Message   string
}

func (f *Failure) Error() string { return f.Message }

// Invalid fails the event for good: it goes to the dead-letter queue at once, with
// this message in weir.error.message. Name the field and the problem.
func Invalid(format string, args ...any) error {
	return &Failure{Message: sprintf(format, args)}
}

// Transient fails the event for now: the host retries it with backoff.
func Transient(format string, args ...any) error {
	return &Failure{Transient: true, Message: sprintf(format, args)}
}

func sprintf(format string, args []any) string {
	if len(args) == 0 {
		return format
	}
	return fmt.Sprintf(format, args...)
}

// failureOf finds the *Failure (possibly wrapped) in an error returned by a
// handler, or nil: any other error is a bug, and the glue traps on it.
func failureOf(err error) *Failure {
	var f *Failure
	if errors.As(err, &f) {
		return f
	}
	return nil
}

// Level is the severity of a log line.
type Level uint8

const (
	Trace Level = iota
	Debug
	Info
	Warn
	Error
)

// Log writes a line to the host's log (natively: to stderr).
func Log(level Level, format string, args ...any) {
	hostLog(level, sprintf(format, args))
}

var levelNames = [...]string{"trace", "debug", "info", "warn", "error"}

func stderrLog(level Level, message string) {
	fmt.Fprintf(os.Stderr, "[%s] %s\n", levelNames[level], message)
}

// FiredTimer is a timer that came due, handed to the timer handler. During the
// call, state and timers are scoped to its Key.
type FiredTimer struct {
	// Name is the timer's name, as given to TimerSet.
	Name string
	// Key is the key of the records the timer belongs to; nil for records without
	// a key.
	Key []byte
	// DueMs is when the timer was due, milliseconds since the Unix epoch.
	DueMs int64
	// Payload is the payload given to TimerSet (never nil).
	Payload []byte
	// Topic and Partition are the source topic and partition whose key the timer
	// belongs to.
	Topic     string
	Partition int32
}

var (
	initFn   func(Config) error
	handleFn func(Event) ([]Output, error)
	timerFn  func(FiredTimer) ([]Output, error)
)

// Register sets the plugin's functions; call it from the main package's init().
// configure may be nil.
func Register(configure func(Config) error, handle func(Event) ([]Output, error)) {
	initFn, handleFn = configure, handle
}

// Init calls the registered configure function (for tests and the glue).
func Init(config Config) error {
	if initFn == nil {
		return nil
	}
	return initFn(config)
}

// HandleEvent calls the registered handle function (for tests and the glue).
func HandleEvent(e Event) ([]Output, error) {
	if handleFn == nil {
		return nil, Transient("no plugin registered: call weir.Register in init()")
	}
	return handleFn(e)
}

// RegisterTimerHandler sets the function the host calls when one of the plugin's
// timers comes due; call it from the main package's init(), next to Register. Its
// outputs are routed like those of the event handler, and its failures retried and
// dead-lettered the same way. A plugin with a timer handler is a stateful-plugin
// even if it never sets a timer itself (an earlier version may have).
func RegisterTimerHandler(handle func(FiredTimer) ([]Output, error)) {
	timerFn = handle
	linkTimers()
}

// HandleTimer calls the registered timer handler (for tests and the glue).
func HandleTimer(t FiredTimer) ([]Output, error) {
	if timerFn == nil {
		return nil, Invalid("timer %q fired, but no timer handler is registered: call weir.RegisterTimerHandler in init()", t.Name)
	}
	return timerFn(t)
}
