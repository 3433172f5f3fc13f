package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	te "weir.local/todoevents"
	"weir.local/weir"
	"weir.local/weir/weirtest"
)

// The rows of the table in docs/design/state-and-timers.md, "The Todo deriver",
// each through the registered handlers and the SDK's in-memory host.

const (
	user   = "a11ce000-0000-4000-8000-000000000001"
	task   = "7e57c0de-0000-4000-8000-000000000001"
	corr   = "5d6f7a8b-1c2d-4e3f-8a9b-0c1d2e3f4a5b"
	noDue  = ""
	name   = "reminder:" + task
	due17  = "2026-11-27T17:00:00Z"
	due18  = "2026-11-27T18:00:00Z"
	at1645 = int64(1_795_797_900_000) // 2026-11-27T16:45:00Z, 15m before due17
)

var eventIDs = 0

// event is a task event with a fresh event id (the n-th: ...0001, ...0002, ...).
func event(eventType, status, title, due string) []byte {
	eventIDs++
	payload := map[string]any{
		"task_id": task, "user_id": user, "title": title, "status": status, "priority": "high",
	}
	if due != noDue {
		payload["due_date"] = due
	}
	b, err := json.Marshal(map[string]any{
		"event_id":       fmt.Sprintf("0b8f8d4e-3c1a-4f4e-9a53-%012d", eventIDs),
		"event_type":     eventType,
		"timestamp":      "2026-11-26T09:00:00Z",
		"version":        "1.0",
		"correlation_id": corr,
		"payload":        payload,
	})
	if err != nil {
		panic(err)
	}
	return b
}

func lastEventID() string { return fmt.Sprintf("0b8f8d4e-3c1a-4f4e-9a53-%012d", eventIDs) }

// setUp gives a fresh host and plugin, at the events' time.
func setUp(t *testing.T) {
	t.Helper()
	weirtest.Reset()
	weirtest.SetNow(1_795_683_600_000) // 2026-11-26T09:00:00Z
	if err := weir.Init(nil); err != nil {
		t.Fatal(err)
	}
}

func send(t *testing.T, value []byte) []weir.Output {
	t.Helper()
	out, err := weirtest.HandleEvent(weir.Event{Key: []byte(user), Value: value})
	if err != nil {
		t.Fatalf("handle: %v", err)
	}
	return out
}

// reminder is an output's value, decoded, with its type and key checked against the
// headers.
type reminder struct {
	CorrelationID string `json:"correlation_id"`
	EventID       string `json:"event_id"`
	EventType     string `json:"event_type"`
	Payload       struct {
		Message       string `json:"message"`
		ReminderID    string `json:"reminder_id"`
		ScheduledTime string `json:"scheduled_time"`
		TaskID        string `json:"task_id"`
		UserID        string `json:"user_id"`
	} `json:"payload"`
	Timestamp string `json:"timestamp"`
	Version   string `json:"version"`
}

func decode(t *testing.T, o weir.Output) reminder {
	t.Helper()
	var r reminder
	if err := json.Unmarshal(o.Value, &r); err != nil {
		t.Fatalf("%s: %v", o.Value, err)
	}
	if o.To != "reminders" || string(o.Key) != r.Payload.UserID {
		t.Errorf("to %q key %q for %s", o.To, o.Key, o.Value)
	}
	if len(o.Headers) != 2 || o.Headers[0].Key != "event_type" || string(o.Headers[0].Value) != r.EventType ||
		o.Headers[1].Key != "correlation_id" || string(o.Headers[1].Value) != r.CorrelationID {
		t.Errorf("headers %+v for %s", o.Headers, o.Value)
	}
	return r
}

func types(t *testing.T, outs []weir.Output) string {
	t.Helper()
	var ts []string
	for _, o := range outs {
		ts = append(ts, decode(t, o).EventType)
	}
	return strings.Join(ts, ",")
}

func stored(t *testing.T) *Entry {
	t.Helper()
	weirtest.SetKey([]byte(user))
	b, ok := weir.StateGet(name)
	if !ok {
		return nil
	}
	e := ParseEntry(b)
	if e == nil {
		t.Fatalf("not an entry: %s", b)
	}
	if string(e.JSON()) != string(b) {
		t.Errorf("the entry does not round-trip:\n%s\n%s", b, e.JSON())
	}
	return e
}

