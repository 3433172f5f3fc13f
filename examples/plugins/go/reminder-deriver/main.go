// reminder-deriver: turns task events into reminder events (SPEC §7) and fires each
// reminder when it is due. A port of plugins/reminder-deriver; a stateful-plugin (it
// uses state and timers, so the build picks that world). The behaviour, event by
// event, is the table of docs/design/state-and-timers.md, "The Todo deriver".
//
// Records are keyed by user_id, so the state scope is one user. For each task with a
// live reminder the deriver keeps an entry and a timer, both named
// `reminder:<task_id>` (EntryName): the entry is the scheduled reminder and the
// task's title (Entry, JSON with sorted keys); the timer is due at its
// scheduled_time and carries its reminder_id.
//
//   - `task.created`/`task.updated` with a due_date and a status other than
//     `completed` ask for a reminder at max(due_date - lead-time, event timestamp),
//     with id UUIDv5(task id, due date). A new reminder is emitted as
//     `reminder.scheduled` and stored; the stored one is kept if it has the same id,
//     else cancelled (`was rescheduled`) and replaced.
//   - The same events without a due_date cancel the stored reminder (`was
//     unscheduled`). A status of `completed`, `task.completed` and `task.deleted`
//     cancel it (`was completed`/`was deleted`); with none stored, they cancel the
//     reminder their due_date derives, as the stateless deriver did (a reminder
//     scheduled before the deriver kept state).
//   - When the timer fires and the entry still holds the reminder its payload names,
//     `reminder.triggered` is emitted and the entry deleted; otherwise (stale) nothing.
//
// Every output is a function of the input and the key's state: ids are UUIDv5 of
// input ids, and a triggered reminder's timestamp is its scheduled_time, so a timer
// fired again gives the same bytes.
//
// Config: `lead-time` (a humantime duration, default `15m`), `output` (default
// `reminders`). Unknown keys are refused, so a typo fails at start-up.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	te "weir.local/todoevents"
	"weir.local/weir"
)

const defaultOutput = "reminders"

// The reminder event types.
const (
	Scheduled = "reminder.scheduled"
	Cancelled = "reminder.cancelled"
	Triggered = "reminder.triggered"
)

// Settings are the plugin's settings, from its config table.
type Settings struct {
	LeadSecs  uint64
	LeadNanos uint32
	Output    string
}

var settings *Settings

// ParseConfig reads the config entries in order; unknown keys are refused.
func ParseConfig(config weir.Config) (*Settings, error) {
	s := &Settings{LeadSecs: 15 * 60, Output: defaultOutput}
	for _, e := range config {
		switch e.Key {
		case "lead-time":
			secs, nanos, err := parseDuration(e.Value)
			if err != nil {
				return nil, fmt.Errorf("lead-time: %v (got %s; try \"15m\")", err, strconv.Quote(e.Value))
			}
			s.LeadSecs, s.LeadNanos = secs, nanos
		case "output":
			s.Output = e.Value
		default:
			return nil, fmt.Errorf("unknown config key %s (known: lead-time, output)", strconv.Quote(e.Key))
		}
	}
	return s, nil
}

// Reminder is a reminder event to produce, keyed by user_id.
type Reminder struct {
	EventType     string
	Key           string
	Value         []byte // reminder.schema.json, keys in sorted order, as serde_json writes it
	CorrelationID string
	p             payload // what Value holds, for the span
}

// payload is a reminder event's payload.
type payload struct {
	message, reminderID, scheduledTime, taskID, userID string
}

// newReminder writes a reminder event: keys in sorted order, no spaces.
func newReminder(eventType, correlationID, eventID string, p payload, timestamp, version string) *Reminder {
	out := []byte{'{'}
	field := func(k, v string) {
		out = te.AppendJSONString(out, k)
		out = append(out, ':')
		out = te.AppendJSONString(out, v)
	}
	field("correlation_id", correlationID)
	out = append(out, ',')
	field("event_id", eventID)
	out = append(out, ',')
	field("event_type", eventType)
	out = append(out, `,"payload":{`...)
	field("message", p.message)
	out = append(out, ',')
	field("reminder_id", p.reminderID)
	out = append(out, ',')
	field("scheduled_time", p.scheduledTime)
	out = append(out, ',')
	field("task_id", p.taskID)
	out = append(out, ',')
	field("user_id", p.userID)
	out = append(out, "},"...)
	field("timestamp", timestamp)
	out = append(out, ',')
	field("version", version)
	out = append(out, '}')
	return &Reminder{EventType: eventType, Key: p.userID, Value: out, CorrelationID: correlationID, p: p}
}

