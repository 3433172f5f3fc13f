"""An in-memory host for native tests of plugins.

Natively (outside a component) ``state``, ``timers`` and ``span`` use a ``FakeHost``.
It keeps entries and timers per key, has a clock that tests set, hands out the
timers that came due, and records what the plugin adds to its span::

    from weir_plugin import Event, testing
    import app

    host = testing.reset(now_ms=1_000)           # a fresh host for this test
    app.init({})
    outputs = host.handle(app.handle_event, Event(key=b"u1", value=b"..."))
    host.advance(60_000)                         # or set host.now_ms
    outputs = host.fire_due(app.handle_timer)    # every timer due by now, oldest first
    host.entries_of(b"u1")                       # {name: bytes}, to look at

``handle`` and ``fire_due`` scope ``state`` and ``timers`` to the event's (or the
timer's) key, as the host does, and put the state back as it was when the handler
raises (a dead-lettered record leaves no trace). To call plugin functions directly,
set ``host.key`` first.

``host.span`` is the call span: ``attributes`` (a dict, in the order first set) and
``events`` (``SpanEvent(name, attributes)``, in order). ``handle`` and ``fire_due``
give each call a fresh one, as the host does (after ``fire_due``, the last timer's);
direct calls add to the same one. It records at first; ``host.span.recording =
False`` makes it an unsampled span, which drops everything::

    host.handle(app.handle_event, event)
    assert host.span.attributes["todo.task_id"] == task_id
    assert [e.name for e in host.span.events] == ["reminder.scheduled"]
"""

import copy
from typing import Callable, Dict, List, NamedTuple, Optional, Tuple

from . import Bytes, Event, FiredTimer, Output, StateLimit, _as_bytes

Key = Optional[bytes]


class SpanEvent(NamedTuple):
    """One event added to the span: its name and its attributes (a dict)."""

    name: str
    attributes: Dict[str, str]


class FakeSpan:
    """The call span of a ``FakeHost``: whether it is sampled (``recording``), and the
    ``attributes`` and ``events`` the plugin added (none while not recording)."""

    def __init__(self, recording: bool = True):
        self.recording = recording
        self.attributes: Dict[str, str] = {}
        self.events: List[SpanEvent] = []

    def __repr__(self):
        return f"FakeSpan(recording={self.recording}, attributes={self.attributes!r}, events={self.events!r})"


