"""The weir plugin SDK for Python.

A plugin is a module named ``app`` (the file ``app.py`` of the plugin's project
directory) with two plain functions::

    from weir_plugin import Event, Output, Header, Invalid, Transient, log

    def init(config: dict[str, str]) -> None:      # optional
        ...                                         # raise any exception to refuse the config

    def handle_event(event: Event) -> list[Output]:
        ...                                         # raise Invalid(msg) or Transient(msg) to fail

A stateful plugin also uses ``state`` and ``timers`` (``from weir_plugin import
state, timers``; both scoped to the key of the record being handled) and may define
a third function, ``handle_timer(timer: FiredTimer) -> list[Output]``, called when
one of its timers comes due. Any plugin may add attributes and events to the span the
host opens around each call with ``span`` (``from weir_plugin import span``).

``scripts/build-plugin DIR OUT.wasm`` turns the directory into a component of the
``weir:plugin`` world, or of ``stateful-plugin`` when the plugin defines
``handle_timer`` or imports ``state`` or ``timers`` (``build/world.py`` decides;
``wit/plugin.wit``'s doc comments are the reference). This module has no dependency
on the generated bindings, so ``app.py`` can be imported and unit-tested with any
Python 3.9+: ``log`` then writes to stderr, and ``state``, ``timers`` and ``span``
use the in-memory host of ``weir_plugin.testing``.

Failures map onto the WIT ``failure`` variant: ``Invalid`` (the event is bad and
never will be good: dead-letter queue at once) and ``Transient`` (retry with
backoff). Any other exception escaping ``handle_event`` traps the instance, like a
Rust panic: the host counts a ``trap``, replaces the instance and retries.
"""

from __future__ import annotations

import sys
from typing import Dict, List, Optional, Sequence, Tuple, Union

# `state` and `timers` (submodules) are left out on purpose: the build picks the
# stateful world from an explicit import of them, which `import *` would hide. `span`
# is a submodule like them.
__all__ = [
    "Config",
    "Event",
    "FiredTimer",
    "Header",
    "Invalid",
    "Output",
    "StateLimit",
    "Transient",
    "log",
]

Bytes = Union[bytes, bytearray, str]


def _as_bytes(value: Optional[Bytes]) -> Optional[bytes]:
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    return bytes(value)


class Invalid(Exception):
    """The event is bad and never will be good: it goes to the dead-letter queue at
    once, with this message in ``weir.error.message``. Name the field and the problem."""


class Transient(Exception):
    """The event may succeed later: the host retries it with backoff, then sends it
    to the dead-letter queue as ``retries-exhausted``."""


class StateLimit(Exception):
    """A ``state.set`` or ``timers.set`` refused by one of the slot's limits
    (``limits.state-value``, ``limits.state-entries``, ``limits.timers``); nothing
    was written. Catch it to react. If it escapes ``handle_event`` or
    ``handle_timer``, the call returns no outputs and the host sends the record (or
    the timer) to the dead-letter queue as ``state-limit``."""


class Header:
    """One record header. ``value`` is bytes; a ``str`` given here is UTF-8 encoded."""

    __slots__ = ("key", "value")

    def __init__(self, key: str, value: Bytes = b""):
        self.key = key
        self.value = _as_bytes(value)

    @classmethod
    def text(cls, key: str, value: str) -> "Header":
        """A header whose value is the text ``value`` in UTF-8, as the Rust SDK's
        ``Header::text``. Only builds headers: a received header's value is bytes.
        A ``str`` with a lone surrogate is not text: raises UnicodeEncodeError."""
        if not isinstance(value, str):
            raise TypeError(f"Header.text: the value must be a str, not {type(value).__name__}")
        return cls(key, value.encode("utf-8"))

    def __eq__(self, other):
        return isinstance(other, Header) and (self.key, self.value) == (other.key, other.value)

    def __repr__(self):
        return f"Header({self.key!r}, {self.value!r})"


class Event:
    """One record to handle (the WIT ``event``). ``key`` and ``value`` are bytes or
    ``None`` (no key; a tombstone)."""

    __slots__ = ("topic", "partition", "offset", "timestamp_ms", "key", "value", "headers")

    def __init__(
        self,
        value: Optional[Bytes] = None,
        key: Optional[Bytes] = None,
        headers: Sequence[Header] = (),
        topic: str = "",
        partition: int = 0,
        offset: int = 0,
        timestamp_ms: Optional[int] = None,
    ):
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.timestamp_ms = timestamp_ms
        self.key = _as_bytes(key)
        self.value = _as_bytes(value)
        self.headers = list(headers)

    def header(self, key: str) -> Optional[bytes]:
        """The value of the first header named ``key``, if any."""
        for h in self.headers:
            if h.key == key:
                return h.value
        return None

    def __repr__(self):
        return (
            f"Event(topic={self.topic!r}, partition={self.partition}, offset={self.offset}, "
            f"timestamp_ms={self.timestamp_ms}, key={self.key!r}, value={self.value!r}, "
            f"headers={self.headers!r})"
        )


class FiredTimer:
    """A timer that came due (the WIT ``fired-timer``), handed to ``handle_timer``:
    ``name`` and ``payload`` (bytes) as given to ``timers.set``, ``key`` (bytes or
    ``None``) of the records it belongs to, ``due_ms`` when it was due, and the
    ``topic`` and ``partition`` of that key. During ``handle_timer``, ``state`` and
    ``timers`` are scoped to ``key``, and the timer itself is gone."""

    __slots__ = ("name", "key", "due_ms", "payload", "topic", "partition")

    def __init__(
        self,
        name: str,
        due_ms: int,
        payload: Bytes = b"",
        key: Optional[Bytes] = None,
        topic: str = "",
        partition: int = 0,
    ):
        self.name = name
        self.due_ms = due_ms
        self.payload = _as_bytes(payload)
        self.key = _as_bytes(key)
        self.topic = topic
        self.partition = partition

    def __eq__(self, other):
        return isinstance(other, FiredTimer) and all(
            getattr(self, a) == getattr(other, a) for a in self.__slots__
        )

    def __repr__(self):
        return (
            f"FiredTimer(name={self.name!r}, due_ms={self.due_ms}, payload={self.payload!r}, "
            f"key={self.key!r}, topic={self.topic!r}, partition={self.partition})"
        )


