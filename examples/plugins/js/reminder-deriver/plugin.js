// reminder-deriver: turns task events into reminder events (SPEC §7), and fires
// them. A port of plugins/reminder-deriver (docs/design/state-and-timers.md, "The
// Todo deriver").
//
// `task.created`/`task.updated` with a `due_date` and a status other than `completed`
// schedule a reminder at `max(due_date - lead-time, event timestamp)`. The reminder id
// is a UUIDv5 of the task id and the due date, and every output id is a UUIDv5 of an
// input id, so a replay gives byte-identical outputs.
//
// The plugin keeps, per task with a live reminder, an entry and a timer both named
// `reminder:<task_id>` (the records are keyed by user, so that is the state's scope).
// A new due date cancels the stored reminder and schedules the new one; a due date
// removed, a completion or a deletion cancels it. When the timer fires, the plugin
// emits `reminder.triggered` and forgets the task.
//
// Config: `lead-time` (a humantime duration, default `15m`), `output` (default
// `reminders`). Unknown keys are refused, so a typo fails at start-up.
//
// Span: when the call's span is sampled, each reminder emitted is also an event of it,
// named after its type, with the task id, the reminder id and when it is (or was) due.
import { Header, Invalid, Output, Transient, span, state, timers } from 'weir-plugin';
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

/** JSON as serde_json writes it (no spaces, non-ASCII as is), in UTF-8. */
const dumps = (value) => encoder.encode(JSON.stringify(value));

/**
 * Milliseconds since the epoch of [seconds, nanoseconds], as a bigint, as chrono's
 * timestamp_millis (a leap second counts into the next second).
 */
export function epochMs([secs, nanos]) {
  return BigInt(secs) * 1000n + BigInt(Math.floor(nanos / 1e6));
}

/** The output of a reminder event: keyed by user, with the headers every reminder carries. */
function reminderOutput(reminder, output) {
  return new Output(output, {
    key: reminder.payload.user_id,
    value: dumps(reminder),
    headers: [new Header('event_type', reminder.event_type), new Header('correlation_id', reminder.correlation_id)],
  });
}

/** `reminder.cancelled` of a stored reminder (`old`, the entry), caused by `event`. */
function cancelled(event, old, why) {
  return {
    correlation_id: event.correlationId,
    event_id: deriveId('reminder-cancelled', event.eventId),
    event_type: 'reminder.cancelled',
    payload: {
      message: `Reminder cancelled: "${old.title}" was ${why}`,
      reminder_id: old.reminder_id,
      scheduled_time: old.scheduled_time,
      task_id: old.task_id,
      user_id: old.user_id,
    },
    timestamp: event.timestampText,
    version: event.version,
  };
}

const ENTRY_FIELDS = ['correlation_id', 'message', 'reminder_id', 'scheduled_time', 'task_id', 'title', 'user_id', 'version'];
const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * The stored entry (an object of its strings), or null when there is none or it is
 * unreadable (it then counts as absent, as in the Rust plugin).
 */
function readEntry(stored) {
  if (stored === undefined) return null;
  let entry;
  try {
    entry = JSON.parse(strictUtf8.decode(stored));
  } catch {
    return null;
  }
  if (entry === null || typeof entry !== 'object' || Array.isArray(entry)) return null;
  return ENTRY_FIELDS.every((f) => typeof entry[f] === 'string') ? entry : null;
}

function forget(name) {
  state.delete(name);
  timers.cancel(name);
}

/**
 * The reminder events (objects, keys in sorted order as the Rust plugin writes them)
 * one task event causes, with the state changes they need made through `state` and
 * `timers`.
 */
