// Command weir-go-link prepares a Go wasip1 reactor module (go build
// -buildmode=c-shared) for `wasm-tools component embed` and `component new --adapt`
// with the WASI preview1 reactor adapter. It does two things:
//
//  1. It picks the world and prints it: `stateful-plugin` when the module imports
//     anything of `weir:plugin/state` or `weir:plugin/timers` (the Go linker keeps
//     only the imports something refers to, so that is when the plugin uses state or
//     timers, or registers a timer handler), else `plugin`, in which case it removes
//     the SDK's `handle-timer` and `cabi_post_handle-timer` exports, which the plain
//     world does not have.
//  2. It adds a `cabi_realloc_adapter` export, written in plain wasm, that
//     bump-allocates from the SDK's adapterArena (found by its marker in the data
//     segments).
//
// Why: the adapter allocates its state (and wit-component its stack) on the first
// WASI call, which the Go runtime makes from _initialize, before any Go function
// may run. Without this export the adapter calls the module's cabi_realloc, a Go
// function, and the runtime aborts ("wasmexport function called before runtime
// initialization"); with `--realloc-via-memory-grow` the adapter takes pages with
// memory.grow that Go's heap then also uses ("grew heap, but no adequate free space
// found", or silent corruption).
//
//	weir-go-link IN.wasm OUT.wasm    # prints the world: plugin or stateful-plugin
package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
)

var marker = []byte("weir:adapter:mem")

const exportName = "cabi_realloc_adapter"

// The worlds of wit/plugin.wit, and what makes a module stateful.
const (
	plainWorld    = "plugin"
	statefulWorld = "stateful-plugin"
)

var (
	statefulImports = []string{"weir:plugin/state@", "weir:plugin/timers@"}
	statefulExports = []string{"handle-timer", "cabi_post_handle-timer"}
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: weir-go-link IN.wasm OUT.wasm")
		os.Exit(2)
	}
	in, err := os.ReadFile(os.Args[1])
	var world string
	if err == nil {
		var out []byte
		if out, world, err = link(in); err == nil {
			err = os.WriteFile(os.Args[2], out, 0o644)
		}
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "weir-go-link: %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
	fmt.Println(world)
}

type section struct {
	id      byte
	payload []byte
}

type reader struct {
	b   []byte
	pos int
}

func (r *reader) byte() byte {
	if r.pos >= len(r.b) {
		panic(errors.New("unexpected end of section"))
	}
	r.pos++
	return r.b[r.pos-1]
}

func (r *reader) u32() uint32 {
	var v uint32
	for shift := 0; ; shift += 7 {
		c := r.byte()
		v |= uint32(c&0x7f) << shift
		if c&0x80 == 0 {
			return v
		}
	}
}

func (r *reader) s32() int32 {
	var v int32
	shift := 0
	for {
		c := r.byte()
		v |= int32(c&0x7f) << shift
		shift += 7
		if c&0x80 == 0 {
			if shift < 32 && c&0x40 != 0 {
				v |= -1 << shift
			}
			return v
		}
	}
}

func (r *reader) bytes(n uint32) []byte {
	if r.pos+int(n) > len(r.b) {
		panic(errors.New("unexpected end of section"))
	}
	r.pos += int(n)
	return r.b[r.pos-int(n) : r.pos]
}

func (r *reader) name() string { return string(r.bytes(r.u32())) }

func (r *reader) limits() {
	if flags := r.byte(); flags&1 != 0 {
		r.u32()
		r.u32()
	} else {
		r.u32()
	}
}

func u32(v uint32) []byte { return binary.AppendUvarint(nil, uint64(v)) }

func s32(v int32) []byte {
	var out []byte
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(out, c)
		}
		out = append(out, c|0x80)
	}
}

// exportEntries splits the export section into its entries (name, kind, index).
func exportEntries(payload []byte) (names []string, entries [][]byte) {
	r := &reader{b: payload}
	for n := r.u32(); n > 0; n-- {
		start := r.pos
		name := r.name()
		r.byte()
		r.u32()
		names = append(names, name)
		entries = append(entries, payload[start:r.pos])
	}
	return names, entries
}

// appendToVector adds one entry to a section that is a vector (count + entries).
func appendToVector(payload, entry []byte) []byte {
	r := &reader{b: payload}
	n := r.u32()
	out := append(u32(n+1), payload[r.pos:]...)
	return append(out, entry...)
}

