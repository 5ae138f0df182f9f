"""The retrain job with the real engine and history, on tiny data made here (TensorFlow in a spawned process)."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import pytest

from playbill.engine.registry import ModelRegistry
from playbill.engine.models import spec
from playbill.engine.serving import ModelHolder
from playbill.jobs.retrain import retrain_from_checkpoint
from test_jobs_fakes import add_feedback, training_runs
from tiny_imdb import write_imdb

pytestmark = pytest.mark.slow

POSITIVE = "wonderful superb moving brilliant delightful charming gripping".split()
NEGATIVE = "awful boring dreadful clumsy tedious terrible lifeless".split()
FILLER = "the film story actor plot scene director movie cast score".split()


def review(rng: random.Random, positive: bool) -> str:
    words = rng.choices(POSITIVE if positive else NEGATIVE, k=4) + rng.choices(FILLER, k=6)
    rng.shuffle(words)
    return " ".join(words) + "."


def tiny_sentiment_config():
    from playbill.engine.sentiment import SentimentConfig

    return SentimentConfig(vocab_size=64, ngram_buckets=256, window=16, embedding_dim=8, lstm_units=8, dropout=0.0,
                           learning_rate=2e-2, batch_size=16, epochs=1, patience=10, validation_fraction=0.2)


def test_sentiment_retrain_learns_from_feedback_is_hot_swapped_and_bad_feedback_is_rejected(settings, tmp_path) -> None:
    import csv

    from playbill.engine.sentiment import train_sentiment

    settings.data_dir = tmp_path / "data"
    settings.sentiment.retrain_epochs = 3
    write_imdb(settings.data_dir, {"train": 60, "test": 40}, review)
    # the current model learned from shuffled labels: about a coin toss
    shuffled = tmp_path / "shuffled.csv"
    rng = random.Random(3)
    with shuffled.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        for path in sorted((settings.data_dir / "aclImdb" / "train").rglob("*.txt")):
            writer.writerow([path.read_text(), rng.choice([0, 1])])
    first = train_sentiment(tiny_sentiment_config(), settings.home, settings.data_dir, data=shuffled,
                            progress=False).version
    fb_rng = random.Random(11)
    right = [(review(fb_rng, i % 2 == 0), "positive" if i % 2 == 0 else "negative", "right") for i in range(20)]
    add_feedback(settings, right)

    registry = ModelRegistry.in_home(settings.home, "sentiment")
    holder = ModelHolder(spec("sentiment"), settings.home, settings.section("sentiment"))
    holder.refresh()
    seen, errors, stop = set(), [], threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                model = holder.model
                assert len(model.predict(["a gripping, wonderful film", "tedious and awful"])) == 2  # a whole model
                seen.add(model.version)
            except Exception as exc:  # pragma: no cover - the failure we look for
                errors.append(exc)
            time.sleep(0.005)

    threads = [threading.Thread(target=serve) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        outcome = retrain_from_checkpoint("sentiment", settings)
        assert outcome.status == "promoted", outcome.message
        assert holder.refresh()
        deadline = time.monotonic() + 10
        while outcome.candidate_version not in seen and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors and seen == {first, outcome.candidate_version}
    assert outcome.candidate_metric > outcome.current_metric + 0.2  # learned the real labels
    data = outcome.figures["candidate_data"]
    held_out = outcome.figures["candidate"].get("community_n", 0)
    assert data["extra_examples"] == len(right) - held_out > 0  # the feedback reached the training data
    assert 0 < held_out < len(right) and 0.0 <= outcome.figures["candidate"]["community_accuracy"] <= 1.0

    # people who press "wrong" on every correct verdict teach it the opposite: rejected
    wrong = [(review(fb_rng, i % 2 == 0), "positive" if i % 2 == 0 else "negative", "wrong") for i in range(300)]
    add_feedback(settings, wrong)
    bad = retrain_from_checkpoint("sentiment", settings)
    assert bad.status == "rejected", bad.message
    assert registry.current_version() == outcome.candidate_version
    runs = training_runs(settings)
    assert runs[outcome.run_id].status == "promoted" and runs[bad.run_id].status == "rejected"
    assert runs[bad.run_id].candidate_metric < runs[bad.run_id].current_metric


def test_scene_retrain_adds_the_extra_corpus_files(settings, tmp_path) -> None:
    from playbill.engine.scene import SceneConfig, train_scene

    corpus = tmp_path / "plays.txt"
    lines = ["ROMEO:\nBut soft, what light through yonder window breaks?\n",
             "JULIET:\nO Romeo, Romeo, wherefore art thou Romeo?\n",
             "NURSE:\nAnon, anon! Come, let us away; the strangers all are gone.\n"]
    corpus.write_text("\n".join(lines * 14))
    settings.scene.corpus = corpus
    config = SceneConfig(name="tiny", embedding_dim=8, rnn_units=16, seq_length=24, batch_size=16, epochs=1,
                         validation_fraction=0.15)
    first = train_scene(config, settings.home, settings.data_dir, corpus=corpus, progress=False).version
    settings.corpus_dir.mkdir(parents=True)
    (settings.corpus_dir / "more.txt").write_text("ROMEO:\nWhat light is light, if Juliet be not seen?\n" * 5)
    (settings.corpus_dir / "binary.txt").write_bytes(b"\xff\xfe\x00bad")  # skipped with a log line

    outcome = retrain_from_checkpoint("scene", settings)
    assert outcome.metric == "val_loss" and outcome.current_version == first
    gate = "promoted" if outcome.candidate_metric <= outcome.current_metric else "rejected"  # lower loss is better
    assert outcome.status == gate, outcome.message
    assert outcome.figures["current"]["val_loss"] == pytest.approx(outcome.current_metric)
    assert "+" in outcome.figures["candidate_data"]["corpus"]["fingerprint"]  # the extra text was trained on
    assert "1 extra text files" in outcome.figures["extra"]
    registry = ModelRegistry.in_home(settings.home, "scene")
    expected = outcome.candidate_version if outcome.status == "promoted" else first
    assert registry.current_version() == expected