class FakeHost:
    """State, timers and a clock in memory, with the host's semantics: entries and
    timers are scoped to ``key``, a timer set again is replaced, a fired timer is
    gone before its handler runs. The optional limits make ``state.set`` and
    ``timers.set`` raise ``StateLimit`` as the host's ``limits.state-value``,
    ``limits.state-entries`` and ``limits.timers`` do (no limit when ``None``)."""

    def __init__(
        self,
        now_ms: int = 0,
        *,
        value_limit: Optional[int] = None,
        entries_limit: Optional[int] = None,
        timers_limit: Optional[int] = None,
    ):
        self.now_ms = now_ms  # the clock of timers.now_ms and of fire_due
        self.key = None  # the key state and timers are scoped to (bytes; a str is UTF-8 encoded)
        self.topic = ""  # the topic and partition a timer set now belongs to
        self.partition = 0
        self.value_limit = value_limit
        self.entries_limit = entries_limit
        self.timers_limit = timers_limit
        self._entries: Dict[Key, Dict[str, bytes]] = {}
        # (key, name) -> (due_ms, order set, payload, topic, partition)
        self._timers: Dict[Tuple[Key, str], Tuple[int, int, bytes, str, int]] = {}
        self._order = 0
        self.span = FakeSpan()  # the call span (see the module's doc)

    @property
    def key(self) -> Key:
        return self._key

    @key.setter
    def key(self, value: Optional[Bytes]) -> None:
        self._key = _as_bytes(value)

    # --- what weir_plugin.state and weir_plugin.timers call ----------------------

    def state_get(self, name: str) -> Optional[bytes]:
        return self._entries.get(self.key, {}).get(name)

    def state_set(self, name: str, value: bytes) -> None:
        entries = self._entries.setdefault(self.key, {})
        if self.value_limit is not None and len(value) > self.value_limit:
            raise StateLimit(f"state entry {name!r}: {len(value)} bytes, over the limit of {self.value_limit}")
        if self.entries_limit is not None and name not in entries and len(entries) >= self.entries_limit:
            raise StateLimit(f"state entry {name!r}: the key has {len(entries)} entries, the limit")
        entries[name] = bytes(value)

    def state_delete(self, name: str) -> None:
        entries = self._entries.get(self.key, {})
        entries.pop(name, None)
        if not entries:
            self._entries.pop(self.key, None)

    def state_exists(self, name: str) -> bool:
        return name in self._entries.get(self.key, {})

    def state_entries(self, after: Optional[str], max: int) -> List[Tuple[str, bytes]]:  # noqa: A002
        names = sorted(n for n in self._entries.get(self.key, {}) if after is None or n > after)
        return [(n, self._entries[self.key][n]) for n in names[:max]]

    def timer_set(self, name: str, at_ms: int, payload: bytes) -> None:
        if self.value_limit is not None and len(payload) > self.value_limit:
            raise StateLimit(f"timer {name!r}: a payload of {len(payload)} bytes, over the limit of {self.value_limit}")
        if self.timers_limit is not None and (self.key, name) not in self._timers and len(self._timers) >= self.timers_limit:
            raise StateLimit(f"timer {name!r}: {len(self._timers)} timers pending, the limit")
        self._order += 1
        self._timers[(self.key, name)] = (at_ms, self._order, bytes(payload), self.topic, self.partition)

    def timer_cancel(self, name: str) -> None:
        self._timers.pop((self.key, name), None)

    def timer_due(self, name: str) -> Optional[int]:
        timer = self._timers.get((self.key, name))
        return None if timer is None else timer[0]

    def timer_now(self) -> int:
        return self.now_ms

    # --- what weir_plugin.span calls ----------------------------------------------

    def span_recording(self) -> bool:
        return self.span.recording

    def span_set_attribute(self, key: str, value: str) -> None:
        if self.span.recording:
            self.span.attributes[key] = value

    def span_add_event(self, name: str, attributes: List[Tuple[str, str]]) -> None:
        if self.span.recording:
            self.span.events.append(SpanEvent(name, dict(attributes)))

    # --- for tests --------------------------------------------------------------

    def advance(self, ms: int) -> None:
        """Moves the clock forward by ``ms`` milliseconds."""
        self.now_ms += ms

    def take_due(self) -> List[FiredTimer]:
        """Removes and returns the timers due by ``now_ms``, in due order (then in
        the order they were set)."""
        due = sorted((t[0], t[1], key, name) for (key, name), t in self._timers.items() if t[0] <= self.now_ms)
        fired = []
        for due_ms, _, key, name in due:
            _, _, payload, topic, partition = self._timers.pop((key, name))
            fired.append(FiredTimer(name, due_ms, payload, key=key, topic=topic, partition=partition))
        return fired

    def handle(self, handle_event: Callable[[Event], List[Output]], event: Event) -> List[Output]:
        """Calls ``handle_event(event)`` scoped to ``event.key``, in a fresh span, as
        the host does."""
        self.key, self.topic, self.partition = event.key, event.topic, event.partition
        return self._call(handle_event, event)

    def fire_due(self, handle_timer: Callable[[FiredTimer], List[Output]]) -> List[Output]:
        """Fires every timer due by ``now_ms``, oldest first: calls
        ``handle_timer(timer)`` scoped to the timer's key, each in a fresh span, and
        returns all the outputs in order. A timer set while firing fires too if it is
        due."""
        outputs: List[Output] = []
        while True:
            fired = self.take_due()
            if not fired:
                return outputs
            for timer in fired:
                self.key, self.topic, self.partition = timer.key, timer.topic, timer.partition
                outputs.extend(self._call(handle_timer, timer))

    def _call(self, handler, arg) -> List[Output]:
        self.span = FakeSpan(self.span.recording)
        saved = copy.deepcopy((self._entries, self._timers))
        try:
            return list(handler(arg) or [])
        except BaseException:
            self._entries, self._timers = saved
            raise

    def entries_of(self, key=...) -> Dict[str, bytes]:
        """A copy of the entries of ``key`` (bytes or str; default: the current key)."""
        return dict(self._entries.get(self.key if key is ... else _as_bytes(key), {}))

    def timers_of(self, key=...) -> Dict[str, Tuple[int, bytes]]:
        """The pending timers of ``key`` (bytes or str; default: the current key) as
        ``{name: (due_ms, payload)}``."""
        key = self.key if key is ... else _as_bytes(key)
        return {name: (t[0], t[2]) for (k, name), t in self._timers.items() if k == key}


def reset(now_ms: int = 0, **limits) -> FakeHost:
    """Installs a fresh ``FakeHost`` behind ``state``, ``timers`` and ``span`` and
    returns it. ``limits``: ``value_limit``, ``entries_limit``, ``timers_limit``."""
    return install(FakeHost(now_ms, **limits))


def install(host) -> FakeHost:
    """Puts ``host`` behind ``state``, ``timers`` and ``span`` (natively only)."""
    import weir_plugin

    if weir_plugin._IN_COMPONENT:
        raise RuntimeError("weir_plugin.testing is for native tests, not inside a component")
    weir_plugin._backend = host
    return host