// fromEvent is a reminder caused by a task event: its correlation id, timestamp and
// version.
func fromEvent(e *te.TaskEvent, eventType, eventID string, p payload) *Reminder {
	return newReminder(eventType, e.CorrelationID, eventID, p, e.TimestampText, e.Version)
}

// Entry is the stored state of a live reminder: the strings of the
// `reminder.scheduled` event that scheduled it, and the task's title (for the
// messages that cancel it).
type Entry struct {
	CorrelationID string
	Message       string
	ReminderID    string
	ScheduledTime string
	TaskID        string
	Title         string
	UserID        string
	Version       string
}

// fields are the entry's JSON keys, sorted, and its fields.
func (e *Entry) fields() [8]struct {
	key string
	val *string
} {
	return [...]struct {
		key string
		val *string
	}{
		{"correlation_id", &e.CorrelationID},
		{"message", &e.Message},
		{"reminder_id", &e.ReminderID},
		{"scheduled_time", &e.ScheduledTime},
		{"task_id", &e.TaskID},
		{"title", &e.Title},
		{"user_id", &e.UserID},
		{"version", &e.Version},
	}
}

// JSON is the entry's value: compact, keys sorted, strings escaped as serde_json
// escapes them (the Rust deriver's bytes).
func (e *Entry) JSON() []byte {
	out := []byte{'{'}
	for i, f := range e.fields() {
		if i > 0 {
			out = append(out, ',')
		}
		out = te.AppendJSONString(out, f.key)
		out = append(out, ':')
		out = te.AppendJSONString(out, *f.val)
	}
	return append(out, '}')
}

// ParseEntry reads an entry back; nil if it is not one (it then counts as absent):
// a JSON object with every field, each a string (other keys are ignored, as serde
// ignores them).
func ParseEntry(b []byte) *Entry {
	var object map[string]json.RawMessage
	if json.Unmarshal(b, &object) != nil {
		return nil
	}
	var e Entry
	for _, f := range e.fields() {
		raw, ok := object[f.key]
		if !ok || string(raw) == "null" || json.Unmarshal(raw, f.val) != nil {
			return nil
		}
	}
	return &e
}

// EntryName is the name of the entry and of the timer of task taskID.
func EntryName(taskID string) string { return "reminder:" + taskID }

func remindAt(due te.Instant, s *Settings) te.Instant {
	at, ok := te.Minus(due, s.LeadSecs, s.LeadNanos)
	if !ok {
		return due
	}
	return at
}

// millis is an instant in milliseconds since the epoch, as chrono's timestamp_millis
// (a leap second's extra second counts).
func millis(t te.Instant) int64 { return t.Secs*1000 + t.Nanos/1_000_000 }

// reminderID is UUIDv5 of the task id and the due instant: the same reminder whatever
// offset the due date was written in.
func reminderID(e *te.TaskEvent, due te.Instant) string {
	return te.DeriveID("reminder", e.Task.TaskID, te.FormatUTC(due))
}

// schedule is the `reminder.scheduled` an event asks for, when it is due (ms since
// the epoch) and the entry that stores it; nil without a due_date.
func schedule(e *te.TaskEvent, s *Settings) (*Reminder, int64, *Entry) {
	if e.Task.DueDate == nil {
		return nil, 0, nil
	}
	due := *e.Task.DueDate
	at := remindAt(due, s)
	if e.Timestamp.Compare(at) > 0 {
		at = e.Timestamp
	}
	p := payload{
		message:       "Reminder: \"" + e.Task.Title + "\" is due at " + te.FormatUTC(due),
		reminderID:    reminderID(e, due),
		scheduledTime: te.FormatUTC(at),
		taskID:        e.Task.TaskID,
		userID:        e.Task.UserID,
	}
	entry := &Entry{
		CorrelationID: e.CorrelationID,
		Message:       p.message,
		ReminderID:    p.reminderID,
		ScheduledTime: p.scheduledTime,
		TaskID:        p.taskID,
		Title:         e.Task.Title,
		UserID:        p.userID,
		Version:       e.Version,
	}
	return fromEvent(e, Scheduled, te.DeriveID("reminder-event", e.EventID), p), millis(at), entry
}

