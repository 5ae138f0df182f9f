"""`playbill train --resume`/`--checkpoint` go through the one promotion procedure (jobs.promotion),
as the nightly retrain and the warm-up do: the lock, the gate, the re-check, one disposal policy."""

from __future__ import annotations

import argparse

import pytest

from fakes import TINY_PLAY
from playbill.cli.common import run_training
from playbill.engine.models import spec
from playbill.engine.scene import SceneConfig
from playbill.jobs.common import JobBusy, retrain_lock
from test_jobs_fakes import control, fake_critic, make_initial_model  # noqa: F401 - fake_critic is a fixture


def train_gated(name, settings, train):
    """`playbill train NAME --resume`, with `train` as the training."""
    return run_training(name, settings, argparse.Namespace(resume=True, checkpoint=None, no_promote=False, epochs=1),
                        train)


def test_a_continued_run_that_is_worse_is_rejected_and_removed(settings, tmp_path) -> None:
    corpus = tmp_path / "play.txt"
    corpus.write_text(TINY_PLAY, encoding="utf-8")
    settings.scene.corpus = corpus
    playwright = spec("scene")
    config = SceneConfig(name="tiny", embedding_dim=8, rnn_units=16, seq_length=20, batch_size=8, epochs=4, seed=7)
    first = playwright.train(config, settings.home, settings.data_dir, data=corpus, progress=False)
    early = playwright.checkpoints(settings.home).list()[0]  # epoch 1 of 4: continuing it one epoch stays behind
    result, line = train_gated("playwright", settings, lambda: playwright.train(
        config, settings.home, settings.data_dir, epochs=1, checkpoint=early.path, data=corpus, promote=False,
        progress=False))
    registry, checkpoints = playwright.registry(settings.home), playwright.checkpoints(settings.home)
    assert (result.promoted, registry.current_version()) == (False, first.version)
    assert result.extra["gate"]["status"] == "rejected" and line.startswith(f"kept {first.version}, rejected")
    assert result.version not in [v.version for v in registry.versions()]  # the one policy: removed
    (run,) = [r for r in checkpoints.runs() if checkpoints.rejected(r)]
    assert checkpoints.resume_point(registry.lineage(), first.version).run != run  # never resumed by a retrain


def test_a_continued_run_waits_for_no_one_while_a_retrain_holds_the_model(settings, fake_critic) -> None:
    make_initial_model(settings.home)
    trained = []
    with retrain_lock(settings, "sentiment"), pytest.raises(JobBusy, match="already running"):
        train_gated("sentiment", settings, lambda: trained.append(1))
    assert trained == []  # refused before any training


def test_a_continued_run_is_not_promoted_over_a_version_promoted_meanwhile(settings, fake_critic) -> None:
    first = make_initial_model(settings.home, quality=0.5)
    registry = fake_critic.registry(settings.home)
    start = fake_critic.checkpoints(settings.home).list()[-1]
    control(settings.home, delta=0.2)

    def train():
        other = fake_critic.train(None, settings.home, settings.data_dir, checkpoint=start.path, epochs=1, promote=False)
        registry.promote(other.version, reason="by hand, while the run trained")
        return fake_critic.train(None, settings.home, settings.data_dir, checkpoint=start.path, epochs=2, promote=False)

    result, line = train_gated("sentiment", settings, train)
    assert not result.promoted and "the current version changed during the run" in line
    assert registry.current_version() not in (first, result.version)
