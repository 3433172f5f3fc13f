// Native unit tests: npm install && npm test
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Event, Invalid, text } from 'weir-plugin';
import { handleEvent, init } from './plugin.js';

test('shouts', () => {
  init({});
  const [out] = handleEvent(new Event({ key: 'k1', value: 'hello, weir' }));
  assert.equal(out.to, 'out');
  assert.equal(text(out.value), 'HELLO, WEIR');
});

test('a tombstone is invalid', () => {
  assert.throws(() => handleEvent(new Event({})), Invalid);
});
