"""The served playwright: a trained scene model that writes, numpy or LiteRT, no TensorFlow.

A `SceneWriter` takes a `SceneRequest`, checks it (`check`: the limits, then the prompt's
characters against the model's alphabet) and writes: streamed in pieces (`stream`), whole
(`generate`), or several prompts at once (`generate_batch`, one (B, H) state). Where a scene
may end is decided by one function, `cut_at_boundary`, for every way of writing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from playbill.engine.errors import InvalidInput, ModelUnavailable
from playbill.engine.registry import ModelRegistry
from playbill.engine.scene import quantized
from playbill.engine.scene.config import (
    NAME,
    VOCABULARY_FILE,
    WEIGHTS_FILE,
    SceneLimits,
    SceneRequest,
    check_backend,
    unknown_characters_message,
)
from playbill.engine.scene.corpus import Vocabulary
from playbill.engine.scene.sampler import NumpyLSTM, prime_batch, sample
from playbill.engine.weights import read_arrays

log = logging.getLogger(__name__)


class SceneWriter:
    """A trained scene model ready to write: no TensorFlow, thread-safe.

    `net` is the float32 numpy sampler (the reference); `int8_net` the int8 LiteRT step;
    `net_for(B)` is what generation runs on under the backend (see `engine.scene.config.BACKENDS`).
    """

    def __init__(self, net: NumpyLSTM, vocabulary: Vocabulary, version: str | None = None,
                 metadata: dict[str, Any] | None = None, limits: SceneLimits | None = None, *,
                 int8_net: Any = None, backend: str = "float32") -> None:
        backend = check_backend(backend)
        if backend != "float32" and int8_net is None:
            raise InvalidInput(f"the {backend!r} scene backend needs the int8 step (int8_net)")
        self.net = net
        self.int8_net = int8_net
        self.backend = backend
        self._vocabulary = vocabulary
        self.version = version
        self.metadata = metadata or {}
        self.limits = limits or SceneLimits()

    @classmethod
    def load(cls, version_dir: Path, limits: SceneLimits | None = None, *, backend: str = "auto",
             int8_threads: int = 0) -> SceneWriter:
        """The version in `version_dir`. If the int8 step cannot be had (LiteRT missing, conversion
        failing), "auto" and "int8" fall back to float32 with a warning: `writer.backend` says
        what is used. `int8_threads` 0: one interpreter thread for small models, two for large."""
        backend = check_backend(backend)
        version_dir = Path(version_dir)
        try:
            arrays = read_arrays(version_dir / WEIGHTS_FILE)  # finite, or ValueError
            vocabulary = Vocabulary.load(version_dir / VOCABULARY_FILE)
            metadata_file = version_dir / "metadata.json"
            metadata = json.loads(metadata_file.read_text("utf-8")) if metadata_file.is_file() else {}
            if not isinstance(metadata, dict):
                raise ValueError("metadata.json is not a JSON object")
            net = NumpyLSTM.from_arrays(arrays)
            _probe(net, len(vocabulary))
        except Exception as exc:  # any damage (zip CRC, junk JSON, wrong shapes): this version cannot serve
            raise ModelUnavailable(
                f"the scene model in {version_dir} cannot be read ({type(exc).__name__}: {exc}); retrain or roll back"
            ) from None
        int8_net = None
        if backend != "float32":
            try:
                int8_net = quantized.load_or_build(version_dir, version_dir / WEIGHTS_FILE, arrays, int8_threads)
            except quantized.QuantizedUnavailable as exc:
                log.warning("scene backend %r unavailable, using float32: %s", backend, exc)
                backend = "float32"
        return cls(net, vocabulary, metadata.get("version", version_dir.name), metadata, limits,
                   int8_net=int8_net, backend=backend)

    @classmethod
    def load_current(cls, home: Path, limits: SceneLimits | None = None, **options: Any) -> SceneWriter:
        return cls.load(ModelRegistry.in_home(home, NAME).current().path, limits, **options)

    def net_for(self, batch: int):
        """The stepper for `batch` streams: int8 unless the backend is float32 (measured faster
        at every batch size, docs/benchmarks.md "## Scene")."""
        return self.net if self.backend == "float32" else self.int8_net

    @property
    def vocabulary(self) -> list[str]:
        return list(self._vocabulary.chars)

    def unknown_characters(self, text: str) -> list[str]:
        return self._vocabulary.unknown(text)

    def encode(self, text: str) -> np.ndarray:
        """Character ids of `text` (InvalidInput naming any character the model lacks)."""
        return self._vocabulary.encode(text)

    def check(self, request: SceneRequest) -> SceneRequest:
        """The request as it will be run, or InvalidInput with the one message for a person."""
        request = self.limits.check(request)
        missing = self.unknown_characters(request.prompt)
        if missing:
            raise InvalidInput(unknown_characters_message(missing))
        return request

    # -- generation
    def stream(self, request: SceneRequest, chunk_chars: int = 40) -> Iterator[str]:
        """Yield the continuation of the prompt in pieces of about `chunk_chars` as it is written
        (the request is checked before the first piece: a bad one raises here, not mid-stream)."""
        request = self.check(request)
        if isinstance(chunk_chars, bool) or not isinstance(chunk_chars, int) or chunk_chars < 1:
            raise InvalidInput("chunk_chars must be a whole number of at least 1")
        return self._stream(request, chunk_chars)

    def _stream(self, request: SceneRequest, chunk_chars: int) -> Iterator[str]:
        rng = np.random.default_rng(request.seed)
        net = self.net_for(1)
        state = prime_batch(net, [self.encode(request.prompt)])
        chars = self._vocabulary.chars
        length, stop = request.length, request.stop_at_boundary
        text: list[str] = []
        sent = 0  # characters already yielded
        last_space = 0  # position of the latest whitespace written
        settled = _settled(length)  # text before this point survives any boundary cut
        ids = np.zeros(1, np.intp)
        for step in range(length):
            ids[0] = sample(state.logits, request.temperature, request.top_k, rng)[0]
            text.append(chars[ids[0]])
            if text[-1].isspace():
                last_space = len(text) - 1
            if stop and _speech_ended(text, length):
                break
            if step + 1 < length:
                net.step(state, ids)
            if len(text) - sent >= chunk_chars:
                upto = min(last_space, settled) if stop else len(text)
                if upto > sent:
                    yield "".join(text[sent:upto])
                    sent = upto
        written = "".join(text)
        final = len(cut_at_boundary(written, length)) if stop else len(written)
        if final > sent:
            yield written[sent:final]

    def generate(self, request: SceneRequest) -> str:
        """The continuation of the prompt (without the prompt): `request.length` characters at most."""
        return "".join(self.stream(request, chunk_chars=1 << 30))

    def generate_batch(self, prompts: Sequence[str], request: SceneRequest) -> list[str]:
        """Continue several prompts at once (one (B, H) state) with the request's options; the
        request's own prompt is not used. The prompts are primed together too."""
        if isinstance(prompts, str) or not prompts:
            raise InvalidInput("give a list of one or more prompts")
        checked = [self.check(SceneRequest(p, request.length, request.temperature, request.top_k, request.seed,
                                           request.stop_at_boundary)) for p in prompts]
        request = checked[0]
        rng = np.random.default_rng(request.seed)
        net = self.net_for(len(prompts))
        state = prime_batch(net, [self.encode(p) for p in prompts])
        out = np.zeros((len(prompts), request.length), np.intp)
        for step in range(request.length):
            ids = sample(state.logits, request.temperature, request.top_k, rng)
            out[:, step] = ids
            if step + 1 < request.length:
                net.step(state, ids)
        texts = [self._vocabulary.decode(row) for row in out]
        if request.stop_at_boundary:
            texts = [cut_at_boundary(t, request.length) for t in texts]
        return texts


