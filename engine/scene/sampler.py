"""The playwright's numpy stepper: a trained scene model run one character at a time.

Why: calling a Keras model once per character costs milliseconds of framework overhead
(the tutorial wrote ~170 chars/s). Here one step is one small matmul per layer plus the
shared in-place LSTM step of `engine.lstm`; layer 1's input projection is a row lookup in
a (vocab x 4H) table, and several prompts run together as a (B, H) state, so B streams
cost about one.

Weights come from `engine.scene.train.export_weights` (the Keras layers' arrays, saved as
`sampler.npz`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from playbill.engine.lstm import cell_step, fuse_gates, input_table


@dataclass(frozen=True)
class LSTMWeights:
    """One layer in Keras's layout: kernel (in, 4H), recurrent (H, 4H), bias (4H); gates i, f, c, o."""

    kernel: np.ndarray
    recurrent: np.ndarray
    bias: np.ndarray


class NumpyLSTM:
    """Embedding -> LSTM layers -> Dense, stepped one character at a time for B streams."""

    backend = "float32"
    needs_scratch = True  # State allocates this step's work buffers

    def __init__(self, embedding: np.ndarray, layers: list[LSTMWeights], dense_kernel: np.ndarray, dense_bias: np.ndarray):
        first = layers[0]
        # Layer 1's input part for every character, bias included: a row lookup per step.
        self.table = input_table(embedding, first.kernel, first.bias)
        self.recurrent = [fuse_gates(layer.recurrent) for layer in layers]
        # Deeper layers take the layer below's h: its kernel and bias stay matrices.
        self.kernels = [None] + [fuse_gates(layer.kernel) for layer in layers[1:]]
        self.biases = [None] + [fuse_gates(layer.bias) for layer in layers[1:]]
        self.units = [layer.recurrent.shape[0] for layer in layers]
        self.dense_kernel = np.ascontiguousarray(dense_kernel, dtype=np.float32)
        self.dense_bias = np.ascontiguousarray(dense_bias, dtype=np.float32)
        self.vocab_size = self.dense_kernel.shape[1]

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> NumpyLSTM:
        n_layers = sum(1 for key in arrays if key.startswith("lstm") and key.endswith("_kernel"))
        layers = [
            LSTMWeights(arrays[f"lstm{n}_kernel"], arrays[f"lstm{n}_recurrent"], arrays[f"lstm{n}_bias"])
            for n in range(n_layers)
        ]
        return cls(arrays["embedding"], layers, arrays["dense_kernel"], arrays["dense_bias"])

    def new_state(self, batch: int) -> State:
        return State(self, batch)

    def step(self, state: State, ids: np.ndarray) -> np.ndarray:
        """Feed one character id per stream; returns the (B, vocab) logits of the next character."""
        x = None
        for n in range(len(self.units)):
            z, h, c, tmp = state.z[n], state.h[n], state.c[n], state.tmp[n]
            np.matmul(h, self.recurrent[n], out=z)
            if n == 0:
                np.take(self.table, ids, axis=0, out=state.z_in[0])
                z += state.z_in[0]
            else:
                np.matmul(x, self.kernels[n], out=state.z_in[n])
                z += state.z_in[n]
                z += self.biases[n]
            cell_step(z, h, c, tmp)
            x = h
        np.matmul(x, self.dense_kernel, out=state.logits)
        state.logits += self.dense_bias
        return state.logits

    def teacher_forced_loss(self, inputs: np.ndarray, targets: np.ndarray) -> float:
        return teacher_forced_loss(self, inputs, targets)


def teacher_forced_loss(net, inputs: np.ndarray, targets: np.ndarray) -> float:
    """Mean cross-entropy (nats/char) of `targets` given `inputs`, both (N, T) int arrays,
    for any stepper with `new_state`/`step` (the float32 and the int8 one)."""
    state = net.new_state(inputs.shape[0])
    total = 0.0
    rows = np.arange(inputs.shape[0])
    for t in range(inputs.shape[1]):
        logits = net.step(state, inputs[:, t]).astype(np.float64)
        top = logits.max(axis=1, keepdims=True)
        log_z = np.log(np.exp(logits - top).sum(axis=1)) + top[:, 0]
        total += float((log_z - logits[rows, targets[:, t]]).sum())
    return total / inputs.size


