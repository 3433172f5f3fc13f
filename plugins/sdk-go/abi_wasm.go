//go:build wasm

// The canonical ABI of the weir:plugin world, by hand: the world is small (two
// exports, one import), so this is all the binding code it needs. The layouts it
// relies on are the constants below.
//
// Memory handed to the host stays reachable from Go until the host's post-return
// call, so the (non-moving) garbage collector never frees it too early.
//
// cabi_realloc must not allocate from the Go heap: the host calls it while it
// lowers a call's arguments, when the component may not call any import, and an
// allocation can start a garbage collection, which reads the clock (a WASI import):
// the host then traps with "cannot leave component instance". So cabi_realloc
// hands out space from a reserve, allocated beforehand, and each call copies its
// arguments out of it into ordinary Go memory before the reserve is reused. The
// reserve is kept at least twice the largest arguments seen (64 KiB at first); a
// call whose arguments do not fit falls back to the Go heap once, and grows it.

package weir

import (
	"runtime"
	"unsafe"
)

// Canonical-ABI layouts (wasm32) of the world's types, in bytes. `cargo test`
// checks every constant of this block against wit/plugin.wit (plugins/sdk-go/abicheck).
// A string or list is (ptr u32, len u32), 8 bytes; an option or a result is a u8
// discriminant (0 = none or ok, 1 = some or err), then its payload.
const (
	headerSize        = 16 // record header
	headerAlign       = 4
	headerKeyOffset   = 0
	headerValueOffset = 8

	configEntrySize        = 16 // tuple<string, string>, init's config
	configEntryKeyOffset   = 0
	configEntryValueOffset = 8

	optionPayloadOffset = 4 // option<list<u8>>, an output's key and value

	outputSize          = 40 // record output
	outputAlign         = 4
	outputToOffset      = 0
	outputKeyOffset     = 8
	outputValueOffset   = 20
	outputHeadersOffset = 32

	failureInvalid       = 0 // variant failure: the discriminants of its cases
	failureTransient     = 1
	failurePayloadOffset = 4

	handleResultSize          = 16 // result<list<output>, failure>, handle-event's
	handleResultAlign         = 4
	handleResultPayloadOffset = 4

	initResultSize          = 12 // result<_, string>, init's
	initResultAlign         = 4
	initResultPayloadOffset = 4
)

// What Go allocates for the host (retArea, headers, outputs) is made of uint32s, so
// it is 4-byte aligned: this fails to compile if a layout ever needs more.
const _ = uint(4 - max(headerAlign, outputAlign, handleResultAlign, initResultAlign))

//go:wasmimport weir:plugin/host@0.1.0 log
func wasmLog(level uint32, ptr uint32, length uint32)

func hostLog(level Level, message string) {
	wasmLog(uint32(level), strPtr(message), uint32(len(message)))
	runtime.KeepAlive(message)
}

// The reserve cabi_realloc allocates from (see above).
var (
	reserve     = make([]uint64, 64<<10/8)
	reserveUsed uint32   // bytes of reserve handed out for the current call
	callArgs    uint32   // bytes asked for by the current call
	largestArgs uint32   // the most bytes one call has asked for
	overflow    [][]byte // fallback buffers of the current call
)

// argsTaken is called by each export once it has copied its arguments: the
// reserve may be reused, and is grown if it proved small.
func argsTaken() {
	largestArgs = max(largestArgs, callArgs)
	if want := 2 * uint64(largestArgs); want > uint64(len(reserve))*8 {
		reserve = make([]uint64, (want+7)/8)
	}
	reserveUsed, callArgs, overflow = 0, 0, nil
}

// held holds what the last call returned, until its post-return.
var held []any

func keep(v any) { held = append(held, v) }
func release()   { held = held[:0] }

// retArea is where a call's result is written; its address is the return value.
var retArea [max(handleResultSize, initResultSize) / 4]uint32

func addr(p unsafe.Pointer) uint32 { return uint32(uintptr(p)) }

func at(a uint32) unsafe.Pointer { return unsafe.Pointer(uintptr(a)) }

func load32(a uint32) uint32 { return *(*uint32)(at(a)) }

func store32(a, v uint32) { *(*uint32)(at(a)) = v }

func store8(a uint32, v uint8) { *(*uint8)(at(a)) = v }

func strPtr(s string) uint32 {
	if len(s) == 0 {
		return 0
	}
	return addr(unsafe.Pointer(unsafe.StringData(s)))
}

// stringAt copies the string at (ptr, n) of host-written memory.
func stringAt(ptr, n uint32) string {
	if n == 0 {
		return ""
	}
	return string(unsafe.Slice((*byte)(at(ptr)), n))
}

// bytesAt copies the list<u8> at (ptr, n); never nil.
func bytesAt(ptr, n uint32) []byte {
	b := make([]byte, n)
	copy(b, unsafe.Slice((*byte)(at(ptr)), n))
	return b
}

// loadString copies the string whose (ptr, len) is at a.
func loadString(a uint32) string { return stringAt(load32(a), load32(a+4)) }

// loadBytes copies the list<u8> whose (ptr, len) is at a.
func loadBytes(a uint32) []byte { return bytesAt(load32(a), load32(a+4)) }

