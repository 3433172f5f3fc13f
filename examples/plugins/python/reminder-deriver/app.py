"""reminder-deriver: turns task events into reminder events (SPEC §7), and fires
them. A port of plugins/reminder-deriver (docs/design/state-and-timers.md, "The Todo
deriver").

`task.created`/`task.updated` with a `due_date` and a status other than `completed`
schedule a reminder at `max(due_date - lead-time, event timestamp)`. The reminder id
is a UUIDv5 of the task id and the due date, and every output id is a UUIDv5 of an
input id, so a replay gives byte-identical outputs.

The plugin keeps, per task with a live reminder, an entry and a timer both named
`reminder:<task_id>` (the records are keyed by user, so that is the state's scope).
A new due date cancels the stored reminder and schedules the new one; a due date
removed, a completion or a deletion cancels it. When the timer fires, the plugin
emits `reminder.triggered` and forgets the task.

Config: `lead-time` (a humantime duration, default `15m`), `output` (default
`reminders`). Unknown keys are refused, so a typo fails at start-up.

Span: when the call's span is sampled, each reminder emitted is also an event of it,
named after its type, with the task id, the reminder id and when it is (or was) due.
"""

import json

from humantime import parse_duration
from todo_events import Rejection, derive_id, format_utc, minus, parse
from weir_plugin import Header, Invalid, Output, Transient, span, state, timers

DEFAULT_OUTPUT = "reminders"
DEFAULT_LEAD_TIME = (15 * 60, 0)  # (seconds, nanoseconds)

settings = None


def parse_config(pairs):
    lead_time, output = DEFAULT_LEAD_TIME, DEFAULT_OUTPUT
    for key, value in pairs:
        if key == "lead-time":
            try:
                lead_time = parse_duration(value)
            except ValueError as e:
                raise ValueError(f'lead-time: {e} (got {json.dumps(value, ensure_ascii=False)}; try "15m")') from None
        elif key == "output":
            output = value
        else:
            raise ValueError(f"unknown config key {json.dumps(key, ensure_ascii=False)} (known: lead-time, output)")
    return lead_time, output


def init(config):
    global settings
    settings = parse_config(config.pairs)