# ---------------------------------------------------------------------------- boundaries


def _settled(length: int) -> int:
    """Text before 2/3 of `length` is never cut, so a stream may send it early."""
    return -(-2 * length // 3)


def _speech_ended(text: list[str], length: int) -> bool:
    """A blank line (the end of a speech) once at least half the length is written."""
    return len(text) >= max(2, length // 2) and text[-1] == "\n" and text[-2] == "\n"


def cut_at_boundary(text: str, length: int | None = None) -> str:
    """`text` ended at a natural boundary: the first speech end (a blank line) once half of
    `length` is written; else a sentence end in the last third; else the last whitespace
    (never mid-word); text before 2/3 of `length` always stays. `length`: the length asked
    for (default: the text's own). The one rule for streamed, whole and batched scenes."""
    length = len(text) if length is None else length
    at = text.find("\n\n", max(0, max(2, length // 2) - 2))
    if at >= 0:
        return text[: at + 2]
    for i in range(len(text) - 1, max(-1, _settled(length) - 2), -1):
        if text[i] in ".!?" and (i + 1 == len(text) or text[i + 1].isspace()):
            return text[: i + 1]
    space = max((i for i, ch in enumerate(text) if ch.isspace()), default=-1)
    return text[:space] if space > 0 else text


def _probe(net: NumpyLSTM, vocabulary_size: int) -> None:
    """One step from the first character: ValueError unless it gives finite logits, one per
    character of the vocabulary (weights that do not fit their vocabulary fail here)."""
    logits = net.step(net.new_state(1), np.zeros(1, dtype=np.int64))
    if logits.shape[-1] != vocabulary_size:
        raise ValueError(f"the weights know {logits.shape[-1]} characters, the vocabulary {vocabulary_size}")
    if not np.isfinite(logits).all():
        raise ValueError("its weights give non-finite logits")
