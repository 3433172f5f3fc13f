// Native unit tests of the stateful deriver, one per row of the table in
// docs/design/state-and-timers.md ("The Todo deriver"), and its timer:
//
//   npm install --no-audit --no-fund && npm test
//
// The expected values are literal bytes, the same as in the Python port's
// test_app.py, so both ports are held to one output.
import assert from 'node:assert/strict';
import { beforeEach, test } from 'node:test';
import { Event, FiredTimer, Invalid, Transient, state, text } from 'weir-plugin';
import { reset } from 'weir-plugin/testing';
import * as plugin from './plugin.js';

const USER = 'a11ce000-0000-4000-8000-000000000001';
const TASK = '7e57c0de-0000-4000-8000-000000000001';
const NAME = `reminder:${TASK}`;
const CORRELATION = '5d6f7a8b-1c2d-4e3f-8a9b-0c1d2e3f4a5b';
const FIRST = '0b8f8d4e-3c1a-4f4e-9a53-6d2c1b7e9f10';
const SECOND = '0b8f8d4e-3c1a-4f4e-9a53-6d2c1b7e9f11';
// The reminders of the due dates 2026-11-27T17:00Z and 2026-11-28T17:00Z (lead time 15m).
const R1 = 'a0c1f393-f6b8-5530-9b5d-e313ee50634e';
const R2 = '0b8946ef-0b15-5d02-ae8a-bfdfc8ab85da';
const R1_AT = 1795797900000n; // 2026-11-27T16:45:00Z
const R2_AT = 1795884300000n; // 2026-11-28T16:45:00Z

const SCHEDULED_1 =
  '{"correlation_id":"5d6f7a8b-1c2d-4e3f-8a9b-0c1d2e3f4a5b","event_id":"19f7fdb5-9c37-5b9b-977a-45f5b65b4746",' +
  '"event_type":"reminder.scheduled","payload":{"message":"Reminder: \\"Buy milk\\" is due at 2026-11-27T17:00:00.000Z",' +
  '"reminder_id":"a0c1f393-f6b8-5530-9b5d-e313ee50634e","scheduled_time":"2026-11-27T16:45:00.000Z",' +
  '"task_id":"7e57c0de-0000-4000-8000-000000000001","user_id":"a11ce000-0000-4000-8000-000000000001"},' +
  '"timestamp":"2026-11-26T09:00:00Z","version":"1.0"}';
const ENTRY_1 =
  '{"correlation_id":"5d6f7a8b-1c2d-4e3f-8a9b-0c1d2e3f4a5b","message":"Reminder: \\"Buy milk\\" is due at 2026-11-27T17:00:00.000Z",' +
  '"reminder_id":"a0c1f393-f6b8-5530-9b5d-e313ee50634e","scheduled_time":"2026-11-27T16:45:00.000Z",' +
  '"task_id":"7e57c0de-0000-4000-8000-000000000001","title":"Buy milk","user_id":"a11ce000-0000-4000-8000-000000000001",' +
  '"version":"1.0"}';
const SCHEDULED_2 =
  '{"correlation_id":"5d6f7a8b-1c2d-4e3f-8a9b-0c1d2e3f4a5b","event_id":"41641d54-bc54-5b8a-8649-c1a5e01dc052",' +
  '"event_type":"reminder.scheduled","payload":{"message":"Reminder: \\"Buy milk\\" is due at 2026-11-28T17:00:00.000Z",' +
  '"reminder_id":"0b8946ef-0b15-5d02-ae8a-bfdfc8ab85da","scheduled_time":"2026-11-28T16:45:00.000Z",' +
  '"task_id":"7e57c0de-0000-4000-8000-000000000001","user_id":"a11ce000-0000-4000-8000-000000000001"},' +
  '"timestamp":"2026-11-26T09:00:00Z","version":"1.0"}';
const ENTRY_2 =
  '{"correlation_id":"5d6f7a8b-1c2d-4e3f-8a9b-0c1d2e3f4a5b","message":"Reminder: \\"Buy milk\\" is due at 2026-11-28T17:00:00.000Z",' +
  '"reminder_id":"0b8946ef-0b15-5d02-ae8a-bfdfc8ab85da","scheduled_time":"2026-11-28T16:45:00.000Z",' +
  '"task_id":"7e57c0de-0000-4000-8000-000000000001","title":"Buy milk","user_id":"a11ce000-0000-4000-8000-000000000001",' +
  '"version":"1.0"}';

