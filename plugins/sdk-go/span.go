package weir

// The plugin's call span (WIT interface `span`, both worlds): the host opens an
// OpenTelemetry span around each call of the event handler or the timer handler, and
// these functions add attributes and events to it. With tracing off, or a record that
// is not sampled, they do nothing; ask SpanRecording first when an attribute is
// expensive to make. The host keeps at most 32 attributes and 32 events per call
// (keys and names up to 256 bytes, values up to 4 KiB) and drops the rest.
//
// Calling them does not change the world: a plugin imports `weir:plugin/span` only
// if it calls one. In a wasm build they are the host's imports (abi_wasm.go);
// natively, a recorder that weir.local/weir/weirtest reads.

// SpanAttribute is one attribute of a span event: a key and its value.
type SpanAttribute struct {
	Key   string
	Value string
}

// SpanRecording reports whether the current call's span is sampled: whether what is
// added to it reaches the trace.
func SpanRecording() bool { return spanRecording() }

// SpanSetAttribute sets an attribute of the call span (a later value for the same key
// replaces the earlier one).
func SpanSetAttribute(key, value string) { spanSetAttribute(key, value) }

// SpanAddEvent adds an event named name, timestamped now, with its attributes, to the
// call span.
func SpanAddEvent(name string, attributes ...SpanAttribute) { spanAddEvent(name, attributes) }
