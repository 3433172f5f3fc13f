"""Which WIT world a Python plugin project is built for: prints ``stateful-plugin``
when the plugin has keyed state or timers, else ``plugin``; the reason goes to stderr.

    python3 plugins/sdk-python/build/world.py PROJECT_DIR

Stateful means that ``app.py`` defines ``handle_timer`` at module level (a function,
an assignment or an import), or that a module of the project imports ``state`` or
``timers`` from ``weir_plugin`` (``from weir_plugin import state``,
``import weir_plugin.timers``, or ``weir_plugin.state`` after ``import weir_plugin``).
The sources are read, not run. Test modules (``test_*.py``, ``*_test.py``,
``conftest.py``, ``tests/``) do not count, so a test may import the SDK's modules to
look at state without making a stateless plugin stateful.
"""

import ast
import sys
from pathlib import Path

NAMES = ("state", "timers")
SKIP_DIRS = {"__pycache__", "tests", "node_modules", "venv", ".venv", "site-packages"}


def defines_handle_timer(tree):
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == "handle_timer":
            return True
        if isinstance(node, ast.Assign):
            if any(isinstance(t, ast.Name) and t.id == "handle_timer" for t in node.targets):
                return True
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.target.id == "handle_timer":
            return True
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            if any((a.asname or a.name) == "handle_timer" for a in node.names):
                return True
    return False


def uses_state(tree):
    """The first use of weir_plugin's state or timers in a module, or None."""
    sdk_aliases = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0:
            if node.module == "weir_plugin":
                for a in node.names:
                    if a.name in NAMES:
                        return f"from weir_plugin import {a.name}"
            elif node.module in ("weir_plugin.state", "weir_plugin.timers"):
                return f"from {node.module} import ..."
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name in ("weir_plugin.state", "weir_plugin.timers"):
                    return f"import {a.name}"
                if a.name == "weir_plugin":
                    sdk_aliases.add(a.asname or a.name)
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and node.attr in NAMES
            and isinstance(node.value, ast.Name)
            and node.value.id in sdk_aliases
        ):
            return f"{node.value.id}.{node.attr}"
    return None


def is_test(path):
    name = path.name
    return name.startswith("test_") or name.endswith("_test.py") or name == "conftest.py"


def world(project):
    """(world, reason)."""
    app = project / "app.py"
    try:
        if defines_handle_timer(ast.parse(app.read_bytes(), str(app))):
            return "stateful-plugin", "app.py defines handle_timer"
    except (OSError, SyntaxError, ValueError):
        pass  # componentize-py reports it when it imports app
    for path in sorted(project.rglob("*.py")):
        relative = path.relative_to(project)
        if is_test(path) or any(p in SKIP_DIRS or p.startswith(".") for p in relative.parts[:-1]):
            continue
        try:
            use = uses_state(ast.parse(path.read_bytes(), str(path)))
        except (OSError, SyntaxError, ValueError):
            continue
        if use:
            return "stateful-plugin", f"{relative} uses `{use}`"
    return "plugin", "no handle_timer in app.py and no import of weir_plugin's state or timers"


def main():
    if len(sys.argv) != 2:
        print("usage: world.py PROJECT_DIR", file=sys.stderr)
        return 2
    name, reason = world(Path(sys.argv[1]))
    print(f"build-plugin: world {name} ({reason})", file=sys.stderr)
    print(name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
