// {{name}}: a weir plugin that upper-cases the text of each record's value.
//
// Config: `output` (default `out`) is the logical output name of the result.
package main

import (
	"strings"
	"unicode/utf8"

	"weir.local/weir"
)

var output = "out"

// shout is the plugin's logic, in a plain function: `go test` runs it natively.
func shout(text string) string { return strings.ToUpper(text) }

func configure(config weir.Config) error {
	if v, ok := config.Get("output"); ok {
		output = v
	}
	return nil
}

func handle(event weir.Event) ([]weir.Output, error) {
	if event.Value == nil {
		return nil, weir.Invalid("value: a tombstone has no text")
	}
	if !utf8.Valid(event.Value) {
		return nil, weir.Invalid("value: not UTF-8 text")
	}
	return []weir.Output{{To: output, Key: event.Key, Value: []byte(shout(string(event.Value)))}}, nil
}

func init() { weir.Register(configure, handle) }

func main() {}
