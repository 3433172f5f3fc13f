package main

import (
	"errors"
	"testing"

	"weir.local/weir"
)

func TestShout(t *testing.T) {
	out, err := handle(weir.Event{Key: []byte("k1"), Value: []byte("hello, weir")})
	if err != nil || len(out) != 1 || string(out[0].Value) != "HELLO, WEIR" || out[0].To != "out" {
		t.Fatalf("got %+v, %v", out, err)
	}
}

func TestTombstoneIsInvalid(t *testing.T) {
	_, err := handle(weir.Event{})
	var f *weir.Failure
	if !errors.As(err, &f) || f.Transient {
		t.Fatalf("got %v", err)
	}
}
