package weir

import (
	"errors"
	"fmt"
	"testing"
)

func TestOnlyAFailureIsAFailure(t *testing.T) {
	invalid := Invalid("payload.title: must not be empty")
	if f := failureOf(fmt.Errorf("validating: %w", invalid)); f == nil || f.Transient || f.Message != "payload.title: must not be empty" {
		t.Fatalf("a wrapped Invalid: got %+v", f)
	}
	if f := failureOf(Transient("later")); f == nil || !f.Transient {
		t.Fatalf("a Transient: got %+v", f)
	}
	// Any other error is a bug: the glue traps on it.
	if f := failureOf(errors.New("boom")); f != nil {
		t.Fatalf("a plain error: got %+v, want nil", f)
	}
}

func TestTextHeader(t *testing.T) {
	h := TextHeader("event_type", "reminder.scheduled ✓")
	if h.Key != "event_type" || string(h.Value) != "reminder.scheduled ✓" {
		t.Fatalf("got %+v", h)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("a value that is not UTF-8 did not panic")
		}
	}()
	TextHeader("k", "\xff")
}
