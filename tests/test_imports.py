"""What importing a part costs: the leaves stay leaves, and the command line starts without TensorFlow.

The arrows between the packages are import-linter's contracts (pyproject.toml, checked by
tests/lint_imports.py in `make test`); these tests check what those cannot: imports made when a module runs.
"""

from __future__ import annotations

import subprocess
import sys

OURS = ("playbill.bot", "playbill.jobs", "playbill.history", "playbill.engine", "playbill.cli")


def loaded_after(statement: str) -> set[str]:
    """The top-level modules and Playbill's own packages (playbill.bot, ...) that `statement` leaves
    in sys.modules."""
    code = (f"import sys; {statement}; "
            "print(' '.join(sorted({m.split('.')[0] for m in sys.modules} | "
            "{'.'.join(m.split('.')[:2]) for m in sys.modules if m.startswith('playbill.')})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    return set(out.stdout.split())


def test_settings_import_nothing_of_the_project() -> None:
    loaded = loaded_after("from playbill.settings import load_settings; load_settings()")
    assert loaded & set(OURS) == set()


def test_the_command_line_is_built_without_tensorflow_or_discord() -> None:
    loaded = loaded_after("from playbill.cli import build_parser; build_parser()")
    assert loaded & {"tensorflow", "keras", "discord"} == set()
