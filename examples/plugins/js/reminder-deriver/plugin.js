// reminder-deriver: turns task events into reminder events (SPEC §7). A port of
// plugins/reminder-deriver.
//
// `task.created`/`task.updated` with a `due_date` and a status other than `completed`
// schedule a reminder at `max(due_date - lead-time, event timestamp)`;
// `task.completed`/`task.deleted` with a `due_date` cancel it. The reminder id is a
// UUIDv5 of the task id and the due date, so scheduling and cancelling agree without
// any state, and every output is a pure function of its input.
//
// Config: `lead-time` (a humantime duration, default `15m`), `output` (default
// `reminders`). Unknown keys are refused, so a typo fails at start-up.
import { Header, Invalid, Output, Transient } from 'weir-plugin';
import { Rejection, compare, deriveId, formatUtc, minus, parse } from '../todo-events/todo-events.js';
import { parseDuration } from './humantime.js';

export const DEFAULT_OUTPUT = 'reminders';
export const DEFAULT_LEAD_TIME = [15n * 60n, 0]; // [seconds (bigint), nanoseconds]

let settings = null;

/** The settings from the config entries, in order; throws on a bad or unknown key. */
export function parseConfig(pairs) {
  let leadTime = DEFAULT_LEAD_TIME;
  let output = DEFAULT_OUTPUT;
  for (const [key, value] of pairs) {
    if (key === 'lead-time') {
      try {
        leadTime = parseDuration(value);
      } catch (e) {
        throw new Error(`lead-time: ${e.message} (got ${JSON.stringify(value)}; try "15m")`);
      }
    } else if (key === 'output') {
      output = value;
    } else {
      throw new Error(`unknown config key ${JSON.stringify(key)} (known: lead-time, output)`);
    }
  }
  return { leadTime, output };
}

export function init(config, pairs) {
  settings = parseConfig(pairs);
}

const encoder = new TextEncoder();

/** The reminder caused by one task event, or null. */
export function derive(value, [leadSeconds, leadNanos]) {
  const event = parse(value);
  const task = event.task;
  if (task.dueDate === null) return null;
  const due = task.dueDate;
  const remindAt = minus(due, leadSeconds, leadNanos) ?? due;
  let eventType, scheduled, message;
  if (event.eventType === 'task.created' || event.eventType === 'task.updated') {
    if (task.status === 'completed') return null;
    eventType = 'reminder.scheduled';
    scheduled = compare(remindAt, event.timestamp) > 0 ? remindAt : event.timestamp;
    message = `Reminder: "${task.title}" is due at ${formatUtc(due)}`;
  } else {
    eventType = 'reminder.cancelled';
    scheduled = remindAt;
    message = `Reminder cancelled: "${task.title}" was ${event.eventType === 'task.completed' ? 'completed' : 'deleted'}`;
  }
  // Keys in sorted order, as the Rust plugin writes them.
  const reminder = {
    correlation_id: event.correlationId,
    event_id: deriveId('reminder-event', event.eventId),
    event_type: eventType,
    payload: {
      message,
      reminder_id: deriveId('reminder', task.taskId, formatUtc(due)),
      scheduled_time: formatUtc(scheduled),
      task_id: task.taskId,
      user_id: task.userId,
    },
    timestamp: event.timestampText,
    version: event.version,
  };
  return { eventType, key: task.userId, value: encoder.encode(JSON.stringify(reminder)), correlationId: event.correlationId };
}

export function handleEvent(event) {
  if (settings === null) throw new Transient('handle-event called before init');
  if (event.value === undefined) throw new Invalid('a tombstone (null value) is not a task event');
  let reminder;
  try {
    reminder = derive(event.value, settings.leadTime);
  } catch (e) {
    if (e instanceof Rejection) throw new Invalid(e.message);
    throw e;
  }
  if (reminder === null) return [];
  return [
    new Output(settings.output, {
      key: reminder.key,
      value: reminder.value,
      headers: [new Header('event_type', reminder.eventType), new Header('correlation_id', reminder.correlationId)],
    }),
  ];
}