export function derive(value, [leadSeconds, leadNanos]) {
  const event = parse(value);
  const task = event.task;
  const name = `reminder:${task.taskId}`;
  const old = readEntry(state.get(name));
  const due = task.dueDate;
  let remindAt, reminderId;
  if (due !== null) {
    remindAt = minus(due, leadSeconds, leadNanos) ?? due;
    reminderId = deriveId('reminder', task.taskId, formatUtc(due));
  }

  if ((event.eventType === 'task.created' || event.eventType === 'task.updated') && task.status !== 'completed') {
    if (due === null) {
      if (old === null) return [];
      forget(name);
      return [cancelled(event, old, 'unscheduled')];
    }
    if (old !== null && old.reminder_id === reminderId) return [];
    const scheduled = compare(remindAt, event.timestamp) > 0 ? remindAt : event.timestamp;
    const payload = {
      message: `Reminder: "${task.title}" is due at ${formatUtc(due)}`,
      reminder_id: reminderId,
      scheduled_time: formatUtc(scheduled),
      task_id: task.taskId,
      user_id: task.userId,
    };
    const entry = {
      correlation_id: event.correlationId,
      message: payload.message,
      reminder_id: reminderId,
      scheduled_time: payload.scheduled_time,
      task_id: task.taskId,
      title: task.title,
      user_id: task.userId,
      version: event.version,
    };
    state.set(name, dumps(entry));
    timers.set(name, epochMs(scheduled), reminderId);
    const reminder = {
      correlation_id: event.correlationId,
      event_id: deriveId('reminder-event', event.eventId),
      event_type: 'reminder.scheduled',
      payload,
      timestamp: event.timestampText,
      version: event.version,
    };
    return old === null ? [reminder] : [cancelled(event, old, 'rescheduled'), reminder];
  }

  // A status of completed (task.created, which the design's table leaves out, is taken
  // as task.updated is), task.completed, task.deleted
  const why = event.eventType === 'task.deleted' ? 'deleted' : 'completed';
  if (old !== null) {
    forget(name);
    return [cancelled(event, old, why)];
  }
  if (due === null) return [];
  // No entry: the reminder may have been scheduled by the stateless deriver, so cancel
  // the one this event's due date names, as that deriver did.
  return [
    {
      correlation_id: event.correlationId,
      event_id: deriveId('reminder-event', event.eventId),
      event_type: 'reminder.cancelled',
      payload: {
        message: `Reminder cancelled: "${task.title}" was ${why}`,
        reminder_id: reminderId,
        scheduled_time: formatUtc(remindAt),
        task_id: task.taskId,
        user_id: task.userId,
      },
      timestamp: event.timestampText,
      version: event.version,
    },
  ];
}

/**
 * `reminder.triggered` for the timer `name` carrying `reminderId` (bytes), or null
 * when the entry is gone or names another reminder (a stale timer). Forgets the task.
 */
export function triggered(name, reminderId) {
  const entry = readEntry(state.get(name));
  if (entry === null) return null;
  const expected = encoder.encode(entry.reminder_id);
  if (expected.length !== reminderId.length || expected.some((b, i) => b !== reminderId[i])) return null;
  state.delete(name);
  return {
    correlation_id: entry.correlation_id,
    event_id: deriveId('reminder-triggered', entry.reminder_id),
    event_type: 'reminder.triggered',
    payload: {
      message: entry.message,
      reminder_id: entry.reminder_id,
      scheduled_time: entry.scheduled_time,
      task_id: entry.task_id,
      user_id: entry.user_id,
    },
    timestamp: entry.scheduled_time,
    version: entry.version,
  };
}

/**
 * Adds an event to the call's span for each reminder, when it is recording: named
 * after its type, with `todo.task_id`, `todo.reminder_id` and `todo.scheduled_time`
 * (when the reminder is, or was, due).
 */
function trace(reminders) {
  if (reminders.length === 0 || !span.recording()) return;
  for (const r of reminders) {
    span.addEvent(r.event_type, {
      'todo.task_id': r.payload.task_id,
      'todo.reminder_id': r.payload.reminder_id,
      'todo.scheduled_time': r.payload.scheduled_time,
    });
  }
}

export function handleEvent(event) {
  if (settings === null) throw new Transient('handle-event called before init');
  if (event.value === undefined) throw new Invalid('a tombstone (null value) is not a task event');
  let reminders;
  try {
    reminders = derive(event.value, settings.leadTime);
  } catch (e) {
    if (e instanceof Rejection) throw new Invalid(e.message);
    throw e;
  }
  trace(reminders);
  return reminders.map((r) => reminderOutput(r, settings.output));
}

export function handleTimer(timer) {
  if (settings === null) throw new Transient('handle-timer called before init');
  const reminder = triggered(timer.name, timer.payload);
  const reminders = reminder === null ? [] : [reminder];
  trace(reminders);
  return reminders.map((r) => reminderOutput(r, settings.output));
}
