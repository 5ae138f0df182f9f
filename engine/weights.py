"""Reading a version's numpy weights: every array readable and finite, or one clear error.

A model whose weights hold NaN or infinity answers "nan% positive" or writes nothing; such a
version is refused when it is loaded, like a file that cannot be read.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def read_arrays(path: Path) -> dict[str, np.ndarray]:
    """The arrays of an `.npz` file. ValueError if one holds NaN or infinity; whatever numpy
    or zipfile raise for a damaged file (the loaders turn any of it into ModelUnavailable)."""
    with np.load(Path(path), allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    bad = sorted(key for key, array in arrays.items() if array.dtype.kind in "fc" and not np.isfinite(array).all())
    if bad:
        raise ValueError(f"{Path(path).name} holds NaN or infinite weights ({', '.join(bad)})")
    return arrays
