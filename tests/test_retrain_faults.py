"""The nightly retrain heals a damaged current version; a killed retrain leaves no stray candidate."""

from __future__ import annotations

import pytest

import json
import logging

from playbill.engine.checkpoints import CheckpointManager
from playbill.engine.registry import CHECKSUMS_FILE, ModelRegistry
from playbill.engine import models
from playbill.jobs import records
from playbill.jobs.promotion import marker_path
from playbill.jobs.retrain import retrain_from_checkpoint
from test_jobs_fakes import FAKE_SENTIMENT, FakeModel, control, make_initial_model, training_runs


@pytest.fixture
def fake_job(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(models.SPECS, "sentiment", FAKE_SENTIMENT)


def damage(registry: ModelRegistry, version: str) -> None:
    (registry.root / version / "model.json").write_text("{ junk", "utf-8")


def test_a_good_candidate_is_promoted_over_a_damaged_current_version(settings, fake_job) -> None:
    current = make_initial_model(settings.home, quality=0.5)
    registry = ModelRegistry.in_home(settings.home, "sentiment")
    damage(registry, current)
    control(settings.home, delta=0.05)
    outcome = retrain_from_checkpoint("sentiment", settings)
    assert (outcome.status, registry.current_version()) == ("promoted", outcome.candidate_version)


def test_a_damaged_version_from_before_checksums_is_healed_too(settings, fake_job) -> None:
    current = make_initial_model(settings.home, quality=0.5)
    registry = ModelRegistry.in_home(settings.home, "sentiment")
    (registry.root / current / CHECKSUMS_FILE).unlink()  # only evaluating it shows the damage
    damage(registry, current)
    outcome = retrain_from_checkpoint("sentiment", settings)
    assert outcome.status == "promoted"


def test_with_the_current_damaged_the_candidate_must_beat_the_version_served(settings, fake_job) -> None:
    make_initial_model(settings.home, quality=0.9)
    registry = ModelRegistry.in_home(settings.home, "sentiment")
    with registry.new_version({"metrics": {"accuracy": 0.5}}) as staged:  # a weaker version, promoted, then damaged
        FakeModel(0.5, 2).save(str(staged.path / "model.json"))
    registry.promote(staged.version)
    damage(registry, staged.version)
    control(settings.home, delta=-0.1)  # the candidate: quality 0.4 < 0.9 of the served version
    outcome = retrain_from_checkpoint("sentiment", settings)
    assert outcome.status == "rejected"


def test_the_healing_run_is_recorded_as_promoted(settings, fake_job) -> None:
    current = make_initial_model(settings.home, quality=0.5)
    damage(ModelRegistry.in_home(settings.home, "sentiment"), current)
    retrain_from_checkpoint("sentiment", settings)
    assert [run.status for run in training_runs(settings).values()] == ["promoted"]


def test_a_candidate_published_by_a_killed_training_process_is_removed(settings, fake_job) -> None:
    current = make_initial_model(settings.home)
    control(settings.home, die_after_publishing=True)
    outcome = retrain_from_checkpoint("sentiment", settings)
    registry = ModelRegistry.in_home(settings.home, "sentiment")
    assert (outcome.status, [v.version for v in registry.versions()]) == ("failed", [current])


def killed_run_left_behind(settings) -> str:
    """What a retrain killed with its whole process (kill -9 of the scheduler) leaves: a 'running'
    row, its marker, and a published, unrecorded candidate. Returns the candidate's version."""
    make_initial_model(settings.home)
    start = CheckpointManager.in_home(settings.home, "sentiment").latest_valid()
    history = records.open_run_log(settings.database_url)
    registry = ModelRegistry.in_home(settings.home, "sentiment")
    try:
        run_id = history.start("sentiment", checkpoint_from=start.label(), epochs=1)
        marker = marker_path(settings, "sentiment")
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps({"note": {"run_id": run_id, "started_from": start.label()}, "pid": 1,
                                      "versions_before": [v.version for v in registry.versions()]}), "utf-8")
    finally:
        history.close()
    with registry.new_version({"metrics": {"accuracy": 0.6}, "started_from": start.label()}) as staged:
        FakeModel(0.6, 3).save(str(staged.path / "model.json"))
    return staged.version


def test_the_next_start_removes_a_killed_runs_candidate(settings, fake_job, caplog) -> None:
    stray = killed_run_left_behind(settings)
    control(settings.home, delta=-0.5)  # this run's own candidate is rejected: only the first version stays
    with caplog.at_level(logging.WARNING, logger="playbill.jobs"):
        retrain_from_checkpoint("sentiment", settings)
    assert f"removing sentiment {stray}" in caplog.text


def test_the_killed_run_is_recorded_with_its_removed_candidate(settings, fake_job) -> None:
    stray = killed_run_left_behind(settings)
    retrain_from_checkpoint("sentiment", settings)
    first = min(training_runs(settings).items())[1]
    assert f"its unrecorded candidate {stray} was removed" in first.error


def test_a_one_class_csv_is_refused_in_one_line(home, tmp_path, capsys) -> None:
    from playbill.cli import main

    data = tmp_path / "positives.csv"
    data.write_text("text,label\n" + "".join(f"a fine film number {i},positive\n" for i in range(40)), "utf-8")
    assert main(["train", "sentiment", "--data", str(data), "--epochs", "1"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"error: CSV {data} has only positive reviews (40); the critic learns from both kinds, "
        "so give it positive and negative ones"]


def test_a_version_half_written_by_a_killed_process_is_removed_at_the_next_start(settings, fake_job) -> None:
    import subprocess
    import sys

    make_initial_model(settings.home)
    registry = ModelRegistry.in_home(settings.home, "sentiment")
    script = ("import os, sys; from pathlib import Path; from playbill.engine.registry import ModelRegistry\n"
              "r = ModelRegistry.in_home(Path(sys.argv[1]), 'sentiment')\n"
              "with r.new_version({}) as staged:\n"
              "    (staged.path / 'model.json').write_text('half')\n"
              "    os._exit(9)  # killed while writing its version\n")
    subprocess.run([sys.executable, "-c", script, str(settings.home)], check=False)
    assert [p.name for p in registry.root.iterdir() if p.name.startswith(".incoming-")]  # it was left behind
    retrain_from_checkpoint("sentiment", settings)
    assert [p.name for p in registry.root.iterdir() if p.name.startswith(".incoming-")] == []