func timerDue(t *testing.T) (int64, bool) {
	t.Helper()
	for _, p := range weirtest.Pending() {
		if p.Name == name && string(p.Key) == user {
			if string(p.Payload) != stored(t).ReminderID {
				t.Errorf("the timer's payload %q is not the entry's reminder id", p.Payload)
			}
			return p.DueMs, true
		}
	}
	return 0, false
}

// Row 1: created/updated, not completed, with a due date, nothing stored:
// reminder.scheduled, and the entry and the timer are set.
func TestSchedulesAndStores(t *testing.T) {
	for _, eventType := range []string{"task.created", "task.updated"} {
		setUp(t)
		out := send(t, event(eventType, "pending", "Buy milk", due17))
		if types(t, out) != Scheduled {
			t.Fatalf("%s: got %s", eventType, types(t, out))
		}
		r := decode(t, out[0])
		want := `{"correlation_id":"` + corr + `","event_id":"` + te.DeriveID("reminder-event", lastEventID()) +
			`","event_type":"reminder.scheduled","payload":{"message":"Reminder: \"Buy milk\" is due at 2026-11-27T17:00:00.000Z","reminder_id":"` +
			te.DeriveID("reminder", task, "2026-11-27T17:00:00.000Z") +
			`","scheduled_time":"2026-11-27T16:45:00.000Z","task_id":"` + task + `","user_id":"` + user +
			`"},"timestamp":"2026-11-26T09:00:00Z","version":"1.0"}`
		if string(out[0].Value) != want {
			t.Errorf("%s:\ngot  %s\nwant %s", eventType, out[0].Value, want)
		}
		// The entry: the strings of the scheduled event and the title, keys sorted.
		weirtest.SetKey([]byte(user))
		b, _ := weir.StateGet(name)
		wantEntry := `{"correlation_id":"` + corr + `","message":"Reminder: \"Buy milk\" is due at 2026-11-27T17:00:00.000Z","reminder_id":"` +
			r.Payload.ReminderID + `","scheduled_time":"2026-11-27T16:45:00.000Z","task_id":"` + task +
			`","title":"Buy milk","user_id":"` + user + `","version":"1.0"}`
		if string(b) != wantEntry {
			t.Errorf("%s: entry\ngot  %s\nwant %s", eventType, b, wantEntry)
		}
		if due, ok := timerDue(t); !ok || due != at1645 {
			t.Errorf("%s: timer due %d, %v; want %d", eventType, due, ok, at1645)
		}
	}
}

// The same instant written in another offset is the same reminder: nothing.
// Row 2: same reminder id stored: nothing, state unchanged (the stored title too).
func TestTheSameReminderAgainIsNothing(t *testing.T) {
	setUp(t)
	send(t, event("task.created", "pending", "Buy milk", due17))
	before := stored(t)
	for _, value := range [][]byte{
		event("task.updated", "in_progress", "Buy oat milk", due17),
		event("task.created", "pending", "Buy milk", "2026-11-27T18:00:00+01:00"),
	} {
		if out := send(t, value); len(out) != 0 {
			t.Fatalf("got %s", types(t, out))
		}
	}
	if after := stored(t); *after != *before {
		t.Fatalf("the entry changed: %+v", after)
	}
	if due, _ := timerDue(t); due != at1645 {
		t.Fatalf("the timer moved to %d", due)
	}
}

