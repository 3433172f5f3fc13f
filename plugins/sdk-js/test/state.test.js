// The SDK's state, timers and in-memory host, natively: node --test plugins/sdk-js/test/
import assert from 'node:assert/strict';
import { beforeEach, test } from 'node:test';
import { Event, FiredTimer, Invalid, Output, StateLimit, state, text, timers } from '../index.js';
import { reset } from '../testing.js';

const utf8 = (s) => new TextEncoder().encode(s);
const shown = (pairs) => pairs.map(([k, v]) => [k, text(v)]);
let host;
beforeEach(() => {
  host = reset({ nowMs: 1000 });
});

test('entries are scoped to the key', () => {
  host.key = utf8('alice');
  state.set('n', '1');
  host.key = 'bob'; // a string key is UTF-8 encoded
  assert.equal(state.get('n'), undefined);
  assert.equal(state.exists('n'), false);
  state.set('n', utf8('2'));
  host.key = undefined; // records without a key have a scope of their own
  assert.deepEqual(state.entries(), []);
  assert.deepEqual(shown([...host.entriesOf('alice')]), [['n', '1']]);
  assert.deepEqual(shown([...host.entriesOf(utf8('bob'))]), [['n', '2']]);
});

test('set, get, delete', () => {
  state.set('a', 'x');
  state.set('a', utf8('y')); // replaced
  assert.equal(text(state.get('a')), 'y');
  state.delete('a');
  state.delete('a'); // nothing happens
  assert.equal(state.get('a'), undefined);
  assert.throws(() => state.set('a', undefined), TypeError);
});

test('entries in name order, by page and all', () => {
  const names = Array.from({ length: 600 }, (_, i) => `e${String(i).padStart(4, '0')}`); // more than one page
  for (const name of [...names].reverse()) state.set(name, name);
  assert.deepEqual(state.entries().map(([n]) => n), names);
  assert.deepEqual(shown(state.entries({ max: 2 })), [['e0000', 'e0000'], ['e0001', 'e0001']]);
  assert.deepEqual(shown(state.entries({ after: 'e0597', max: 10 })), [['e0598', 'e0598'], ['e0599', 'e0599']]);
  assert.deepEqual(state.entries({ after: 'e0300' }).map(([n]) => n), names.slice(301));
});

test('limits throw StateLimit and write nothing', () => {
  reset({ valueLimit: 4, entriesLimit: 2, timersLimit: 1 });
  state.set('a', '1234');
  assert.throws(() => state.set('b', '12345'), StateLimit);
  state.set('b', '1');
  assert.throws(() => state.set('c', '1'), StateLimit); // a third entry
  state.set('b', '2'); // replacing is no new entry
  assert.deepEqual(shown(state.entries()), [['a', '1234'], ['b', '2']]);
  timers.set('t', 5);
  assert.throws(() => timers.set('u', 5), StateLimit);
  assert.throws(() => timers.set('t', 5, '12345'), StateLimit);
  assert.equal(timers.due('u'), undefined);
});

test('timers: set replaces, cancel removes, times are bigints', () => {
  host.key = 'k';
  assert.equal(timers.nowMs(), 1000n);
  timers.set('t', 2000, 'p');
  timers.set('t', 3000n, utf8('q'));
  assert.equal(timers.due('t'), 3000n);
  const [[name, t]] = [...host.timersOf('k')];
  assert.deepEqual([name, t.dueMs, text(t.payload)], ['t', 3000n, 'q']);
  timers.cancel('t');
  timers.cancel('t');
  assert.equal(timers.due('t'), undefined);
  assert.throws(() => timers.set('t', 2.5), TypeError);
});

test('takeDue: due order, then set order; taken means gone', () => {
  host.key = 'k';
  timers.set('late', 3000);
  timers.set('b', 2000);
  host.key = 'other';
  timers.set('a', 2000, 'x');
  assert.deepEqual(host.takeDue(), []);
  host.advance(1000);
  const fired = host.takeDue();
  assert.deepEqual(fired.map((t) => [t.name, text(t.key), t.dueMs]), [['b', 'k', 2000n], ['a', 'other', 2000n]]);
  assert.ok(fired[1] instanceof FiredTimer);
  assert.equal(text(fired[1].payload), 'x');
  assert.deepEqual(host.takeDue(), []);
  host.nowMs = 10_000n;
  assert.deepEqual(host.takeDue().map((t) => t.name), ['late']);
});

test('fireDue scopes state and timers to the timer\'s key', () => {
  const handleEvent = (event) => {
    state.set('seen', event.value);
    timers.set('echo', timers.nowMs() + 10n, event.value);
    return [];
  };
  const handleTimer = (timer) => {
    const outputs = [new Output('out', { key: timer.key, value: `${text(state.get('seen'))}/${text(timer.payload)}` })];
    if (text(timer.payload) === 'again') timers.set('echo', timers.nowMs(), 'last'); // due at once: fires in the same round
    return outputs;
  };
  host.handle(handleEvent, new Event({ key: 'u1', value: 'one', topic: 't', partition: 2 }));
  host.handle(handleEvent, new Event({ key: 'u2', value: 'again', topic: 't', partition: 5 }));
  host.advance(10n);
  const outputs = host.fireDue(handleTimer);
  assert.deepEqual(outputs.map((o) => [text(o.key), text(o.value)]), [['u1', 'one/one'], ['u2', 'again/again'], ['u2', 'again/last']]);
  assert.deepEqual([host.topic, host.partition], ['t', 5]);
});

test('a failed call leaves state and timers as they were', () => {
  host.key = 'k';
  state.set('keep', '1');
  const handleEvent = () => {
    state.set('keep', '2');
    state.delete('keep');
    timers.set('t', 0);
    throw new Invalid('no');
  };
  assert.throws(() => host.handle(handleEvent, new Event({ key: 'k', value: 'x' })), Invalid);
  assert.deepEqual(shown([...host.entriesOf('k')]), [['keep', '1']]);
  assert.equal(host.timersOf('k').size, 0);
});
