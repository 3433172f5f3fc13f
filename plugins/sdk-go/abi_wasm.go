//go:build wasm

// The canonical ABI of the weir:plugin worlds, by hand: the worlds are small (three
// exports, four imported interfaces), so this is all the binding code they need.
// The layouts it relies on are the constants below, and the core signatures of the
// //go:wasmimport and //go:wasmexport functions, which abicheck also checks.
//
// Which world a module is built against follows from its imports (cmd/weir-go-link):
// the Go linker keeps only the imports that something refers to, so a plugin that
// never refers to state or timers imports neither, and the build drops its
// handle-timer export and embeds it in the plain `plugin` world. Both worlds import
// `span`; likewise a plugin imports it only if it calls a Span* function.
//
// Memory handed to the host stays reachable from Go until the host's post-return
// call, so the (non-moving) garbage collector never frees it too early.
//
// cabi_realloc must not allocate from the Go heap: the host calls it while it
// lowers a call's arguments or an import's results, when the component may not call
// any import, and an allocation can start a garbage collection, which reads the
// clock (a WASI import): the host then traps with "cannot leave component
// instance". So cabi_realloc hands out space from a reserve, allocated beforehand,
// and each export (for its arguments) and each import wrapper (for its results)
// copies what the host wrote out of it into ordinary Go memory before the reserve is
// reused. The reserve is kept at least twice the most the host has written at once
// (64 KiB at first); a call that does not fit falls back to the Go heap once, and
// grows it.

package weir

import (
	"errors"
	"runtime"
	"runtime/debug"
	"unsafe"
)

// Canonical-ABI layouts (wasm32) of the worlds' types, in bytes. `cargo test`
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

	// The return areas of the imports that return more than one flat value: the
	// caller (here, importRet) provides them and the host writes the result there.
	getResultSize          = 12 // option<list<u8>>, state.get's
	getResultAlign         = 4
	getResultPayloadOffset = 4

	writeResultSize          = 12 // result<_, string>, state.set's and timers.set's
	writeResultAlign         = 4
	writeResultPayloadOffset = 4

	entriesResultSize  = 8 // list<tuple<string, list<u8>>>, state.entries'
	entriesResultAlign = 4
	entrySize          = 16 // tuple<string, list<u8>>, one of the list
	entryAlign         = 4
	entryNameOffset    = 0
	entryValueOffset   = 8

	dueResultSize          = 16 // option<s64>, timers.due's
	dueResultAlign         = 8
	dueResultPayloadOffset = 8

	attributeSize        = 16 // tuple<string, string>, one of span.add-event's attributes
	attributeAlign       = 4
	attributeKeyOffset   = 0
	attributeValueOffset = 8
)

// What Go allocates for the host (retArea, headers, outputs) is made of uint32s, so
// it is 4-byte aligned, and importRet is made of uint64s, so 8-byte aligned: these
// fail to compile if a layout ever needs more.
const (
	_ = uint(4 - max(headerAlign, outputAlign, handleResultAlign, initResultAlign, attributeAlign))
	_ = uint(8 - max(getResultAlign, writeResultAlign, entriesResultAlign, dueResultAlign))
)

//go:wasmimport weir:plugin/host@0.1.2 log
func wasmLog(level uint32, ptr uint32, length uint32)

func hostLog(level Level, message string) {
	wasmLog(uint32(level), strPtr(message), uint32(len(message)))
	runtime.KeepAlive(message)
}

// The reserve cabi_realloc allocates from (see above).
var (
	reserve     = make([]uint64, 64<<10/8)
	reserveUsed uint32   // bytes of reserve handed out since the last lifted()
	callArgs    uint32   // bytes asked for since the last lifted()
	largestArgs uint32   // the most bytes asked for between two lifted() calls
	overflow    [][]byte // fallback buffers since the last lifted()
)