// Row 3: another reminder id stored: reminder.cancelled of the stored one (was
// rescheduled, with the stored title), then reminder.scheduled; both replaced.
func TestARescheduleCancelsTheStoredReminder(t *testing.T) {
	setUp(t)
	send(t, event("task.created", "pending", "Buy milk", due17))
	old := stored(t)
	out := send(t, event("task.updated", "pending", "Buy oat milk", due18))
	if types(t, out) != Cancelled+","+Scheduled {
		t.Fatalf("got %s", types(t, out))
	}
	c, s := decode(t, out[0]), decode(t, out[1])
	if c.Payload.Message != `Reminder cancelled: "Buy milk" was rescheduled` ||
		c.Payload.ReminderID != old.ReminderID || c.Payload.ScheduledTime != old.ScheduledTime ||
		c.Payload.TaskID != task || c.Payload.UserID != user ||
		c.EventID != te.DeriveID("reminder-cancelled", lastEventID()) ||
		c.CorrelationID != corr || c.Timestamp != "2026-11-26T09:00:00Z" || c.Version != "1.0" {
		t.Errorf("cancelled: %s", out[0].Value)
	}
	if s.Payload.ReminderID != te.DeriveID("reminder", task, "2026-11-27T18:00:00.000Z") ||
		s.Payload.ScheduledTime != "2026-11-27T17:45:00.000Z" ||
		s.EventID != te.DeriveID("reminder-event", lastEventID()) {
		t.Errorf("scheduled: %s", out[1].Value)
	}
	now := stored(t)
	if now.ReminderID != s.Payload.ReminderID || now.Title != "Buy oat milk" || now.Message != s.Payload.Message {
		t.Errorf("entry: %+v", now)
	}
	if due, _ := timerDue(t); due != at1645+3_600_000 {
		t.Errorf("timer due %d", due)
	}
}

// Row 4: created/updated, not completed, no due date, a reminder stored:
// reminder.cancelled (was unscheduled); entry deleted, timer cancelled.
// Row 5: the same with nothing stored: nothing.
func TestADueDateRemovedUnschedules(t *testing.T) {
	setUp(t)
	if out := send(t, event("task.created", "pending", "Buy milk", noDue)); len(out) != 0 {
		t.Fatalf("row 5: got %s", types(t, out))
	}
	send(t, event("task.created", "pending", "Buy milk", due17))
	old := stored(t)
	out := send(t, event("task.updated", "in_progress", "Milk", noDue))
	if types(t, out) != Cancelled {
		t.Fatalf("got %s", types(t, out))
	}
	c := decode(t, out[0])
	if c.Payload.Message != `Reminder cancelled: "Buy milk" was unscheduled` || c.Payload.ReminderID != old.ReminderID ||
		c.EventID != te.DeriveID("reminder-cancelled", lastEventID()) {
		t.Errorf("cancelled: %s", out[0].Value)
	}
	if stored(t) != nil {
		t.Error("the entry is still there")
	}
	if _, ok := timerDue(t); ok {
		t.Error("the timer is still there")
	}
	if out := send(t, event("task.updated", "in_progress", "Milk", noDue)); len(out) != 0 {
		t.Fatalf("row 5 again: got %s", types(t, out))
	}
}

// Row 6: task.updated with status completed, task.completed, task.deleted, a
// reminder stored: reminder.cancelled of the stored one (was completed / was
// deleted); entry deleted, timer cancelled.
func TestTheEndOfATaskCancelsTheStoredReminder(t *testing.T) {
	for _, c := range []struct{ eventType, status, why string }{
		{"task.updated", "completed", "completed"},
		{"task.completed", "completed", "completed"},
		{"task.deleted", "pending", "deleted"},
		{"task.deleted", "completed", "deleted"},
	} {
		setUp(t)
		send(t, event("task.created", "pending", "Buy milk", due17))
		old := stored(t)
		// Whatever due date the ending event carries: the stored reminder is cancelled.
		out := send(t, event(c.eventType, c.status, "Buy more milk", due18))
		if types(t, out) != Cancelled {
			t.Fatalf("%+v: got %s", c, types(t, out))
		}
		r := decode(t, out[0])
		want := `Reminder cancelled: "Buy milk" was ` + c.why
		if r.Payload.Message != want || r.Payload.ReminderID != old.ReminderID ||
			r.Payload.ScheduledTime != old.ScheduledTime || r.EventID != te.DeriveID("reminder-cancelled", lastEventID()) {
			t.Errorf("%+v: %s", c, out[0].Value)
		}
		if stored(t) != nil {
			t.Errorf("%+v: the entry is still there", c)
		}
		if _, ok := timerDue(t); ok {
			t.Errorf("%+v: the timer is still there", c)
		}
	}
}