func link(in []byte) (out []byte, world string, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("malformed module: %v", p)
		}
	}()
	if len(in) < 8 || !bytes.Equal(in[:8], []byte{0, 'a', 's', 'm', 1, 0, 0, 0}) {
		return nil, "", errors.New("not a core wasm module")
	}
	var sections []section
	r := &reader{b: in, pos: 8}
	for r.pos < len(in) {
		id := r.byte()
		sections = append(sections, section{id, r.bytes(r.u32())})
	}
	find := func(id byte) int {
		for i, s := range sections {
			if s.id == id {
				return i
			}
		}
		return -1
	}
	types, imports, funcs, exports, code, data := find(1), find(2), find(3), find(7), find(10), find(11)
	if types < 0 || funcs < 0 || exports < 0 || code < 0 || data < 0 {
		return nil, "", errors.New("missing a type, function, export, code or data section")
	}

	// Refuse to add the export twice.
	names, entries := exportEntries(sections[exports].payload)
	if slices.Contains(names, exportName) {
		return nil, "", errors.New(exportName + " is already exported")
	}

	// Index of the new function: imported functions, then defined ones. And the world.
	var funcImports uint32
	world = plainWorld
	if imports >= 0 {
		ir := &reader{b: sections[imports].payload}
		for n := ir.u32(); n > 0; n-- {
			module := ir.name()
			ir.name()
			for _, prefix := range statefulImports {
				if strings.HasPrefix(module, prefix) {
					world = statefulWorld
				}
			}
			switch kind := ir.byte(); kind {
			case 0:
				ir.u32()
				funcImports++
			case 1:
				ir.byte()
				ir.limits()
			case 2:
				ir.limits()
			case 3:
				ir.byte()
				ir.byte()
			default:
				return nil, "", fmt.Errorf("unknown import kind %d", kind)
			}
		}
	}
	if world == plainWorld {
		// Without state or timers the plain world: drop what only the stateful one
		// has. The functions stay in the module, exported by nothing.
		var kept [][]byte
		for i, name := range names {
			if !slices.Contains(statefulExports, name) {
				kept = append(kept, entries[i])
			}
		}
		sections[exports].payload = append(u32(uint32(len(kept))), bytes.Join(kept, nil)...)
	}
	fr := &reader{b: sections[funcs].payload}
	funcIndex := funcImports + fr.u32()
	tr := &reader{b: sections[types].payload}
	typeIndex := tr.u32()

	// Find the arena: its marker in an active data segment of memory 0.
	var arena uint32
	found := 0
	dr := &reader{b: sections[data].payload}
	for n := dr.u32(); n > 0; n-- {
		flags := dr.u32()
		var offset int32
		active := flags == 0 || flags == 2
		if flags == 2 {
			dr.u32()
		}
		if active {
			if op := dr.byte(); op != 0x41 {
				return nil, "", fmt.Errorf("data segment offset is not i32.const (opcode %#x)", op)
			}
			offset = dr.s32()
			if end := dr.byte(); end != 0x0b {
				return nil, "", errors.New("data segment offset is not a constant expression")
			}
		}
		contents := dr.bytes(dr.u32())
		for i := 0; active; {
			j := bytes.Index(contents[i:], marker)
			if j < 0 {
				break
			}
			arena = uint32(offset) + uint32(i+j)
			found++
			i += j + 1
		}
	}
	if found != 1 {
		return nil, "", fmt.Errorf("found the adapter arena marker %d times (is weir.local/weir linked in?)", found)
	}
	size, err := arenaSize(sections[data].payload, arena)
	if err != nil {
		return nil, "", err
	}

	// func (old, old_len, align, new_len i32) -> i32 { bump-allocate from the arena }
	base, end, off := int32(arena+64), int32(arena+size), int32(arena+16)
	var body []byte
	body = append(body, 1, 1, 0x7f) // one local: p i32 (local 4)
	body = append(body, 0x41)
	body = append(body, s32(base)...)
	body = append(body, 0x41)
	body = append(body, s32(off)...)
	body = append(body, 0x28, 2, 0)       // i32.load
	body = append(body, 0x6a)             // i32.add: base + offset
	body = append(body, 0x20, 2, 0x6a)    // + align
	body = append(body, 0x41, 1, 0x6b)    // - 1
	body = append(body, 0x41, 0, 0x20, 2) // 0, align
	body = append(body, 0x6b, 0x71)       // & -align
	body = append(body, 0x22, 4)          // local.tee p
	body = append(body, 0x20, 3, 0x6a)    // p + new_len
	body = append(body, 0x41)
	body = append(body, s32(end)...)
	body = append(body, 0x4b)                   // > end ?
	body = append(body, 0x04, 0x40, 0x00, 0x0b) // if: unreachable (the arena is full)
	body = append(body, 0x41)
	body = append(body, s32(off)...)
	body = append(body, 0x20, 4, 0x20, 3, 0x6a) // p + new_len
	body = append(body, 0x41)
	body = append(body, s32(base)...)
	body = append(body, 0x6b)       // - base
	body = append(body, 0x36, 2, 0) // i32.store: offset = p + new_len - base
	body = append(body, 0x20, 4)    // p
	body = append(body, 0x0b)       // end

	sections[types].payload = appendToVector(sections[types].payload, []byte{0x60, 4, 0x7f, 0x7f, 0x7f, 0x7f, 1, 0x7f})
	sections[funcs].payload = appendToVector(sections[funcs].payload, u32(typeIndex))
	export := append(u32(uint32(len(exportName))), exportName...)
	export = append(export, 0)
	export = append(export, u32(funcIndex)...)
	sections[exports].payload = appendToVector(sections[exports].payload, export)
	sections[code].payload = appendToVector(sections[code].payload, append(u32(uint32(len(body))), body...))

	out = append([]byte(nil), in[:8]...)
	for _, s := range sections {
		out = append(out, s.id)
		out = append(out, u32(uint32(len(s.payload)))...)
		out = append(out, s.payload...)
	}
	return out, world, nil
}

// arenaSize reads the size field of the arena header at address arena.
func arenaSize(data []byte, arena uint32) (uint32, error) {
	dr := &reader{b: data}
	for n := dr.u32(); n > 0; n-- {
		flags := dr.u32()
		if flags == 2 {
			dr.u32()
		}
		var offset uint32
		if flags != 1 {
			dr.byte()
			offset = uint32(dr.s32())
			dr.byte()
		}
		contents := dr.bytes(dr.u32())
		if flags != 1 && arena >= offset && arena+16 <= offset+uint32(len(contents)) {
			// The linker trims zeros at the end of a segment: bytes past it are zero.
			var field [4]byte
			if start := arena - offset + 20; int(start) < len(contents) {
				copy(field[:], contents[start:])
			}
			size := binary.LittleEndian.Uint32(field[:])
			if size < 2*65536 {
				return 0, fmt.Errorf("adapter arena of %d bytes is too small", size)
			}
			return size, nil
		}
	}
	return 0, errors.New("the adapter arena header is not in one data segment")
}
