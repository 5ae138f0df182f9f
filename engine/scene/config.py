"""The playwright's settings in one place: profiles, serving limits, the request and its check.

Plain Python (no numpy, no TensorFlow): front ends build a `SceneRequest` and check it against
`SceneLimits` before any model is loaded; a loaded `SceneWriter` adds only what needs the
model (its alphabet). One temperature range, one length rule, one message each, for every
front end.
"""

from __future__ import annotations

import math
import numbers
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from playbill.engine.errors import InvalidInput
from playbill.engine.fields import known_fields

NAME = "scene"
VOCABULARY_FILE = "vocabulary.json"
WEIGHTS_FILE = "sampler.npz"
KERAS_FILE = "model.keras"
# How generation steps the model: "float32" (numpy, the reference), "int8" (LiteRT, int8
# weights) or "auto": int8 where the int8 step can be had, else float32. Measured
# (docs/benchmarks.md "## Scene"): int8 is ~4x faster for 8 streams and ~2x for one.
BACKENDS = ("auto", "float32", "int8")


@dataclass(frozen=True)
class SceneConfig:
    """Hyper-parameters of one scene model: the size, the regularisation and the schedule."""

    name: str = "custom"
    embedding_dim: int = 256
    rnn_units: int = 512
    rnn_layers: int = 1
    dropout: float = 0.0  # on the embedding output and every LSTM's outputs (cheap on CPU)
    seq_length: int = 100
    batch_size: int = 64
    learning_rate: float = 2e-3
    final_lr_fraction: float = 1.0  # cosine decay to lr * this over `epochs`; 1.0: constant
    clipnorm: float | None = 1.0
    epochs: int = 10  # the profile's budget when a run does not say
    validation_fraction: float = 0.1
    seed: int = 1337

    def with_overrides(self, **changes: Any) -> SceneConfig:
        """This config with the given fields changed; None leaves a field as it is."""
        return replace(self, **known_fields(SceneConfig, changes))

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> SceneConfig:
        """A config as saved in a checkpoint or a version's metadata."""
        return cls(**known_fields(cls, values, keep_none=True))

    @classmethod
    def from_settings(cls, values: Mapping[str, Any], profile: str | None = None) -> SceneConfig:
        """The one place a `[scene]` settings section becomes a config: the profile (`profile`,
        else the section's `profile`, else "default"), with every key that names a
        hyper-parameter (epochs, seed, validation_fraction, ...) applied on top. A profile
        other than the section's keeps its own epoch budget (the section's `epochs` is for its
        own profile)."""
        chosen = get_profile(profile or values.get("profile"))
        if profile and profile != (values.get("profile") or "default"):
            values = {k: v for k, v in values.items() if k != "epochs"}
        return chosen.with_overrides(**values)


PROFILES: dict[str, SceneConfig] = {
    # The tutorial's model, for comparison and the sampler benchmark (5.3 M parameters).
    "tutorial": SceneConfig(
        name="tutorial", embedding_dim=256, rnn_units=1024, learning_rate=1e-3, clipnorm=None, epochs=20
    ),
    # First start: the best validation loss in ~100 s of 2-core CPU (1.686 nats/char after 450
    # steps; the sweep is in docs/benchmarks.md, Scene): a small LSTM with a high peak learning
    # rate, cosine to 5%.
    "quick": SceneConfig(
        name="quick", embedding_dim=64, rnn_units=256, rnn_layers=1, dropout=0.0, batch_size=128,
        learning_rate=1e-2, final_lr_fraction=0.05, epochs=6,
    ),
    # Chosen by measurement for <= 60 min on 2 CPU cores: see docs/benchmarks.md "## Scene".
    # The default with a 64-wide embedding: ~25% more characters per CPU second and 0.013-0.015
    # nats better at equal CPU over the first 8 epochs (docs/benchmarks.md, Scene); not yet run for the
    # full 36 epochs, so not the default.
    "lean": SceneConfig(
        name="lean", embedding_dim=64, rnn_units=512, rnn_layers=1, dropout=0.25, batch_size=64,
        learning_rate=3e-3, final_lr_fraction=0.05, epochs=36,
    ),
    "default": SceneConfig(
        name="default",
        embedding_dim=256,
        rnn_units=512,
        rnn_layers=1,
        dropout=0.25,
        batch_size=64,
        learning_rate=3e-3,
        final_lr_fraction=0.05,
        epochs=36,
    ),
}


