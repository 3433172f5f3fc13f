"""The SDK's span and the in-memory host's recorder, natively:

    PYTHONPATH=plugins/sdk-python python3 -m unittest discover -s plugins/sdk-python/tests
"""

import unittest

from weir_plugin import Event, span, testing, timers
from weir_plugin.testing import SpanEvent


class SpanTest(unittest.TestCase):
    def setUp(self):
        self.host = testing.reset()

    def test_attributes_and_events_are_recorded(self):
        self.assertTrue(span.recording())
        span.set_attribute("a", "1")
        span.set_attribute("b", "2")
        span.set_attribute("a", "3")  # replaces, in place
        span.add_event("e", {"k": "v"})
        span.add_event("pairs", [("x", "1"), ("y", "2")])
        span.add_event("bare")
        self.assertEqual(list(self.host.span.attributes.items()), [("a", "3"), ("b", "2")])
        self.assertEqual(
            self.host.span.events,
            [SpanEvent("e", {"k": "v"}), SpanEvent("pairs", {"x": "1", "y": "2"}), SpanEvent("bare", {})],
        )

    def test_keys_and_values_are_text(self):
        for call in (
            lambda: span.set_attribute("n", 1),
            lambda: span.set_attribute(b"k", "v"),
            lambda: span.add_event("e", {"n": None}),
            lambda: span.add_event(None),
        ):
            with self.assertRaises(TypeError):
                call()
        self.assertEqual(self.host.span.attributes, {})
        self.assertEqual(self.host.span.events, [])

    def test_an_unsampled_span_drops_everything(self):
        self.host.span.recording = False
        self.assertFalse(span.recording())
        span.set_attribute("a", "1")
        span.add_event("e")
        self.assertEqual((self.host.span.attributes, self.host.span.events), ({}, []))

    def test_each_handled_call_gets_a_fresh_span(self):
        def handle_event(event):
            span.set_attribute("value", event.value.decode())
            return []

        def handle_timer(timer):
            span.add_event("fired", {"name": timer.name})
            return []

        span.set_attribute("before", "x")
        self.host.handle(handle_event, Event(value=b"one"))
        self.host.handle(handle_event, Event(value=b"two"))
        self.assertEqual(self.host.span.attributes, {"value": "two"})
        self.host.span.recording = False
        self.host.handle(handle_event, Event(value=b"three"))
        self.assertEqual(self.host.span.attributes, {}, "a fresh span keeps the recording setting")

        self.host.span.recording = True
        timers.set("t", 0)
        self.host.fire_due(handle_timer)
        self.assertEqual(self.host.span.events, [SpanEvent("fired", {"name": "t"})])


if __name__ == "__main__":
    unittest.main()