class Output:
    """One record to emit (the WIT ``output``). ``to`` is a logical output name of
    the pipeline; ``key``/``value`` may be bytes, ``str`` (UTF-8 encoded) or ``None``
    (no key; a tombstone)."""

    __slots__ = ("to", "key", "value", "headers")

    def __init__(
        self,
        to: str,
        key: Optional[Bytes] = None,
        value: Optional[Bytes] = None,
        headers: Sequence[Header] = (),
    ):
        self.to = to
        self.key = _as_bytes(key)
        self.value = _as_bytes(value)
        self.headers = list(headers)

    def __eq__(self, other):
        return isinstance(other, Output) and (self.to, self.key, self.value, self.headers) == (
            other.to,
            other.key,
            other.value,
            other.headers,
        )

    def __repr__(self):
        return f"Output(to={self.to!r}, key={self.key!r}, value={self.value!r}, headers={self.headers!r})"


class Config(dict):
    """The plugin's ``config`` table as a dict. If a key repeats (``weir test
    --config k=a --config k=b``), the dict keeps the first value, like the Rust SDK's
    ``config_value``; ``pairs`` has every entry in order."""

    def __init__(self, pairs: Sequence[Tuple[str, str]] = ()):
        super().__init__()
        self.pairs: List[Tuple[str, str]] = list(pairs)
        for k, v in self.pairs:
            self.setdefault(k, v)


LEVELS = ("trace", "debug", "info", "warn", "error")

try:  # inside the component: the generated bindings exist
    from wit_world.imports import host as _host  # type: ignore

    _IN_COMPONENT = True

    _LEVEL = {name: getattr(_host.Level, name.upper()) for name in LEVELS}

    def log(level: str, message: str) -> None:
        """Writes a line to the host's log; ``level`` is one of trace, debug, info,
        warn, error."""
        _host.log(_LEVEL[level], message)

except ImportError:  # native: unit tests and scripts
    _IN_COMPONENT = False

    def log(level: str, message: str) -> None:
        """Writes a line to the host's log; ``level`` is one of trace, debug, info,
        warn, error. (Native Python: stderr.)"""
        if level not in LEVELS:
            raise KeyError(level)
        print(f"[{level}] {message}", file=sys.stderr)


# What `state` and `timers` call: the component's imports, a refusal (a component of
# the plain world has none), or natively an in-memory testing.FakeHost (made on first
# use; testing.reset installs a fresh one).
_backend = None
_STATEFUL = False

if _IN_COMPONENT:
    try:
        from wit_world.imports import state as _wit_state  # type: ignore
        from wit_world.imports import timers as _wit_timers  # type: ignore

        _STATEFUL = True
    except ImportError:
        pass

    if _STATEFUL:
        from componentize_py_types import Err as _Err  # type: ignore

        class _Imports:
            """The stateful-plugin world's imports, with the SDK's types."""

            state_get = staticmethod(_wit_state.get)
            state_delete = staticmethod(_wit_state.delete)
            state_exists = staticmethod(_wit_state.exists)
            state_entries = staticmethod(_wit_state.entries)
            timer_cancel = staticmethod(_wit_timers.cancel)
            timer_due = staticmethod(_wit_timers.due)
            timer_now = staticmethod(_wit_timers.now_ms)

            @staticmethod
            def state_set(name, value):
                try:
                    _wit_state.set(name, value)
                except _Err as e:
                    raise StateLimit(str(e.value)) from None

            @staticmethod
            def timer_set(name, at_ms, payload):
                try:
                    _wit_timers.set(name, at_ms, payload)
                except _Err as e:
                    raise StateLimit(str(e.value)) from None

        _backend = _Imports()
    else:

        class _PlainWorld:
            """A component of the plain `plugin` world: it has no state and no timers."""

            def __getattr__(self, name):
                raise RuntimeError(
                    "state and timers need the stateful-plugin world, and this component was built "
                    "for the plain plugin world: the build picks stateful-plugin when app.py defines "
                    "handle_timer or a module does `from weir_plugin import state` (or timers)"
                )

        _backend = _PlainWorld()


def _host_backend():
    global _backend
    if _backend is None:
        from .testing import FakeHost

        _backend = FakeHost()
    return _backend


# What `span` calls: the component's import (both worlds have it), or natively the
# same FakeHost as `state` and `timers`.
_span_imports = None

if _IN_COMPONENT:
    try:
        from wit_world.imports import span as _wit_span  # type: ignore

        class _SpanImports:
            span_recording = staticmethod(_wit_span.recording)
            span_set_attribute = staticmethod(_wit_span.set_attribute)
            span_add_event = staticmethod(_wit_span.add_event)

    except ImportError:  # a WIT without `span` (before 0.1.2): a span that is never sampled

        class _SpanImports:
            @staticmethod
            def span_recording():
                return False

            @staticmethod
            def span_set_attribute(key, value):
                pass

            @staticmethod
            def span_add_event(name, attributes):
                pass

    _span_imports = _SpanImports()


def _span_backend():
    return _span_imports if _IN_COMPONENT else _host_backend()


from . import span, state, timers  # noqa: E402  (they use the names above)
