"""Building the engine's frozen dataclasses from plain mappings (settings sections, saved JSON)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any


def known_fields(cls: type, values: Mapping[str, Any], *, keep_none: bool = False) -> dict[str, Any]:
    """The entries of `values` that name fields of the dataclass `cls`. A settings section
    means "the default" by None (dropped); a saved config keeps its Nones (`keep_none`)."""
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in values.items() if k in names and (keep_none or v is not None)}
