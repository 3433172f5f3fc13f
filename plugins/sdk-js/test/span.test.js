// The SDK's span and the in-memory host's recorder, natively: node --test plugins/sdk-js/test/
import assert from 'node:assert/strict';
import { beforeEach, test } from 'node:test';
import { Event, span, timers } from '../index.js';
import { reset } from '../testing.js';

let host;
beforeEach(() => {
  host = reset();
});

test('attributes and events are recorded', () => {
  assert.equal(span.recording(), true);
  span.setAttribute('a', '1');
  span.setAttribute('b', '2');
  span.setAttribute('a', '3'); // replaces, in place
  span.addEvent('e', { k: 'v' });
  span.addEvent('pairs', [['x', '1'], ['y', '2']]);
  span.addEvent('map', new Map([['m', 'n']]));
  span.addEvent('bare');
  assert.deepEqual(host.span.attributes, new Map([['a', '3'], ['b', '2']]));
  assert.deepEqual(host.span.events, [
    { name: 'e', attributes: new Map([['k', 'v']]) },
    { name: 'pairs', attributes: new Map([['x', '1'], ['y', '2']]) },
    { name: 'map', attributes: new Map([['m', 'n']]) },
    { name: 'bare', attributes: new Map() },
  ]);
});

test('keys, names and values are strings', () => {
  assert.throws(() => span.setAttribute('n', 1), TypeError);
  assert.throws(() => span.addEvent('e', { n: undefined }), TypeError);
  assert.throws(() => span.addEvent(undefined), TypeError);
  assert.deepEqual([host.span.attributes.size, host.span.events.length], [0, 0]);
});

test('an unsampled span drops everything', () => {
  host.span.recording = false;
  assert.equal(span.recording(), false);
  span.setAttribute('a', '1');
  span.addEvent('e');
  assert.deepEqual([host.span.attributes.size, host.span.events.length], [0, 0]);
});

test('each handled call gets a fresh span', () => {
  const handleEvent = (event) => {
    span.setAttribute('value', new TextDecoder().decode(event.value));
    return [];
  };
  span.setAttribute('before', 'x');
  host.handle(handleEvent, new Event({ value: 'one' }));
  host.handle(handleEvent, new Event({ value: 'two' }));
  assert.deepEqual(host.span.attributes, new Map([['value', 'two']]));
  host.span.recording = false;
  host.handle(handleEvent, new Event({ value: 'three' }));
  assert.equal(host.span.attributes.size, 0, 'a fresh span keeps the recording setting');

  host.span.recording = true;
  timers.set('t', 0);
  host.fireDue((timer) => {
    span.addEvent('fired', { name: timer.name });
    return [];
  });
  assert.deepEqual(host.span.events, [{ name: 'fired', attributes: new Map([['name', 't']]) }]);
});
