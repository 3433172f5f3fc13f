// The weir plugin SDK for JavaScript.
//
// A plugin is an ES module that exports two plain functions:
//
//   import { Output, Header, Invalid, Transient, log } from 'weir-plugin';
//
//   export function init(config) { ... }       // optional; throw to refuse the config
//   export function handleEvent(event) {        // return an array of Output (or nothing)
//     ...                                       // throw Invalid or Transient to fail
//   }
//
// A stateful plugin also uses `state` and `timers` (both scoped to the key of the
// record being handled) and may export a third function, `handleTimer(timer)`,
// called when one of its timers comes due. Any plugin may add attributes and events
// to the span the host opens around each call with `span`.
//
// `scripts/build-plugin DIR OUT.wasm` bundles it with this SDK and turns it into a
// component of the weir:plugin world, or of `stateful-plugin` when the plugin exports
// handleTimer or imports `state` or `timers` (build/bundle.mjs decides; wit/plugin.wit
// has the reference docs). This module imports only the SDK's own testing.js, so a
// plugin can be unit-tested with plain Node.js: `log` then writes to stderr, and
// `state`, `timers` and `span` use the in-memory host of 'weir-plugin/testing'.
import { FakeHost } from './testing.js';
//
// Failures map onto the WIT `failure` variant: Invalid (the event is bad and never
// will be good: dead-letter queue at once) and Transient (retry with backoff). Any
// other exception escaping handleEvent traps the instance, like a Rust panic: the
// host counts a `trap`, replaces the instance and retries.

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Bytes from a Uint8Array, an ArrayBuffer view or a string (UTF-8); null/undefined stay absent. */
export function bytes(value) {
  if (value === undefined || value === null) return undefined;
  if (value instanceof Uint8Array) return value;
  if (typeof value === 'string') return encoder.encode(value);
  if (ArrayBuffer.isView(value)) return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  throw new TypeError(`expected bytes or a string, got ${typeof value}`);
}

/** The UTF-8 text of some bytes (undefined stays undefined). */
export function text(value) {
  return value === undefined || value === null ? value : decoder.decode(value);
}

/** The event is bad and never will be good: dead-letter queue at once. Name the field. */
export class Invalid extends Error {
  constructor(message) {
    super(message);
    this.name = 'Invalid';
  }
}

/** The event may succeed later: the host retries it with backoff. */
export class Transient extends Error {
  constructor(message) {
    super(message);
    this.name = 'Transient';
  }
}

// A surrogate code point: in a `u` regex, only a lone one (a pair is one code point).
// (A range: componentize-js's StarlingMonkey rejects \p{Cs} as an unknown property.)
const LONE_SURROGATE = /[\uD800-\uDFFF]/u;

/**
 * A `state.set` or `timers.set` refused by one of the slot's limits
 * (`limits.state-value`, `limits.state-entries`, `limits.timers`); nothing was
 * written. Catch it to react. If it escapes handleEvent or handleTimer, the call
 * returns no outputs and the host sends the record (or the timer) to the
 * dead-letter queue as `state-limit`.
 */
export class StateLimit extends Error {
  constructor(message) {
    super(message);
    this.name = 'StateLimit';
  }
}

/** One record header; `value` is bytes (a string is UTF-8 encoded). */
export class Header {
  constructor(key, value = new Uint8Array()) {
    this.key = key;
    this.value = bytes(value);
  }

  /**
   * A header whose value is the text `value` in UTF-8, as the Rust SDK's `Header::text`.
   * Only builds headers: a received header's value is bytes. A string with a lone
   * surrogate is not text: throws a TypeError.
   */
  static text(key, value) {
    if (typeof value !== 'string') {
      throw new TypeError(`Header.text: the value must be a string, not ${typeof value}`);
    }
    if (LONE_SURROGATE.test(value)) {
      throw new TypeError(`Header.text(${JSON.stringify(key)}): the value has a lone surrogate, so it is not text`);
    }
    return new Header(key, encoder.encode(value));
  }
}

/**
 * One record to handle (the WIT `event`): `topic`, `partition`, `offset` (bigint),
 * `timestampMs` (bigint or undefined), `key` and `value` (Uint8Array or undefined: no
 * key; a tombstone) and `headers` (array of Header).
 */
export class Event {
  constructor({ topic = '', partition = 0, offset = 0n, timestampMs, key, value, headers = [] } = {}) {
    this.topic = topic;
    this.partition = partition;
    this.offset = offset;
    this.timestampMs = timestampMs;
    this.key = bytes(key);
    this.value = bytes(value);
    this.headers = headers.map((h) => (h instanceof Header ? h : new Header(h.key, h.value)));
  }