// lifted is called by each export once it has copied its arguments, and by each
// import wrapper once it has copied its results: the reserve may be reused, and is
// grown if it proved small.
func lifted() {
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

func load8(a uint32) uint8 { return *(*uint8)(at(a)) }

func loadS64(a uint32) int64 { return *(*int64)(at(a)) }

func strPtr(s string) uint32 {
	if len(s) == 0 {
		return 0
	}
	return addr(unsafe.Pointer(unsafe.StringData(s)))
}

func bytesPtr(b []byte) uint32 {
	if len(b) == 0 {
		return 0
	}
	return addr(unsafe.Pointer(&b[0]))
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
	lifted()
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
	lifted()
	writeRefused = false

	outputs, err := HandleEvent(e)
	return storeHandlerResult("handle", outputs, err)
}

//go:wasmexport cabi_post_handle-event
func wasmPostHandleEvent(uint32) { release() }

// handle-timer: fired-timer's fields come flat (name, key, due-ms, payload, topic,
// partition), as handle-event's do. cmd/weir-go-link removes this export from a
// plugin that imports neither state nor timers.
//
//go:wasmexport handle-timer
func wasmHandleTimer(namePtr, nameLen, keySome, keyPtr, keyLen uint32, dueMs int64,
	payloadPtr, payloadLen, topicPtr, topicLen uint32, partition int32) uint32 {
	t := FiredTimer{
		Name:      stringAt(namePtr, nameLen),
		DueMs:     dueMs,
		Payload:   bytesAt(payloadPtr, payloadLen),
		Topic:     stringAt(topicPtr, topicLen),
		Partition: partition,
	}
	if keySome != 0 {
		t.Key = bytesAt(keyPtr, keyLen)
	}
	lifted()
	writeRefused = false

	outputs, err := HandleTimer(t)
	return storeHandlerResult("the timer handler", outputs, err)
}

//go:wasmexport cabi_post_handle-timer
func wasmPostHandleTimer(uint32) { release() }

// storeHandlerResult writes what a handler returned as result<list<output>, failure>
// (handle-event's and handle-timer's) and returns its address.
func storeHandlerResult(handler string, outputs []Output, err error) uint32 {
	ret := addr(unsafe.Pointer(&retArea))
	if err != nil {
		f := failureOf(err)
		var limit *LimitError
		if f == nil && errors.As(err, &limit) && writeRefused {
			// The host refused a write of this call and dead-letters the record as
			// state-limit when the call returns successfully: nothing to produce.
			store8(ret, 0)
			store32(ret+handleResultPayloadOffset, 0)
			store32(ret+handleResultPayloadOffset+4, 0)
			return ret
		}
		if f == nil {
			// A bug, as an uncaught exception is in Python and JavaScript: log it,
			// then trap like a Rust panic (the host retries on a fresh instance).
			hostLog(Error, handler+" returned an error that is not a weir.Failure: "+err.Error())
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

// --- state and timers (world stateful-plugin) --------------------------------------
//
// Arguments are passed as pointers into Go memory, which the host reads before it
// does anything else; results that do not fit one value are written by the host
// into importRet (a global: never on a goroutine stack, which may move), with any
// list or string they hold allocated through cabi_realloc, from the reserve.

// importRet is the return area of the import being called.
var importRet [max(getResultSize, writeResultSize, entriesResultSize, dueResultSize) / 8]uint64

// writeRefused is whether the host refused a write (state.set, timers.set) during
// the current call: only then does a *LimitError the handler returns mean
// "state-limit" rather than a bug.
var writeRefused bool

// timersLinked refers to a timers import, so that a plugin that registers a timer
// handler imports `timers` (the Go linker keeps only the imports something refers
// to) and so gets the stateful-plugin world.
var timersLinked func() int64

func linkTimers() { timersLinked = wasmTimersNowMs }

//go:wasmimport weir:plugin/state@0.1.2 get
func wasmStateGet(namePtr, nameLen, ret uint32)

//go:wasmimport weir:plugin/state@0.1.2 set
func wasmStateSet(namePtr, nameLen, valuePtr, valueLen, ret uint32)

//go:wasmimport weir:plugin/state@0.1.2 delete
func wasmStateDelete(namePtr, nameLen uint32)

//go:wasmimport weir:plugin/state@0.1.2 exists
func wasmStateExists(namePtr, nameLen uint32) uint32

//go:wasmimport weir:plugin/state@0.1.2 entries
func wasmStateEntries(afterSome, afterPtr, afterLen, max, ret uint32)

//go:wasmimport weir:plugin/timers@0.1.2 set
func wasmTimersSet(namePtr, nameLen uint32, atMs int64, payloadPtr, payloadLen, ret uint32)

//go:wasmimport weir:plugin/timers@0.1.2 cancel
func wasmTimersCancel(namePtr, nameLen uint32)

//go:wasmimport weir:plugin/timers@0.1.2 due
func wasmTimersDue(namePtr, nameLen, ret uint32)

//go:wasmimport weir:plugin/timers@0.1.2 now-ms
func wasmTimersNowMs() int64

// collectorOff stops the garbage collector (waiting out a cycle under way) before an
// import whose results have no size bound the SDK knows (state.get's value,
// state.entries' list): if they do not fit the reserve, cabi_realloc falls back to
// the Go heap, and with the collector off an allocation reads no clock. (With it
// on, a large allocation that grows the heap scavenges and reads the clock: a
// "cannot leave component instance" trap. A plugin that sets a memory limit,
// debug.SetMemoryLimit, may still scavenge near it.) The pair costs about half a
// microsecond per call. It returns the setting for collectorOn.
func collectorOff() int { return debug.SetGCPercent(-1) }

// collectorOn restores the collector once the results are copied out.
func collectorOn(percent int) { debug.SetGCPercent(percent) }

func stateGet(name string) ([]byte, bool) {
	ret := addr(unsafe.Pointer(&importRet))
	gc := collectorOff()
	wasmStateGet(strPtr(name), uint32(len(name)), ret)
	runtime.KeepAlive(name)
	var value []byte
	some := load8(ret) != 0
	if some {
		value = loadBytes(ret + getResultPayloadOffset)
	}
	lifted()
	collectorOn(gc)
	return value, some
}

func stateSet(name string, value []byte) error {
	ret := addr(unsafe.Pointer(&importRet))
	wasmStateSet(strPtr(name), uint32(len(name)), bytesPtr(value), uint32(len(value)), ret)
	runtime.KeepAlive(name)
	runtime.KeepAlive(value)
	return writeResult(ret)
}

// writeResult lifts state.set's and timers.set's result<_, string>.
func writeResult(ret uint32) error {
	if load8(ret) == 0 {
		return nil
	}
	message := loadString(ret + writeResultPayloadOffset)
	lifted()
	writeRefused = true
	return &LimitError{Message: message}
}

func stateDelete(name string) {
	wasmStateDelete(strPtr(name), uint32(len(name)))
	runtime.KeepAlive(name)
}

func stateExists(name string) bool {
	exists := wasmStateExists(strPtr(name), uint32(len(name))) != 0
	runtime.KeepAlive(name)
	return exists
}

func stateEntries(after *string, max uint32) []StateEntry {
	ret := addr(unsafe.Pointer(&importRet))
	gc := collectorOff()
	if after == nil {
		wasmStateEntries(0, 0, 0, max, ret)
	} else {
		wasmStateEntries(1, strPtr(*after), uint32(len(*after)), max, ret)
		runtime.KeepAlive(after)
	}
	ptr, n := load32(ret), load32(ret+4)
	var entries []StateEntry
	if n > 0 {
		entries = make([]StateEntry, n)
		for i := range entries {
			e := ptr + entrySize*uint32(i)
			entries[i] = StateEntry{Name: loadString(e + entryNameOffset), Value: loadBytes(e + entryValueOffset)}
		}
	}
	lifted()
	collectorOn(gc)
	return entries
}

func timerSet(name string, atMs int64, payload []byte) error {
	ret := addr(unsafe.Pointer(&importRet))
	wasmTimersSet(strPtr(name), uint32(len(name)), atMs, bytesPtr(payload), uint32(len(payload)), ret)
	runtime.KeepAlive(name)
	runtime.KeepAlive(payload)
	return writeResult(ret)
}

func timerCancel(name string) {
	wasmTimersCancel(strPtr(name), uint32(len(name)))
	runtime.KeepAlive(name)
}

func timerDue(name string) (int64, bool) {
	ret := addr(unsafe.Pointer(&importRet))
	wasmTimersDue(strPtr(name), uint32(len(name)), ret)
	runtime.KeepAlive(name)
	if load8(ret) == 0 {
		return 0, false
	}
	return loadS64(ret + dueResultPayloadOffset), true
}

func nowMs() int64 { return wasmTimersNowMs() }

// --- span (both worlds) -------------------------------------------------------------
//
// Arguments only, passed as pointers into Go memory that the host reads during the
// call; nothing comes back but recording's bool.

//go:wasmimport weir:plugin/span@0.1.2 recording
func wasmSpanRecording() uint32

//go:wasmimport weir:plugin/span@0.1.2 set-attribute
func wasmSpanSetAttribute(keyPtr, keyLen, valuePtr, valueLen uint32)

//go:wasmimport weir:plugin/span@0.1.2 add-event
func wasmSpanAddEvent(namePtr, nameLen, attributesPtr, attributesLen uint32)

func spanRecording() bool { return wasmSpanRecording() != 0 }

func spanSetAttribute(key, value string) {
	wasmSpanSetAttribute(strPtr(key), uint32(len(key)), strPtr(value), uint32(len(value)))
	runtime.KeepAlive(key)
	runtime.KeepAlive(value)
}

// spanAddEvent lowers the attributes as list<tuple<string, string>>: one element of
// (key ptr, key len, value ptr, value len) each, in a Go buffer. The buffer holds the
// strings' addresses as plain numbers, so the strings are kept alive, with it, until
// the host returns.
func spanAddEvent(name string, attributes []SpanAttribute) {
	var list, n uint32
	var buf []uint32
	if len(attributes) > 0 {
		buf = make([]uint32, attributeSize/4*len(attributes))
		list, n = addr(unsafe.Pointer(&buf[0])), uint32(len(attributes))
		for i, a := range attributes {
			e := list + uint32(attributeSize*i)
			store32(e+attributeKeyOffset, strPtr(a.Key))
			store32(e+attributeKeyOffset+4, uint32(len(a.Key)))
			store32(e+attributeValueOffset, strPtr(a.Value))
			store32(e+attributeValueOffset+4, uint32(len(a.Value)))
		}
	}
	wasmSpanAddEvent(strPtr(name), uint32(len(name)), list, n)
	runtime.KeepAlive(name)
	runtime.KeepAlive(attributes)
	runtime.KeepAlive(buf)
}
