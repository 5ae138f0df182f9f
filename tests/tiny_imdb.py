"""An aclImdb folder in the real layout, for tests that train a tiny critic through the real loader."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path


def write_imdb(data_dir: Path, per_class: dict[str, int], review: Callable[[random.Random, bool], str]) -> None:
    """`per_class[split]` reviews per label under data_dir/aclImdb/<split>/<pos|neg>/, named
    <id>_<stars>.txt as IMDB names them; `review(rng, positive)` writes each (one seeded rng)."""
    rng = random.Random(7)
    for split, n in per_class.items():
        for label in ("pos", "neg"):
            folder = data_dir / "aclImdb" / split / label
            folder.mkdir(parents=True)
            for i in range(n):
                (folder / f"{i}_{8 if label == 'pos' else 2}.txt").write_text(review(rng, label == "pos"))
