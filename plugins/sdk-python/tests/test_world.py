"""build/world.py picks the world from a project's sources:

    PYTHONPATH=plugins/sdk-python python3 -m unittest discover -s plugins/sdk-python/tests
"""

import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "build"))
import world  # noqa: E402

PLAIN = "from weir_plugin import Output\n\ndef handle_event(event):\n    return []\n"


class WorldTest(unittest.TestCase):
    def project(self, **files):
        dir = Path(tempfile.mkdtemp())
        self.addCleanup(lambda: __import__("shutil").rmtree(dir))
        for name, text in files.items():
            path = dir / name.replace("__", "/")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        return world.world(dir)[0]

    def test_a_plain_plugin(self):
        self.assertEqual(self.project(**{"app.py": PLAIN}), "plugin")

    def test_handle_timer_in_app(self):
        for text in (
            "def handle_timer(timer):\n    return []\n",
            "handle_timer = lambda timer: []\n",
            "from helpers import on_timer as handle_timer\n",
        ):
            with self.subTest(text):
                self.assertEqual(self.project(**{"app.py": PLAIN + text, "helpers.py": ""}), "stateful-plugin")

    def test_handle_timer_elsewhere_is_not_the_plugins(self):
        files = {"app.py": PLAIN + "class X:\n    def handle_timer(self):\n        pass\n", "other.py": "def handle_timer(t): pass\n"}
        self.assertEqual(self.project(**files), "plugin")

    def test_state_or_timers_imported_by_any_module(self):
        for text in (
            "from weir_plugin import Output, state\n",
            "from weir_plugin import timers as t\n",
            "import weir_plugin.state\n",
            "from weir_plugin.timers import now_ms\n",
            "import weir_plugin as w\nw.timers.now_ms()\n",
        ):
            with self.subTest(text):
                self.assertEqual(self.project(**{"app.py": PLAIN, "store.py": text}), "stateful-plugin")

    def test_span_does_not_make_a_plugin_stateful(self):
        # Both worlds import span.
        text = "from weir_plugin import span\nimport weir_plugin.span\nimport weir_plugin as w\nw.span.recording()\n"
        self.assertEqual(self.project(**{"app.py": PLAIN + text}), "plugin")

    def test_tests_and_other_names_do_not_count(self):
        files = {
            "app.py": PLAIN + "import weir_plugin\nweir_plugin.log('info', 'state')\nstate = {}\n",
            "test_app.py": "from weir_plugin import state\n",
            "tests__helpers.py": "from weir_plugin import timers\n",
            "broken.py": "def (:\n",
        }
        self.assertEqual(self.project(**files), "plugin")


if __name__ == "__main__":
    unittest.main()
