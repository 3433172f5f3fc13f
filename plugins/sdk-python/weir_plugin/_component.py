"""The component glue: implements the generated ``WitWorld`` protocol on top of the
author's ``app`` module. componentize-py imports this module (and so ``app``) at
build time and snapshots the result, so module-level work in ``app.py`` costs
nothing per instance."""

import app as _app  # the plugin: app.py of the project directory
import wit_world  # type: ignore
from componentize_py_types import Err  # type: ignore
from wit_world.imports import types as _wit  # type: ignore

from . import Config, Event, Header, Invalid, Transient, log

_app_init = getattr(_app, "init", None)
_handle = _app.handle_event
_WitOutput = _wit.Output
_WitHeader = _wit.Header


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
        try:
            outputs = _handle(ev)
        except Invalid as e:
            raise Err(_wit.Failure_Invalid(str(e)))
        except Transient as e:
            raise Err(_wit.Failure_Transient(str(e)))
        except Exception as e:  # a bug: log it, then trap (the host retries on a fresh instance)
            log("error", f"handle_event raised {type(e).__name__}: {e}")
            raise
        if not outputs:
            return []
        return [
            _WitOutput(o.to, o.key, o.value, [_WitHeader(h.key, h.value) for h in o.headers])
            for o in outputs
        ]
