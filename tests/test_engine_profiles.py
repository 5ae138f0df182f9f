"""Profiles, the n-gram critic, votes, gating splits, best-epoch resume and staged training,
through the spec (tiny data: synthetic reviews, a repeated scene)."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from playbill.engine.checkpoints import CheckpointManager
from playbill.engine.errors import InvalidInput
from playbill.engine.models import spec
from playbill.engine.sentiment import PROFILES as SENTIMENT_PROFILES
from playbill.engine.sentiment import VALIDATION_SEED, SentimentConfig, validation_reviews
from playbill.engine.text import char_ngrams, hashed_ngrams, tokenize_punct

ROOT = Path(__file__).resolve().parents[1]
GOOD = ["wonderful", "superb", "delightful", "masterpiece", "loved", "brilliant"]
BAD = ["awful", "boring", "dreadful", "waste", "hated", "terrible"]
FILLER = ["the", "movie", "plot", "actor", "scene", "and", "a", "director", "film", "was", "story", "of"]


def reviews(n: int, seed: int = 0) -> list[tuple[str, int]]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        label = i % 2
        words = list(rng.choice(FILLER, size=int(rng.integers(20, 60))))
        for _ in range(int(rng.integers(2, 4))):
            words.insert(int(rng.integers(0, len(words) + 1)), str(rng.choice(GOOD if label else BAD)))
        out.append((" ".join(words) + ".", label))
    return out


@pytest.fixture(scope="module")
def csv_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("critic") / "reviews.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        for text, label in reviews(300):
            writer.writerow([text, label])
    return path


# ---------------------------------------------------------------- features and profiles


def test_trigrams_extend_bigrams_and_punctuation_is_kept() -> None:
    tokens = tokenize_punct("Not bad, <br />really (not) bad!")
    assert tokens == ["not", "bad", ",", "really", "(", "not", ")", "bad", "!"]
    bigrams, trigrams = hashed_ngrams(tokens, 2**20), hashed_ngrams(tokens, 2**20, n=3)
    assert set(bigrams) < set(trigrams)


def test_character_ngrams_are_stable_and_in_range() -> None:
    ids = char_ngrams(["abc", "defg"], 1000)
    assert np.array_equal(ids, char_ngrams(["abc", "defg"], 1000))
    assert ids.min() >= 1 and ids.max() <= 1000 and np.all(np.diff(ids) > 0)


def test_profiles_are_named_in_the_spec_and_chosen_by_config_from() -> None:
    critic, playwright = spec("sentiment"), spec("scene")
    assert (critic.first_profile, playwright.first_profile) == ("quick", "quick")
    assert {"quick", "default"} <= set(critic.profiles) and {"quick", "default"} <= set(playwright.profiles)
    assert critic.config_from({"profile": "quick"}) == SENTIMENT_PROFILES["quick"]
    assert playwright.config_from({"profile": "default", "epochs": 40}, profile="quick").epochs == 6
    with pytest.raises(InvalidInput, match="unknown sentiment profile"):
        critic.config_from({}, profile="huge")


def test_the_ngram_critic_trains_without_tensorflow(csv_path: Path, tmp_path: Path) -> None:
    code = ("import sys; from pathlib import Path; from engine.models import spec; s = spec('sentiment'); "
            f"s.train(s.config_from({{}}, profile='quick'), Path({str(tmp_path)!r}), Path({str(tmp_path)!r}), "
            f"data=Path({str(csv_path)!r}), progress=False); print(sorted(m for m in sys.modules if m.startswith(('tensorflow', 'keras'))))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert run.stdout.strip().splitlines()[-1] == "[]"


@pytest.fixture(scope="module")
def default_critic(csv_path: Path, tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    critic = spec("sentiment")
    result = critic.train(critic.config_from({}), home, home, data=csv_path, progress=False)
    return home, result


def test_the_default_profile_blends_its_ngram_models(default_critic) -> None:
    home, result = default_critic
    model = spec("sentiment").load(spec("sentiment").registry(home).get(result.version).path)
    assert model.config.views == SENTIMENT_PROFILES["default"].views
    assert [v.label for v in model.predict(["a superb delightful film", "a dreadful boring waste"])] == [
        "positive", "negative"]


def test_validation_split_is_the_one_training_held_out(default_critic, csv_path: Path) -> None:
    home, result = default_critic
    held_out = validation_reviews(home, csv_path, SentimentConfig())
    assert len(held_out) == 30  # 10% of 300, the same rows for every version (seed VALIDATION_SEED)
    figures = spec("sentiment").evaluate(home, home, data=csv_path, split="validation")
    assert (figures["n"], figures["split"]) == (30, "validation")
    assert figures["accuracy"] == pytest.approx(result.metrics["val_accuracy"])
    assert VALIDATION_SEED == 1337


def test_a_csv_has_no_test_split(default_critic, csv_path: Path) -> None:
    home, _ = default_critic
    with pytest.raises(InvalidInput, match="no test split"):
        spec("sentiment").evaluate(home, home, data=csv_path, split="test")


# ---------------------------------------------------------------- votes


VOTES = [("the movie was a waste of time, honestly", 1), ("loved it", 0), ("a superb plot", 0)]


def test_votes_teach_the_voted_reviews_and_similar_ones(csv_path: Path, tmp_path: Path) -> None:
    critic = spec("sentiment")
    config = critic.config_from({}, profile="quick")
    critic.train(config, tmp_path, tmp_path, data=csv_path, progress=False)
    before = critic.load(critic.registry(tmp_path).current().path)
    assert [int(v.label == "positive") for v in before.predict([t for t, _ in VOTES])] == [0, 1, 1]
    critic.train(config, tmp_path, tmp_path, data=csv_path, progress=False, extra=[(t, y, 1.0) for t, y in VOTES])
    after = critic.load(critic.registry(tmp_path).current().path)
    assert [int(v.label == "positive") for v in after.predict([t for t, _ in VOTES])] == [1, 0, 0]
    # a review it never saw, close to a voted one, moves the same way (the community correction)
    similar = "the movie was a waste of time honestly , really"
    assert after.predict_one(similar).positive_probability > before.predict_one(similar).positive_probability


def test_light_votes_are_not_remembered_and_plain_pairs_still_work(csv_path: Path, tmp_path: Path) -> None:
    critic = spec("sentiment")
    config = critic.config_from({}, profile="quick")
    result = critic.train(config, tmp_path, tmp_path, data=csv_path, progress=False,
                          extra=[("loved it", 0), ("a superb plot", 0, 0.2), ("bad row", 7), ("", 1)])
    version = critic.registry(tmp_path).get(result.version)
    assert (version.metadata["extra_examples"], version.metadata["remembered_reviews"]) == (2, 1)


def test_one_members_capped_votes_do_not_move_validation(csv_path: Path, tmp_path: Path) -> None:
    critic = spec("sentiment")
    config = critic.config_from({}, profile="quick")
    clean = critic.train(config, tmp_path / "a", tmp_path, data=csv_path, progress=False)
    held_out = validation_reviews(tmp_path, csv_path, config)
    troll = [(t, 1 - y, 3.0 / len(held_out)) for t, y in zip(held_out.texts, held_out.labels)]  # cap: weight 3 in all
    trolled = critic.train(config, tmp_path / "b", tmp_path, data=csv_path, progress=False, extra=troll)
    assert trolled.metrics["val_accuracy"] == clean.metrics["val_accuracy"]


def test_the_nightly_path_continues_an_ngram_checkpoint_with_votes(csv_path: Path, tmp_path: Path) -> None:
    critic = spec("sentiment")
    critic.train(critic.config_from({}, profile="quick"), tmp_path, tmp_path, data=csv_path, progress=False)
    start = critic.checkpoints(tmp_path).resume_point(critic.registry(tmp_path).lineage(),
                                                      critic.registry(tmp_path).current_version())
    # the job passes the default config and an epoch count: the checkpoint's own profile wins
    again = critic.train(critic.config_from({}), tmp_path, tmp_path, checkpoint=start.path, epochs=1, data=csv_path,
                         extra=[(t, y, 1.0) for t, y in VOTES], promote=False, progress=False)
    assert (again.started_from, again.extra["profile"]) == (start.label(), "quick")


# ---------------------------------------------------------------- resume from the best epoch


class _Saved:
    def save(self, path) -> None:
        Path(path).write_bytes(b"weights")


def test_resume_points_at_the_best_epoch_of_the_newest_run(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path, "scene")
    old = manager.new_run()
    manager.save(_Saved(), old, 1, {"val_loss": 0.5})
    run = manager.new_run()
    for epoch, loss in ((1, 2.0), (2, 1.5), (3, 1.7)):
        manager.save(_Saved(), run, epoch, {"val_loss": loss})
    assert (manager.best_valid().run, manager.best_valid().epoch) == (run, 2)
    assert manager.resume_point({}, None).epoch == 2
    assert manager.resume_point({run: "v0002"}, "v0001").run == old  # another version's run is not the line


# ---------------------------------------------------------------- staged training (the warm-up)


@pytest.fixture(scope="module")
def staged(tmp_path_factory):
    base = tmp_path_factory.mktemp("scene")
    corpus = base / "play.txt"
    corpus.write_text("ROMEO:\nBut soft, what light through yonder window breaks?\n\n" * 40, "utf-8")
    playwright = spec("scene")
    config = playwright.config_from({}, profile="quick").with_overrides(embedding_dim=8, rnn_units=8, batch_size=8,
                                                                         epochs=3)
    first = playwright.continue_training(config, base, base, data=corpus, epochs=2)
    progress = playwright.training_progress(base, config)
    second = playwright.continue_training(config, base, base, data=corpus)
    return base, config, first, progress, second


def test_a_stage_publishes_a_candidate_and_says_it_is_not_done(staged) -> None:
    base, _, first, _, _ = staged
    assert (first.last_epoch, first.extra["done"], first.promoted) == (2, False, False)


def test_training_progress_reports_the_profiles_epochs(staged) -> None:
    _, _, _, progress, _ = staged
    assert (progress["profile"], progress["epochs_done"], progress["epochs_total"], progress["done"]) == (
        "quick", 2, 3, False)


def test_the_next_stage_continues_the_same_run_to_the_end(staged) -> None:
    _, _, first, _, second = staged
    assert second.started_from.startswith(first.extra["run"])
    assert (second.last_epoch, second.extra["done"]) == (3, True)


def test_a_stage_of_another_profile_starts_afresh(staged) -> None:
    base, config, _, _, _ = staged
    other = config.with_overrides(name="other", epochs=1)
    assert spec("scene").training_progress(base, other) is None


def test_a_stage_publishes_its_best_epoch(staged) -> None:
    _, _, first, _, _ = staged
    best = min(h["val_loss"] for h in first.extra["history"])
    assert first.metrics["val_loss"] == pytest.approx(best, abs=1e-4)


def test_train_sentiment_profile_picks_the_critic_profile(csv_path: Path, tmp_path: Path) -> None:
    """`playbill train sentiment --profile quick` trains the first-start critic (one n-gram model)."""
    import json
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PLAYBILL_HOME": str(tmp_path / "home"), "PYTHONPATH": str(root), "TF_CPP_MIN_LOG_LEVEL": "3"}
    run = subprocess.run([sys.executable, "-m", "playbill.cli", "train", "sentiment", "--profile", "quick",
                          "--data", str(csv_path), "--json"], capture_output=True, env=env, timeout=300, cwd=tmp_path)
    assert run.returncode == 0, run.stderr.decode()[-2000:]
    extra = json.loads(run.stdout)["extra"]
    assert (extra["profile"], sorted(extra["per_model"])) == ("quick", sorted(SENTIMENT_PROFILES["quick"].views))
