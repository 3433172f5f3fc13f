package weirtest

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"weir.local/weir"
)

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func get(name string) string {
	v, ok := weir.StateGet(name)
	if !ok {
		return "<unset>"
	}
	return string(v)
}

func TestEntriesAreScopedToTheKey(t *testing.T) {
	Reset()
	SetKey([]byte("a"))
	must(t, weir.StateSet("x", []byte("1")))
	if !weir.StateExists("x") {
		t.Fatal("x is not set")
	}
	SetKey([]byte("b"))
	if weir.StateExists("x") || get("x") != "<unset>" {
		t.Fatal("b sees a's entry")
	}
	SetKey([]byte{}) // an empty key is a key, not the absence of one
	must(t, weir.StateSet("x", []byte("empty")))
	SetKey(nil)
	must(t, weir.StateSet("x", []byte("none")))
	SetKey([]byte("a"))
	if get("x") != "1" {
		t.Fatalf("a: got %q", get("x"))
	}
	weir.StateDelete("x")
	weir.StateDelete("x")
	if get("x") != "<unset>" {
		t.Fatal("x is still set")
	}
	SetKey(nil)
	if get("x") != "none" {
		t.Fatalf("no key: got %q", get("x"))
	}
	SetKey([]byte{})
	if get("x") != "empty" {
		t.Fatalf("empty key: got %q", get("x"))
	}
	must(t, weir.StateSet("nil", nil))
	if v, ok := weir.StateGet("nil"); !ok || v == nil || len(v) != 0 {
		t.Fatalf("an empty value: got %v, %v", v, ok)
	}
}

func TestEntriesPageInNameOrder(t *testing.T) {
	Reset()
	for _, name := range []string{"c", "a", "b", "d"} {
		must(t, weir.StateSet(name, []byte(name)))
	}
	names := func(after *string, max uint32) []string {
		var out []string
		for _, e := range weir.StateEntries(after, max) {
			out = append(out, e.Name)
		}
		return out
	}
	ptr := func(s string) *string { return &s }
	for _, c := range []struct {
		after *string
		max   uint32
		want  []string
	}{
		{nil, 2, []string{"a", "b"}},
		{ptr("b"), 10, []string{"c", "d"}},
		{ptr("bb"), 1, []string{"c"}},
		{ptr("d"), 10, nil},
		{nil, 0, nil},
	} {
		if got := names(c.after, c.max); !reflect.DeepEqual(got, c.want) {
			t.Errorf("entries(%v, %d): got %v, want %v", c.after, c.max, got, c.want)
		}
	}
	if got := weir.StateEntries(nil, 1); !reflect.DeepEqual(got, []weir.StateEntry{{Name: "a", Value: []byte("a")}}) {
		t.Errorf("got %v", got)
	}
}

func TestTimersFireOnceInDueOrder(t *testing.T) {
	Reset()
	SetKey([]byte("k1"))
	must(t, weir.TimerSet("late", 300, []byte("l")))
	must(t, weir.TimerSet("early", 100, []byte("e")))
	SetKey([]byte("k2"))
	must(t, weir.TimerSet("early", 100, []byte("e2")))
	must(t, weir.TimerSet("gone", 50, nil))
	weir.TimerCancel("gone")
	weir.TimerCancel("never-set")
	// Replacing moves the due time and the payload.
	must(t, weir.TimerSet("mid", 500, []byte("old")))
	must(t, weir.TimerSet("mid", 200, []byte("m")))
	if due, ok := weir.TimerDue("mid"); !ok || due != 200 {
		t.Fatalf("due(mid): %d, %v", due, ok)
	}
	if _, ok := weir.TimerDue("late"); ok {
		t.Fatal("k1's timer is not k2's")
	}
	if len(TakeDueTimers()) != 0 {
		t.Fatal("nothing is due at 0")
	}
	SetNow(250)
	if weir.NowMs() != 250 {
		t.Fatalf("now: %d", weir.NowMs())
	}
	want := []weir.FiredTimer{
		{Name: "early", Key: []byte("k1"), DueMs: 100, Payload: []byte("e"), Topic: Topic},
		{Name: "early", Key: []byte("k2"), DueMs: 100, Payload: []byte("e2"), Topic: Topic},
		{Name: "mid", Key: []byte("k2"), DueMs: 200, Payload: []byte("m"), Topic: Topic},
	}
	if got := TakeDueTimers(); !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
	if len(TakeDueTimers()) != 0 {
		t.Fatal("a timer fires once")
	}
	if _, ok := weir.TimerDue("mid"); ok {
		t.Fatal("a fired timer is gone")
	}
	if p := Pending(); len(p) != 1 || p[0].Name != "late" {
		t.Fatalf("pending: %+v", p)
	}
}