/** `reminder.cancelled` of the stored R1, caused by the event SECOND. */
const cancelled1 = (why) =>
  '{"correlation_id":"5d6f7a8b-1c2d-4e3f-8a9b-0c1d2e3f4a5b","event_id":"ae21896a-9cb0-5da5-8399-95dd9e9c5fda",' +
  `"event_type":"reminder.cancelled","payload":{"message":"Reminder cancelled: \\"Buy milk\\" was ${why}",` +
  '"reminder_id":"a0c1f393-f6b8-5530-9b5d-e313ee50634e","scheduled_time":"2026-11-27T16:45:00.000Z",' +
  '"task_id":"7e57c0de-0000-4000-8000-000000000001","user_id":"a11ce000-0000-4000-8000-000000000001"},' +
  '"timestamp":"2026-11-26T09:00:00Z","version":"1.0"}';

/** `reminder.cancelled` of R1 as the stateless deriver emitted it, for the event FIRST. */
const statelessCancelled1 = (why) =>
  '{"correlation_id":"5d6f7a8b-1c2d-4e3f-8a9b-0c1d2e3f4a5b","event_id":"19f7fdb5-9c37-5b9b-977a-45f5b65b4746",' +
  `"event_type":"reminder.cancelled","payload":{"message":"Reminder cancelled: \\"Buy milk\\" was ${why}",` +
  '"reminder_id":"a0c1f393-f6b8-5530-9b5d-e313ee50634e","scheduled_time":"2026-11-27T16:45:00.000Z",' +
  '"task_id":"7e57c0de-0000-4000-8000-000000000001","user_id":"a11ce000-0000-4000-8000-000000000001"},' +
  '"timestamp":"2026-11-26T09:00:00Z","version":"1.0"}';

const TRIGGERED_1 =
  '{"correlation_id":"5d6f7a8b-1c2d-4e3f-8a9b-0c1d2e3f4a5b","event_id":"725c1aa6-70de-5810-b887-6e24d2449ceb",' +
  '"event_type":"reminder.triggered","payload":{"message":"Reminder: \\"Buy milk\\" is due at 2026-11-27T17:00:00.000Z",' +
  '"reminder_id":"a0c1f393-f6b8-5530-9b5d-e313ee50634e","scheduled_time":"2026-11-27T16:45:00.000Z",' +
  '"task_id":"7e57c0de-0000-4000-8000-000000000001","user_id":"a11ce000-0000-4000-8000-000000000001"},' +
  '"timestamp":"2026-11-27T16:45:00.000Z","version":"1.0"}';

function taskEvent(eventType, { status = 'pending', due = '2026-11-27T18:00:00+01:00', eventId = FIRST, title = 'Buy milk' } = {}) {
  const value = {
    event_id: eventId,
    event_type: eventType,
    timestamp: '2026-11-26T09:00:00Z',
    version: '1.0',
    correlation_id: CORRELATION,
    payload: { task_id: TASK, user_id: USER, title, status, priority: 'high', due_date: due },
  };
  return new Event({ key: USER, value: JSON.stringify(value), topic: 'task-events', partition: 3 });
}

/** An output as [to, key, value, headers] text, to compare. */
const shown = (o) => [o.to, text(o.key), text(o.value), o.headers.map((h) => [h.key, text(h.value)])];
const output = (value) => ['reminders', USER, value, [['event_type', JSON.parse(value).event_type], ['correlation_id', CORRELATION]]];

let host;
beforeEach(() => {
  host = reset({ nowMs: 1795000000000n }); // before every reminder
  plugin.init({}, []);
});

const handle = (event) => host.handle(plugin.handleEvent, event).map(shown);
const fire = () => host.fireDue(plugin.handleTimer).map(shown);
const entries = () => Object.fromEntries([...host.entriesOf(USER)].map(([k, v]) => [k, text(v)]));
const pending = () => Object.fromEntries([...host.timersOf(USER)].map(([k, t]) => [k, [t.dueMs, text(t.payload)]]));

function scheduleR1() {
  assert.deepEqual(handle(taskEvent('task.created')), [output(SCHEDULED_1)]);
}

function assertR1Stored() {
  assert.deepEqual(entries(), { [NAME]: ENTRY_1 });
  assert.deepEqual(pending(), { [NAME]: [R1_AT, R1] });
}

