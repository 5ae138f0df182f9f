"""Small stand-ins that follow the engine's contracts (docs/architecture.md), for the bot's
tests: no TensorFlow, instant answers, and knobs to make them slow or fail on purpose."""

from __future__ import annotations

import csv
import json
import signal
import string
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from playbill.engine.errors import InvalidInput
from playbill.engine.models import spec
from playbill.engine.scene import SceneConfig, SceneLimits, SceneRequest, unknown_characters_message
from playbill.engine.sentiment import ReviewRequest, SentimentConfig, SentimentLimits
from playbill.engine.serving import ModelHolder
from playbill.history import api

def ctrl_c_as_at_a_terminal() -> None:
    """A `preexec_fn` for a child the test stops with SIGINT: Ctrl-C's default action, as in a
    terminal, even when the test run itself was started in the background (a non-interactive
    shell starts background jobs with SIGINT ignored, and an ignored signal stays ignored
    across exec, so Python would never raise KeyboardInterrupt in the child)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


POSITIVE_WORDS = {"good", "great", "superb", "loved", "wonderful", "best"}
NEGATIVE_WORDS = {"bad", "awful", "boring", "hated", "worst", "dull"}


@dataclass(frozen=True)
class FakeVerdict:
    label: str
    positive_probability: float


class FakeSentimentModel:
    """Counts happy and unhappy words. Records the size of every predict batch. Checks
    requests with the engine's own rule, as engine.sentiment.SentimentModel does."""

    delay = 0.0  # seconds per predict call (class-wide knob for load tests)
    threads: set[int] = set()  # ids of the threads predict ran in (class-wide)

    def __init__(self, version: str, limits: SentimentLimits | None = None) -> None:
        self.version = version
        self.limits = limits or SentimentLimits()
        self.batches: list[int] = []
        self._lock = threading.Lock()

    @classmethod
    def load(cls, version_dir: Path, limits: SentimentLimits | None = None) -> FakeSentimentModel:
        return cls(Path(version_dir).name, limits)

    def check(self, request: ReviewRequest) -> ReviewRequest:
        return self.limits.check(request)

    def predict(self, texts: list[str]) -> list[FakeVerdict]:
        for text in texts:
            self.check(ReviewRequest(text))
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



SCENE_TEXT = (  # the continuation of a prompt like "ROMEO:"
    "\nBut soft, what light through yonder window breaks?\nIt is the east, and Juliet is the sun.\n\n"
    "JULIET:\nO Romeo, Romeo, wherefore art thou Romeo?\nDeny thy father and refuse thy name.\n\nROMEO:"
)


