"""Keyed state (world ``stateful-plugin``): named byte entries of the key of the
record being handled, or of the timer that fired. Writes are visible at once and
become durable with the record that made them; a record that ends in the
dead-letter queue leaves the state as it was. See ``interface state`` in
wit/plugin.wit.

    from weir_plugin import state

    seen = state.get("seen")             # bytes, or None when not set
    state.set("seen", b"1")              # bytes or str (UTF-8); raises StateLimit
    state.delete("seen")                 # nothing happens if it is not set
    state.exists("seen")                 # bool
    state.entries()                      # [(name, bytes), ...] in name order
"""

from typing import List, Optional, Tuple

from . import Bytes, _as_bytes, _host_backend

# Entries per call of the host's `entries` when `entries()` reads them all.
PAGE = 256


def get(name: str) -> Optional[bytes]:
    """The entry ``name``, or ``None`` when it is not set."""
    return _host_backend().state_get(name)


def set(name: str, value: Bytes) -> None:  # noqa: A001 (the WIT's name)
    """Sets the entry ``name`` to ``value`` (bytes, or a str in UTF-8). Raises
    ``StateLimit`` (nothing written) when the value or the key's number of entries
    would be over the slot's limits."""
    if value is None:
        raise TypeError("state.set: the value must be bytes or str, not None (use state.delete)")
    _host_backend().state_set(name, _as_bytes(value))


def delete(name: str) -> None:
    """Deletes the entry ``name`` (nothing happens if it is not set)."""
    _host_backend().state_delete(name)


def exists(name: str) -> bool:
    """Whether the entry ``name`` is set."""
    return _host_backend().state_exists(name)


def entries(after: Optional[str] = None, max: Optional[int] = None) -> List[Tuple[str, bytes]]:  # noqa: A002
    """The key's entries as ``(name, value)`` in name order, with names after
    ``after`` (from the first when ``None``): at most ``max`` of them (one page: go
    on with the last name returned), or all of them when ``max`` is ``None``."""
    backend = _host_backend()
    if max is not None:
        return [(n, bytes(v)) for n, v in backend.state_entries(after, max)]
    found: List[Tuple[str, bytes]] = []
    while True:
        page = backend.state_entries(after, PAGE)
        found.extend((n, bytes(v)) for n, v in page)
        if len(page) < PAGE:
            return found
        after = page[-1][0]
