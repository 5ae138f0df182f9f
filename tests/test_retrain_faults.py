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
from test_jobs_fakes import FAKE_SENTIMENT, FakeModel, calls, control, make_initial_model, training_runs


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


# --- issue 18: read-only and full storage, unevaluated candidates, every training recorded, Ctrl-C


def read_only(monkeypatch: pytest.MonkeyPatch, folder) -> None:
    """Make `folder` behave as on a read-only file system (EROFS) for everything Playbill writes
    there; a real read-only mount needs privileges the tests may not have."""
    import errno
    import os
    import tempfile

    def refuse(path) -> None:
        if str(path).startswith(str(folder)):
            raise OSError(errno.EROFS, "Read-only file system", str(path))

    real_mkstemp = tempfile.mkstemp  # every atomic write (playbill.files.write_atomic) starts here
    monkeypatch.setattr(tempfile, "mkstemp", lambda *a, dir=None, **k: refuse(f"{dir}/x") or real_mkstemp(*a, dir=dir, **k))
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b, **k: refuse(b) or real_replace(a, b, **k))


def test_a_read_only_models_folder_is_one_line_for_promote_and_rollback(settings, fake_job, monkeypatch, capsys) -> None:
    from playbill.cli import main

    first = make_initial_model(settings.home)
    control(settings.home, delta=0.1)
    second = retrain_from_checkpoint("sentiment", settings).candidate_version
    folder = FAKE_SENTIMENT.registry(settings.home).root
    read_only(monkeypatch, folder)
    assert main(["models", "rollback", "critic"]) == 2
    assert main(["models", "promote", "sentiment", first]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and all(line.startswith(f"error: cannot write {folder}") and "read-only" in line for line in err)
    assert FAKE_SENTIMENT.registry(settings.home).current_version() == second


def test_a_retrain_finds_a_read_only_models_folder_before_it_trains(settings, fake_job, monkeypatch) -> None:
    make_initial_model(settings.home)
    read_only(monkeypatch, FAKE_SENTIMENT.registry(settings.home).root)
    outcome = retrain_from_checkpoint("sentiment", settings)
    assert outcome.status == "failed" and outcome.message.startswith("cannot write")
    assert "read-only" in outcome.message and "\n" not in outcome.message
    assert calls(settings.home) == []  # not one epoch was spent


def test_a_full_disk_during_a_retrain_is_one_line_and_leaves_no_failed_checkpoint(settings, fake_job, capfd) -> None:
    from playbill.cli import main

    make_initial_model(settings.home)
    checkpoints = FAKE_SENTIMENT.checkpoints(settings.home)
    runs_before = checkpoints.runs()
    control(settings.home, full_disk_at_epoch=3)  # the first epoch of the retrain (the model is at epoch 2)
    assert main(["retrain", "sentiment"]) == 1
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err
    (run,) = training_runs(settings).values()
    assert run.status == "failed" and "No space left on device; the disk is full" in run.error
    assert checkpoints.runs() == runs_before  # no failed checkpoint, no empty run folder


def test_a_full_disk_during_train_is_one_line_and_leaves_nothing(settings, fake_job, capsys) -> None:
    from playbill.cli.common import run_training
    from playbill.engine.errors import StorageError

    make_initial_model(settings.home)
    checkpoints = FAKE_SENTIMENT.checkpoints(settings.home)
    runs_before, start = checkpoints.runs(), checkpoints.list()[-1]
    control(settings.home, full_disk_at_epoch=3)
    with pytest.raises(StorageError, match="^cannot write .*No space left on device; the disk is full"):
        run_training("sentiment", settings, train_args(), lambda: FAKE_SENTIMENT.train(
            None, settings.home, settings.data_dir, checkpoint=start.path, epochs=1, promote=False))
    assert checkpoints.runs() == runs_before
    (run,) = training_runs(settings).values()
    assert run.status == "failed" and "No space left on device" in run.error


def train_args(**options):
    import argparse

    return argparse.Namespace(**{"resume": False, "checkpoint": None, "no_promote": False, "epochs": 1, **options})


def test_every_cli_training_is_a_training_run(settings, fake_job) -> None:
    from playbill.cli.common import run_training

    make_initial_model(settings.home)
    start = FAKE_SENTIMENT.checkpoints(settings.home).list()[-1]
    control(settings.home, delta=0.1)
    result, _ = run_training("sentiment", settings, train_args(), lambda: FAKE_SENTIMENT.train(
        None, settings.home, settings.data_dir, checkpoint=start.path, epochs=1, promote=True))
    (run,) = training_runs(settings).values()
    assert (run.status, run.version, run.promoted, run.metrics["by"]) == (
        "promoted", result.version, True, "playbill train sentiment")


def test_ctrl_c_during_train_says_what_was_kept_and_how_to_resume(settings, fake_job, capsys) -> None:
    from playbill.cli.common import run_training

    current = make_initial_model(settings.home)
    start = FAKE_SENTIMENT.checkpoints(settings.home).list()[-1]
    control(settings.home, interrupt_at_epoch=4)  # epoch 3 is saved, then Ctrl-C
    assert run_training("sentiment", settings, train_args(), lambda: FAKE_SENTIMENT.train(
        None, settings.home, settings.data_dir, checkpoint=start.path, epochs=3, promote=True)) is None
    line = capsys.readouterr().err.strip()
    assert line.startswith("interrupted: 1 finished epoch(s) kept in run-") and "(the last: epoch 3" in line
    assert line.endswith(f"the current sentiment version ({current}) is unchanged; "
                         "continue with `playbill train sentiment --resume`")
    (run,) = training_runs(settings).values()
    assert (run.status, run.error) == ("failed", "interrupted")


def test_a_candidate_left_unevaluated_by_a_killed_retrain_is_marked_and_refused(settings, fake_job, capsys) -> None:
    from playbill.cli import main

    stray = killed_run_left_behind(settings)  # kill -9 while the retrain evaluated its candidate
    assert main(["models", "list", "critic"]) == 0
    listed = capsys.readouterr().out
    assert f"{stray}" in listed and "UNEVALUATED" in listed.split(stray)[1].splitlines()[0]
    assert main(["models", "list", "sentiment", "--json"]) == 0
    rows = {row["version"]: row for row in map(json.loads, capsys.readouterr().out.splitlines())}
    assert rows[stray]["unevaluated"].startswith("never evaluated") and not any(
        row["unevaluated"] for version, row in rows.items() if version != stray)
    assert main(["models", "promote", "sentiment", stray]) == 2
    assert "unevaluated candidate" in capsys.readouterr().err
    assert main(["models", "promote", "sentiment", stray, "--force"]) == 0
    assert FAKE_SENTIMENT.registry(settings.home).current_version() == stray


def test_a_first_start_training_is_a_training_run(settings, fake_job) -> None:
    from playbill.jobs.warmup import train_first

    done = train_first(settings, names=("critic",))
    (run,) = training_runs(settings).values()
    current = FAKE_SENTIMENT.registry(settings.home).current_version()
    assert isinstance(done["sentiment"], float) and current is not None
    assert (run.status, run.version, run.metrics["by"], run.metrics["profile"]) == (
        "promoted", current, "first start", "quick")


def test_a_warmup_version_carries_its_test_accuracy(settings, fake_job, capsys) -> None:
    from playbill.cli import main
    from playbill.jobs.warmup import enrol, run_stage

    make_initial_model(settings.home, quality=0.5)
    enrol(settings.home, "sentiment")
    control(settings.home, delta=0.1)
    record = run_stage(settings, "critic", epochs=1)
    assert record["promoted"]
    assert main(["models", "list", "sentiment", "--json"]) == 0
    rows = {row.get("version"): row for row in map(json.loads, capsys.readouterr().out.splitlines())}
    assert rows[record["candidate"]]["metrics"]["test_accuracy"] == pytest.approx(record["accuracy"])
    (run,) = training_runs(settings).values()
    assert (run.status, run.metrics["by"]) == ("promoted", "warm-up")