class FakeSceneWriter:
    """Continues any prompt with a known scene; knows only printable ASCII, like a small
    character model. Checks requests with the engine's limits and its message for unknown
    characters; `stream` yields the continuation only, as engine.scene does."""

    delay = 0.0  # seconds between streamed pieces
    fail_after: int | None = None  # raise after this many pieces (tests the error path)
    threads: set[int] = set()  # ids of the threads that generated text (class-wide)

    def __init__(self, version: str, limits: SceneLimits | None = None) -> None:
        self.version = version
        self.limits = limits or SceneLimits()
        self.vocabulary = sorted(set(string.printable) - set("\x0b\x0c\r`"))
        self.requests: list[SceneRequest] = []  # every request streamed, as it arrived

    @classmethod
    def load(cls, version_dir: Path, limits: SceneLimits | None = None) -> FakeSceneWriter:
        return cls(Path(version_dir).name, limits)

    def check(self, request: SceneRequest) -> SceneRequest:
        request = self.limits.check(request)
        unknown = sorted(set(request.prompt) - set(self.vocabulary))
        if unknown:
            raise InvalidInput(unknown_characters_message(unknown))
        return request

    def stream(self, request: SceneRequest, chunk_chars: int = 16) -> Iterator[str]:
        request = self.check(request)
        FakeSceneWriter.threads.add(threading.get_ident())
        self.requests.append(request)
        text = SCENE_TEXT * (request.length // len(SCENE_TEXT) + 2)
        end = text.find("\n\n", request.length) if request.stop_at_boundary else request.length  # a speech's end
        text = text[:end]
        for n, i in enumerate(range(0, len(text), chunk_chars)):
            if self.fail_after is not None and n >= self.fail_after:
                raise RuntimeError("the fake writer failed on purpose")
            if self.delay:
                time.sleep(self.delay)
            yield text[i : i + chunk_chars]


def publish_fake_version(home: Path, name: str, metrics: dict[str, float] | None = None) -> str:
    """Add a (fake) version to the model's real registry under `home` and return its name."""
    registry = spec(name).registry(home)
    with registry.new_version({"metrics": metrics or {}}) as staged:
        (staged.path / "fake.json").write_text(json.dumps({"fake": True}))
    return staged.version


FAKES = {"sentiment": FakeSentimentModel, "scene": FakeSceneWriter}


def fake_holders(settings: Any, *, home: Path | None = None, sentiment: bool = True,
                 scene: bool = True) -> dict[str, ModelHolder]:
    """Real ModelHolders over real registries under `home` (default: the settings' home),
    serving fake models with the limits the settings give the real ones."""
    home = home or settings.home
    if sentiment:
        publish_fake_version(home, "sentiment", {"accuracy": 0.81})
    if scene:
        publish_fake_version(home, "scene", {"val_loss": 1.62, "bits_per_char": 2.34})
    return {name: ModelHolder(spec(name), home, settings.section(name), load=fake.load)
            for name, fake in FAKES.items()}


def engine_refusal(check: Any, request: Any) -> str:
    """The engine's own message for a request it refuses: what every front end must show."""
    try:
        check(request)
    except InvalidInput as exc:
        return str(exc)
    raise AssertionError(f"the engine accepted {request!r}")


def history_rows(gateway: Any) -> list[api.InteractionRecord]:
    """Every interaction in the (real) history database behind `gateway`, newest first."""
    return api.query_interactions(gateway.session_factory, limit=None)


TINY_PLAY = (
    "ROMEO:\nBut soft, what light through yonder window breaks?\nIt is the east, and Juliet is the sun.\n\n"
    "JULIET:\nO Romeo, Romeo, wherefore art thou Romeo?\nDeny thy father and refuse thy name.\n\n"
) * 30


def publish_numpy_scene(home: Path, metrics: dict[str, float] | None = None, *, seed: int = 0,
                        promote: bool = True) -> str:
    """A real, servable playwright version with small random weights, written with numpy alone
    (no TensorFlow, milliseconds): for tests of the registry and serving, not of writing well."""
    import numpy as np

    from playbill.engine.scene.config import VOCABULARY_FILE, WEIGHTS_FILE
    from playbill.engine.scene.corpus import Vocabulary

    vocabulary = Vocabulary.from_text(TINY_PLAY)
    rng = np.random.default_rng(seed)
    vocab, embedding, units = len(vocabulary), 4, 8
    arrays = {
        "embedding": rng.normal(0, 0.1, (vocab, embedding)),
        "lstm0_kernel": rng.normal(0, 0.1, (embedding, 4 * units)),
        "lstm0_recurrent": rng.normal(0, 0.1, (units, 4 * units)),
        "lstm0_bias": np.zeros(4 * units),
        "dense_kernel": rng.normal(0, 0.1, (units, vocab)),
        "dense_bias": np.zeros(vocab),
    }
    registry = spec("scene").registry(home)
    with registry.new_version({"metrics": metrics or {"val_loss": 2.0}}) as staged:
        np.savez(staged.path / WEIGHTS_FILE, **{k: v.astype(np.float32) for k, v in arrays.items()})
        vocabulary.save(staged.path / VOCABULARY_FILE)
    if promote:
        registry.promote(staged.version)
    return staged.version


def train_tiny_scene(home: Path, workdir: Path) -> str:
    """A real (tiny) playwright in `home`'s registry, trained in seconds; returns its version."""
    workdir.mkdir(parents=True, exist_ok=True)
    corpus = workdir / "play.txt"
    corpus.write_text(TINY_PLAY, encoding="utf-8")
    config = SceneConfig(name="tiny", embedding_dim=8, rnn_units=16, seq_length=20, batch_size=8, epochs=1, seed=7)
    return spec("scene").train(config, home, workdir, epochs=1, data=corpus, progress=False).version


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
    return spec("sentiment").train(config, home, workdir, epochs=1, data=reviews, progress=False).version
