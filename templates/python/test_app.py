"""Native unit tests: PYTHONPATH={{sdk_path}} python3 -m unittest"""

import unittest

import app
from weir_plugin import Event, Invalid


class ShoutTest(unittest.TestCase):
    def test_shouts(self):
        app.init({})
        [out] = app.handle_event(Event(value=b"hello, weir", key=b"k1"))
        self.assertEqual((out.to, out.key, out.value), ("out", b"k1", b"HELLO, WEIR"))

    def test_tombstone_is_invalid(self):
        with self.assertRaises(Invalid):
            app.handle_event(Event(value=None))


if __name__ == "__main__":
    unittest.main()
