"""A tiny stand-in for the critic, and history helpers, for the jobs tests (no tests here).

`FAKE_SENTIMENT` is the critic's engine spec with a fake `train` and `evaluate`; the fixture
`fake_critic` puts it in `engine.models.SPECS`, so the jobs read it exactly as they read the
real one (and hand it to their spawned training process). A fake "model" is a JSON document
{"quality": q, "epoch": e}. The fake trainer runs in the spawned process exactly like the real
one: resumes from a checkpoint file, saves one checkpoint per epoch through engine.checkpoints,
publishes a registry version with promote=False. It is steered by <home>/fake-trainer.json and
logs its calls to <home>/fake-calls.jsonl. The history database is the real one (SQLite under
the test's home).
"""

from __future__ import annotations

import errno
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import dataclasses

import pytest

from playbill.engine import models
from playbill.engine.checkpoints import CheckpointManager
from playbill.engine.registry import ModelRegistry
from playbill.engine.training import TrainingResult


class FakeModel:
    def __init__(self, quality: float, epoch: int) -> None:
        self.quality, self.epoch = quality, epoch

    def save(self, path: str) -> None:
        Path(path).write_text(json.dumps({"quality": self.quality, "epoch": self.epoch}))


class FullDiskModel:
    """A model whose file the disk cannot take: writes part of it, then ENOSPC (as a full disk does)."""

    def save(self, path: str) -> None:
        Path(path).write_text("half a model")
        raise OSError(errno.ENOSPC, "No space left on device", path)


def fake_load(version_dir: Path, limits: Any = None, **options: Any) -> Any:
    """A served fake model: its document, readable (what `spec.verify` and `models promote` load)."""
    from types import SimpleNamespace

    return SimpleNamespace(version=Path(version_dir).name, **json.loads((Path(version_dir) / "model.json").read_text()))


def control(home: Path, **steer: Any) -> None:
    """Steer the fake trainer: delta (quality change per epoch), die_at_epoch, die_after_publishing,
    full_disk_at_epoch, interrupt_at_epoch, block_on (a file to wait for)."""
    (Path(home) / "fake-trainer.json").write_text(json.dumps(steer))


def calls(home: Path) -> list[dict[str, Any]]:
    path = Path(home) / "fake-calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def fake_train(config, home, data_dir, *, checkpoint, epochs, extra, **options) -> TrainingResult:
    home = Path(home)
    epochs = epochs or 2  # None: the profile's budget
    steer = json.loads((home / "fake-trainer.json").read_text()) if (home / "fake-trainer.json").is_file() else {}
    start = json.loads(Path(checkpoint).read_text()) if checkpoint else {"quality": 0.5, "epoch": 0}  # from scratch
    with (home / "fake-calls.jsonl").open("a") as fh:
        fh.write(json.dumps({"pid": os.getpid(), "checkpoint": str(checkpoint), "epochs": epochs,
                             "extra": list(extra), "start": start}) + "\n")
    if steer.get("block_on"):
        while not Path(steer["block_on"]).exists():
            time.sleep(0.05)
    name = "sentiment"
    manager = CheckpointManager.in_home(home, name)
    run = manager.new_run()
    quality, epoch = start["quality"], start["epoch"]
    for _ in range(epochs):
        epoch += 1
        if steer.get("full_disk_at_epoch") == epoch:  # the checkpoint cannot be written: ENOSPC
            manager.save(FullDiskModel(), run, epoch, {"val_loss": 1 - quality})
        if steer.get("interrupt_at_epoch") == epoch:  # Ctrl-C during this epoch
            raise KeyboardInterrupt
        if steer.get("die_at_epoch") == epoch:
            (manager.root / run / f"epoch-{epoch:04d}.keras").write_text("half writ")  # no sidecar: incomplete
            os.kill(os.getpid(), signal.SIGKILL)  # killed mid-epoch (OOM killer, kill -9)
        quality += steer.get("delta", 0.1)
        manager.save(FakeModel(quality, epoch), run, epoch, {"val_loss": 1 - quality})
    registry = ModelRegistry.in_home(home, name)
    label = f"{Path(checkpoint).parent.name}/{Path(checkpoint).name}" if checkpoint else None  # as the real trainers
    with registry.new_version({"metrics": {"accuracy": quality}, "started_from": label}) as staged:
        FakeModel(quality, epoch).save(str(staged.path / "model.json"))
    if steer.get("die_after_publishing"):
        os.kill(os.getpid(), signal.SIGKILL)  # the version is on disk, nobody was told
    if options.get("promote"):
        registry.promote(staged.version)
    return TrainingResult(model=name, version=staged.version, metrics={"accuracy": quality}, epochs_run=epochs,
                          last_epoch=epoch, started_from=str(checkpoint), promoted=bool(options.get("promote")))


def fake_evaluate(home, data_dir, *, version, data, split, **options) -> dict:
    registry = ModelRegistry.in_home(home, "sentiment")
    model = json.loads((registry.get(version).path / "model.json").read_text())
    if isinstance(data, list):  # the community hold-out: how many of the held-out votes the fake gets right
        return {"accuracy": model.get("community", 1.0), "n": len(data), "model_version": version}
    return {"accuracy": model["quality"], "n": 100, "model_version": version, "split": split}


FAKE_SENTIMENT = dataclasses.replace(models.SPECS["sentiment"], held_out="the fake test set",
                                     _train=fake_train, _evaluate=fake_evaluate, _load=fake_load)


@pytest.fixture
def fake_critic(monkeypatch: pytest.MonkeyPatch) -> models.ModelSpec:
    """The jobs see the fake critic wherever they look the critic up."""
    monkeypatch.setitem(models.SPECS, "sentiment", FAKE_SENTIMENT)
    return FAKE_SENTIMENT


def make_initial_model(home: Path, quality: float = 0.5, epochs: int = 2) -> str:
    """What `playbill train sentiment` leaves behind: checkpoints for each epoch and a current version."""
    manager = CheckpointManager.in_home(home, "sentiment")
    run = manager.new_run()
    for epoch in range(1, epochs + 1):
        manager.save(FakeModel(quality, epoch), run, epoch, {"val_loss": 1 - quality})
    registry = ModelRegistry.in_home(home, "sentiment")
    with registry.new_version({"metrics": {"accuracy": quality}}) as staged:
        FakeModel(quality, epochs).save(str(staged.path / "model.json"))
    registry.promote(staged.version)
    return staged.version


def training_runs(settings, model: str = "sentiment") -> dict[int, Any]:
    """The training-runs rows of `model` in the history database, by id."""
    from playbill.history import api
    from playbill.history.db import open_history

    engine, sessions = open_history(settings.database_url)
    try:
        return {run.id: run for run in api.list_training_runs(sessions, model, limit=1000)}
    finally:
        engine.dispose()


def add_feedback(settings, examples: list[tuple[str, str, str]]) -> None:
    """(review, the critic's label, a person's verdict "right"/"wrong"), recorded as the bot does."""
    from playbill.history import api
    from playbill.history.db import open_history

    engine, sessions = open_history(settings.database_url)
    try:
        for i, (text, label, verdict) in enumerate(examples):
            interaction = api.record_interaction(sessions, kind="sentiment", prompt=text, label=label,
                                                 probability=0.9, model_name="sentiment", user_id=1000 + i)
            api.record_feedback(sessions, interaction, 2000 + i, verdict)
    finally:
        engine.dispose()
