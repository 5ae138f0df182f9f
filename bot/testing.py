"""Small stand-ins that follow the engine's contracts (docs/architecture.md), for the bot's
tests: no TensorFlow, instant answers, and knobs to make them slow or fail on purpose."""

from __future__ import annotations

import json
import string
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import InvalidInput
from engine.registry import ModelRegistry
from engine.serving import ModelHolder

POSITIVE_WORDS = {"good", "great", "superb", "loved", "wonderful", "best"}
NEGATIVE_WORDS = {"bad", "awful", "boring", "hated", "worst", "dull"}


@dataclass(frozen=True)
class FakeVerdict:
    label: str
    positive_probability: float


class FakeSentimentModel:
    """Counts happy and unhappy words. Records the size of every predict batch."""

    delay = 0.0  # seconds per predict call (class-wide knob for load tests)
    threads: set[int] = set()  # ids of the threads predict ran in (class-wide)

    def __init__(self, version: str) -> None:
        self.version = version
        self.batches: list[int] = []
        self._lock = threading.Lock()

    @classmethod
    def load(cls, version_dir: Path) -> FakeSentimentModel:
        return cls(Path(version_dir).name)

    def predict(self, texts: list[str]) -> list[FakeVerdict]:
        if any(not t or not t.strip() for t in texts):
            raise InvalidInput("the text is empty")
        with self._lock:
            self.batches.append(len(texts))
            FakeSentimentModel.threads.add(threading.get_ident())
        if self.delay:
            time.sleep(self.delay)
        out = []
        for text in texts:
            words = [w.strip(".,!?").lower() for w in text.split()]
            score = sum(w in POSITIVE_WORDS for w in words) - sum(w in NEGATIVE_WORDS for w in words)
            p = 1 / (1 + 2.718281828 ** (-score))
            out.append(FakeVerdict("positive" if p >= 0.5 else "negative", round(p, 4)))
        return out

    def predict_one(self, text: str) -> FakeVerdict:
        return self.predict([text])[0]


SCENE_TEXT = (  # the continuation of a prompt like "ROMEO:"
    "\nBut soft, what light through yonder window breaks?\nIt is the east, and Juliet is the sun.\n\n"
    "JULIET:\nO Romeo, Romeo, wherefore art thou Romeo?\nDeny thy father and refuse thy name.\n\nROMEO:"
)


