"""The playwright learns too: text dropped into corpus/*.txt lowers the loss on a held-out piece of it."""

from __future__ import annotations

from fakes import TINY_PLAY
from playbill.engine.models import spec
from playbill.engine.scene import SceneConfig
from playbill.jobs.retrain import retrain_from_checkpoint

NEW_SCENE = ("ROMEO:\nThe moon is the sun of night, and Juliet its light.\n\n"
             "JULIET:\nThen let the night be long, and the light be thine.\n\n") * 12


def test_an_extra_corpus_file_is_learnt_and_measured_on_its_held_out_end(settings, tmp_path) -> None:
    corpus = tmp_path / "play.txt"
    corpus.write_text(TINY_PLAY, encoding="utf-8")
    settings.scene.corpus = corpus
    settings.scene.retrain_epochs = 3
    config = SceneConfig(name="tiny", embedding_dim=8, rnn_units=16, seq_length=20, batch_size=8, epochs=2, seed=7)
    spec("scene").train(config, settings.home, settings.data_dir, data=corpus, progress=False)
    settings.corpus_dir.mkdir(parents=True)
    (settings.corpus_dir / "new-scene.txt").write_text(NEW_SCENE, encoding="utf-8")
    outcome = retrain_from_checkpoint("scene", settings)
    learnt = outcome.figures["candidate"]["community_val_loss"] < outcome.figures["current"]["community_val_loss"]
    assert (learnt, outcome.figures["gate"]["checks"][0]["figure"].startswith("community_val_loss")) == (True, True)
