// Package weirtest drives the in-memory host that package weir's state and timers
// use on native builds, so that a stateful plugin's logic runs under `go test`.
//
// The fake plays the host for one partition. Entries and timers are kept per key;
// every call is scoped to the current key, which SetKey chooses and HandleEvent and
// HandleTimer set to the event's or the timer's, as the host does. The clock stands
// still at SetNow's value (0 at first); TakeDueTimers and FireDue are what the host
// does when the clock has moved. HandleEvent and HandleTimer also keep the host's
// rule that a failed call writes nothing.
//
// The fake's span records what the plugin adds with weir.SpanSetAttribute and
// weir.SpanAddEvent: SpanAttributes and SpanEvents read it back. HandleEvent and
// HandleTimer start each call with a fresh span, as the host does (after FireDue, the
// span is that of the last timer's call); direct calls add to the same one until
// Reset or ClearSpan. It starts recording; SetRecording(false) makes it an unsampled
// span, which drops everything.
//
//	func TestReminderFires(t *testing.T) {
//		weirtest.Reset()
//		weir.Init(nil)
//		if _, err := weirtest.HandleEvent(weir.Event{Key: []byte("u1"), Value: created}); err != nil {
//			t.Fatal(err)
//		}
//		weirtest.SetNow(dueMs)
//		outputs, err := weirtest.FireDue() // the reminder, from the timer handler
//		...
//	}
//
// The fake is one per process: tests that use it must not run in parallel.
package weirtest

import (
	"weir.local/weir"
	"weir.local/weir/internal/fakehost"
)

// Topic and Partition are those of every timer the fake fires (`weir test`'s).
const (
	Topic           = "weir-test"
	Partition int32 = 0
)

// Limits are the slot's limits (`limits.state-value`, `limits.state-entries`,
// `limits.timers`); 0 is no limit, the fake's default.
type Limits = fakehost.Limits

// Reset forgets every entry and timer and the span's attributes and events, and sets
// the key back to nil, the clock to 0, the limits to none and the span to recording.
func Reset() { fakehost.Reset() }

// SetKey scopes later calls of weir.State* and weir.Timer* to key (nil: records
// without a key).
func SetKey(key []byte) { fakehost.SetKey(key) }

// SetNow sets the clock that weir.NowMs reads and TakeDueTimers compares with.
func SetNow(ms int64) { fakehost.SetNow(ms) }

// Advance moves the clock forward by ms.
func Advance(ms int64) { fakehost.SetNow(fakehost.NowMs() + ms) }

// SetLimits sets the limits that weir.StateSet and weir.TimerSet check.
func SetLimits(l Limits) { fakehost.SetLimits(l) }

// HandleEvent calls the registered event handler as the host does: with the calls
// scoped to e.Key, in a fresh span, and, if the handler fails, or returns successfully after a write
// was refused (the host then dead-letters the record as state-limit, and the error
// is a *weir.LimitError), with its writes undone.
func HandleEvent(e weir.Event) ([]weir.Output, error) {
	fakehost.SetKey(e.Key)
	fakehost.ClearSpan()
	return call(func() ([]weir.Output, error) { return weir.HandleEvent(e) })
}

// HandleTimer calls the registered timer handler as the host does, scoped to t.Key,
// in a fresh span; as HandleEvent.
func HandleTimer(t weir.FiredTimer) ([]weir.Output, error) {
	fakehost.SetKey(t.Key)
	fakehost.ClearSpan()
	return call(func() ([]weir.Output, error) { return weir.HandleTimer(t) })
}

func call(handler func() ([]weir.Output, error)) ([]weir.Output, error) {
	before := fakehost.Save()
	fakehost.Refused()
	outputs, err := handler()
	if refused := fakehost.Refused(); err == nil && refused != "" {
		err = &weir.LimitError{Message: refused}
	}
	if err != nil {
		fakehost.Restore(before)
		return nil, err
	}
	return outputs, nil
}

// TakeDueTimers removes and returns the timers of every key due at or before the
// clock, oldest first (then by key, no key first, and name). The current key is left
// as it was; HandleTimer scopes the calls to a timer's key.
func TakeDueTimers() []weir.FiredTimer {
	var fired []weir.FiredTimer
	for _, t := range fakehost.TakeDue() {
		fired = append(fired, firedTimer(t))
	}
	return fired
}

// Pending returns every pending timer, in the order they would fire.
func Pending() []weir.FiredTimer {
	var pending []weir.FiredTimer
	for _, t := range fakehost.Pending() {
		pending = append(pending, firedTimer(t))
	}
	return pending
}

// FireDue hands every timer due at or before the clock to HandleTimer, one at a
// time, oldest first (a timer that a handler sets due already fires too), and
// returns their outputs in that order. It stops at the first error, which names the
// timer; that timer is gone, as a dead-lettered one is.
func FireDue() ([]weir.Output, error) {
	var outputs []weir.Output
	for {
		// One at a time: a handler may set or cancel the others.
		next, ok := fakehost.TakeNext()
		if !ok {
			return outputs, nil
		}
		t := firedTimer(next)
		out, err := HandleTimer(t)
		if err != nil {
			return outputs, &TimerError{Timer: t, Err: err}
		}
		outputs = append(outputs, out...)
	}
}

// TimerError is a timer handler's error, from FireDue.
type TimerError struct {
	Timer weir.FiredTimer
	Err   error
}

func (e *TimerError) Error() string { return "timer " + e.Timer.Name + ": " + e.Err.Error() }

func (e *TimerError) Unwrap() error { return e.Err }

func firedTimer(t fakehost.Timer) weir.FiredTimer {
	return weir.FiredTimer{Name: t.Name, Key: t.Key, DueMs: t.DueMs, Payload: t.Payload, Topic: Topic, Partition: Partition}
}

// SpanEvent is one event the plugin added to its span.
type SpanEvent struct {
	Name       string
	Attributes []weir.SpanAttribute
}

// Attribute returns the value of the event's attribute key, if it has one.
func (e SpanEvent) Attribute(key string) (string, bool) {
	for _, a := range e.Attributes {
		if a.Key == key {
			return a.Value, true
		}
	}
	return "", false
}

// SetRecording sets what weir.SpanRecording says (true after Reset). An unsampled
// span drops what is added to it, as the host's does.
func SetRecording(recording bool) { fakehost.SetSpanRecording(recording) }

// ClearSpan forgets the span's attributes and events (the recording setting stays).
func ClearSpan() { fakehost.ClearSpan() }

// SpanAttributes returns the span's attributes in the order first set (a key set
// again keeps its place and has its last value).
func SpanAttributes() []weir.SpanAttribute {
	var out []weir.SpanAttribute
	for _, a := range fakehost.SpanAttributes() {
		out = append(out, weir.SpanAttribute{Key: a[0], Value: a[1]})
	}
	return out
}

// SpanAttribute returns the value of the span's attribute key, if it was set.
func SpanAttribute(key string) (string, bool) {
	for _, a := range fakehost.SpanAttributes() {
		if a[0] == key {
			return a[1], true
		}
	}
	return "", false
}

// SpanEvents returns the events added to the span, in order.
func SpanEvents() []SpanEvent {
	var out []SpanEvent
	for _, e := range fakehost.SpanEvents() {
		event := SpanEvent{Name: e.Name}
		for _, a := range e.Attributes {
			event.Attributes = append(event.Attributes, weir.SpanAttribute{Key: a[0], Value: a[1]})
		}
		out = append(out, event)
	}
	return out
}