function assertNothingStored() {
  assert.deepEqual(entries(), {});
  assert.deepEqual(pending(), {});
}

// The events that end a task's reminder: [event_type, status, the message's word].
const ENDS = [
  ['task.updated', 'completed', 'completed'],
  ['task.completed', 'completed', 'completed'],
  ['task.deleted', 'pending', 'deleted'],
  ['task.deleted', 'completed', 'deleted'],
];

// --- task.created / task.updated, status not completed, with due_date

test('a due date schedules and stores the reminder', () => {
  scheduleR1();
  assertR1Stored();
});

test('the same reminder again is nothing', () => {
  scheduleR1();
  // The same instant in another offset, a new title, another status: the same reminder.
  const again = taskEvent('task.updated', { status: 'in_progress', due: '2026-11-27T17:00:00Z', eventId: SECOND, title: 'Buy oat milk' });
  assert.deepEqual(handle(again), []);
  assertR1Stored();
});

test('another due date cancels, then schedules', () => {
  scheduleR1();
  const moved = taskEvent('task.updated', { due: '2026-11-28T18:00:00+01:00', eventId: SECOND });
  assert.deepEqual(handle(moved), [output(cancelled1('rescheduled')), output(SCHEDULED_2)]);
  assert.deepEqual(entries(), { [NAME]: ENTRY_2 });
  assert.deepEqual(pending(), { [NAME]: [R2_AT, R2] });
});

// --- task.created / task.updated, status not completed, no due_date

test('a removed due date cancels', () => {
  scheduleR1();
  assert.deepEqual(handle(taskEvent('task.updated', { due: null, eventId: SECOND })), [output(cancelled1('unscheduled'))]);
  assertNothingStored();
});

test('no due date and nothing stored is nothing', () => {
  assert.deepEqual(handle(taskEvent('task.created', { due: null })), []);
  assert.deepEqual(handle(taskEvent('task.updated', { status: 'in_progress', due: null, eventId: SECOND })), []);
  assertNothingStored();
});

// --- task.updated to completed, task.completed, task.deleted

for (const [eventType, status, why] of ENDS) {
  test(`${eventType} (${status}) cancels the stored reminder`, () => {
    scheduleR1();
    // The event's own due date does not matter: the stored reminder is cancelled.
    assert.deepEqual(handle(taskEvent(eventType, { status, due: null, eventId: SECOND })), [output(cancelled1(why))]);
    assertNothingStored();
  });

  test(`${eventType} (${status}) with nothing stored cancels the derived reminder`, () => {
    assert.deepEqual(handle(taskEvent(eventType, { status })), [output(statelessCancelled1(why))]);
    assertNothingStored();
  });

  test(`${eventType} (${status}) with nothing stored and no due date is nothing`, () => {
    assert.deepEqual(handle(taskEvent(eventType, { status, due: null })), []);
    assertNothingStored();
  });
}

test('a task.created completed is an end', () => {
  // Not in the design's table: taken as task.updated to completed is (as the Rust plugin does).
  assert.deepEqual(handle(taskEvent('task.created', { status: 'completed' })), [output(statelessCancelled1('completed'))]);
  scheduleR1();
  assert.deepEqual(handle(taskEvent('task.created', { status: 'completed', due: null, eventId: SECOND })), [output(cancelled1('completed'))]);
  assertNothingStored();
});

test('an unreadable entry counts as absent', () => {
  const unreadable = [
    new TextEncoder().encode('{'),
    new Uint8Array([0xff]),
    new TextEncoder().encode('[]'),
    ENTRY_1.replace('"title":"Buy milk",', ''),
    ENTRY_1.replace('"1.0"', '1'),
  ];
  for (const stored of unreadable) {
    host = reset({ nowMs: 1795000000000n });
    host.key = USER;
    state.set(NAME, stored);
    scheduleR1();
    assertR1Stored();
    state.set(NAME, stored);
    assert.deepEqual(plugin.handleTimer(new FiredTimer({ name: NAME, dueMs: R1_AT, payload: R1, key: USER })), []);
  }
});

// --- the timer