// Row 7: the same with nothing stored and a due date: reminder.cancelled of the
// derived id, as the stateless deriver emitted it. Row 8: no due date: nothing.
func TestTheEndOfATaskWithNothingStored(t *testing.T) {
	for _, c := range []struct{ eventType, status, why string }{
		{"task.updated", "completed", "completed"},
		{"task.completed", "completed", "completed"},
		{"task.deleted", "pending", "deleted"},
	} {
		setUp(t)
		out := send(t, event(c.eventType, c.status, "Buy milk", due17))
		if types(t, out) != Cancelled {
			t.Fatalf("%+v: got %s", c, types(t, out))
		}
		want := `{"correlation_id":"` + corr + `","event_id":"` + te.DeriveID("reminder-event", lastEventID()) +
			`","event_type":"reminder.cancelled","payload":{"message":"Reminder cancelled: \"Buy milk\" was ` + c.why +
			`","reminder_id":"` + te.DeriveID("reminder", task, "2026-11-27T17:00:00.000Z") +
			`","scheduled_time":"2026-11-27T16:45:00.000Z","task_id":"` + task + `","user_id":"` + user +
			`"},"timestamp":"2026-11-26T09:00:00Z","version":"1.0"}`
		if string(out[0].Value) != want {
			t.Errorf("%+v:\ngot  %s\nwant %s", c, out[0].Value, want)
		}
		if stored(t) != nil || len(weirtest.Pending()) != 0 {
			t.Errorf("%+v: state written", c)
		}
		if out := send(t, event(c.eventType, c.status, "Buy milk", noDue)); len(out) != 0 {
			t.Errorf("%+v, no due date: got %s", c, types(t, out))
		}
	}
}

// The stateless derivation of task.deleted: what Derive gives (and the old deriver did).
func TestTheDerivedCancelIsTheStatelessOne(t *testing.T) {
	setUp(t)
	value := event("task.deleted", "pending", "Buy milk", due17)
	r, err := Derive(value, settings)
	if err != nil {
		t.Fatal(err)
	}
	if out := send(t, value); string(out[0].Value) != string(r.Value) {
		t.Fatalf("got %s\nwant %s", out[0].Value, r.Value)
	}
}

// The timer: when it fires and the entry holds the reminder it names,
// reminder.triggered (timestamp = scheduled_time) and the entry is deleted.
func TestTheTimerTriggersTheReminder(t *testing.T) {
	setUp(t)
	send(t, event("task.created", "pending", "Buy milk", due17))
	entry := stored(t)
	weirtest.SetNow(at1645 - 1)
	if out, _ := weirtest.FireDue(); len(out) != 0 {
		t.Fatal("fired early")
	}
	weirtest.SetNow(at1645)
	before := weirtest.Pending()
	snapshot := *entry
	out, err := weirtest.FireDue()
	if err != nil || types(t, out) != Triggered {
		t.Fatalf("got %+v, %v", out, err)
	}
	want := `{"correlation_id":"` + corr + `","event_id":"` + te.DeriveID("reminder-triggered", entry.ReminderID) +
		`","event_type":"reminder.triggered","payload":{"message":"Reminder: \"Buy milk\" is due at 2026-11-27T17:00:00.000Z","reminder_id":"` +
		entry.ReminderID + `","scheduled_time":"2026-11-27T16:45:00.000Z","task_id":"` + task + `","user_id":"` + user +
		`"},"timestamp":"2026-11-27T16:45:00.000Z","version":"1.0"}`
	if string(out[0].Value) != want {
		t.Errorf("got  %s\nwant %s", out[0].Value, want)
	}
	if stored(t) != nil {
		t.Error("the entry is still there")
	}

	// Fired again with the entry restored (a retry after a crash): the same bytes.
	weirtest.SetKey([]byte(user))
	weir.StateSet(name, snapshot.JSON())
	again, err := weirtest.HandleTimer(before[0])
	if err != nil || len(again) != 1 || string(again[0].Value) != want {
		t.Errorf("fired again: %+v, %v", again, err)
	}
	// Fired again once the entry is gone: stale, nothing.
	if stale, err := weirtest.HandleTimer(before[0]); err != nil || len(stale) != 0 {
		t.Errorf("stale: %+v, %v", stale, err)
	}
}

