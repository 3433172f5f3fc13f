"""task-validator: lets valid task events through unchanged and rejects the rest as
`invalid`, naming the field and the problem. A port of plugins/task-validator.

Config: `output` (default `valid`) is the logical output name of the passed event,
for pipelines where the validator is the last stage.

Span: when the call's span is sampled, a valid event's type and task id are set on it
as `todo.event_type` and `todo.task_id`.
"""

from todo_events import Rejection, parse
from weir_plugin import Invalid, Output, span

DEFAULT_OUTPUT = "valid"
output = DEFAULT_OUTPUT


def init(config):
    global output
    output = config.get("output", DEFAULT_OUTPUT)


def handle_event(event):
    if event.value is None:
        raise Invalid("a tombstone (null value) is not a task event")
    try:
        task_event = parse(event.value)  # what validate does, keeping the event
    except Rejection as r:
        raise Invalid(str(r)) from None
    if span.recording():
        span.set_attribute("todo.event_type", task_event.event_type)
        span.set_attribute("todo.task_id", task_event.task.task_id)
    return [Output(output, key=event.key, value=event.value, headers=event.headers)]