def dumps(value):
    """JSON as serde_json writes it: no spaces, non-ASCII as is."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def epoch_ms(instant):
    """Milliseconds since the epoch of (seconds, nanoseconds), as chrono's
    ``timestamp_millis`` (a leap second counts into the next second)."""
    secs, nanos = instant
    return secs * 1000 + nanos // 1_000_000


def reminder_output(reminder, output):
    """The output of a reminder event (a dict): keyed by user, with the headers
    every reminder carries."""
    return Output(
        output,
        key=reminder["payload"]["user_id"],
        value=dumps(reminder),
        headers=[Header("event_type", reminder["event_type"]), Header("correlation_id", reminder["correlation_id"])],
    )


def cancelled(event, old, why):
    """`reminder.cancelled` of a stored reminder (`old`, the entry), caused by `event`."""
    return {
        "correlation_id": event.correlation_id,
        "event_id": derive_id("reminder-cancelled", event.event_id),
        "event_type": "reminder.cancelled",
        "payload": {
            "message": f'Reminder cancelled: "{old["title"]}" was {why}',
            "reminder_id": old["reminder_id"],
            "scheduled_time": old["scheduled_time"],
            "task_id": old["task_id"],
            "user_id": old["user_id"],
        },
        "timestamp": event.timestamp_text,
        "version": event.version,
    }


def derive(value, lead_time):
    """The reminder events (dicts, in order) one task event causes, with the state
    changes they need made through `state` and `timers`."""
    event = parse(value)
    task = event.task
    name = f"reminder:{task.task_id}"
    old = read_entry(state.get(name))
    due = task.due_date
    if due is not None:
        remind_at = minus(due, *lead_time) or due
        reminder_id = derive_id("reminder", task.task_id, format_utc(due))

    if event.event_type in ("task.created", "task.updated") and not task.is_completed():
        if due is None:
            if old is None:
                return []
            forget(name)
            return [cancelled(event, old, "unscheduled")]
        if old is not None and old["reminder_id"] == reminder_id:
            return []
        scheduled = max(remind_at, event.timestamp)
        payload = {
            "message": f'Reminder: "{task.title}" is due at {format_utc(due)}',
            "reminder_id": reminder_id,
            "scheduled_time": format_utc(scheduled),
            "task_id": task.task_id,
            "user_id": task.user_id,
        }
        entry = dict(payload, correlation_id=event.correlation_id, title=task.title, version=event.version)
        state.set(name, dumps(dict(sorted(entry.items()))))
        timers.set(name, epoch_ms(scheduled), reminder_id)
        reminder = {
            "correlation_id": event.correlation_id,
            "event_id": derive_id("reminder-event", event.event_id),
            "event_type": "reminder.scheduled",
            "payload": payload,
            "timestamp": event.timestamp_text,
            "version": event.version,
        }
        return [reminder] if old is None else [cancelled(event, old, "rescheduled"), reminder]

    # A status of completed (task.created, which the design's table leaves out, is
    # taken as task.updated is), task.completed, task.deleted
    why = "deleted" if event.event_type == "task.deleted" else "completed"
    if old is not None:
        forget(name)
        return [cancelled(event, old, why)]
    if due is None:
        return []
    # No entry: the reminder may have been scheduled by the stateless deriver, so
    # cancel the one this event's due date names, as that deriver did.
    return [
        {
            "correlation_id": event.correlation_id,
            "event_id": derive_id("reminder-event", event.event_id),
            "event_type": "reminder.cancelled",
            "payload": {
                "message": f'Reminder cancelled: "{task.title}" was {why}',
                "reminder_id": reminder_id,
                "scheduled_time": format_utc(remind_at),
                "task_id": task.task_id,
                "user_id": task.user_id,
            },
            "timestamp": event.timestamp_text,
            "version": event.version,
        }
    ]


ENTRY_FIELDS = ("correlation_id", "message", "reminder_id", "scheduled_time", "task_id", "title", "user_id", "version")


def read_entry(stored):
    """The stored entry (a dict of its strings), or None when there is none or it is
    unreadable (it then counts as absent, as in the Rust plugin)."""
    if stored is None:
        return None
    try:
        entry = json.loads(stored)
    except ValueError:
        return None
    if not isinstance(entry, dict) or not all(isinstance(entry.get(f), str) for f in ENTRY_FIELDS):
        return None
    return entry


def forget(name):
    state.delete(name)
    timers.cancel(name)


def triggered(name, reminder_id):
    """`reminder.triggered` for the timer `name` carrying `reminder_id` (bytes), or
    None when the entry is gone or names another reminder (a stale timer). Forgets
    the task."""
    entry = read_entry(state.get(name))
    if entry is None or entry["reminder_id"].encode("utf-8") != reminder_id:
        return None
    state.delete(name)
    return {
        "correlation_id": entry["correlation_id"],
        "event_id": derive_id("reminder-triggered", entry["reminder_id"]),
        "event_type": "reminder.triggered",
        "payload": {k: entry[k] for k in ("message", "reminder_id", "scheduled_time", "task_id", "user_id")},
        "timestamp": entry["scheduled_time"],
        "version": entry["version"],
    }


def trace(reminders):
    """Adds an event to the call's span for each reminder (a dict), when it is
    recording: named after its type, with `todo.task_id`, `todo.reminder_id` and
    `todo.scheduled_time` (when the reminder is, or was, due)."""
    if not reminders or not span.recording():
        return
    for r in reminders:
        p = r["payload"]
        span.add_event(
            r["event_type"],
            {"todo.task_id": p["task_id"], "todo.reminder_id": p["reminder_id"], "todo.scheduled_time": p["scheduled_time"]},
        )


def handle_event(event):
    if settings is None:
        raise Transient("handle-event called before init")
    if event.value is None:
        raise Invalid("a tombstone (null value) is not a task event")
    lead_time, output = settings
    try:
        reminders = derive(event.value, lead_time)
    except Rejection as r:
        raise Invalid(str(r)) from None
    trace(reminders)
    return [reminder_output(r, output) for r in reminders]


def handle_timer(timer):
    if settings is None:
        raise Transient("handle-timer called before init")
    reminder = triggered(timer.name, timer.payload)
    reminders = [] if reminder is None else [reminder]
    trace(reminders)
    return [reminder_output(r, settings[1]) for r in reminders]