def get_profile(name: str | None) -> SceneConfig:
    name = name or "default"
    if name not in PROFILES:
        raise InvalidInput(f"unknown scene profile {name!r}; choose one of: {', '.join(PROFILES)}")
    return PROFILES[name]


def check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise InvalidInput(f"unknown scene backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
    return backend


# ---------------------------------------------------------------------------- requests


@dataclass(frozen=True)
class SceneRequest:
    """What to write: the continuation of `prompt`, at most `length` characters."""

    prompt: str
    length: int
    temperature: float
    top_k: int | None = None  # sample from the k likeliest characters only; None: all
    seed: int | None = None  # the same seed and request write the same scene
    stop_at_boundary: bool = True  # end at a speech or sentence end, never mid-word


@dataclass(frozen=True)
class SceneLimits:
    """What a served playwright accepts (the settings' `max_length` sets the length bound)."""

    min_temperature: float = 0.1
    max_temperature: float = 2.0
    max_length: int = 2000
    max_prompt_chars: int = 10_000

    def __post_init__(self) -> None:
        if not 0.0 < self.min_temperature <= self.max_temperature:
            raise ValueError("the temperature range must be above 0 and not empty")
        if self.max_length < 1 or self.max_prompt_chars < 1:
            raise ValueError("max_length and max_prompt_chars must be at least 1")

    @classmethod
    def from_settings(cls, values: Mapping[str, Any]) -> SceneLimits:
        return cls(**known_fields(cls, values))

    def check(self, request: SceneRequest) -> SceneRequest:
        """The request with plain Python numbers, or InvalidInput with the one message every
        front end shows. The prompt's characters are checked by the writer, which knows them."""
        prompt = request.prompt
        if not isinstance(prompt, str) or not prompt.strip():
            raise InvalidInput("the prompt is empty: give the playwright a few opening words")
        if len(prompt) > self.max_prompt_chars:
            raise InvalidInput(f"the prompt is too long ({len(prompt):,} characters; at most {self.max_prompt_chars:,})")
        length = request.length
        if not _whole(length) or not 1 <= length <= self.max_length:
            raise InvalidInput(f"length must be a whole number from 1 to {self.max_length}")
        return replace(request, length=int(length), temperature=self.check_temperature(request.temperature),
                       top_k=_optional_whole(request.top_k, 1, "top-k must be a whole number of at least 1 (or left out)"),
                       seed=_optional_whole(request.seed, 0, "the seed must be a whole number of at least 0 (or left out)"),
                       stop_at_boundary=bool(request.stop_at_boundary))

    def check_temperature(self, temperature: Any) -> float:
        """Also used for the configured default temperature: the same range everywhere."""
        number = float(temperature) if isinstance(temperature, numbers.Real) and not isinstance(temperature, bool) else None
        if number is None or not math.isfinite(number) or not self.min_temperature <= number <= self.max_temperature:
            raise InvalidInput(f"temperature must be between {self.min_temperature:g} and {self.max_temperature:g} "
                               "(0.5 is careful, 1.0 is wild)")
        return number


def _whole(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _optional_whole(value: Any, minimum: int, message: str) -> int | None:
    """None, or a whole number of at least `minimum` as a plain int; else InvalidInput(message)."""
    if value is None:
        return None
    if not _whole(value) or value < minimum:
        raise InvalidInput(message)
    return int(value)


# ---------------------------------------------------------------------------- characters


def char_name(ch: str) -> str:
    """A character as a person can read it: quoted with its code point, or, when invisible,
    its code point and Unicode name ("'é' (U+00E9)", "U+FE0F (variation selector-16)")."""
    code = f"U+{ord(ch):04X}"
    if unicodedata.category(ch)[0] in "MCZ":
        name = unicodedata.name(ch, "")
        return code + (f" ({name.lower()})" if name else "")
    return f"'{ch}' ({code})"


def char_list(chars: Sequence[str], shown: int = 20) -> str:
    """Characters named one by one for a message: the first `shown`, then how many more."""
    names = ", ".join(char_name(ch) for ch in chars[:shown])
    return names + (f" and {len(chars) - shown} more" if len(chars) > shown else "")


def unknown_characters_message(missing: Sequence[str]) -> str:
    """The one message for a prompt with characters the model has never seen."""
    return f"the playwright has never seen these characters: {char_list(missing)}; leave them out and try again"