func TestLimitsRefuseWritesAndWriteNothing(t *testing.T) {
	Reset()
	SetLimits(Limits{StateValue: 4, StateEntries: 2, Timers: 1})
	var limit *weir.LimitError
	if err := weir.StateSet("big", []byte("12345")); !errors.As(err, &limit) || !strings.Contains(limit.Message, "state-value") {
		t.Fatalf("got %v", err)
	}
	if weir.StateExists("big") {
		t.Fatal("a refused write wrote")
	}
	must(t, weir.StateSet("a", []byte("1")))
	must(t, weir.StateSet("b", []byte("2")))
	if err := weir.StateSet("c", []byte("3")); err == nil || !strings.Contains(err.Error(), "state-entries") {
		t.Fatalf("got %v", err)
	}
	must(t, weir.StateSet("a", []byte("11"))) // replacing is not a new entry
	SetKey([]byte("other"))
	must(t, weir.StateSet("c", []byte("3"))) // the entry limit is per key
	must(t, weir.TimerSet("t", 1, nil))
	must(t, weir.TimerSet("t", 2, nil)) // replacing is not a new timer
	SetKey(nil)
	if err := weir.TimerSet("u", 1, nil); err == nil || !strings.Contains(err.Error(), "limits.timers") {
		t.Fatalf("got %v", err)
	}
	if err := weir.TimerSet("u", 1, []byte("12345")); err == nil || !strings.Contains(err.Error(), "state-value") {
		t.Fatalf("got %v", err)
	}
	if _, ok := weir.TimerDue("u"); ok {
		t.Fatal("a refused timer was set")
	}
	Reset()
	must(t, weir.StateSet("big", make([]byte, 100)))
}

// A plugin for the handler tests: counts events per key, sets a timer per event
// that fires the count, and fails or overflows on request.
func register() {
	weir.Register(nil, func(e weir.Event) ([]weir.Output, error) {
		n, _ := weir.StateGet("n")
		n = append(n, '+')
		if err := weir.StateSet("n", n); err != nil {
			return nil, err
		}
		if err := weir.TimerSet("fire", weir.NowMs()+10, e.Value); err != nil {
			return nil, err
		}
		switch string(e.Value) {
		case "fail":
			return nil, weir.Invalid("asked to fail")
		case "big":
			weir.StateSet("big", make([]byte, 100)) // refused; returns anyway
		}
		return []weir.Output{{To: "out", Value: n}}, nil
	})
	weir.RegisterTimerHandler(func(timer weir.FiredTimer) ([]weir.Output, error) {
		n, _ := weir.StateGet("n")
		if string(timer.Payload) == "again" {
			if err := weir.TimerSet("fire", weir.NowMs(), []byte("done")); err != nil {
				return nil, err
			}
		}
		return []weir.Output{{To: "fired", Key: timer.Key, Value: append(n, timer.Payload...)}}, nil
	})
}

