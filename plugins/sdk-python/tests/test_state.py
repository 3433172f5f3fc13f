"""The SDK's state, timers and in-memory host, natively:

    PYTHONPATH=plugins/sdk-python python3 -m unittest discover -s plugins/sdk-python/tests
"""

import unittest

from weir_plugin import Event, FiredTimer, Invalid, Output, StateLimit, state, testing, timers


class StateTest(unittest.TestCase):
    def setUp(self):
        self.host = testing.reset(now_ms=1_000)

    def test_entries_are_scoped_to_the_key(self):
        self.host.key = b"alice"
        state.set("n", "1")
        self.host.key = "bob"  # a str key is UTF-8 encoded
        self.assertIsNone(state.get("n"))
        self.assertFalse(state.exists("n"))
        state.set("n", b"2")
        self.host.key = None  # records without a key have a scope of their own
        self.assertEqual(state.entries(), [])
        self.assertEqual(self.host.entries_of("alice"), {"n": b"1"})
        self.assertEqual(self.host.entries_of(b"bob"), {"n": b"2"})

    def test_set_get_delete(self):
        state.set("a", b"x")
        state.set("a", "y")  # replaced
        self.assertEqual(state.get("a"), b"y")
        state.delete("a")
        state.delete("a")  # nothing happens
        self.assertIsNone(state.get("a"))
        with self.assertRaises(TypeError):
            state.set("a", None)

    def test_entries_in_name_order_by_page_and_all(self):
        names = [f"e{i:04d}" for i in range(600)]  # more than one page of the host
        for name in reversed(names):
            state.set(name, name)
        self.assertEqual([n for n, _ in state.entries()], names)
        self.assertEqual(state.entries(max=2), [("e0000", b"e0000"), ("e0001", b"e0001")])
        self.assertEqual(state.entries(after="e0597", max=10), [("e0598", b"e0598"), ("e0599", b"e0599")])
        self.assertEqual([n for n, _ in state.entries(after="e0300")], names[301:])

    def test_limits_raise_state_limit_and_write_nothing(self):
        testing.reset(value_limit=4, entries_limit=2, timers_limit=1)
        state.set("a", b"1234")
        with self.assertRaises(StateLimit):
            state.set("b", b"12345")
        state.set("b", b"1")
        with self.assertRaises(StateLimit):
            state.set("c", b"1")  # a third entry
        state.set("b", b"2")  # replacing is no new entry
        self.assertEqual(state.entries(), [("a", b"1234"), ("b", b"2")])
        timers.set("t", 5)
        with self.assertRaises(StateLimit):
            timers.set("u", 5)
        with self.assertRaises(StateLimit):
            timers.set("t", 5, b"12345")
        self.assertIsNone(timers.due("u"))


class TimersTest(unittest.TestCase):
    def setUp(self):
        self.host = testing.reset(now_ms=1_000)
        self.host.key = b"k"

    def test_set_replaces_and_cancel_removes(self):
        self.assertEqual(timers.now_ms(), 1_000)
        timers.set("t", 2_000, b"p")
        timers.set("t", 3_000, "q")
        self.assertEqual(timers.due("t"), 3_000)
        self.assertEqual(self.host.timers_of(b"k"), {"t": (3_000, b"q")})
        timers.cancel("t")
        timers.cancel("t")
        self.assertIsNone(timers.due("t"))
        with self.assertRaises(TypeError):
            timers.set("t", 2.5)

    def test_take_due_in_due_order_then_set_order(self):
        timers.set("late", 3_000)
        timers.set("b", 2_000)
        self.host.key = b"other"
        timers.set("a", 2_000, b"x")
        self.assertEqual(self.host.take_due(), [])
        self.host.advance(1_000)
        fired = self.host.take_due()
        self.assertEqual([(t.name, t.key, t.due_ms) for t in fired], [("b", b"k", 2_000), ("a", b"other", 2_000)])
        self.assertEqual(fired[1], FiredTimer("a", 2_000, b"x", key=b"other"))
        self.assertEqual(self.host.take_due(), [])  # taken means gone
        self.host.now_ms = 10_000
        self.assertEqual([t.name for t in self.host.take_due()], ["late"])

    def test_fire_due_scopes_to_the_timers_key(self):
        def handle_event(event):
            state.set("seen", event.value)
            timers.set("echo", timers.now_ms() + 10, event.value)
            return []

        def handle_timer(timer):
            outputs = [Output("out", key=timer.key, value=state.get("seen") + b"/" + timer.payload)]
            if timer.payload == b"again":
                timers.set("echo", timers.now_ms(), b"last")  # due at once: fires in the same round
            return outputs

        self.host.handle(handle_event, Event(b"one", key=b"u1", topic="t", partition=2))
        self.host.handle(handle_event, Event(b"again", key=b"u2", topic="t", partition=5))
        self.host.advance(10)
        outputs = self.host.fire_due(handle_timer)
        self.assertEqual(
            [(o.key, o.value) for o in outputs], [(b"u1", b"one/one"), (b"u2", b"again/again"), (b"u2", b"again/last")]
        )
        self.assertEqual((self.host.topic, self.host.partition), ("t", 5))

    def test_a_failed_call_leaves_state_and_timers_as_they_were(self):
        state.set("keep", b"1")

        def handle_event(event):
            state.set("keep", b"2")
            state.delete("keep")
            timers.set("t", 0)
            raise Invalid("no")

        with self.assertRaises(Invalid):
            self.host.handle(handle_event, Event(b"x", key=b"k"))
        self.assertEqual(self.host.entries_of(b"k"), {"keep": b"1"})
        self.assertEqual(self.host.timers_of(b"k"), {})


if __name__ == "__main__":
    unittest.main()
