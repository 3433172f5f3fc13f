// task-validator: lets valid task events through unchanged and rejects the rest as
// `invalid`, naming the field and the problem. A port of plugins/task-validator.
//
// Config: `output` (default `valid`) is the logical output name of the passed event,
// for pipelines where the validator is the last stage.
//
// Span: when the call's span is sampled, a valid event's type and task id are set on
// it as `todo.event_type` and `todo.task_id`.
package main

import (
	"errors"

	te "weir.local/todoevents"
	"weir.local/weir"
)

const defaultOutput = "valid"

var output = defaultOutput

func configure(config weir.Config) error {
	if v, ok := config.Get("output"); ok {
		output = v
	}
	return nil
}

func handle(event weir.Event) ([]weir.Output, error) {
	if event.Value == nil {
		return nil, weir.Invalid("a tombstone (null value) is not a task event")
	}
	if err := check(event.Value); err != nil {
		var rej *te.Rejection
		if errors.As(err, &rej) {
			return nil, weir.Invalid("%s", rej.Error())
		}
		return nil, err
	}
	return []weir.Output{{To: output, Key: event.Key, Value: event.Value, Headers: event.Headers}}, nil
}

// check validates a task event and, when the call's span is recording, sets a valid
// event's todo.event_type and todo.task_id on it.
func check(value []byte) error {
	e, err := te.Parse(value) // what te.Validate does, keeping the event
	if err != nil {
		return err
	}
	if weir.SpanRecording() {
		weir.SpanSetAttribute("todo.event_type", e.EventType)
		weir.SpanSetAttribute("todo.task_id", e.Task.TaskID)
	}
	return nil
}

func init() { weir.Register(configure, handle) }

func main() {}
