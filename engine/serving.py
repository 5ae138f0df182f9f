"""Hold the served version of one model (one `engine.models` spec) and swap in a newly
promoted one without a restart.

`refresh()` loads the new version fully (in whatever thread calls it; never the bot's
event loop) and only then replaces the reference, so a request sees the old model or the
new one, never a half-loaded one. Reading `.model` is a plain attribute read.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Generic, TypeVar

from engine.errors import ModelUnavailable
from engine.models import ModelSpec

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

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def model(self) -> M:
        model = self._model
        if model is None:
            raise ModelUnavailable(f"No {self.spec.name} model is trained yet; run `{self.spec.train_command}` first.")
        return model

    @property
    def version(self) -> str | None:
        return self._version

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def refresh(self) -> bool:
        """Load the registry's current version if it differs from the held one. True if swapped."""
        with self._lock:
            wanted = self.registry.current_version()
            if wanted is None or wanted == self._version:
                return False
            model = self._load(self.registry.get(wanted).path, self.limits)
            self._model, self._version = model, wanted  # the swap: one reference assignment
            log.info("%s model now serving version %s", self.spec.name, wanted)
            return True