func storeString(a uint32, s string) {
	store32(a, strPtr(s))
	store32(a+4, uint32(len(s)))
	if len(s) > 0 {
		keep(s)
	}
}

func storeBytes(a uint32, b []byte) {
	if len(b) == 0 {
		store32(a, 0)
		store32(a+4, 0)
		return
	}
	store32(a, addr(unsafe.Pointer(&b[0])))
	store32(a+4, uint32(len(b)))
	keep(b)
}

func storeOption(a uint32, b []byte) {
	if b == nil {
		store8(a, 0)
		return
	}
	store8(a, 1)
	storeBytes(a+optionPayloadOffset, b)
}

func storeHeaders(a uint32, hs []Header) {
	if len(hs) == 0 {
		store32(a, 0)
		store32(a+4, 0)
		return
	}
	buf := make([]uint32, headerSize/4*len(hs))
	keep(buf)
	base := addr(unsafe.Pointer(&buf[0]))
	for i, h := range hs {
		a := base + uint32(headerSize*i)
		storeString(a+headerKeyOffset, h.Key)
		storeBytes(a+headerValueOffset, h.Value)
	}
	store32(a, base)
	store32(a+4, uint32(len(hs)))
}

//go:wasmexport cabi_realloc
func cabiRealloc(old, oldSize, align, newSize uint32) uint32 {
	if newSize == 0 {
		return align // a dangling, aligned, non-null pointer
	}
	callArgs += newSize
	base := addr(unsafe.Pointer(&reserve[0]))
	p := (base + reserveUsed + align - 1) &^ (align - 1)
	if p+newSize > base+uint32(len(reserve))*8 {
		// Does not fit: the Go heap, this once (argsTaken grows the reserve).
		buf := make([]byte, newSize+align)
		overflow = append(overflow, buf)
		a := addr(unsafe.Pointer(&buf[0]))
		p = (a + align - 1) &^ (align - 1)
	} else {
		reserveUsed = p + newSize - base
	}
	if old != 0 {
		copy(unsafe.Slice((*byte)(at(p)), newSize), unsafe.Slice((*byte)(at(old)), min(oldSize, newSize)))
	}
	return p
}

//go:wasmexport init
func wasmInit(ptr, n uint32) uint32 {
	config := make(Config, n)
	for i := uint32(0); i < n; i++ {
		e := ptr + configEntrySize*i
		config[i] = ConfigEntry{Key: loadString(e + configEntryKeyOffset), Value: loadString(e + configEntryValueOffset)}
	}
	argsTaken()
	ret := addr(unsafe.Pointer(&retArea))
	if err := Init(config); err != nil {
		store8(ret, 1)
		storeString(ret+initResultPayloadOffset, err.Error())
	} else {
		store8(ret, 0)
	}
	return ret
}

//go:wasmexport cabi_post_init
func wasmPostInit(uint32) { release() }

//go:wasmexport handle-event
func wasmHandleEvent(topicPtr, topicLen uint32, partition int32, offset int64, tsSome uint32, ts int64,
	keySome, keyPtr, keyLen, valueSome, valuePtr, valueLen, headersPtr, headersLen uint32) uint32 {
	e := Event{Topic: stringAt(topicPtr, topicLen), Partition: partition, Offset: offset}
	if tsSome != 0 {
		e.TimestampMs = &ts
	}
	if keySome != 0 {
		e.Key = bytesAt(keyPtr, keyLen)
	}
	if valueSome != 0 {
		e.Value = bytesAt(valuePtr, valueLen)
	}
	if headersLen > 0 {
		e.Headers = make([]Header, headersLen)
		for i := range e.Headers {
			h := headersPtr + headerSize*uint32(i)
			e.Headers[i] = Header{Key: loadString(h + headerKeyOffset), Value: loadBytes(h + headerValueOffset)}
		}
	}
	argsTaken()

	outputs, err := HandleEvent(e)
	ret := addr(unsafe.Pointer(&retArea))
	if err != nil {
		f := failureOf(err)
		if f == nil {
			// A bug, as an uncaught exception is in Python and JavaScript: log it,
			// then trap like a Rust panic (the host retries on a fresh instance).
			hostLog(Error, "handle returned an error that is not a weir.Failure: "+err.Error())
			panic(err)
		}
		store8(ret, 1)
		failure := ret + handleResultPayloadOffset
		if f.Transient {
			store8(failure, failureTransient)
		} else {
			store8(failure, failureInvalid)
		}
		storeString(failure+failurePayloadOffset, f.Message)
		return ret
	}
	store8(ret, 0)
	list := ret + handleResultPayloadOffset
	if len(outputs) == 0 {
		store32(list, 0)
		store32(list+4, 0)
		return ret
	}
	buf := make([]uint32, outputSize/4*len(outputs))
	keep(buf)
	base := addr(unsafe.Pointer(&buf[0]))
	for i, o := range outputs {
		a := base + uint32(outputSize*i)
		storeString(a+outputToOffset, o.To)
		storeOption(a+outputKeyOffset, o.Key)
		storeOption(a+outputValueOffset, o.Value)
		storeHeaders(a+outputHeadersOffset, o.Headers)
	}
	store32(list, base)
	store32(list+4, uint32(len(outputs)))
	return ret
}

//go:wasmexport cabi_post_handle-event
func wasmPostHandleEvent(uint32) { release() }
