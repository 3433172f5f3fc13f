package main

import (
	"bytes"
	"encoding/binary"
	"slices"
	"testing"
)

// module is a small core module shaped like the SDK's: the given function imports
// (module, name), two functions exported as handle-timer and cabi_post_handle-timer
// and one as init, and the adapter arena's header in a data segment.
func module(imports [][2]string) []byte {
	name := func(s string) []byte { return append(u32(uint32(len(s))), s...) }
	vector := func(entries ...[]byte) []byte {
		return append(u32(uint32(len(entries))), bytes.Join(entries, nil)...)
	}
	var ims [][]byte
	for _, im := range imports {
		ims = append(ims, slices.Concat(name(im[0]), name(im[1]), []byte{0, 0}))
	}
	n := uint32(len(imports))
	arena := append(append([]byte{}, marker...), 0, 0, 0, 0)
	arena = binary.LittleEndian.AppendUint32(arena, 4*65536)
	sections := []section{
		{1, vector([]byte{0x60, 0, 0})}, // type 0: () -> ()
		{2, vector(ims...)},
		{3, vector([]byte{0}, []byte{0})},
		{7, vector(
			slices.Concat(name("init"), []byte{0}, u32(n)),
			slices.Concat(name("handle-timer"), []byte{0}, u32(n)),
			slices.Concat(name("cabi_post_handle-timer"), []byte{0}, u32(n+1)),
		)},
		{10, vector([]byte{2, 0, 0x0b}, []byte{2, 0, 0x0b})},
		{11, vector(slices.Concat([]byte{0, 0x41}, s32(1024), []byte{0x0b}, u32(uint32(len(arena))), arena))},
	}
	out := []byte{0, 'a', 's', 'm', 1, 0, 0, 0}
	for _, s := range sections {
		out = append(out, s.id)
		out = append(out, u32(uint32(len(s.payload)))...)
		out = append(out, s.payload...)
	}
	return out
}

func exports(t *testing.T, wasm []byte) []string {
	t.Helper()
	r := &reader{b: wasm, pos: 8}
	for r.pos < len(wasm) {
		id := r.byte()
		payload := r.bytes(r.u32())
		if id == 7 {
			names, _ := exportEntries(payload)
			return names
		}
	}
	t.Fatal("no export section")
	return nil
}

func TestTheWorldFollowsTheImports(t *testing.T) {
	for _, c := range []struct {
		imports [][2]string
		world   string
		exports []string
	}{
		{nil, "plugin", []string{"init", "cabi_realloc_adapter"}},
		{[][2]string{{"weir:plugin/host@0.1.2", "log"}, {"wasi_snapshot_preview1", "fd_write"}},
			"plugin", []string{"init", "cabi_realloc_adapter"}},
		// Both worlds import span: it does not make a plugin stateful.
		{[][2]string{{"weir:plugin/span@0.1.2", "recording"}, {"weir:plugin/span@0.1.2", "add-event"}},
			"plugin", []string{"init", "cabi_realloc_adapter"}},
		{[][2]string{{"weir:plugin/host@0.1.2", "log"}, {"weir:plugin/state@0.1.2", "get"}},
			"stateful-plugin", []string{"init", "handle-timer", "cabi_post_handle-timer", "cabi_realloc_adapter"}},
		{[][2]string{{"weir:plugin/span@0.1.2", "set-attribute"}, {"weir:plugin/timers@0.1.2", "now-ms"}},
			"stateful-plugin", []string{"init", "handle-timer", "cabi_post_handle-timer", "cabi_realloc_adapter"}},
		// Any version of the package counts.
		{[][2]string{{"weir:plugin/timers@0.1.1", "now-ms"}},
			"stateful-plugin", []string{"init", "handle-timer", "cabi_post_handle-timer", "cabi_realloc_adapter"}},
	} {
		out, world, err := link(module(c.imports))
		if err != nil {
			t.Fatalf("%v: %v", c.imports, err)
		}
		if world != c.world {
			t.Errorf("%v: world %s, want %s", c.imports, world, c.world)
		}
		if got := exports(t, out); !slices.Equal(got, c.exports) {
			t.Errorf("%v: exports %v, want %v", c.imports, got, c.exports)
		}
	}
}
