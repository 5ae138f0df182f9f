"""`playbill train --resume` and the warm-up go through the nightly job's gate (jobs.gate.promote_if_better)."""

from __future__ import annotations

from playbill.engine.models import spec
from playbill.engine.scene import SceneConfig
from fakes import TINY_PLAY
from playbill.jobs.gate import promote_if_better


def test_a_continued_run_that_is_worse_is_kept_out_and_says_so(settings, tmp_path) -> None:
    corpus = tmp_path / "play.txt"
    corpus.write_text(TINY_PLAY, encoding="utf-8")
    settings.scene.corpus = corpus
    playwright = spec("scene")
    config = SceneConfig(name="tiny", embedding_dim=8, rnn_units=16, seq_length=20, batch_size=8, epochs=4, seed=7)
    first = playwright.train(config, settings.home, settings.data_dir, data=corpus, progress=False)
    early = playwright.checkpoints(settings.home).list()[0]  # epoch 1 of 4: continuing it one epoch stays behind
    candidate = playwright.train(config, settings.home, settings.data_dir, epochs=1, checkpoint=early.path,
                                 data=corpus, promote=False, progress=False)
    decision = promote_if_better("scene", settings, candidate.version)
    assert (decision.promote, playwright.registry(settings.home).current_version()) == (False, first.version)
    assert decision.reason.startswith(f"kept {first.version} (the better version); {candidate.version} is saved")
