"""The nightly retrain heals a damaged current version; a killed retrain leaves no stray candidate."""

from __future__ import annotations

import pytest

from engine.registry import CHECKSUMS_FILE, ModelRegistry
from jobs import trainers
from jobs.retrain import retrain_from_checkpoint
from test_jobs_fakes import FAKE_SENTIMENT, FakeModel, control, make_initial_model, training_runs


@pytest.fixture
def fake_job(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(trainers.MODEL_JOBS, "sentiment", FAKE_SENTIMENT)


def damage(registry: ModelRegistry, version: str) -> None:
    (registry.root / version / "model.json").write_text("{ junk", "utf-8")


def test_a_good_candidate_is_promoted_over_a_damaged_current_version(settings, fake_job) -> None:
    current = make_initial_model(settings.home, quality=0.5)
    registry = ModelRegistry(settings.models_dir, "sentiment")
    damage(registry, current)
    control(settings.home, delta=0.05)
    outcome = retrain_from_checkpoint("sentiment", settings)
    assert (outcome.status, registry.current_version()) == ("promoted", outcome.candidate_version)


def test_a_damaged_version_from_before_checksums_is_healed_too(settings, fake_job) -> None:
    current = make_initial_model(settings.home, quality=0.5)
    registry = ModelRegistry(settings.models_dir, "sentiment")
    (registry.root / current / CHECKSUMS_FILE).unlink()  # only evaluating it shows the damage
    damage(registry, current)
    outcome = retrain_from_checkpoint("sentiment", settings)
    assert outcome.status == "promoted"


def test_with_the_current_damaged_the_candidate_must_beat_the_version_served(settings, fake_job) -> None:
    make_initial_model(settings.home, quality=0.9)
    registry = ModelRegistry(settings.models_dir, "sentiment")
    with registry.new_version({"metrics": {"accuracy": 0.5}}) as staged:  # a weaker version, promoted, then damaged
        FakeModel(0.5, 2).save(str(staged.path / "model.json"))
    registry.promote(staged.version)
    damage(registry, staged.version)
    control(settings.home, delta=-0.1)  # the candidate: quality 0.4 < 0.9 of the served version
    outcome = retrain_from_checkpoint("sentiment", settings)
    assert outcome.status == "rejected"


def test_the_healing_run_is_recorded_as_promoted(settings, fake_job) -> None:
    current = make_initial_model(settings.home, quality=0.5)
    damage(ModelRegistry(settings.models_dir, "sentiment"), current)
    retrain_from_checkpoint("sentiment", settings)
    assert [run.status for run in training_runs(settings).values()] == ["promoted"]
