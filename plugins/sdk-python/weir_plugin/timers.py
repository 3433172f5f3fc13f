"""Processing-time timers (world ``stateful-plugin``), scoped like ``state`` to the
key of the record being handled (or of the timer that fired). A timer fires once,
at or after its due time, by a call of the plugin's ``handle_timer(timer)``. See
``interface timers`` in wit/plugin.wit.

    from weir_plugin import timers

    timers.set("remind", timers.now_ms() + 60_000, b"payload")  # create or replace; raises StateLimit
    timers.due("remind")                 # its due time (ms since the epoch), or None
    timers.cancel("remind")              # nothing happens if there is none
    timers.now_ms()                      # the host's clock, which timers follow
"""

import operator
from typing import Optional

from . import Bytes, _as_bytes, _host_backend


def set(name: str, at_ms: int, payload: Bytes = b"") -> None:  # noqa: A001 (the WIT's name)
    """Creates the key's timer ``name``, or replaces it (new due time and payload),
    due at ``at_ms`` milliseconds since the Unix epoch (an int; a time already past
    fires as soon as possible). ``payload`` (bytes, or a str in UTF-8) comes back in
    ``FiredTimer.payload``. Raises ``StateLimit`` (nothing set) when the payload or
    the partition's number of timers would be over the slot's limits."""
    try:
        at_ms = operator.index(at_ms)
    except TypeError:
        raise TypeError(f"timers.set: at_ms must be an int (milliseconds), not {type(at_ms).__name__}") from None
    _host_backend().timer_set(name, at_ms, _as_bytes(payload) or b"")


def cancel(name: str) -> None:
    """Cancels the key's timer ``name`` (nothing happens if there is none)."""
    _host_backend().timer_cancel(name)


def due(name: str) -> Optional[int]:
    """When the key's timer ``name`` is due (ms since the epoch), or ``None`` when it
    is not pending."""
    return _host_backend().timer_due(name)


def now_ms() -> int:
    """The host's clock, milliseconds since the Unix epoch: the clock timers follow
    (``weir test`` moves it by the input's ``advance`` lines; natively,
    ``testing.FakeHost.now_ms``)."""
    return _host_backend().timer_now()
