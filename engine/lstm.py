"""The one numpy LSTM step both served models run (the critic's windows, the playwright's chars).

Why numpy: calling Keras once per step costs milliseconds of framework overhead; one step
here is a few in-place numpy operations on preallocated float32 buffers. The trick: gate
columns are reordered from Keras's (i, f, c, o) to (i, f, o, g) and the sigmoid gates'
columns prescaled by 0.5, so one np.tanh over all 4H pre-activations gives every gate,
since sigmoid(z) = 0.5 + 0.5 * tanh(z / 2).
"""

from __future__ import annotations

import numpy as np


def fuse_gates(matrix: np.ndarray) -> np.ndarray:
    """Keras's (i, f, c, o) columns -> (i, f, o, g) with the sigmoid gates' columns halved."""
    i, f, g, o = np.split(np.asarray(matrix), 4, axis=-1)
    return np.ascontiguousarray(np.concatenate([0.5 * i, 0.5 * f, 0.5 * o, g], axis=-1), dtype=np.float32)


def input_table(embedding: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """The first layer's input part for every token id, bias included: one row lookup per step."""
    return fuse_gates(np.asarray(embedding, np.float64) @ kernel + bias)


def cell_step(z: np.ndarray, h: np.ndarray, c: np.ndarray, tmp: np.ndarray) -> None:
    """One LSTM step in place: `z` (B, 4H) holds the fused pre-activations (input part +
    h @ recurrent), `h` and `c` (B, H) the state, updated here; `tmp` (B, H) is scratch."""
    units = h.shape[1]
    np.tanh(z, out=z)
    gates = z[:, : 3 * units]
    gates *= 0.5
    gates += 0.5
    c *= z[:, units : 2 * units]
    np.multiply(z[:, :units], z[:, 3 * units :], out=tmp)
    c += tmp
    np.tanh(c, out=tmp)
    np.multiply(z[:, 2 * units : 3 * units], tmp, out=h)
