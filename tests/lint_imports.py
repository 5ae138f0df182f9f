"""Check the import contracts (pyproject's [tool.importlinter]) against the installed layout.

The repository keeps its folders (bot/, engine/, ...) while the wheel maps them into one package,
`playbill` (pyproject's package-dir). import-linter reads modules from the file system, so this
script copies the sources into that layout in a temporary folder and runs `lint-imports` there.
`make test` runs it before the tests.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def installed_layout(target: Path) -> None:
    """Copy each mapped folder to where the wheel puts it (playbill.bot -> playbill/bot/...)."""
    mapping = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    for package, folder in sorted(mapping.items(), key=lambda item: item[0].count(".")):
        destination = target.joinpath(*package.split("."))
        shutil.copytree(ROOT / folder, destination, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "*.toml", "*.json", "*.mako"))


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="playbill-lint-") as folder:
        layout = Path(folder)
        installed_layout(layout)
        shutil.copy(ROOT / "pyproject.toml", layout / "pyproject.toml")
        env = {**os.environ, "PYTHONPATH": str(layout)}
        lint = Path(sys.executable).with_name("lint-imports")
        return subprocess.run([str(lint), str(layout / "pyproject.toml")], cwd=layout, env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
