// Package fakehost is the in-memory host behind package weir's state, timers and
// span on native builds, and what weir.local/weir/weirtest drives. It plays the host for
// one partition: entries and timers are kept per key, and every call is scoped to
// the current key, as the host scopes them to the record being handled. It knows
// nothing of package weir's types, so both can import it.
//
// It is not safe for concurrent use: tests that use it must not run in parallel.
package fakehost

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Limits are the slot's limits (`limits.state-value`, `limits.state-entries`,
// `limits.timers`); 0 is no limit.
type Limits struct {
	StateValue, StateEntries, Timers int
}

// Timer is a pending timer.
type Timer struct {
	Key     []byte // nil: records without a key
	Name    string
	DueMs   int64
	Payload []byte
}

// scope is a key as a map key: none and some(empty) are different keys, and scopes
// sort as their keys do, none first.
type scope string

func scopeOf(key []byte) scope {
	if key == nil {
		return "\x00"
	}
	return scope("\x01" + string(key))
}

type timerID struct {
	scope scope
	name  string
}

type host struct {
	key     []byte // the key calls are scoped to
	nowMs   int64
	entries map[scope]map[string][]byte
	timers  map[timerID]Timer
	limits  Limits
	// refused is the first write refused since the last Refused call: a handler that
	// returns successfully after one has its record dead-lettered as state-limit.
	refused string
	span    span
}

// span is the call span: whether it is sampled, and what the plugin added to it.
type span struct {
	recording  bool
	attributes [][2]string // in the order first set
	events     []SpanEvent
}

// SpanEvent is one event added to the span.
type SpanEvent struct {
	Name       string
	Attributes [][2]string
}

var h = fresh()

func fresh() host {
	return host{entries: map[scope]map[string][]byte{}, timers: map[timerID]Timer{}, span: span{recording: true}}
}

// Reset forgets every entry and timer and the span's attributes and events, and sets
// the key back to nil, the clock to 0, the limits to none and the span to recording.
func Reset() { h = fresh() }

// SetKey scopes later calls to key (nil: records without a key).
func SetKey(key []byte) { h.key = clone(key) }

// Key is the key calls are scoped to.
func Key() []byte { return clone(h.key) }

// SetNow sets the clock.
func SetNow(ms int64) { h.nowMs = ms }

// NowMs reads the clock.
func NowMs() int64 { return h.nowMs }

// SetLimits sets the limits that Set and SetTimer check.
func SetLimits(l Limits) { h.limits = l }

// Snapshot is the entries and timers at one moment, to go back to.
type Snapshot struct {
	entries map[scope]map[string][]byte
	timers  map[timerID]Timer
}

// Save takes a snapshot (values are never changed in place, so a shallow copy of
// each key's map is enough).
func Save() Snapshot {
	s := Snapshot{entries: map[scope]map[string][]byte{}, timers: maps.Clone(h.timers)}
	for k, m := range h.entries {
		s.entries[k] = maps.Clone(m)
	}
	return s
}

// Restore goes back to a snapshot, as the host drops the writes of a record that
// failed.
func Restore(s Snapshot) { h.entries, h.timers = s.entries, s.timers }

// Refused returns, and forgets, the first write refused since the last call ("" if
// none).
func Refused() string {
	r := h.refused
	h.refused = ""
	return r
}

func clone(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte{}, b...)
}

func (h *host) refuse(format string, args ...any) string {
	message := fmt.Sprintf(format, args...)
	if h.refused == "" {
		h.refused = message
	}
	return message
}

func (h *host) checkValue(what string, n int) string {
	if h.limits.StateValue > 0 && n > h.limits.StateValue {
		return h.refuse("%s of %d bytes is over limits.state-value (%d)", what, n, h.limits.StateValue)
	}
	return ""
}

// Get is state.get.
func Get(name string) ([]byte, bool) {
	v, ok := h.entries[scopeOf(h.key)][name]
	return clone(v), ok
}

// Set is state.set: "" or why it was refused.
func Set(name string, value []byte) string {
	if refused := h.checkValue("a state value", len(value)); refused != "" {
		return refused
	}
	s := scopeOf(h.key)
	m := h.entries[s]
	if _, ok := m[name]; !ok && h.limits.StateEntries > 0 && len(m) >= h.limits.StateEntries {
		return h.refuse("the key has %d entries already (limits.state-entries)", h.limits.StateEntries)
	}
	if m == nil {
		m = map[string][]byte{}
		h.entries[s] = m
	}
	v := clone(value)
	if v == nil {
		v = []byte{}
	}
	m[name] = v
	return ""
}