// ends is how an event ends its task's reminder ("completed" or "deleted"), or "".
func ends(e *te.TaskEvent) string {
	switch {
	case e.EventType == "task.deleted":
		return "deleted"
	case e.EventType == "task.completed" || e.Task.Status == "completed":
		return "completed"
	}
	return ""
}

// derivedCancel is the `reminder.cancelled` of the reminder an event's due_date
// derives, as the stateless deriver emitted it; nil without a due_date.
func derivedCancel(e *te.TaskEvent, s *Settings, why string) *Reminder {
	if e.Task.DueDate == nil {
		return nil
	}
	due := *e.Task.DueDate
	return fromEvent(e, Cancelled, te.DeriveID("reminder-event", e.EventID), payload{
		message:       "Reminder cancelled: \"" + e.Task.Title + "\" was " + why,
		reminderID:    reminderID(e, due),
		scheduledTime: te.FormatUTC(remindAt(due, s)),
		taskID:        e.Task.TaskID,
		userID:        e.Task.UserID,
	})
}

// cancelStored is the `reminder.cancelled` of the stored reminder old, caused by e.
func cancelStored(e *te.TaskEvent, old *Entry, why string) *Reminder {
	return fromEvent(e, Cancelled, te.DeriveID("reminder-cancelled", e.EventID), payload{
		message:       "Reminder cancelled: \"" + old.Title + "\" was " + why,
		reminderID:    old.ReminderID,
		scheduledTime: old.ScheduledTime,
		taskID:        old.TaskID,
		userID:        old.UserID,
	})
}

// triggered is the `reminder.triggered` of a stored reminder: every field from the
// entry, so firing it again gives the same bytes.
func triggered(entry *Entry) *Reminder {
	return newReminder(Triggered, entry.CorrelationID, te.DeriveID("reminder-triggered", entry.ReminderID), payload{
		message:       entry.Message,
		reminderID:    entry.ReminderID,
		scheduledTime: entry.ScheduledTime,
		taskID:        entry.TaskID,
		userID:        entry.UserID,
	}, entry.ScheduledTime, entry.Version)
}

// Derive gives the reminder (if any) one task event asks for with no state, as the
// stateless deriver emitted it: `reminder.scheduled`, or `reminder.cancelled` for
// `task.completed` and `task.deleted`.
func Derive(value []byte, s *Settings) (*Reminder, error) {
	e, err := te.Parse(value)
	if err != nil {
		return nil, err
	}
	switch e.EventType {
	case "task.created", "task.updated":
		if e.Task.Status == "completed" {
			return nil, nil
		}
		r, _, _ := schedule(e, s)
		return r, nil
	}
	return derivedCancel(e, s, ends(e)), nil
}

// Change is what an event does to its task's entry and timer.
type Change struct {
	// Put is the entry to set, with the timer due at DueMs. Neither Put nor Remove:
	// both stay as they are.
	Put   *Entry
	DueMs int64
	// Remove deletes the entry and cancels the timer.
	Remove bool
}

// Decide says what a task event does, given the stored entry of its task (old, nil
// if none): the outputs, in order, and the change. Pure; HandleTaskEvent applies it.
func Decide(e *te.TaskEvent, old *Entry, s *Settings) ([]*Reminder, Change) {
	if why := ends(e); why != "" {
		if old != nil {
			return []*Reminder{cancelStored(e, old, why)}, Change{Remove: true}
		}
		if r := derivedCancel(e, s, why); r != nil {
			return []*Reminder{r}, Change{}
		}
		return nil, Change{}
	}
	asked, dueMs, entry := schedule(e, s)
	switch {
	case asked == nil && old == nil:
		return nil, Change{}
	case asked == nil:
		return []*Reminder{cancelStored(e, old, "unscheduled")}, Change{Remove: true}
	case old != nil && old.ReminderID == entry.ReminderID:
		return nil, Change{}
	case old != nil:
		return []*Reminder{cancelStored(e, old, "rescheduled"), asked}, Change{Put: entry, DueMs: dueMs}
	}
	return []*Reminder{asked}, Change{Put: entry, DueMs: dueMs}
}

