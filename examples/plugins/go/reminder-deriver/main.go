// reminder-deriver: turns task events into reminder events (SPEC §7). A port of
// plugins/reminder-deriver.
//
// `task.created`/`task.updated` with a `due_date` and a status other than `completed`
// schedule a reminder at `max(due_date - lead-time, event timestamp)`;
// `task.completed`/`task.deleted` with a `due_date` cancel it. The reminder id is a
// UUIDv5 of the task id and the due date, so scheduling and cancelling agree without
// any state, and every output is a pure function of its input.
//
// Config: `lead-time` (a humantime duration, default `15m`), `output` (default
// `reminders`). Unknown keys are refused, so a typo fails at start-up.
package main

import (
	"errors"
	"fmt"
	"strconv"

	te "weir.local/todoevents"
	"weir.local/weir"
)

const defaultOutput = "reminders"

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
	Value         []byte
	CorrelationID string
}

// Derive gives the reminder (if any) caused by one task event.
func Derive(value []byte, s *Settings) (*Reminder, error) {
	e, err := te.Parse(value)
	if err != nil {
		return nil, err
	}
	t := e.Task
	if t.DueDate == nil {
		return nil, nil
	}
	due := *t.DueDate
	remindAt, ok := te.Minus(due, s.LeadSecs, s.LeadNanos)
	if !ok {
		remindAt = due
	}
	var eventType, message string
	var scheduled te.Instant
	switch e.EventType {
	case "task.created", "task.updated":
		if t.Status == "completed" {
			return nil, nil
		}
		eventType = "reminder.scheduled"
		scheduled = remindAt
		if e.Timestamp.Compare(remindAt) > 0 {
			scheduled = e.Timestamp
		}
		message = "Reminder: \"" + t.Title + "\" is due at " + te.FormatUTC(due)
	default:
		eventType = "reminder.cancelled"
		scheduled = remindAt
		how := "deleted"
		if e.EventType == "task.completed" {
			how = "completed"
		}
		message = "Reminder cancelled: \"" + t.Title + "\" was " + how
	}
	// The reminder event, keys in sorted order, as serde_json writes it.
	fields := []struct{ k, v string }{
		{"correlation_id", e.CorrelationID},
		{"event_id", te.DeriveID("reminder-event", e.EventID)},
		{"event_type", eventType},
	}
	payload := []struct{ k, v string }{
		{"message", message},
		{"reminder_id", te.DeriveID("reminder", t.TaskID, te.FormatUTC(due))},
		{"scheduled_time", te.FormatUTC(scheduled)},
		{"task_id", t.TaskID},
		{"user_id", t.UserID},
	}
	out := []byte{'{'}
	for _, f := range fields {
		out = te.AppendJSONString(out, f.k)
		out = append(out, ':')
		out = te.AppendJSONString(out, f.v)
		out = append(out, ',')
	}
	out = append(out, `"payload":{`...)
	for i, f := range payload {
		if i > 0 {
			out = append(out, ',')
		}
		out = te.AppendJSONString(out, f.k)
		out = append(out, ':')
		out = te.AppendJSONString(out, f.v)
	}
	out = append(out, `},"timestamp":`...)
	out = te.AppendJSONString(out, e.TimestampText)
	out = append(out, `,"version":`...)
	out = te.AppendJSONString(out, e.Version)
	out = append(out, '}')
	return &Reminder{EventType: eventType, Key: t.UserID, Value: out, CorrelationID: e.CorrelationID}, nil
}

func configure(config weir.Config) error {
	s, err := ParseConfig(config)
	if err != nil {
		return err
	}
	settings = s
	return nil
}

func handle(event weir.Event) ([]weir.Output, error) {
	if settings == nil {
		return nil, weir.Transient("handle-event called before init")
	}
	if event.Value == nil {
		return nil, weir.Invalid("a tombstone (null value) is not a task event")
	}
	r, err := Derive(event.Value, settings)
	if err != nil {
		var rej *te.Rejection
		if errors.As(err, &rej) {
			return nil, weir.Invalid("%s", rej.Error())
		}
		return nil, err
	}
	if r == nil {
		return nil, nil
	}
	return []weir.Output{{
		To:    settings.Output,
		Key:   []byte(r.Key),
		Value: r.Value,
		Headers: []weir.Header{
			{Key: "event_type", Value: []byte(r.EventType)},
			{Key: "correlation_id", Value: []byte(r.CorrelationID)},
		},
	}}, nil
}

func init() { weir.Register(configure, handle) }

func main() {}
