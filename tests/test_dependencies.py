"""The declared dependencies: each one used, bounds that admit only working versions, and a lock
(constraints.txt, written by `make lock`) that pins every one of them within pyproject's ranges."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("playbill", "engine", "bot", "jobs", "history", "migrations")
# Declared but never imported, on purpose:
NOT_IMPORTED = {
    "tzdata": "zoneinfo's time-zone data where the system has none",
    "psycopg": "the PostgreSQL driver SQLAlchemy loads for postgresql+psycopg:// URLs",
}


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def requirements(*, extras: bool = False) -> list[Requirement]:
    project = pyproject()["project"]
    declared = list(project["dependencies"])
    if extras:
        declared += [r for group in project["optional-dependencies"].values() for r in group]
    environment = {**default_environment(), "extra": ""}
    return [req for req in map(Requirement, declared) if req.marker is None or req.marker.evaluate(environment)]


def imported_top_level_modules() -> set[str]:
    pattern = re.compile(r"^\s*(?:from|import)\s+([A-Za-z_][A-Za-z0-9_]*)", re.MULTILINE)
    found: set[str] = set()
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            found |= set(pattern.findall(path.read_text(encoding="utf-8")))
    return found


def test_every_declared_dependency_is_imported() -> None:
    distributions = {canonicalize_name(dist) for module in imported_top_level_modules()
                     for dist in packages_distributions().get(module, ())}
    unused = {req.name for req in requirements()
              if canonicalize_name(req.name) not in distributions and req.name not in NOT_IMPORTED}
    assert not unused


def test_pytest_asyncio_bound_admits_only_versions_with_the_loop_scope_option() -> None:
    assert "asyncio_default_fixture_loop_scope" in pyproject()["tool"]["pytest"]["ini_options"]
    (bound,) = [req for req in requirements(extras=True) if req.name == "pytest-asyncio"]
    assert not bound.specifier.contains(Version("0.23.8"))  # the option came in 0.24


def lock() -> dict[str, Version]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9._-]+)==([^\s;]+)", line)
        if match:
            pins[canonicalize_name(match.group(1))] = Version(match.group(2))
    return pins


def test_the_lock_pins_every_dependency_within_its_range() -> None:
    pins = lock()
    outside = {req.name: str(pins.get(canonicalize_name(req.name)))
               for req in requirements(extras=True)
               if not req.specifier.contains(pins.get(canonicalize_name(req.name), Version("0")), prereleases=True)}
    assert not outside, "run `make lock` after changing pyproject.toml's dependencies"


def test_make_setup_installs_from_the_lock() -> None:
    makefile = (ROOT / "Makefile").read_text()
    stamp_rule = next(line for line in makefile.splitlines() if line.startswith("$(STAMP):"))
    assert "$(LOCK)" in stamp_rule and "--constraint $(LOCK) -e" in makefile