  /** The value of the first header named `key`, if any. */
  header(key) {
    const h = this.headers.find((h) => h.key === key);
    return h ? h.value : undefined;
  }
}

/**
 * A timer that came due (the WIT `fired-timer`), handed to handleTimer: `name` and
 * `payload` (Uint8Array) as given to `timers.set`, `key` (Uint8Array or undefined) of
 * the records it belongs to, `dueMs` (bigint) when it was due, and the `topic` and
 * `partition` of that key. During handleTimer, `state` and `timers` are scoped to
 * `key`, and the timer itself is gone.
 */
export class FiredTimer {
  constructor({ name, dueMs, payload, key, topic = '', partition = 0 }) {
    this.name = name;
    this.dueMs = BigInt(dueMs);
    this.payload = bytes(payload) ?? new Uint8Array();
    this.key = bytes(key);
    this.topic = topic;
    this.partition = partition;
  }
}

/**
 * One record to emit (the WIT `output`): `to` is a logical output name of the
 * pipeline; key and value may be bytes, strings (UTF-8) or undefined (no key; a
 * tombstone); headers is an array of Header.
 */
export class Output {
  constructor(to, { key, value, headers = [] } = {}) {
    this.to = to;
    this.key = bytes(key);
    this.value = bytes(value);
    this.headers = headers;
  }
}

const LEVELS = ['trace', 'debug', 'info', 'warn', 'error'];
let hostLog = null;

/** Writes a line to the host's log; level is trace, debug, info, warn or error. */
export function log(level, message) {
  if (!LEVELS.includes(level)) throw new RangeError(`unknown log level ${level}`);
  if (hostLog) hostLog(level, String(message));
  else console.error(`[${level}] ${message}`);
}

// What `state` and `timers` call: the component's imports, a refusal (a component of
// the plain world has none), or natively an in-memory FakeHost (made on first use;
// testing.reset installs a fresh one).
let backend = null;
let inComponent = false;

function host() {
  if (backend === null) backend = new FakeHost();
  return backend;
}

/** (For 'weir-plugin/testing'.) Puts `fake` behind `state`, `timers` and `span`, natively. */
export function _install(fake) {
  if (inComponent) throw new Error('weir-plugin/testing is for native tests, not inside a component');
  backend = fake;
  return fake;
}

// Entries per call of the host's `entries` when `state.entries()` reads them all.
const PAGE = 256;

/**
 * Keyed state (world `stateful-plugin`): named byte entries of the key of the record
 * being handled, or of the timer that fired. Writes are visible at once and become
 * durable with the record that made them; a record that ends in the dead-letter
 * queue leaves the state as it was.
 */
export const state = Object.freeze({
  /** The entry `name` (Uint8Array), or undefined when it is not set. */
  get(name) {
    return bytes(host().stateGet(name));
  },
  /**
   * Sets the entry `name` to `value` (bytes, or a string in UTF-8). Throws StateLimit
   * (nothing written) when the value or the key's number of entries would be over
   * the slot's limits.
   */
  set(name, value) {
    if (value === undefined || value === null) {
      throw new TypeError('state.set: the value must be bytes or a string (use state.delete)');
    }
    host().stateSet(name, bytes(value));
  },
  /** Deletes the entry `name` (nothing happens if it is not set). */
  delete(name) {
    host().stateDelete(name);
  },
  /** Whether the entry `name` is set. */
  exists(name) {
    return host().stateExists(name);
  },
  /**
   * The key's entries as [name, Uint8Array] pairs in name order, with names after
   * `after` (from the first when undefined): at most `max` of them (one page: go on
   * with the last name returned), or all of them when `max` is undefined.
   */
  entries({ after, max } = {}) {
    const b = host();
    const page = (from, n) => b.stateEntries(from, n).map(([k, v]) => [k, bytes(v)]);
    if (max !== undefined) return page(after, max);
    const found = [];
    for (;;) {
      const got = page(after, PAGE);
      found.push(...got);
      if (got.length < PAGE) return found;
      after = got[got.length - 1][0];
    }
  },
});

/** Milliseconds as a bigint: a bigint, or an integer number. */
function millis(value, what) {
  if (typeof value === 'bigint') return value;
  if (Number.isInteger(value)) return BigInt(value);
  throw new TypeError(`${what} must be an integer number of milliseconds (a bigint or an integer), not ${value}`);
}

