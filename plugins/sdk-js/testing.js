// An in-memory host for native tests of plugins ('weir-plugin/testing').
//
// Natively (outside a component) `state`, `timers` and `span` use a FakeHost. It keeps
// entries and timers per key, has a clock that tests set, hands out the timers that
// came due, and records what the plugin adds to its span:
//
//   import { Event } from 'weir-plugin';
//   import { reset } from 'weir-plugin/testing';
//   import * as plugin from './plugin.js';
//
//   const host = reset({ nowMs: 1000n });                  // a fresh host for this test
//   plugin.init({}, []);
//   let outputs = host.handle(plugin.handleEvent, new Event({ key: 'u1', value: '...' }));
//   host.advance(60_000);                                  // or set host.nowMs
//   outputs = host.fireDue(plugin.handleTimer);            // every timer due by now, oldest first
//   host.entriesOf('u1');                                  // Map name -> Uint8Array, to look at
//
// `handle` and `fireDue` scope `state` and `timers` to the event's (or the timer's)
// key, as the host does, and put the state back as it was when the handler throws
// (a dead-lettered record leaves no trace). To call plugin functions directly, set
// `host.key` first.
//
// `host.span` is the call span: `attributes` (a Map, in the order first set) and
// `events` ({ name, attributes: Map }, in order). `handle` and `fireDue` give each
// call a fresh one, as the host does (after `fireDue`, the last timer's); direct calls
// add to the same one. It records at first; `host.span.recording = false` makes it an
// unsampled span, which drops everything:
//
//   host.handle(plugin.handleEvent, event);
//   assert.equal(host.span.attributes.get('todo.task_id'), taskId);
//   assert.deepEqual(host.span.events.map((e) => e.name), ['reminder.scheduled']);
import { FiredTimer, StateLimit, _install, bytes } from './index.js';

const hex = (b) => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
/** A Map key for a record key (bytes, a string or undefined: no key). */
const slot = (key) => (key === undefined || key === null ? '-' : `k${hex(bytes(key))}`);
const copy = (b) => new Uint8Array(b);

/**
 * The call span of a FakeHost: whether it is sampled (`recording`), and the
 * `attributes` (Map key -> value) and `events` ({ name, attributes: Map }) the plugin
 * added (none while not recording).
 */
export class FakeSpan {
  constructor({ recording = true } = {}) {
    this.recording = recording;
    this.attributes = new Map();
    this.events = [];
  }
}

/**
 * State, timers and a clock in memory, with the host's semantics: entries and timers
 * are scoped to `key`, a timer set again is replaced, a fired timer is gone before its
 * handler runs. The optional limits make `state.set` and `timers.set` throw
 * StateLimit as the host's `limits.state-value`, `limits.state-entries` and
 * `limits.timers` do (no limit when undefined).
 */
export class FakeHost {
  constructor({ nowMs = 0n, valueLimit, entriesLimit, timersLimit } = {}) {
    this.nowMs = nowMs;
    /** The key state and timers are scoped to (Uint8Array, or undefined: no key). */
    this.key = undefined;
    /** The topic and partition a timer set now belongs to. */
    this.topic = '';
    this.partition = 0;
    this.valueLimit = valueLimit;
    this.entriesLimit = entriesLimit;
    this.timersLimit = timersLimit;
    this._entries = new Map(); // slot -> Map name -> bytes
    this._timers = new Map(); // `${slot} ${name}` -> { name, key, dueMs, order, payload, topic, partition }
    this._order = 0;
    /** The call span (see the module's comment). */
    this.span = new FakeSpan();
  }

  /** The clock of timers.nowMs and of fireDue: a bigint (a number is converted). */
  get nowMs() {
    return this._now;
  }

  set nowMs(value) {
    this._now = BigInt(value);
  }

  // --- what `state` and `timers` call --------------------------------------------

  stateGet(name) {
    return this._entries.get(slot(this.key))?.get(name);
  }

  stateSet(name, value) {
    const s = slot(this.key);
    const entries = this._entries.get(s) ?? new Map();
    if (this.valueLimit !== undefined && value.length > this.valueLimit) {
      throw new StateLimit(`state entry ${JSON.stringify(name)}: ${value.length} bytes, over the limit of ${this.valueLimit}`);
    }
    if (this.entriesLimit !== undefined && !entries.has(name) && entries.size >= this.entriesLimit) {
      throw new StateLimit(`state entry ${JSON.stringify(name)}: the key has ${entries.size} entries, the limit`);
    }
    entries.set(name, copy(value));
    this._entries.set(s, entries);
  }

  stateDelete(name) {
    const s = slot(this.key);
    const entries = this._entries.get(s);
    if (!entries) return;
    entries.delete(name);
    if (entries.size === 0) this._entries.delete(s);
  }

  stateExists(name) {
    return this._entries.get(slot(this.key))?.has(name) ?? false;
  }

