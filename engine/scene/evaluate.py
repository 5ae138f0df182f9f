"""How well a playwright predicts text it never trained on: mean cross-entropy per character.

`evaluate_text` scores any text in memory with a loaded writer; `evaluate_scene` finds the
version and the held-out block of the corpus it learned (what training records and what the
nightly job compares).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from playbill.engine.errors import InvalidInput
from playbill.engine.registry import ModelRegistry
from playbill.engine.scene.config import NAME, SceneConfig, char_list
from playbill.engine.scene.corpus import Corpus, corpus_path, validation_arrays
from playbill.engine.scene.sampler import compare_teacher_forced, teacher_forced_loss
from playbill.engine.scene.writer import SceneWriter


def evaluate_text(writer: SceneWriter, text: str, seq_length: int = 100) -> dict[str, Any]:
    """Figures of `writer` on `text`, cut into `seq_length` sequences. Where the writer runs
    int8, the float32 figure is computed alongside, in lockstep, with the difference and the
    largest next-character probability difference: what int8 costs."""
    missing = writer.unknown_characters(text)
    if missing:
        raise InvalidInput(f"the held-out text has characters this model never learned: {char_list(missing)}")
    x, y = validation_arrays(writer.encode(text), seq_length)
    if not len(x):
        raise InvalidInput(f"the held-out text is too short: it needs at least {seq_length + 1} characters")
    net = writer.net_for(len(x))
    extra: dict[str, Any] = {}
    if net is writer.net:
        val_loss = teacher_forced_loss(net, x, y)
    else:
        both = compare_teacher_forced(writer.net, net, x, y)
        val_loss = both["loss"]
        extra = {"float32_val_loss": both["reference_loss"], "val_loss_delta": val_loss - both["reference_loss"],
                 "max_prob_diff": both["max_prob_diff"]}
    return {"val_loss": val_loss, "bits_per_char": val_loss / float(np.log(2)), "model_version": writer.version,
            "chars": int(y.size), "backend": net.backend, **extra}


def evaluate_scene(home: Path, data_dir: Path, *, version: str | None = None, corpus: str | Path | None = None,
                   text: str | None = None, backend: str = "float32") -> dict[str, Any]:
    """Mean cross-entropy (nats/char) of a version (default: the current one).

    On `text` when given (scored whole); else on the held-out last block of `corpus` (default:
    the model's own corpus, Tiny Shakespeare if it had none). `backend` "float32" (default)
    is the figure training records; see `evaluate_text` for "int8".
    """
    registry = ModelRegistry.in_home(home, NAME)
    found = registry.get(version) if version else registry.current()
    writer = SceneWriter.load(found.path, backend=backend)
    config = SceneConfig.from_dict(found.metadata.get("config", {}))
    if text is None:
        if corpus is None:
            source = found.metadata.get("corpus", {}).get("source", "shakespeare")
            corpus = None if source == "shakespeare" else source
        text = Corpus.load(corpus_path(data_dir, corpus), config.validation_fraction, config.seq_length).validation
    return {**evaluate_text(writer, text, config.seq_length), "model_version": found.version}