/**
 * Processing-time timers (world `stateful-plugin`), scoped like `state`. A timer
 * fires once, at or after its due time, by a call of the plugin's handleTimer(timer).
 * Times are milliseconds since the Unix epoch, as bigints (like event.timestampMs).
 */
export const timers = Object.freeze({
  /**
   * Creates the key's timer `name`, or replaces it (new due time and payload), due at
   * `atMs` (a bigint or an integer number; a time already past fires as soon as
   * possible). `payload` (bytes or a string) comes back in FiredTimer.payload. Throws
   * StateLimit (nothing set) when the payload or the partition's number of timers
   * would be over the slot's limits.
   */
  set(name, atMs, payload = new Uint8Array()) {
    host().timerSet(name, millis(atMs, 'timers.set: atMs'), bytes(payload) ?? new Uint8Array());
  },
  /** Cancels the key's timer `name` (nothing happens if there is none). */
  cancel(name) {
    host().timerCancel(name);
  },
  /** When the key's timer `name` is due (a bigint), or undefined when it is not pending. */
  due(name) {
    return host().timerDue(name);
  },
  /**
   * The host's clock (a bigint, ms since the Unix epoch): the clock timers follow
   * (`weir test` moves it by the input's `advance` lines; natively, FakeHost.nowMs).
   */
  nowMs() {
    return host().timerNow();
  },
});

/** A string argument of `span`, or a TypeError naming it. */
function spanText(what, value) {
  if (typeof value !== 'string') throw new TypeError(`span: ${what} must be a string, not ${typeof value}`);
  return value;
}

/**
 * The plugin's call span (WIT `span`, both worlds): the host opens an OpenTelemetry
 * span around each call of handleEvent or handleTimer, and these add attributes and
 * events to it. With tracing off, or a record that is not sampled, they do nothing;
 * ask `recording()` first when an attribute is expensive to make. The host keeps at
 * most 32 attributes and 32 events per call (keys and names up to 256 bytes, values
 * up to 4 KiB) and drops the rest. Keys, names and values are strings.
 */
export const span = Object.freeze({
  /** Whether the current call's span is sampled: whether what is added here reaches the trace. */
  recording() {
    return spanHost.spanRecording();
  },
  /** Sets an attribute of the call span (a later value for the same key replaces the earlier one). */
  setAttribute(key, value) {
    spanHost.spanSetAttribute(spanText('the key', key), spanText('the value', value));
  },
  /**
   * Adds an event named `name`, timestamped now, with its attributes: an object, a
   * Map, or an array of [key, value] pairs, in order.
   */
  addEvent(name, attributes = []) {
    const entries = Array.isArray(attributes) ? attributes : attributes instanceof Map ? [...attributes] : Object.entries(attributes);
    const pairs = entries.map(([k, v]) => [spanText('an attribute key', k), spanText('an attribute value', v)]);
    spanHost.spanAddEvent(spanText('the event name', name), pairs);
  },
});

// What `span` calls: natively the same FakeHost as `state` and `timers`; in a
// component, its `span` import (or, if the glue is given none, nothing: a span that
// is never sampled).
let spanHost = {
  spanRecording: () => host().spanRecording(),
  spanSetAttribute: (key, value) => host().spanSetAttribute(key, value),
  spanAddEvent: (name, attributes) => host().spanAddEvent(name, attributes),
};

const NO_SPAN = Object.freeze({
  spanRecording: () => false,
  spanSetAttribute() {},
  spanAddEvent() {},
});

/** The stateful-plugin world's imports, with the SDK's types. */
function imported(witState, witTimers) {
  const limited = (call) => {
    try {
      call();
    } catch (e) {
      // componentize-js throws the `err` string of a result as the error's payload.
      throw new StateLimit(String(e && e.payload !== undefined ? e.payload : (e && e.message) || e));
    }
  };
  return {
    stateGet: (name) => witState.get(name),
    stateSet: (name, value) => limited(() => witState.set(name, value)),
    stateDelete: (name) => witState.delete(name),
    stateExists: (name) => witState.exists(name),
    stateEntries: (after, max) => witState.entries(after, max),
    timerSet: (name, atMs, payload) => limited(() => witTimers.set(name, atMs, payload)),
    timerCancel: (name) => witTimers.cancel(name),
    timerDue: (name) => witTimers.due(name),
    timerNow: () => witTimers.nowMs(),
  };
}