  stateEntries(after, max) {
    const entries = this._entries.get(slot(this.key)) ?? new Map();
    // Name order as the host keeps it: by UTF-8 bytes, which for strings of the BMP
    // is code unit order.
    const names = [...entries.keys()].filter((n) => after === undefined || n > after).sort();
    return names.slice(0, max).map((n) => [n, entries.get(n)]);
  }

  timerSet(name, atMs, payload) {
    const id = `${slot(this.key)} ${name}`;
    if (this.valueLimit !== undefined && payload.length > this.valueLimit) {
      throw new StateLimit(`timer ${JSON.stringify(name)}: a payload of ${payload.length} bytes, over the limit of ${this.valueLimit}`);
    }
    if (this.timersLimit !== undefined && !this._timers.has(id) && this._timers.size >= this.timersLimit) {
      throw new StateLimit(`timer ${JSON.stringify(name)}: ${this._timers.size} timers pending, the limit`);
    }
    this._timers.set(id, {
      name,
      key: this.key === undefined ? undefined : copy(bytes(this.key)),
      dueMs: BigInt(atMs),
      order: ++this._order,
      payload: copy(payload),
      topic: this.topic,
      partition: this.partition,
    });
  }

  timerCancel(name) {
    this._timers.delete(`${slot(this.key)} ${name}`);
  }

  timerDue(name) {
    return this._timers.get(`${slot(this.key)} ${name}`)?.dueMs;
  }

  timerNow() {
    return this._now;
  }

  // --- what `span` calls -----------------------------------------------------------

  spanRecording() {
    return this.span.recording;
  }

  spanSetAttribute(key, value) {
    if (this.span.recording) this.span.attributes.set(key, value);
  }

  spanAddEvent(name, attributes) {
    if (this.span.recording) this.span.events.push({ name, attributes: new Map(attributes) });
  }

  // --- for tests ---------------------------------------------------------------------

  /** Moves the clock forward by `ms` milliseconds (a number or a bigint). */
  advance(ms) {
    this._now += BigInt(ms);
  }

  /** Removes and returns the timers due by `nowMs` (FiredTimer), in due order (then in the order they were set). */
  takeDue() {
    const due = [...this._timers.entries()]
      .filter(([, t]) => t.dueMs <= this._now)
      .sort(([, a], [, b]) => (a.dueMs < b.dueMs ? -1 : a.dueMs > b.dueMs ? 1 : a.order - b.order));
    return due.map(([id, t]) => {
      this._timers.delete(id);
      return new FiredTimer(t);
    });
  }

  /** Calls `handleEvent(event)` scoped to `event.key`, in a fresh span, as the host does; returns its outputs (an array). */
  handle(handleEvent, event) {
    this.key = event.key;
    this.topic = event.topic;
    this.partition = event.partition;
    return this._call(handleEvent, event);
  }

  /**
   * Fires every timer due by `nowMs`, oldest first: calls `handleTimer(timer)` scoped
   * to the timer's key, each in a fresh span, and returns all the outputs in order. A
   * timer set while firing fires too if it is due.
   */
  fireDue(handleTimer) {
    const outputs = [];
    for (let fired = this.takeDue(); fired.length > 0; fired = this.takeDue()) {
      for (const timer of fired) {
        this.key = timer.key;
        this.topic = timer.topic;
        this.partition = timer.partition;
        outputs.push(...this._call(handleTimer, timer));
      }
    }
    return outputs;
  }

  _call(handler, arg) {
    this.span = new FakeSpan({ recording: this.span.recording });
    const entries = new Map([...this._entries].map(([s, m]) => [s, new Map(m)]));
    const timers = new Map(this._timers);
    try {
      return handler(arg) ?? [];
    } catch (e) {
      this._entries = entries;
      this._timers = timers;
      throw e;
    }
  }

  /** A copy of the entries of `key` (bytes or a string; default: the current key): Map name -> Uint8Array. */
  entriesOf(key = this.key) {
    return new Map(this._entries.get(slot(key)) ?? []);
  }

  /** The pending timers of `key` (default: the current key): Map name -> { dueMs, payload }. */
  timersOf(key = this.key) {
    const s = slot(key);
    const found = new Map();
    for (const [id, t] of this._timers) {
      if (id.slice(0, id.indexOf(' ')) === s) found.set(t.name, { dueMs: t.dueMs, payload: t.payload });
    }
    return found;
  }
}

/**
 * Installs a fresh FakeHost behind `state`, `timers` and `span` and returns it.
 * Options: `nowMs`, `valueLimit`, `entriesLimit`, `timersLimit`.
 */
export function reset(options = {}) {
  return _install(new FakeHost(options));
}

/** Puts `host` behind `state`, `timers` and `span` (natively only). */
export function install(host) {
  return _install(host);
}
