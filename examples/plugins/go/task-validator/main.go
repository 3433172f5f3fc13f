// task-validator: lets valid task events through unchanged and rejects the rest as
// `invalid`, naming the field and the problem. A port of plugins/task-validator.
//
// Config: `output` (default `valid`) is the logical output name of the passed event,
// for pipelines where the validator is the last stage.
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
	if err := te.Validate(event.Value); err != nil {
		var rej *te.Rejection
		if errors.As(err, &rej) {
			return nil, weir.Invalid("%s", rej.Error())
		}
		return nil, err
	}
	return []weir.Output{{To: output, Key: event.Key, Value: event.Value, Headers: event.Headers}}, nil
}

func init() { weir.Register(configure, handle) }

func main() {}