func TestHandlersAreScopedAndFailedCallsWriteNothing(t *testing.T) {
	Reset()
	register()
	SetLimits(Limits{StateValue: 10})
	for _, c := range []struct{ key, value, want string }{{"a", "x", "+"}, {"a", "y", "++"}, {"b", "z", "+"}} {
		out, err := HandleEvent(weir.Event{Key: []byte(c.key), Value: []byte(c.value)})
		if err != nil || len(out) != 1 || string(out[0].Value) != c.want {
			t.Fatalf("%s: got %+v, %v", c.key, out, err)
		}
	}
	// A failure, and a refused write followed by a normal return, undo the call's writes.
	var failure *weir.Failure
	if _, err := HandleEvent(weir.Event{Key: []byte("a"), Value: []byte("fail")}); !errors.As(err, &failure) {
		t.Fatalf("got %v", err)
	}
	var limit *weir.LimitError
	if _, err := HandleEvent(weir.Event{Key: []byte("a"), Value: []byte("big")}); !errors.As(err, &limit) {
		t.Fatalf("got %v", err)
	}
	if get("n") != "++" {
		t.Fatalf("a's count: %q", get("n"))
	}
	if due, _ := weir.TimerDue("fire"); due != 10 {
		t.Fatalf("a's timer: due %d", due)
	}

	SetNow(10)
	out, err := FireDue()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, o := range out {
		got = append(got, string(o.Key)+"="+string(o.Value))
	}
	if want := []string{"a=++y", "b=+z"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("fired: got %v, want %v", got, want)
	}

	// A timer that a handler sets due already fires in the same FireDue.
	HandleEvent(weir.Event{Key: []byte("c"), Value: []byte("again")})
	Advance(10)
	out, err = FireDue()
	if err != nil || len(out) != 2 || string(out[1].Value) != "+done" {
		t.Fatalf("got %+v, %v", out, err)
	}
}

func TestATimerWithoutAHandlerIsInvalid(t *testing.T) {
	Reset()
	weir.RegisterTimerHandler(nil)
	_, err := HandleTimer(weir.FiredTimer{Name: "t"})
	var failure *weir.Failure
	if !errors.As(err, &failure) || failure.Transient || !strings.Contains(failure.Message, `timer "t" fired`) {
		t.Fatalf("got %v", err)
	}
}

func TestTheSpanRecordsEachCallAndDropsWhenNotSampled(t *testing.T) {
	Reset()
	if !weir.SpanRecording() {
		t.Fatal("a fresh fake is not recording")
	}
	weir.SpanSetAttribute("a", "1")
	weir.SpanSetAttribute("b", "2")
	weir.SpanSetAttribute("a", "3") // replaces, in place
	weir.SpanAddEvent("e", weir.SpanAttribute{Key: "k", Value: "v"})
	weir.SpanAddEvent("bare")
	want := []weir.SpanAttribute{{Key: "a", Value: "3"}, {Key: "b", Value: "2"}}
	if got := SpanAttributes(); !reflect.DeepEqual(got, want) {
		t.Fatalf("attributes: got %v, want %v", got, want)
	}
	if v, ok := SpanAttribute("b"); !ok || v != "2" {
		t.Fatalf("b: got %q, %v", v, ok)
	}
	events := SpanEvents()
	if len(events) != 2 || events[0].Name != "e" || events[1].Name != "bare" || len(events[1].Attributes) != 0 {
		t.Fatalf("events: got %+v", events)
	}
	if v, ok := events[0].Attribute("k"); !ok || v != "v" {
		t.Fatalf("event attribute k: got %q, %v", v, ok)
	}

	// Each handled event gets a fresh span.
	weir.Register(nil, func(e weir.Event) ([]weir.Output, error) {
		if weir.SpanRecording() {
			weir.SpanSetAttribute("value", string(e.Value))
		}
		return nil, nil
	})
	HandleEvent(weir.Event{Value: []byte("x")})
	want = []weir.SpanAttribute{{Key: "value", Value: "x"}}
	if got := SpanAttributes(); !reflect.DeepEqual(got, want) || len(SpanEvents()) != 0 {
		t.Fatalf("after HandleEvent: got %v, %v", got, SpanEvents())
	}

	SetRecording(false)
	HandleEvent(weir.Event{Value: []byte("y")})
	weir.SpanAddEvent("e")
	if len(SpanAttributes()) != 0 || len(SpanEvents()) != 0 {
		t.Fatalf("an unsampled span kept %v, %v", SpanAttributes(), SpanEvents())
	}
	Reset()
	if !weir.SpanRecording() {
		t.Fatal("Reset does not record again")
	}
}
