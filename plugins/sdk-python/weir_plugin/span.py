"""The plugin's call span (WIT ``interface span``, both worlds): the host opens an
OpenTelemetry span around each call of ``handle_event`` or ``handle_timer``, and
these functions add attributes and events to it. With tracing off, or a record that
is not sampled, they do nothing; ask ``recording()`` first when an attribute is
expensive to make. The host keeps at most 32 attributes and 32 events per call (keys
and names up to 256 bytes, values up to 4 KiB) and drops the rest. Using it does not
change the world the build picks. See ``interface span`` in wit/plugin.wit.

    from weir_plugin import span

    if span.recording():                                  # sampled?
        span.set_attribute("todo.task_id", task_id)       # str keys and values
    span.add_event("reminder.scheduled", {"todo.task_id": task_id})   # a dict or (key, value) pairs

Natively, the span is ``testing.FakeHost.span``, which records what is added.
"""

from typing import Iterable, Mapping, Tuple, Union

from . import _span_backend

Attributes = Union[Mapping[str, str], Iterable[Tuple[str, str]]]


def _text(what: str, value) -> str:
    if not isinstance(value, str):
        raise TypeError(f"span: {what} must be a str, not {type(value).__name__}")
    return value


def recording() -> bool:
    """Whether the current call's span is sampled: whether what is added here
    reaches the trace."""
    return _span_backend().span_recording()


def set_attribute(key: str, value: str) -> None:
    """Sets an attribute of the call span (a later value for the same key replaces
    the earlier one). ``key`` and ``value`` are ``str``."""
    _span_backend().span_set_attribute(_text("the key", key), _text("the value", value))


def add_event(name: str, attributes: Attributes = ()) -> None:
    """Adds an event named ``name``, timestamped now, with its attributes: a dict, or
    ``(key, value)`` pairs (``str`` each), in order."""
    if isinstance(attributes, Mapping):
        attributes = attributes.items()
    pairs = [(_text("an attribute key", k), _text("an attribute value", v)) for k, v in attributes]
    _span_backend().span_add_event(_text("the event name", name), pairs)
