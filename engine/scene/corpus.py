"""The playwright's text: a corpus read and split once, its alphabet, its training sequences.

The held-out block is the corpus's last `validation_fraction`, never trained on, so the
validation loss of two versions is comparable; extra texts (the nightly job's) join the
training part only.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from playbill.engine.datasets import SHAKESPEARE, fingerprint, locate
from playbill.engine.errors import DataUnavailable, InvalidInput
from playbill.engine.scene.config import SceneConfig, unknown_characters_message

log = logging.getLogger(__name__)


class Vocabulary:
    """The characters a model knows, in a fixed order (ids are positions)."""

    def __init__(self, chars: Sequence[str]) -> None:
        self.chars = list(chars)
        self.index = {ch: i for i, ch in enumerate(self.chars)}

    @classmethod
    def from_text(cls, text: str) -> Vocabulary:
        return cls(sorted(set(text)))

    def __len__(self) -> int:
        return len(self.chars)

    def unknown(self, text: str) -> list[str]:
        """The distinct characters of `text` this vocabulary lacks, in order of appearance."""
        return list(dict.fromkeys(ch for ch in text if ch not in self.index))

    def encode(self, text: str) -> np.ndarray:
        missing = self.unknown(text)
        if missing:
            raise InvalidInput(unknown_characters_message(missing))
        return np.fromiter((self.index[ch] for ch in text), dtype=np.int32, count=len(text))

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(self.chars[i] for i in ids)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps({"chars": self.chars}, ensure_ascii=False), "utf-8")

    @classmethod
    def load(cls, path: Path) -> Vocabulary:
        return cls(json.loads(path.read_text("utf-8"))["chars"])


def read_corpus(path: Path) -> str:
    """A UTF-8 text file's contents; anything else is a clear error."""
    path = Path(path)
    if not path.is_file():
        raise DataUnavailable(f"corpus file {path} does not exist")
    raw = path.read_bytes()
    if b"\x00" in raw:
        raise InvalidInput(
            f"corpus {path} is not UTF-8 text (it has NUL bytes: a binary file, or UTF-16); give a UTF-8 text file"
        )
    try:
        return raw.decode("utf-8").replace("\r\n", "\n")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"corpus {path} is not UTF-8 text (bad byte at offset {exc.start}); save it as UTF-8") from None


def corpus_path(data_dir: Path, corpus: Path | str | None) -> Path:
    return Path(corpus) if corpus is not None else locate(SHAKESPEARE, Path(data_dir))


@dataclass
class Corpus:
    """The text split once: the training part (plus extra texts) and the held-out last block."""

    train: str
    validation: str
    source: str
    fingerprint: str

    @classmethod
    def load(cls, path: Path, validation_fraction: float, seq_length: int, extra_texts: Sequence[str] = ()) -> Corpus:
        text = read_corpus(path)
        need = int(np.ceil((seq_length + 1) / validation_fraction)) + 1
        if len(text) < need:
            raise InvalidInput(
                f"corpus {path} is too short: {len(text)} characters; it needs at least {need} "
                f"(one {seq_length + 1}-character sequence in the held-out last {validation_fraction:.0%})"
            )
        split = int(len(text) * (1 - validation_fraction))
        train, validation = text[:split], text[split:]
        extras = [t for t in (str(x).strip() for x in extra_texts) if t]
        known = set(text)
        if extras:  # extra texts go into training only, so validation stays comparable across versions
            cleaned = ["".join(ch for ch in t if ch in known) for t in extras]
            dropped = sum(len(a) - len(b) for a, b in zip(extras, cleaned, strict=True))
            if dropped:
                log.info("dropped %d characters of the extra texts that the corpus does not use", dropped)
            train = train + "\n\n" + "\n\n".join(t for t in cleaned if t) + "\n"
        digest = fingerprint(Path(path))
        if extras:
            digest += "+" + hashlib.sha256("\x00".join(extras).encode()).hexdigest()[:8]
        return cls(train=train, validation=validation, source=str(path), fingerprint=digest)

    def vocabulary(self) -> Vocabulary:
        return Vocabulary.from_text(self.train + self.validation)


def validation_arrays(ids: np.ndarray, seq_length: int) -> tuple[np.ndarray, np.ndarray]:
    """Non-overlapping (input, target) sequences covering the held-out block."""
    n = (len(ids) - 1) // seq_length
    x = ids[: n * seq_length].reshape(n, seq_length)
    y = ids[1 : n * seq_length + 1].reshape(n, seq_length)
    return x, y


def epoch_arrays(ids: np.ndarray, config: SceneConfig, epoch: int) -> tuple[np.ndarray, np.ndarray]:
    """This epoch's training sequences: a start offset and an order both seeded by the epoch.

    The same epoch always gets the same data, so a resumed run sees exactly what a run
    straight through would have; the shifting offset shows the model new sequence cuts.
    """
    rng = np.random.default_rng([config.seed, epoch])
    span = config.seq_length + 1
    offset = int(rng.integers(0, config.seq_length)) if len(ids) > 2 * span else 0
    n = (len(ids) - offset - 1) // config.seq_length
    starts = offset + np.arange(n) * config.seq_length
    starts = starts[starts + span <= len(ids)]
    rng.shuffle(starts)
    usable = (len(starts) // config.batch_size) * config.batch_size or len(starts)
    starts = starts[:usable]
    window = starts[:, None] + np.arange(span)[None, :]
    chunks = ids[window]
    return chunks[:, :-1], chunks[:, 1:]
