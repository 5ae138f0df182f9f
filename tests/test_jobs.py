"""The retrain job with a fake trainer in a real spawned process: promotion, rejection, faults."""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from playbill.engine.checkpoints import CheckpointManager
from playbill.engine.registry import ModelRegistry
from playbill.engine.models import spec
from playbill.engine.serving import ModelHolder
from playbill.engine import models
from playbill.jobs import records
from playbill.jobs.common import retrain_lock
from playbill.jobs.promotion import marker_path
from playbill.jobs.retrain import resume_checkpoint, retrain_from_checkpoint
from test_jobs_fakes import FAKE_SENTIMENT, add_feedback, calls, control, make_initial_model, training_runs


@pytest.fixture
def env(settings, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(models.SPECS, "sentiment", FAKE_SENTIMENT)
    first = make_initial_model(settings.home, quality=0.5, epochs=2)
    return SimpleNamespace(
        settings=settings,
        home=settings.home,
        runs=lambda: training_runs(settings),
        first=first,
        registry=ModelRegistry.in_home(settings.home, "sentiment"),
        checkpoints=CheckpointManager.in_home(settings.home, "sentiment"),
    )


def test_better_model_is_promoted_and_hot_swapped_under_load(env) -> None:
    holder = ModelHolder(spec("sentiment"), env.home,
                         load=lambda path, limits: SimpleNamespace(version=path.name, quality=(path / "model.json").read_text()))
    holder.refresh()
    seen, errors, stop = set(), [], threading.Event()

    def serve() -> None:  # the bot's inference threads, predicting all along
        while not stop.is_set():
            try:
                model = holder.model
                assert model.quality  # a fully loaded model, never a half one
                seen.add(model.version)
            except Exception as exc:  # pragma: no cover - the failure we look for
                errors.append(exc)
            time.sleep(0.0005)

    threads = [threading.Thread(target=serve) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        outcome = retrain_from_checkpoint("sentiment", env.settings)
        swapped = holder.refresh()  # what the bot's refresher thread does after the job
        deadline = time.monotonic() + 10
        while outcome.candidate_version not in seen and time.monotonic() < deadline:
            time.sleep(0.01)  # let the serving threads meet the new version
    finally:
        stop.set()
        for t in threads:
            t.join()

    assert outcome.status == "promoted", outcome.message
    assert swapped and holder.version == outcome.candidate_version == env.registry.current_version()
    assert not errors and seen == {env.first, outcome.candidate_version}
    assert outcome.candidate_metric == pytest.approx(0.6) and outcome.current_metric == pytest.approx(0.5)
    (call,) = calls(env.home)
    assert call["pid"] != os.getpid()  # trained in another process
    assert call["checkpoint"].endswith("epoch-0002.keras") and call["epochs"] == 1
    row = env.runs()[outcome.run_id]
    assert row.status == "promoted" and row.promoted is True and row.version == outcome.candidate_version
    assert (row.candidate_metric, row.current_metric) == (pytest.approx(0.6), pytest.approx(0.5))
    assert row.checkpoint_from.endswith("epoch-0002.keras") and row.epochs == 1 and row.finished_at is not None
    # the next run continues the promoted version's line
    assert resume_checkpoint(env.registry, env.checkpoints).epoch == 3


def test_worse_model_is_rejected_with_both_figures(env) -> None:
    control(env.home, delta=-0.2)  # e.g. trained on shuffled labels
    outcome = retrain_from_checkpoint("sentiment", env.settings)
    assert outcome.status == "rejected"
    assert env.registry.current_version() == env.first
    assert [v.version for v in env.registry.versions()] == [env.first]  # the candidate is gone
    row = env.runs()[outcome.run_id]
    assert row.status == "rejected" and row.promoted is False
    assert row.candidate_metric == pytest.approx(0.3) and row.current_metric == pytest.approx(0.5)
    assert "0.3000 vs 0.5000" in outcome.message
    # its checkpoints are not resumed from: the next run starts again from the current model's
    assert resume_checkpoint(env.registry, env.checkpoints).epoch == 2


def test_killed_training_leaves_model_untouched_and_next_run_resumes(env) -> None:
    env.settings.sentiment.retrain_epochs = 3
    control(env.home, delta=0.1, die_at_epoch=4)  # epoch 3 completes, the process dies during epoch 4
    outcome = retrain_from_checkpoint("sentiment", env.settings)
    assert outcome.status == "failed" and "killed (signal 9)" in outcome.message
    assert env.registry.current_version() == env.first
    assert [v.version for v in env.registry.versions()] == [env.first]
    assert env.runs()[outcome.run_id].status == "failed" and "killed" in env.runs()[outcome.run_id].error

    control(env.home, delta=0.1)
    again = retrain_from_checkpoint("sentiment", env.settings)
    assert again.status == "promoted"
    assert calls(env.home)[-1]["start"] == {"quality": pytest.approx(0.6), "epoch": 3}  # the last complete one


def test_corrupt_checkpoint_is_skipped_with_a_log_line(env, caplog: pytest.LogCaptureFixture) -> None:
    latest = env.checkpoints.latest_valid()
    latest.path.write_bytes(latest.path.read_bytes()[:5])  # truncated on disk
    with caplog.at_level(logging.WARNING):
        outcome = retrain_from_checkpoint("sentiment", env.settings)
    assert outcome.status == "promoted"
    assert calls(env.home)[0]["checkpoint"].endswith("epoch-0001.keras")
    assert any("skipping corrupt checkpoint" in r.getMessage() and latest.path.name in r.getMessage()
               for r in caplog.records)


def test_feedback_reaches_training_and_a_slice_is_kept_out(env) -> None:
    votes = [(f"review number {i} was {'great' if i % 2 else 'awful'}", "positive" if i % 2 else "negative",
              "right" if i % 3 else "wrong") for i in range(40)]
    add_feedback(env.settings, votes)
    # "right" keeps the critic's label, "wrong" flips it
    examples = {(text, int((label == "positive") == (verdict == "right"))) for text, label, verdict in votes}
    outcome = retrain_from_checkpoint("sentiment", env.settings)
    assert outcome.status == "promoted"
    trained_on = [(text, label) for text, label, _ in calls(env.home)[0]["extra"]]
    held_out = examples - set(trained_on)
    assert set(trained_on) <= examples
    assert {weight for _, _, weight in calls(env.home)[0]["extra"]} == {1.0}  # one member's vote: one review
    assert 0 < len(held_out) < 20  # about a fifth kept out for checking
    assert outcome.figures["candidate"]["community_n"] == len(held_out)


def test_a_second_run_of_the_same_model_is_refused(env) -> None:
    with retrain_lock(env.settings, "sentiment"):
        outcome = retrain_from_checkpoint("sentiment", env.settings)
    assert outcome.status == "skipped" and "already running" in outcome.message
    assert calls(env.home) == [] and env.runs() == {}


def test_interrupted_run_row_is_closed_on_the_next_run(env) -> None:
    runlog = records.open_run_log(env.settings.database_url)
    stale = runlog.start("sentiment", checkpoint_from=None, epochs=1)
    runlog.close()
    marker = marker_path(env.settings, "sentiment")  # what a retrain killed with its process leaves
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(f'{{"note": {{"run_id": {stale}}}, "pid": 1, "versions_before": ["{env.first}"]}}')
    retrain_from_checkpoint("sentiment", env.settings)
    assert env.runs()[stale].status == "failed" and "interrupted" in env.runs()[stale].error
    assert not marker.exists()


def test_versions_and_checkpoints_are_pruned(env) -> None:
    env.settings.jobs.keep_versions = 2
    for _ in range(3):
        assert retrain_from_checkpoint("sentiment", env.settings).status == "promoted"
    versions = [v.version for v in env.registry.versions()]
    assert len(versions) == 2 and env.registry.current_version() == versions[-1]
    assert len(env.checkpoints.runs()) == 2
    assert resume_checkpoint(env.registry, env.checkpoints).epoch == 5
    assert env.registry.rollback() == versions[0]
    # after a rollback the line of the rolled-back version is not continued
    assert resume_checkpoint(env.registry, env.checkpoints).epoch == 4


def test_no_model_yet_is_skipped_with_a_clear_message(settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(models.SPECS, "sentiment", FAKE_SENTIMENT)
    outcome = retrain_from_checkpoint("sentiment", settings)
    assert outcome.status == "skipped" and "train one with `playbill train sentiment`" in outcome.message
    assert training_runs(settings) == {} and calls(settings.home) == []


def test_no_valid_checkpoint_is_a_failed_run(env) -> None:
    for ckpt in env.checkpoints.list():
        ckpt.path.write_bytes(b"")  # every checkpoint damaged
    outcome = retrain_from_checkpoint("sentiment", env.settings)
    assert outcome.status == "failed" and "no valid checkpoint of the current sentiment model" in outcome.message
    assert env.runs()[outcome.run_id].status == "failed" and calls(env.home) == []
    assert env.registry.current_version() == env.first


def test_a_hung_training_process_is_stopped_at_the_time_limit(env) -> None:
    env.settings.jobs.retrain_timeout_hours = 1.5 / 3600
    control(env.home, block_on=str(env.home / "never"))
    outcome = retrain_from_checkpoint("sentiment", env.settings)
    assert outcome.status == "failed" and "time limit" in outcome.message
    assert env.registry.current_version() == env.first
    assert retrain_lock(env.settings, "sentiment").holder() is None  # the next run is not blocked


def test_registry_remove_refuses_the_current_version(env) -> None:
    from playbill.engine.errors import ModelUnavailable

    with env.registry.new_version({"metrics": {"accuracy": 0.1}}) as staged:
        (staged.path / "model.json").write_text("{}")
    with pytest.raises(ModelUnavailable, match="current version"):
        env.registry.remove(env.first)
    env.registry.remove(staged.version)
    assert [v.version for v in env.registry.versions()] == [env.first]
    assert [p.name for p in env.registry.root.iterdir() if p.name.startswith(".")] == []


def test_a_promotion_by_hand_during_the_run_wins(env, tmp_path: Path) -> None:
    with env.registry.new_version({"metrics": {"accuracy": 0.55}}) as staged:
        (staged.path / "model.json").write_text('{"quality": 0.55, "epoch": 2}')
    gate = tmp_path / "go"
    control(env.home, delta=0.3, block_on=str(gate))
    result = {}
    job = threading.Thread(target=lambda: result.update(outcome=retrain_from_checkpoint("sentiment", env.settings)))
    job.start()
    deadline = time.monotonic() + 30
    while not calls(env.home) and time.monotonic() < deadline:
        time.sleep(0.05)
    env.registry.promote(staged.version, reason="an admin chose it")  # `playbill models promote` meanwhile
    gate.write_text("go")
    job.join()
    outcome = result["outcome"]
    assert outcome.status == "rejected" and "current version changed during the run" in outcome.message
    assert env.registry.current_version() == staged.version


HOST = """
from playbill.engine import models
from playbill.jobs.retrain import retrain_from_checkpoint
from playbill.settings import load_settings
from test_jobs_fakes import FAKE_SENTIMENT

if __name__ == "__main__":
    models.SPECS["sentiment"] = FAKE_SENTIMENT
    retrain_from_checkpoint("sentiment", load_settings())
"""


def running(pid: int) -> bool:
    """Alive and not a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_host_killed_mid_run_leaves_no_orphan_and_no_lock(env, tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    control(env.home, delta=0.1, block_on=str(tmp_path / "never"))
    script = tmp_path / "host.py"
    script.write_text(HOST)
    tests_dir = str(Path(__file__).parent)
    host = subprocess.Popen([sys.executable, str(script)],
                            env={**os.environ, "PYTHONPATH": os.pathsep.join([tests_dir, os.environ.get("PYTHONPATH", "")])})
    try:
        deadline = time.monotonic() + 30
        while not calls(env.home) and time.monotonic() < deadline:
            time.sleep(0.05)
        child = calls(env.home)[0]["pid"]
        assert retrain_lock(env.settings, "sentiment").holder() is not None
        host.send_signal(signal.SIGKILL)  # the bot's process dies (kill -9, power cut of the parent)
        host.wait(timeout=10)
    finally:
        host.kill() if host.poll() is None else None
    deadline = time.monotonic() + 10
    while running(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not running(child)  # the training process followed its parent
    assert retrain_lock(env.settings, "sentiment").holder() is None
    assert env.registry.current_version() == env.first
    (killed,) = env.runs().values()
    assert killed.status == "running"  # nobody was left to close it...
    control(env.home, delta=0.1)
    again = retrain_from_checkpoint("sentiment", env.settings)  # ...so the next run does
    assert again.status == "promoted"
    assert env.runs()[killed.id].status == "failed" and "interrupted" in env.runs()[killed.id].error
