"""{{name}}: a weir plugin that upper-cases the text of each record's value.

Config: `output` (default `out`) is the logical output name of the result.
"""

from weir_plugin import Invalid, Output

output = "out"


def shout(text: str) -> str:
    """The plugin's logic, in a plain function: test_app.py runs it natively."""
    return text.upper()


def init(config):
    global output
    output = config.get("output", "out")


def handle_event(event):
    if event.value is None:
        raise Invalid("value: a tombstone has no text")
    try:
        text = event.value.decode("utf-8")
    except UnicodeDecodeError:
        raise Invalid("value: not UTF-8 text") from None
    return [Output(output, key=event.key, value=shout(text))]
