"""Hold the served version of one model (one `engine.models` spec) and swap in a newly
promoted one without a restart.

`refresh()` loads the new version fully (in whatever thread calls it; never the bot's
event loop) and only then replaces the reference, so a request sees the old model or the
new one, never a half-loaded one. Reading `.model` is a plain attribute read.

A version that fails verification (its files, `registry.verify`) or loading (unreadable or
non-finite weights) is set aside with a warning and the registry's next fallback is served:
the newest older version that was once current. A version set aside is tried again only
when its files change (a repair, a re-copy).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Generic, TypeVar

from playbill.engine.errors import ModelUnavailable
from playbill.engine.registry import DamagedVersion
from playbill.engine.models import ModelSpec

log = logging.getLogger(__name__)

M = TypeVar("M")


class ModelHolder(Generic[M]):
    """The served model of `spec`, from its registry under `home`.

    `settings` is the model's settings section (a mapping): its serving limits and options
    are read from it by the spec, the one place that knows their names. `load(version_dir,
    limits)` replaces the spec's loader (tests serve stand-in models from a real registry)."""

    def __init__(self, spec: ModelSpec, home: Path, settings: Mapping[str, Any] | None = None, *,
                 load: Callable[[Path, Any], M] | None = None) -> None:
        self.spec = spec
        self.registry = spec.registry(home)
        values = dict(settings or {})
        self.limits = spec.limits_from(values)
        self._load = load or (lambda path, limits: spec.load(path, limits, **spec.serving_from(values)))
        self._model: M | None = None
        self._version: str | None = None
        self._lock = threading.Lock()  # one loader at a time; readers never wait
        self._set_aside: dict[str, tuple] = {}  # damaged version -> the state of its files when found so

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def model(self) -> M:
        model = self._model
        if model is None:
            if self._set_aside:
                raise ModelUnavailable(
                    f"The {self.spec.name} model cannot be served: its versions are damaged "
                    f"({', '.join(sorted(self._set_aside))}; `playbill models list` says what was found). "
                    f"Train a new one with `{self.spec.train_command}`.")
            raise ModelUnavailable(f"No {self.spec.name} model is trained yet; run `{self.spec.train_command}` first.")
        return model

    @property
    def set_aside(self) -> list[str]:
        """The versions found damaged and not served (as of the last refresh)."""
        return sorted(self._set_aside)

    @property
    def version(self) -> str | None:
        return self._version

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def refresh(self) -> bool:
        """Serve the registry's current version, or the best fallback while it is damaged.
        True if the served version changed."""
        with self._lock:
            current = self.registry.current_version()
            if current is None:
                return False
            for version in (current, *self.registry.fallbacks()):
                if version == self._version:
                    return False  # already serving the best version there is
                files = _files_state(self.registry.root / version)
                if self._set_aside.get(version) == files:
                    continue  # found damaged before, unchanged since
                model, problems = self._verified_load(version)
                if problems:
                    self._set_aside[version] = files
                    log.warning("%s %s is damaged and set aside: %s", self.spec.name, version, "; ".join(problems))
                    continue
                self._set_aside.pop(version, None)
                self._model, self._version = model, version  # the swap: one reference assignment
                if version == current:
                    log.info("%s model now serving version %s", self.spec.name, version)
                else:
                    log.warning("%s model now serving version %s: the current version %s is damaged "
                                "(`playbill models list` shows what was found)", self.spec.name, version, current)
                return True
            return False

    def _verified_load(self, version: str) -> tuple[M | None, list[str]]:
        problems = self.registry.verify(version)
        if problems:
            return None, problems
        try:
            return self._load(self.registry.root / version, self.limits), []
        except Exception as exc:  # any failure to load means this version cannot serve
            return None, [str(exc)]


def _files_state(folder: Path) -> tuple:
    """Names, sizes and modification times of a folder's files: changes when they are replaced."""
    try:
        return tuple(sorted((str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns)
                            for p in folder.rglob("*") if p.is_file()))
    except OSError:
        return ()


def load_model(spec: ModelSpec, home: Path, settings: Mapping[str, Any] | None = None, version: str | None = None) -> Any:
    """The model a one-off command (`predict`, `write`) serves: `version` when given (refused
    with DamagedVersion, one line per problem, if its files are damaged), else what a holder
    serves: the current version, or the best fallback while it is damaged (with a warning)."""
    holder: ModelHolder[Any] = ModelHolder(spec, home, settings)
    if version is None:
        holder.refresh()
        return holder.model
    found = holder.registry.get(version)  # ModelUnavailable naming `playbill models list`
    problems = holder.registry.verify(version)
    if problems:
        raise DamagedVersion(spec.name, version, problems)
    return holder._load(found.path, holder.limits)