def compare_teacher_forced(reference, other, inputs: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """Both steppers' mean cross-entropy on the same sequences, stepped in lockstep, and the
    largest difference between their next-character probabilities (what int8 costs)."""
    states = reference.new_state(inputs.shape[0]), other.new_state(inputs.shape[0])
    rows = np.arange(inputs.shape[0])
    totals = [0.0, 0.0]
    max_diff = 0.0
    for t in range(inputs.shape[1]):
        log_probs = []
        for k, net in enumerate((reference, other)):
            logits = net.step(states[k], inputs[:, t]).astype(np.float64)
            logits -= logits.max(axis=1, keepdims=True)
            logits -= np.log(np.exp(logits).sum(axis=1, keepdims=True))
            totals[k] -= float(logits[rows, targets[:, t]].sum())
            log_probs.append(logits)
        max_diff = max(max_diff, float(np.abs(np.exp(log_probs[0]) - np.exp(log_probs[1])).max()))
    return {"reference_loss": totals[0] / inputs.size, "loss": totals[1] / inputs.size, "max_prob_diff": max_diff}


def prime_batch(net, prompts: list[np.ndarray]) -> State:
    """One (B, H) state after feeding each row its own prompt (lengths may differ).

    All rows step together; a row whose prompt has ended keeps its state (and logits) by
    being copied back after each step, so each row ends exactly as if primed alone.
    """
    lengths = np.array([len(p) for p in prompts])
    longest = int(lengths.max())
    padded = np.zeros((len(prompts), longest), np.intp)
    for row, ids in enumerate(prompts):
        padded[row, : len(ids)] = ids
    state = net.new_state(len(prompts))
    for t in range(longest):
        done = np.flatnonzero(lengths <= t)
        if done.size:
            kept = ([h[done].copy() for h in state.h], [c[done].copy() for c in state.c], state.logits[done].copy())
        net.step(state, padded[:, t])
        if done.size:
            for n in range(len(state.h)):
                state.h[n][done], state.c[n][done] = kept[0][n], kept[1][n]
            state.logits[done] = kept[2]
    return state


class State:
    """The h and c of every layer for B streams, plus scratch buffers (one State per call: thread-safe)."""

    def __init__(self, net: NumpyLSTM, batch: int) -> None:
        self.batch = batch
        self.h = [np.zeros((batch, u), np.float32) for u in net.units]
        self.c = [np.zeros((batch, u), np.float32) for u in net.units]
        if net.needs_scratch:
            self.z = [np.zeros((batch, 4 * u), np.float32) for u in net.units]
            self.z_in = [np.zeros((batch, 4 * u), np.float32) for u in net.units]
            self.tmp = [np.zeros((batch, u), np.float32) for u in net.units]
        self.logits = np.zeros((batch, net.vocab_size), np.float32)


def sample(logits: np.ndarray, temperature: float, top_k: int | None, rng: np.random.Generator) -> np.ndarray:
    """One character id per row from (B, vocab) logits, softened by `temperature`, cut to `top_k`."""
    scaled = logits.astype(np.float64) / temperature
    if top_k is not None and top_k < scaled.shape[1]:
        kth = np.partition(scaled, -top_k, axis=1)[:, -top_k, None]
        scaled[scaled < kth] = -np.inf
    scaled -= scaled.max(axis=1, keepdims=True)
    np.exp(scaled, out=scaled)
    cdf = np.cumsum(scaled, axis=1)
    u = rng.random((scaled.shape[0], 1)) * cdf[:, -1:]
    ids = (cdf <= u).sum(axis=1)
    return np.minimum(ids, scaled.shape[1] - 1)