// HandleTaskEvent handles one task event against the state of its key (the
// record's): decides, then writes the entry and the timer. On a refused write it
// stops with the *weir.LimitError; the host then dead-letters the record as
// state-limit and keeps no change of it.
func HandleTaskEvent(value []byte, s *Settings) ([]*Reminder, error) {
	e, err := te.Parse(value)
	if err != nil {
		return nil, err
	}
	name := EntryName(e.Task.TaskID)
	var old *Entry
	if b, ok := weir.StateGet(name); ok {
		old = ParseEntry(b)
	}
	outputs, change := Decide(e, old, s)
	switch {
	case change.Put != nil:
		if err := weir.StateSet(name, change.Put.JSON()); err != nil {
			return nil, err
		}
		if err := weir.TimerSet(name, change.DueMs, []byte(change.Put.ReminderID)); err != nil {
			return nil, err
		}
	case change.Remove:
		weir.StateDelete(name)
		weir.TimerCancel(name)
	}
	trace(outputs)
	return outputs, nil
}

// HandleTimer handles the timer name with its payload (a reminder id), in the scope
// of its key: `reminder.triggered` if the entry name still holds that reminder (the
// entry is then deleted), else nothing.
func HandleTimer(name string, payload []byte) []*Reminder {
	b, ok := weir.StateGet(name)
	if !ok {
		return nil
	}
	entry := ParseEntry(b)
	if entry == nil || entry.ReminderID != string(payload) {
		return nil
	}
	weir.StateDelete(name)
	reminders := []*Reminder{triggered(entry)}
	trace(reminders)
	return reminders
}

// trace adds an event to the call's span for each reminder, when it is recording:
// named after the reminder's type, with todo.task_id, todo.reminder_id and
// todo.scheduled_time (when the reminder is, or was, due).
func trace(reminders []*Reminder) {
	if len(reminders) == 0 || !weir.SpanRecording() {
		return
	}
	for _, r := range reminders {
		weir.SpanAddEvent(r.EventType,
			weir.SpanAttribute{Key: "todo.task_id", Value: r.p.taskID},
			weir.SpanAttribute{Key: "todo.reminder_id", Value: r.p.reminderID},
			weir.SpanAttribute{Key: "todo.scheduled_time", Value: r.p.scheduledTime})
	}
}

func configure(config weir.Config) error {
	s, err := ParseConfig(config)
	if err != nil {
		return err
	}
	settings = s
	return nil
}

func outputs(reminders []*Reminder) []weir.Output {
	var out []weir.Output
	for _, r := range reminders {
		out = append(out, weir.Output{
			To:    settings.Output,
			Key:   []byte(r.Key),
			Value: r.Value,
			Headers: []weir.Header{
				{Key: "event_type", Value: []byte(r.EventType)},
				{Key: "correlation_id", Value: []byte(r.CorrelationID)},
			},
		})
	}
	return out
}

func handle(event weir.Event) ([]weir.Output, error) {
	if settings == nil {
		return nil, weir.Transient("handle-event called before init")
	}
	if event.Value == nil {
		return nil, weir.Invalid("a tombstone (null value) is not a task event")
	}
	reminders, err := HandleTaskEvent(event.Value, settings)
	if err != nil {
		var rej *te.Rejection
		if errors.As(err, &rej) {
			return nil, weir.Invalid("%s", rej.Error())
		}
		return nil, err // a *weir.LimitError: the host dead-letters the record as state-limit
	}
	return outputs(reminders), nil
}

func handleTimer(t weir.FiredTimer) ([]weir.Output, error) {
	if settings == nil {
		return nil, weir.Transient("handle-timer called before init")
	}
	return outputs(HandleTimer(t.Name, t.Payload)), nil
}

func init() {
	weir.Register(configure, handle)
	weir.RegisterTimerHandler(handleTimer)
}

func main() {}
