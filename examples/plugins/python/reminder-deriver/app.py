"""reminder-deriver: turns task events into reminder events (SPEC §7). A port of
plugins/reminder-deriver.

`task.created`/`task.updated` with a `due_date` and a status other than `completed`
schedule a reminder at `max(due_date - lead-time, event timestamp)`;
`task.completed`/`task.deleted` with a `due_date` cancel it. The reminder id is a
UUIDv5 of the task id and the due date, so scheduling and cancelling agree without
any state, and every output is a pure function of its input.

Config: `lead-time` (a humantime duration, default `15m`), `output` (default
`reminders`). Unknown keys are refused, so a typo fails at start-up.
"""

import json

from humantime import parse_duration
from todo_events import Rejection, derive_id, format_utc, minus, parse
from weir_plugin import Header, Invalid, Output

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


def derive(value, lead_time):
    """(event_type, key, value bytes, correlation_id) of the reminder, or None."""
    event = parse(value)
    task = event.task
    if task.due_date is None:
        return None
    due = task.due_date
    remind_at = minus(due, *lead_time) or due
    if event.event_type in ("task.created", "task.updated"):
        if task.is_completed():
            return None
        event_type = "reminder.scheduled"
        scheduled = max(remind_at, event.timestamp)
        message = f'Reminder: "{task.title}" is due at {format_utc(due)}'
    else:
        event_type = "reminder.cancelled"
        scheduled = remind_at
        message = f'Reminder cancelled: "{task.title}" was {"completed" if event.event_type == "task.completed" else "deleted"}'
    reminder = {
        "correlation_id": event.correlation_id,
        "event_id": derive_id("reminder-event", event.event_id),
        "event_type": event_type,
        "payload": {
            "message": message,
            "reminder_id": derive_id("reminder", task.task_id, format_utc(due)),
            "scheduled_time": format_utc(scheduled),
            "task_id": task.task_id,
            "user_id": task.user_id,
        },
        "timestamp": event.timestamp_text,
        "version": event.version,
    }
    body = json.dumps(reminder, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return event_type, task.user_id, body, event.correlation_id


def handle_event(event):
    if event.value is None:
        raise Invalid("a tombstone (null value) is not a task event")
    lead_time, output = settings
    try:
        reminder = derive(event.value, lead_time)
    except Rejection as r:
        raise Invalid(str(r)) from None
    if reminder is None:
        return []
    event_type, key, value, correlation_id = reminder
    return [
        Output(
            output,
            key=key,
            value=value,
            headers=[Header("event_type", event_type), Header("correlation_id", correlation_id)],
        )
    ]
