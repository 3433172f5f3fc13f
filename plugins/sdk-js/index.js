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
// `scripts/build-plugin DIR OUT.wasm` bundles it with this SDK and turns it into a
// component of the weir:plugin world (wit/plugin.wit has the reference docs).
// This module imports nothing, so a plugin can be unit-tested with plain Node.js;
// `log` then writes to stderr.
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

/**
 * The component glue (used by the build, not by plugins): the world's exports on top
 * of the plugin module `app`, and the host's log function.
 */
export function _component(app, hostLogFn) {
  hostLog = hostLogFn;
  if (typeof app.handleEvent !== 'function') {
    throw new Error('the plugin module must export a function handleEvent(event)');
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
      let outputs;
      try {
        outputs = handle(event);
      } catch (e) {
        if (e instanceof Invalid) throw { tag: 'invalid', val: String(e.message) };
        if (e instanceof Transient) throw { tag: 'transient', val: String(e.message) };
        // A bug: log it, then trap, like a Rust panic (the host retries on a fresh instance).
        log('error', `handleEvent threw ${e}${e && e.stack ? `\n${e.stack}` : ''}`);
        throw e;
      }
      if (!outputs) return [];
      return outputs.map((o) => ({
        to: o.to,
        key: bytes(o.key),
        value: bytes(o.value),
        headers: (o.headers || []).map((h) => ({ key: h.key, value: bytes(h.value) })),
      }));
    },
  };
}
