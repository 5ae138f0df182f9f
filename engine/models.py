"""The one list of models. The CLI, the jobs, the bot's holders and workers and the history's
model kinds all iterate over `MODELS`; adding a model means writing its slice
(`engine/<name>/`) and one entry here.

Importing this module does not import TensorFlow: `train` reaches each slice's Keras module
through the slice's one hop (`engine.<name>.train_<name>`), taken when training starts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from playbill.engine import scene, sentiment
from playbill.engine.checkpoints import CheckpointManager
from playbill.engine.errors import EngineError, InvalidInput
from playbill.engine.registry import ModelRegistry
from playbill.engine.training import TrainingResult


@dataclass(frozen=True)
class ModelSpec:
    """Everything the rest of Playbill needs to know about one model, and nothing it must not."""

    name: str  # "sentiment": the registry's and the commands' name
    title: str  # "critic": how people are told about it
    config_type: type  # its frozen hyper-parameter dataclass
    limits_type: type  # its frozen serving-limits dataclass
    request_type: type  # what a served model takes: ReviewRequest / SceneRequest
    gate_metric: str  # the held-out figure (a key of `evaluate`'s result) that decides promotion
    higher_is_better: bool
    held_out: str  # what `gate_metric` is measured on, for messages
    has_test_split: bool  # `evaluate(split="test")` exists (the critic's IMDB test set): reported, never gated on
    extra_kind: str  # what a retrain may add: "labelled_texts" ((text, 0|1[, weight]) rows) or "texts"
    keep_runs: int | None  # checkpoint runs `playbill train` keeps (None: all)
    profiles: tuple[str, ...]  # named configs (`config_from(values, profile=...)`); "default" is the full model
    first_profile: str  # the first-start model: good answers within the first minutes
    # Epochs of `first_profile`'s schedule a first start runs before it serves (None: all of it).
    # The playwright's first 3 of 6 epochs, still at the schedule's high learning rate, reach
    # 1.756 nats/char in ~2 min on 2 cores (all 6: 1.677 in ~4 min; the same schedule squeezed
    # into 3 epochs: 1.853): the first scene within 3 minutes, and the warm-up's first stage
    # replaces that model minutes later (docs/benchmarks.md, "First start and warm-up").
    first_epochs: int | None
    _config_from: Callable[..., Any]  # (settings section, profile) -> config
    limits_from: Callable[[Mapping[str, Any]], Any]  # the same section -> limits (keys named as the limits' fields)
    serving_from: Callable[[Mapping[str, Any]], dict[str, Any]]  # the same section -> `load` keywords
    data_from: Callable[[Mapping[str, Any]], Path | None]  # the same section -> `data` for train/evaluate
    _load: Callable[..., Any]
    _train: Callable[..., TrainingResult]
    _evaluate: Callable[..., dict[str, Any]]

    @property
    def train_command(self) -> str:
        return f"playbill train {self.name}"

    def check(self, request: Any, limits: Any = None) -> Any:
        """A request checked against the limits (default: the model's defaults) without a model
        loaded; a served model's own `check` adds what needs the model (the playwright's alphabet)."""
        return (limits or self.limits_type()).check(request)

    def config_from(self, values: Mapping[str, Any], profile: str | None = None) -> Any:
        """The config of a settings section (`settings.<name>.model_dump()`): the profile (`profile`,
        else the section's "profile" key, else "default") with the section's hyper-parameters on top."""
        return self._config_from(values, profile)

    def load(self, version_dir: Path, limits: Any = None, **serving_options: Any) -> Any:
        """The served model of a version (scene: backend=, int8_threads=)."""
        return self._load(Path(version_dir), limits, **serving_options)

    def verify(self, home: Path, version: str) -> list[str]:
        """What is wrong with a version, one line per problem (empty: it can be served): its
        files against their checksums (`ModelRegistry.verify`), then a load (readable, finite
        weights that answer a probe; the float32 path, so no conversion is paid for)."""
        registry = self.registry(home)
        problems = registry.verify(version)
        if problems:
            return problems
        try:
            self.load(registry.root / version, None, **self.serving_from({"backend": "float32"}))
        except EngineError as exc:
            return [str(exc)]
        return []

    def train(self, config: Any, home: Path, data_dir: Path, *, epochs: int | None = None, resume: bool = False,
              checkpoint: str | Path | None = None, data: Any = None, extra: Sequence[Any] = (),
              promote: bool = True, progress: bool = True, keep_runs: int | None = None,
              evaluate_test: bool = True, seconds: float | None = None) -> TrainingResult:
        """Train (or continue) and publish a new registry version. `data`: the model's own data
        (sentiment: a labelled CSV; scene: a corpus file), None for the default dataset; `extra`:
        extra training data (see `extra_kind`). `resume`/`checkpoint`: continue the best epoch
        (lowest validation loss) of the newest checkpoint run / a chosen checkpoint; the
        checkpoint's config wins. `seconds`: stop after the epoch in which this much training
        time has passed (at least one epoch; the n-gram critic fits in one step and ignores it).
        `keep_runs`: prune checkpoint runs to that many (None: keep all; `playbill train` passes
        `spec.keep_runs`). `evaluate_test`: measure the test set too where the model has one
        (the critic; reported, never used to choose). result.extra: "profile", "epochs_total",
        "done" (the profile's budget is spent)."""
        return self._train(config, Path(home), Path(data_dir), epochs=epochs, resume=resume, checkpoint=checkpoint,
                           data=data, extra=extra, promote=promote, progress=progress, keep_runs=keep_runs,
                           evaluate_test=evaluate_test, seconds=seconds)

    def continue_training(self, config: Any, home: Path, data_dir: Path, *, seconds: float | None = None,
                          epochs: int | None = None, data: Any = None, extra: Sequence[Any] = (),
                          promote: bool = False, progress: bool = False) -> TrainingResult:
        """One stage of a long run (the warm-up): continue the newest checkpoint run of the same
        profile (`config.name`) from its best epoch, or start that profile afresh when it has
        none; train `seconds` (whole epochs, at least one) or `epochs` (neither: to the end of
        the profile's budget); publish a version (not promoted: a candidate to gate).
        result.extra["done"] says the profile's budget is spent. Every epoch is checkpointed,
        so after a restart the next call goes on where the last epoch ended."""
        start = self.checkpoints(home).best_valid(where=_same_profile(config))
        return self.train(config, home, data_dir, epochs=epochs, checkpoint=start.path if start else None,
                          data=data, extra=extra, promote=promote, progress=progress, seconds=seconds,
                          evaluate_test=False)

    def training_progress(self, home: Path, config: Any) -> dict[str, Any] | None:
        """How far the profile `config.name` has trained (its newest checkpoint run), for status
        lines: {"profile", "epochs_done", "epochs_total", "best_val_loss", "seconds_per_epoch",
        "seconds_left", "done"}; None when it has not started."""
        start = self.checkpoints(home).best_valid(quiet=True, where=_same_profile(config))
        if start is None:
            return None
        total = int(start.extra.get("epochs_total") or start.extra.get("config", {}).get("epochs") or 1)
        per_epoch = start.metrics.get("epoch_seconds")
        left = max(0, total - start.epoch)
        return {"profile": config.name, "epochs_done": start.epoch, "epochs_total": total,
                "best_val_loss": start.val_loss, "seconds_per_epoch": per_epoch,
                "seconds_left": per_epoch * left if per_epoch is not None else None, "done": left == 0}

    def evaluate(self, home: Path, data_dir: Path, *, version: str | None = None, data: Any = None,
                 split: str | None = None, **options: Any) -> dict[str, Any]:
        """Held-out figures of a version (default: the current one), `gate_metric` among them.
        `data` in memory (sentiment: (text, label) pairs; scene: a text) or a file; None: the
        model's `split` ("validation", the default and what gates; the critic also has "test",
        reported only). Scene option: backend=. Sentiment option: progress=(done, total) callback."""
        return self._evaluate(Path(home), Path(data_dir), version=version, data=data, split=split, **options)

    def registry(self, home: Path) -> ModelRegistry:
        return ModelRegistry.in_home(home, self.name)

    def checkpoints(self, home: Path) -> CheckpointManager:
        return CheckpointManager.in_home(home, self.name)


def _same_profile(config: Any) -> Callable[[Any], bool]:
    name = getattr(config, "name", None)
    return lambda ckpt: ckpt.extra.get("config", {}).get("name") == name


def _train_sentiment(config, home, data_dir, *, data, extra, resume, checkpoint, epochs, seconds,
                     **options) -> TrainingResult:
    """The n-gram profiles fit with numpy (engine.sentiment.fit); the wide-and-deep layout
    trains with Keras (the hop). A checkpoint's own layout decides when continuing one."""
    manager = CheckpointManager.in_home(home, sentiment.NAME)
    start = manager.resolve(checkpoint) if checkpoint is not None else manager.best_valid() if resume else None
    layout = sentiment.SentimentConfig.from_dict(start.extra["config"]) if start and start.extra.get("config") else config
    if layout.wide_deep:
        return sentiment.train_sentiment(config, home, data_dir, data=data, extra_examples=extra, epochs=epochs,
                                         checkpoint=start.path if start else None, **options)
    return sentiment.train_blend(layout, home, data_dir, start=start, data=data, extra=extra, **options)


def _no_serving_options(values: Mapping[str, Any]) -> dict[str, Any]:
    return {}


def _default_data(values: Mapping[str, Any]) -> Path | None:
    return None


def _evaluate_sentiment(home, data_dir, *, version, data, split, progress=None) -> dict[str, Any]:
    return sentiment.evaluate_sentiment(home, data_dir, version=version, data=data, split=split, progress=progress)


def _train_scene(config, home, data_dir, *, data, extra, evaluate_test, **options) -> TrainingResult:
    return scene.train_scene(config, home, data_dir, corpus=data, extra_texts=extra, **options)


def _scene_serving_options(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: values[k] for k in ("backend", "int8_threads") if values.get(k) is not None}


def _scene_corpus(values: Mapping[str, Any]) -> Path | None:
    return Path(values["corpus"]) if values.get("corpus") else None


def _evaluate_scene(home, data_dir, *, version, data, split, backend: str = "float32") -> dict[str, Any]:
    if split not in (None, "validation"):
        raise InvalidInput("the playwright has only a validation split (the corpus's held-out block)")
    text, corpus = (data, None) if isinstance(data, str) else (None, data)
    result = scene.evaluate_scene(home, data_dir, version=version, corpus=corpus, text=text, backend=backend)
    return {**result, "split": "validation" if text is None else "text"}


MODELS: tuple[ModelSpec, ...] = (
    ModelSpec(
        name=sentiment.NAME, title="critic",
        config_type=sentiment.SentimentConfig, limits_type=sentiment.SentimentLimits,
        request_type=sentiment.ReviewRequest,
        gate_metric="accuracy", higher_is_better=True,
        held_out="the IMDB validation split (2,500 held-out training reviews)", has_test_split=True,
        extra_kind="labelled_texts", keep_runs=2,
        profiles=tuple(sentiment.PROFILES), first_profile="quick", first_epochs=None,
        _config_from=sentiment.SentimentConfig.from_settings, limits_from=sentiment.SentimentLimits.from_settings,
        serving_from=_no_serving_options, data_from=_default_data,
        _load=sentiment.SentimentModel.load, _train=_train_sentiment, _evaluate=_evaluate_sentiment,
    ),
    ModelSpec(
        name=scene.NAME, title="playwright",
        config_type=scene.SceneConfig, limits_type=scene.SceneLimits, request_type=scene.SceneRequest,
        gate_metric="val_loss", higher_is_better=False, held_out="the corpus's validation block",
        has_test_split=False,
        extra_kind="texts", keep_runs=None,
        profiles=tuple(scene.PROFILES), first_profile="quick", first_epochs=3,
        _config_from=scene.SceneConfig.from_settings, limits_from=scene.SceneLimits.from_settings,
        serving_from=_scene_serving_options, data_from=_scene_corpus,
        _load=scene.SceneWriter.load, _train=_train_scene, _evaluate=_evaluate_scene,
    ),
)
MODEL_NAMES: tuple[str, ...] = tuple(s.name for s in MODELS)
# The people-facing names (the docs and the bot say "critic" and "playwright"): accepted wherever
# a model is named, beside the registry's names. The one alias table.
ALIASES: dict[str, str] = {s.title: s.name for s in MODELS}
MODEL_CHOICES: tuple[str, ...] = (*MODEL_NAMES, *ALIASES)  # what a command line accepts as a model
# The table `spec()` reads, by registry name. Tests put a stand-in model's spec here (the jobs
# hand the spec itself to their spawned training process, so a stand-in trains there too).
SPECS: dict[str, ModelSpec] = {s.name: s for s in MODELS}


def spec(name: str) -> ModelSpec:
    """The spec of a model by name or alias ("critic", "playwright"); InvalidInput naming the
    choices for any other name."""
    try:
        return SPECS[ALIASES.get(name, name)]
    except (KeyError, TypeError):
        raise InvalidInput(f"model must be one of {', '.join(MODEL_NAMES)} "
                           f"(or {', '.join(ALIASES)})") from None


def canonical(name: str) -> str:
    """The registry name of a model named by name or alias: canonical("critic") == "sentiment"."""
    return spec(name).name
