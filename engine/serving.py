"""Hold the current version of a model and swap in a newly promoted one without a restart.

`refresh()` loads the new version fully (in whatever thread calls it; never the bot's
event loop) and only then replaces the reference, so a request sees the old model or the
new one, never a half-loaded one. Reading `.model` is a plain attribute read.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

from engine.errors import ModelUnavailable
from engine.registry import ModelRegistry

log = logging.getLogger(__name__)

M = TypeVar("M")


class ModelHolder(Generic[M]):
    def __init__(self, registry: ModelRegistry, load: Callable[[Path], M]) -> None:
        self.registry = registry
        self._load = load
        self._model: M | None = None
        self._version: str | None = None
        self._lock = threading.Lock()  # one loader at a time; readers never wait

    @property
    def model(self) -> M:
        model = self._model
        if model is None:
            raise ModelUnavailable(
                f"the {self.registry.name} model is not loaded yet; "
                f"train one with `playbill train {self.registry.name}`"
            )
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
            model = self._load(self.registry.get(wanted).path)
            self._model, self._version = model, wanted  # the swap: one reference assignment
            log.info("%s model now serving version %s", self.registry.name, wanted)
            return True
