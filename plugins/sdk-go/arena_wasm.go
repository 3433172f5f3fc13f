//go:build wasm

package weir

// adapterArena is the memory the WASI preview1 adapter allocates its state and
// stack from. The adapter needs that memory during the Go runtime's own start-up
// (_initialize calls clock_time_get, random_get, ...), when no Go function may run
// yet, so cabi_realloc cannot serve it; and memory.grow would hand the adapter
// pages that Go's heap also takes (Go does not expect anyone else to grow memory).
// So the build (cmd/weir-go-link) finds this array by its marker and adds a
// `cabi_realloc_adapter` export to the module, in plain wasm, that bump-allocates
// from it. Go never touches these bytes; they live in the data segment, so they
// are not part of the heap.
//
// Layout: marker (16 bytes), bump offset (u32, starts at 0), size of the whole
// array (u32, little-endian), padding to 64; allocations follow.
var adapterArena = [adapterArenaSize]byte{
	'w', 'e', 'i', 'r', ':', 'a', 'd', 'a', 'p', 't', 'e', 'r', ':', 'm', 'e', 'm',
	0, 0, 0, 0,
	adapterArenaSize & 0xff, adapterArenaSize >> 8 & 0xff, adapterArenaSize >> 16 & 0xff, adapterArenaSize >> 24 & 0xff,
}

// Four 64 KiB pages (the adapter asks for one page of state and one of stack) and
// room to align them.
const adapterArenaSize = 4*65536 + 4096

// adapterArenaRef keeps the array (and so its marker) in the binary: nothing in Go
// reads it, and the linker drops what nothing refers to.
var adapterArenaRef *[adapterArenaSize]byte

func init() { adapterArenaRef = &adapterArena }