// Delete is state.delete.
func Delete(name string) {
	s := scopeOf(h.key)
	delete(h.entries[s], name)
	if len(h.entries[s]) == 0 {
		delete(h.entries, s)
	}
}

// Exists is state.exists.
func Exists(name string) bool {
	_, ok := h.entries[scopeOf(h.key)][name]
	return ok
}

// Entry is one of Entries'.
type Entry struct {
	Name  string
	Value []byte
}

// Entries is state.entries.
func Entries(after *string, max uint32) []Entry {
	m := h.entries[scopeOf(h.key)]
	var out []Entry
	for _, name := range slices.Sorted(maps.Keys(m)) {
		if uint32(len(out)) >= max {
			break
		}
		if after == nil || name > *after {
			out = append(out, Entry{name, clone(m[name])})
		}
	}
	return out
}

// SetTimer is timers.set: "" or why it was refused.
func SetTimer(name string, atMs int64, payload []byte) string {
	if refused := h.checkValue("a timer payload", len(payload)); refused != "" {
		return refused
	}
	id := timerID{scopeOf(h.key), name}
	if _, ok := h.timers[id]; !ok && h.limits.Timers > 0 && len(h.timers) >= h.limits.Timers {
		return h.refuse("the partition has %d pending timers already (limits.timers)", h.limits.Timers)
	}
	p := clone(payload)
	if p == nil {
		p = []byte{}
	}
	h.timers[id] = Timer{Key: clone(h.key), Name: name, DueMs: atMs, Payload: p}
	return ""
}

// CancelTimer is timers.cancel.
func CancelTimer(name string) { delete(h.timers, timerID{scopeOf(h.key), name}) }

// Due is timers.due.
func Due(name string) (int64, bool) {
	t, ok := h.timers[timerID{scopeOf(h.key), name}]
	return t.DueMs, ok
}

// Pending is every pending timer, in the order they fire: due time, then key (no
// key first), then name.
func Pending() []Timer {
	ts := slices.Collect(maps.Values(h.timers))
	slices.SortFunc(ts, func(a, b Timer) int {
		if a.DueMs != b.DueMs {
			if a.DueMs < b.DueMs {
				return -1
			}
			return 1
		}
		if c := strings.Compare(string(scopeOf(a.Key)), string(scopeOf(b.Key))); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	return ts
}

// TakeDue removes and returns the timers due at or before the clock, in the order
// they fire.
func TakeDue() []Timer {
	var due []Timer
	for _, t := range Pending() {
		if t.DueMs > h.nowMs {
			break
		}
		delete(h.timers, timerID{scopeOf(t.Key), t.Name})
		due = append(due, t)
	}
	return due
}

// TakeNext removes and returns the first timer due at or before the clock, if any.
func TakeNext() (Timer, bool) {
	pending := Pending()
	if len(pending) == 0 || pending[0].DueMs > h.nowMs {
		return Timer{}, false
	}
	t := pending[0]
	delete(h.timers, timerID{scopeOf(t.Key), t.Name})
	return t, true
}

// SpanRecording is span.recording.
func SpanRecording() bool { return h.span.recording }

// SetSpanRecording sets what SpanRecording says; an unsampled span drops what is
// added to it.
func SetSpanRecording(recording bool) { h.span.recording = recording }

// SpanSetAttribute is span.set-attribute: a key set again keeps its place.
func SpanSetAttribute(key, value string) {
	if !h.span.recording {
		return
	}
	for i, a := range h.span.attributes {
		if a[0] == key {
			h.span.attributes[i][1] = value
			return
		}
	}
	h.span.attributes = append(h.span.attributes, [2]string{key, value})
}

// SpanAddEvent is span.add-event.
func SpanAddEvent(name string, attributes [][2]string) {
	if h.span.recording {
		h.span.events = append(h.span.events, SpanEvent{Name: name, Attributes: slices.Clone(attributes)})
	}
}

// SpanAttributes returns the span's attributes, in the order first set.
func SpanAttributes() [][2]string { return slices.Clone(h.span.attributes) }

// SpanEvents returns the span's events, in order.
func SpanEvents() []SpanEvent { return slices.Clone(h.span.events) }

// ClearSpan forgets the span's attributes and events: a fresh span, as the host
// opens for each call.
func ClearSpan() { h.span.attributes, h.span.events = nil, nil }