test('the timer fires at the scheduled time', () => {
  scheduleR1();
  host.nowMs = R1_AT - 1n;
  assert.deepEqual(fire(), []);
  host.nowMs = R1_AT;
  assert.deepEqual(fire(), [output(TRIGGERED_1)]);
  assertNothingStored();
  // Forgotten: a later end of the task cancels only what its own due date names.
  assert.deepEqual(handle(taskEvent('task.deleted', { due: null, eventId: SECOND })), []);
});

test('a fired timer gives the same bytes again', () => {
  scheduleR1();
  host.key = USER;
  const timer = new FiredTimer({ name: NAME, dueMs: R1_AT + 5000n, payload: R1, key: USER, topic: 'task-events', partition: 3 });
  const first = plugin.handleTimer(timer).map(shown);
  state.set(NAME, ENTRY_1); // as before a retry of the same timer (its first try dead-lettered)
  assert.deepEqual(plugin.handleTimer(timer).map(shown), first);
  assert.deepEqual(first, [output(TRIGGERED_1)]);
});

test('a stale timer is nothing', () => {
  scheduleR1();
  host.key = USER;
  assert.deepEqual(plugin.handleTimer(new FiredTimer({ name: NAME, dueMs: R1_AT, payload: R2, key: USER })), []);
  assert.deepEqual(entries(), { [NAME]: ENTRY_1 });
  const gone = new FiredTimer({ name: 'reminder:7e57c0de-0000-4000-8000-000000000009', dueMs: R1_AT, payload: R1, key: USER });
  assert.deepEqual(plugin.handleTimer(gone), []);
});

test('a reminder due already is timed at the event', () => {
  // 2026-11-26T09:05Z minus 15m is before the event (09:00Z): scheduled at 09:00Z.
  const [out] = handle(taskEvent('task.created', { due: '2026-11-26T09:05:00Z' }));
  assert.equal(JSON.parse(out[2]).payload.scheduled_time, '2026-11-26T09:00:00.000Z');
  const [[due]] = Object.values(pending());
  assert.equal(due, 1795683600000n); // 2026-11-26T09:00:00Z
  assert.deepEqual(fire(), []);
  host.nowMs = due;
  const [fired] = fire();
  assert.equal(JSON.parse(fired[2]).timestamp, '2026-11-26T09:00:00.000Z');
});

// --- the span

/** The span's events as [name, { attribute: value }]. */
const spanEvents = () => host.span.events.map((e) => [e.name, Object.fromEntries(e.attributes)]);

test('each reminder is an event of the span', () => {
  scheduleR1();
  handle(taskEvent('task.updated', { due: '2026-11-28T18:00:00+01:00', eventId: SECOND }));
  const r1 = { 'todo.task_id': TASK, 'todo.reminder_id': R1, 'todo.scheduled_time': '2026-11-27T16:45:00.000Z' };
  const r2 = { 'todo.task_id': TASK, 'todo.reminder_id': R2, 'todo.scheduled_time': '2026-11-28T16:45:00.000Z' };
  assert.deepEqual(spanEvents(), [['reminder.cancelled', r1], ['reminder.scheduled', r2]]);
  host.nowMs = R2_AT;
  fire();
  assert.deepEqual(spanEvents(), [['reminder.triggered', r2]]);
  assert.equal(host.span.attributes.size, 0);
});

test('an unsampled span gets nothing and the outputs are the same', () => {
  host.span.recording = false;
  scheduleR1();
  assert.deepEqual(host.span.events, []);
});

// --- scope and failures

test('each user has their own reminders', () => {
  scheduleR1();
  const other = taskEvent('task.deleted', { due: null, eventId: SECOND });
  other.key = new TextEncoder().encode('someone-else');
  assert.deepEqual(handle(other), []);
  assertR1Stored();
});

test('an invalid event changes nothing', () => {
  scheduleR1();
  assert.throws(() => handle(new Event({ key: USER, value: '{"event_type": "task.deleted"}' })), Invalid);
  assert.throws(() => handle(new Event({ key: USER })), Invalid);
  assertR1Stored();
});

test('before init is transient', async () => {
  // A fresh copy of the module: its settings are unset.
  const fresh = await import(`./plugin.js?fresh=${Date.now()}`);
  assert.throws(() => host.handle(fresh.handleEvent, taskEvent('task.created')), Transient);
  assert.throws(() => fresh.handleTimer(new FiredTimer({ name: NAME, dueMs: R1_AT, payload: R1, key: USER })), Transient);
});
