"""task-validator: lets valid task events through unchanged and rejects the rest as
`invalid`, naming the field and the problem. A port of plugins/task-validator.

Config: `output` (default `valid`) is the logical output name of the passed event,
for pipelines where the validator is the last stage.
"""

from todo_events import Rejection, validate
from weir_plugin import Invalid, Output

DEFAULT_OUTPUT = "valid"
output = DEFAULT_OUTPUT


def init(config):
    global output
    output = config.get("output", DEFAULT_OUTPUT)


def handle_event(event):
    if event.value is None:
        raise Invalid("a tombstone (null value) is not a task event")
    try:
        validate(event.value)
    except Rejection as r:
        raise Invalid(str(r)) from None
    return [Output(output, key=event.key, value=event.value, headers=event.headers)]
