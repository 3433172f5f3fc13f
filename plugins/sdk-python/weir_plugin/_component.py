"""The component glue: implements the generated ``WitWorld`` protocol on top of the
author's ``app`` module. componentize-py imports this module (and so ``app``) at
build time and snapshots the result, so module-level work in ``app.py`` costs
nothing per instance.

The same glue serves both worlds. Built for ``stateful-plugin`` it also exports
``handle-timer`` (calling ``app.handle_timer``, or returning nothing when the plugin
uses state without timers of its own); built for ``plugin`` it refuses an ``app``
that defines ``handle_timer``, which would never be called."""

import app as _app  # the plugin: app.py of the project directory
import wit_world  # type: ignore
from componentize_py_types import Err  # type: ignore
from wit_world.imports import types as _wit  # type: ignore

from . import _STATEFUL, Config, Event, FiredTimer, Header, Invalid, StateLimit, Transient, log

_app_init = getattr(_app, "init", None)
_handle = _app.handle_event
_handle_timer = getattr(_app, "handle_timer", None)
_WitOutput = _wit.Output
_WitHeader = _wit.Header

if _handle_timer is not None and not _STATEFUL:
    raise RuntimeError(
        "app defines handle_timer, but the build picked the plain plugin world, which has no timers: "
        "scripts/build-plugin (and weir build) picks stateful-plugin when app.py defines handle_timer "
        "at module level (def handle_timer, handle_timer = ..., or an import as handle_timer)"
    )


def _call(handler, arg, what):
    try:
        outputs = handler(arg)
    except Invalid as e:
        raise Err(_wit.Failure_Invalid(str(e)))
    except Transient as e:
        raise Err(_wit.Failure_Transient(str(e)))
    except StateLimit:
        # The host saw the refused write: returning now makes it dead-letter the
        # record (or timer) as `state-limit`, which is what the author should see.
        return []
    except Exception as e:  # a bug: log it, then trap (the host retries on a fresh instance)
        log("error", f"{what} raised {type(e).__name__}: {e}")
        raise
    if not outputs:
        return []
    return [
        _WitOutput(o.to, o.key, o.value, [_WitHeader(h.key, h.value) for h in o.headers])
        for o in outputs
    ]


class WitWorld(wit_world.WitWorld):
    def init(self, config):
        if _app_init is None:
            return
        try:
            _app_init(Config(config))
        except Exception as e:  # any exception refuses the config, with its message
            raise Err(str(e) or type(e).__name__)

    def handle_event(self, event):
        ev = Event.__new__(Event)
        ev.topic = event.topic
        ev.partition = event.partition
        ev.offset = event.offset
        ev.timestamp_ms = event.timestamp_ms
        ev.key = event.key
        ev.value = event.value
        ev.headers = [Header(h.key, h.value) for h in event.headers]
        return _call(_handle, ev, "handle_event")

    if _STATEFUL:

        def handle_timer(self, timer):
            if _handle_timer is None:  # a plugin with state but no handle_timer set a timer
                log("warn", f"timer {timer.name!r} fired, but app defines no handle_timer: nothing to do")
                return []
            fired = FiredTimer.__new__(FiredTimer)
            fired.name = timer.name
            fired.key = timer.key
            fired.due_ms = timer.due_ms
            fired.payload = timer.payload
            fired.topic = timer.topic
            fired.partition = timer.partition
            return _call(_handle_timer, fired, "handle_timer")