class FakeSceneWriter:
    """Continues any prompt with a known scene; knows only printable ASCII, like a small
    character model. `stream` yields the continuation only, as engine.scene does."""

    delay = 0.0  # seconds between streamed pieces
    fail_after: int | None = None  # raise after this many pieces (tests the error path)
    threads: set[int] = set()  # ids of the threads that generated text (class-wide)

    def __init__(self, version: str) -> None:
        self.version = version
        self.vocabulary = sorted(set(string.printable) - set("\x0b\x0c\r`"))
        self.calls: list[dict[str, Any]] = []

    @classmethod
    def load(cls, version_dir: Path) -> FakeSceneWriter:
        return cls(Path(version_dir).name)

    def unknown_characters(self, text: str) -> list[str]:
        known = set(self.vocabulary)
        return sorted({c for c in text if c not in known})

    def _check(self, prompt: str, length: int, temperature: float) -> None:
        if not prompt:
            raise InvalidInput("the prompt is empty")
        if self.unknown_characters(prompt):
            raise InvalidInput("the prompt has characters the model does not know")
        if length < 1 or temperature <= 0:
            raise InvalidInput("bad length or temperature")

    def generate(self, prompt: str, length: int, temperature: float = 1.0, top_k: int | None = None,
                 seed: int | None = None, stop_at_boundary: bool = False) -> str:
        return "".join(self.stream(prompt, length, temperature=temperature, top_k=top_k, seed=seed))

    def stream(self, prompt: str, length: int = 100, temperature: float = 1.0, top_k: int | None = None,
               seed: int | None = None, stop_at_boundary: bool = False, chunk_chars: int = 16) -> Iterator[str]:
        self._check(prompt, length, temperature)
        FakeSceneWriter.threads.add(threading.get_ident())
        self.calls.append({"prompt": prompt, "length": length, "temperature": temperature, "top_k": top_k})
        text = SCENE_TEXT * (length // len(SCENE_TEXT) + 2)
        end = text.find("\n\n", length) if stop_at_boundary else length  # a speech's end
        text = text[:end]
        for n, i in enumerate(range(0, len(text), chunk_chars)):
            if self.fail_after is not None and n >= self.fail_after:
                raise RuntimeError("the fake writer failed on purpose")
            if self.delay:
                time.sleep(self.delay)
            yield text[i : i + chunk_chars]


def publish_fake_version(models_dir: Path, name: str, metrics: dict[str, float] | None = None) -> str:
    """Add a (fake) version to the real registry and return its name."""
    registry = ModelRegistry(models_dir, name)
    with registry.new_version({"metrics": metrics or {}}) as staged:
        (staged.path / "fake.json").write_text(json.dumps({"fake": True}))
    return staged.version


def fake_holders(models_dir: Path, *, sentiment: bool = True, scene: bool = True) -> dict[str, ModelHolder]:
    """Real ModelHolders over real registries, loading fake models."""
    if sentiment:
        publish_fake_version(models_dir, "sentiment", {"accuracy": 0.81})
    if scene:
        publish_fake_version(models_dir, "scene", {"val_loss": 1.62, "bits_per_char": 2.34})
    return {
        "sentiment": ModelHolder(ModelRegistry(models_dir, "sentiment"), FakeSentimentModel.load),
        "scene": ModelHolder(ModelRegistry(models_dir, "scene"), FakeSceneWriter.load),
    }


def history_rows(gateway: Any) -> list[Any]:
    """Every interaction in the (real) history database behind `gateway`, newest first."""
    from history import api

    return api.query_interactions(gateway.session_factory, limit=None)


TINY_PLAY = (
    "ROMEO:\nBut soft, what light through yonder window breaks?\nIt is the east, and Juliet is the sun.\n\n"
    "JULIET:\nO Romeo, Romeo, wherefore art thou Romeo?\nDeny thy father and refuse thy name.\n\n"
) * 30


def train_tiny_scene(home: Path, workdir: Path) -> str:
    """A real (tiny) playwright in `home`'s registry, trained in seconds; returns its version."""
    from engine.scene import SceneConfig, train_scene

    workdir.mkdir(parents=True, exist_ok=True)
    corpus = workdir / "play.txt"
    corpus.write_text(TINY_PLAY, encoding="utf-8")
    config = SceneConfig(name="tiny", embedding_dim=8, rnn_units=16, seq_length=20, batch_size=8, epochs=1, seed=7)
    return train_scene(config, home, workdir, epochs=1, corpus=corpus, progress=False).version


TINY_REVIEWS = (
    [("a wonderful film, superb acting and a great story", "positive"),
     ("I loved it, the best movie this year", "positive"),
     ("great fun, wonderful music and a superb cast", "positive"),
     ("simply the best, loved every minute", "positive")],
    [("an awful film, boring and dull", "negative"),
     ("the worst movie, I hated every minute", "negative"),
     ("dull plot, awful acting, a boring mess", "negative"),
     ("bad, boring and the worst ending", "negative")],
)


def train_tiny_sentiment(home: Path, workdir: Path) -> str:
    """A real (tiny) critic in `home`'s registry, trained in seconds on a CSV; returns its version."""
    import csv

    from engine.sentiment import SentimentConfig, train_sentiment

    workdir.mkdir(parents=True, exist_ok=True)
    reviews = workdir / "reviews.csv"
    with reviews.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        for i in range(12):
            for text, label in TINY_REVIEWS[0] + TINY_REVIEWS[1]:
                writer.writerow([f"{text} {i}", label])
    config = SentimentConfig(vocab_size=200, ngram_buckets=500, window=16, embedding_dim=8, lstm_units=8,
                             batch_size=16, epochs=1)
    return train_sentiment(config, home, workdir, epochs=1, data=reviews, progress=False).version