// A timer whose reminder was replaced (its payload names another id) is stale.
func TestAStaleTimerDoesNothing(t *testing.T) {
	setUp(t)
	send(t, event("task.created", "pending", "Buy milk", due17))
	first := weirtest.Pending()[0]
	send(t, event("task.updated", "pending", "Buy milk", due18))
	if out, err := weirtest.HandleTimer(first); err != nil || len(out) != 0 {
		t.Fatalf("got %+v, %v", out, err)
	}
	if stored(t) == nil {
		t.Fatal("a stale timer deleted the live entry")
	}
	// And an entry that is not one counts as absent.
	weir.StateSet(name, []byte(`{"reminder_id": 1}`))
	if out := send(t, event("task.created", "pending", "Buy milk", due17)); types(t, out) != Scheduled {
		t.Fatalf("got %s", types(t, out))
	}
}

func TestBadInputIsInvalid(t *testing.T) {
	setUp(t)
	var f *weir.Failure
	for _, value := range [][]byte{nil, []byte("[]"), []byte(`{"event_id": "x"}`)} {
		if _, err := weirtest.HandleEvent(weir.Event{Key: []byte(user), Value: value}); !errors.As(err, &f) || f.Transient {
			t.Errorf("%q: got %v", value, err)
		}
	}
}

// A refused write: the handler returns the *weir.LimitError (the host dead-letters
// the record as state-limit) and nothing is written.
func TestARefusedWriteLeavesTheStateAsItWas(t *testing.T) {
	setUp(t)
	weirtest.SetLimits(weirtest.Limits{StateValue: 100})
	_, err := weirtest.HandleEvent(weir.Event{Key: []byte(user), Value: event("task.created", "pending", "Buy milk", due17)})
	var limit *weir.LimitError
	if !errors.As(err, &limit) {
		t.Fatalf("got %v", err)
	}
	if stored(t) != nil || len(weirtest.Pending()) != 0 {
		t.Fatal("state written")
	}
}

func TestConfigIsChecked(t *testing.T) {
	s, err := ParseConfig(weir.Config{{Key: "lead-time", Value: "1h"}})
	if err != nil || s.LeadSecs != 3600 {
		t.Fatalf("got %+v, %v", s, err)
	}
	if _, err := ParseConfig(weir.Config{{Key: "lead-time", Value: "soon"}}); err == nil || !strings.Contains(err.Error(), "lead-time") {
		t.Fatalf("got %v", err)
	}
	if _, err := ParseConfig(weir.Config{{Key: "lead", Value: "1h"}}); err == nil || !strings.Contains(err.Error(), "unknown config key") {
		t.Fatalf("got %v", err)
	}
}

// Each reminder is also an event of the call's span, with the task, the reminder and
// when it is due; an unsampled span gets nothing.
func TestEachReminderIsAnEventOfTheSpan(t *testing.T) {
	setUp(t)
	send(t, event("task.created", "pending", "Buy milk", due17))
	first := stored(t).ReminderID
	send(t, event("task.updated", "pending", "Buy milk", due18))
	second := stored(t).ReminderID
	var got []string
	for _, e := range weirtest.SpanEvents() {
		taskID, _ := e.Attribute("todo.task_id")
		reminderID, _ := e.Attribute("todo.reminder_id")
		at, _ := e.Attribute("todo.scheduled_time")
		got = append(got, e.Name+" "+taskID+" "+reminderID+" "+at)
	}
	want := []string{
		Cancelled + " " + task + " " + first + " 2026-11-27T16:45:00.000Z",
		Scheduled + " " + task + " " + second + " 2026-11-27T17:45:00.000Z",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("span events of the reschedule:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	weirtest.SetRecording(false)
	send(t, event("task.deleted", "pending", "Buy milk", due18))
	if events := weirtest.SpanEvents(); len(events) != 0 {
		t.Fatalf("an unsampled span got %+v", events)
	}
}