/** A component of the plain `plugin` world: it has no state and no timers. */
const PLAIN_WORLD = new Proxy(
  {},
  {
    get() {
      throw new Error(
        "state and timers need the stateful-plugin world, and this component was built for the plain plugin world: the build picks stateful-plugin when the plugin exports handleTimer or imports state or timers from 'weir-plugin'",
      );
    },
  },
);

/** Outputs in the WIT's shape. */
function toWit(outputs) {
  if (!outputs) return [];
  return outputs.map((o) => ({
    to: o.to,
    key: bytes(o.key),
    value: bytes(o.value),
    headers: (o.headers || []).map((h) => ({ key: h.key, value: bytes(h.value) })),
  }));
}

/** Calls a handler, mapping its failures onto the WIT's. */
function call(handler, arg, what) {
  let outputs;
  try {
    outputs = handler(arg);
  } catch (e) {
    if (e instanceof Invalid) throw { tag: 'invalid', val: String(e.message) };
    if (e instanceof Transient) throw { tag: 'transient', val: String(e.message) };
    // The host saw the refused write: returning now makes it dead-letter the record
    // (or timer) as `state-limit`, which is what the author should see.
    if (e instanceof StateLimit) return [];
    // A bug: log it, then trap, like a Rust panic (the host retries on a fresh instance).
    log('error', `${what} threw ${e}${e && e.stack ? `\n${e.stack}` : ''}`);
    throw e;
  }
  return toWit(outputs);
}

/**
 * The component glue (used by the build, not by plugins): the world's exports on top
 * of the plugin module `app`, the host's log function, for the stateful-plugin
 * world its `state` and `timers` imports (`{ state, timers }`; absent for the plain
 * world, which refuses a plugin exporting handleTimer) and the `span` import, which
 * both worlds have (absent: `span` does nothing and is never recording).
 */
export function _component(app, hostLogFn, stateful, witSpan) {
  hostLog = hostLogFn;
  inComponent = true;
  backend = stateful ? imported(stateful.state, stateful.timers) : PLAIN_WORLD;
  spanHost = witSpan
    ? {
        spanRecording: () => witSpan.recording(),
        spanSetAttribute: (key, value) => witSpan.setAttribute(key, value),
        spanAddEvent: (name, attributes) => witSpan.addEvent(name, attributes),
      }
    : NO_SPAN;
  if (typeof app.handleEvent !== 'function') {
    throw new Error('the plugin module must export a function handleEvent(event)');
  }
  const appTimer = typeof app.handleTimer === 'function' ? app.handleTimer : null;
  if (appTimer && !stateful) {
    throw new Error(
      'the plugin exports handleTimer, but the build picked the plain plugin world, which has no timers: scripts/build-plugin (and weir build) picks stateful-plugin when the plugin, bundled by plugins/sdk-js/build/bundle.mjs, exports handleTimer',
    );
  }
  const appInit = typeof app.init === 'function' ? app.init : null;
  const handle = app.handleEvent;
  return {
    init(pairs) {
      if (!appInit) return;
      // The config as an object: the first value of a repeated key counts (as the
      // Rust SDK's config_value); every entry is in the second argument, in order.
      const config = Object.create(null);
      for (const [k, v] of pairs) if (!(k in config)) config[k] = v;
      try {
        appInit(config, pairs);
      } catch (e) {
        throw String((e && e.message) || e); // result<_, string>: the error is the message
      }
    },
    handleEvent(raw) {
      const event = Object.create(Event.prototype);
      event.topic = raw.topic;
      event.partition = raw.partition;
      event.offset = raw.offset;
      event.timestampMs = raw.timestampMs;
      event.key = raw.key;
      event.value = raw.value;
      event.headers = raw.headers.map((h) => new Header(h.key, h.value));
      return call(handle, event, 'handleEvent');
    },
    handleTimer(raw) {
      if (!appTimer) {
        // A plugin with state but no handleTimer set a timer.
        log('warn', `timer ${JSON.stringify(raw.name)} fired, but the plugin exports no handleTimer: nothing to do`);
        return [];
      }
      const timer = Object.create(FiredTimer.prototype);
      timer.name = raw.name;
      timer.key = bytes(raw.key);
      timer.dueMs = raw.dueMs;
      timer.payload = bytes(raw.payload);
      timer.topic = raw.topic;
      timer.partition = raw.partition;
      return call(appTimer, timer, 'handleTimer');
    },
  };
}
