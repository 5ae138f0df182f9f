"""The linear critic (issue 20): scikit-learn views trained on tiny IMDB fixtures, served in
batches, calibrated and "mixed" near 0.5; versions of the earlier hand-hashed layout still serve."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from playbill.bot.cogs import critic
from playbill.engine.models import spec
from playbill.engine.sentiment import CONFIG_FILE, WEIGHTS_FILE, SentimentConfig, SentimentModel
from playbill.engine.sentiment.linear import VIEWS, Lexicon, counts, features, in_scope, read, sentences
from playbill.engine.lstm import WindowLSTM
from playbill.engine.sentiment.sequence import capped, review_windows
from playbill.engine.sentiment import serving
from playbill.engine.sentiment.serving import ngram_arrays
from playbill.engine.text import OOV
from tiny_imdb import write_imdb

ROOT = Path(__file__).resolve().parents[1]
GOOD = ["wonderful", "superb", "delightful", "masterpiece", "loved", "brilliant"]
BAD = ["awful", "boring", "dreadful", "waste", "hated", "terrible"]
FILLER = ["the", "movie", "plot", "actor", "scene", "and", "a", "director", "film", "was", "story", "of"]


def review(rng, positive: bool) -> str:
    words = [rng.choice(FILLER) for _ in range(rng.randint(20, 50))]
    for _ in range(rng.randint(2, 4)):
        words.insert(rng.randint(0, len(words)), rng.choice(GOOD if positive else BAD))
    cut = len(words) // 2
    return " ".join(words[:cut]) + ". " + " ".join(words[cut:]) + ".<br /><br />"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The default profile trained on a tiny aclImdb folder through the real loader (test set too)."""
    data_dir = tmp_path_factory.mktemp("data")
    write_imdb(data_dir, {"train": 150, "test": 40}, review)
    home = tmp_path_factory.mktemp("home")
    critic_spec = spec("sentiment")
    result = critic_spec.train(critic_spec.config_from({}), home, data_dir, progress=False)
    return home, data_dir, result


def test_features_are_normalised_per_review_and_read_markup_as_text() -> None:
    view = VIEWS["words13_neg"]
    texts = ["A superb film!", "a SUPERB film!<br />", "not good at all"]
    lexicon = Lexicon.build(texts)
    x = counts(texts, view, lexicon)
    # the same n-grams as scikit-learn's HashingVectorizer finds (in other columns)
    assert np.diff(x.indptr).tolist() == np.diff(counts(texts, view, None).indptr).tolist()
    assert counts(["an unknown word"], view, lexicon).nnz == 0  # never seen in training: no evidence
    scale = np.ones(x.shape[1], np.float32)
    f = features(x, scale)
    np.testing.assert_allclose(np.asarray(f.multiply(f).sum(axis=1)).ravel(), 1.0, rtol=1e-5)
    assert (f[0] != f[1]).nnz == 0  # case and a line break are not evidence
    assert sentences("One fine film. Two bad acts!<br />Three words here") == [
        "One fine film.", "Two bad acts!", "Three words here"]


def test_negation_scope_ends_at_punctuation_and_after_four_words() -> None:
    texts = ["I did not like the plot at all, but the cast was fine.", "Never boring! Good", "It wasn't bad"]
    lexicon = Lexicon.build(texts)
    ids, row = read(texts, lexicon)
    marked = [lexicon.vocab.tokens[i] for i in ids[in_scope(ids, row, lexicon)]]
    assert marked == ["like", "the", "plot", "at", "boring", "bad"]
    negated = counts(["did not like"], VIEWS["words12_neg"], lexicon)
    plain = counts(["did not like"], VIEWS["words12"], lexicon)
    assert negated.nnz == plain.nnz == 5 and (negated != plain).nnz > 0  # "like" read as its negated twin


def test_the_default_profile_trains_blends_and_serves_batches(trained) -> None:
    home, _, result = trained
    critic_spec = spec("sentiment")
    version = critic_spec.registry(home).get(result.version)
    model = critic_spec.load(version.path)
    assert model.config.views == critic_spec.config_from({}).views and len(model.config.views) >= 1
    assert result.metrics["val_accuracy"] >= 0.9 and result.metrics["test_accuracy"] >= 0.9
    # the views and the seed's LSTM (word order) are the blend's members, each measured on validation
    assert model.config.sequence_units > 0
    assert set(version.metadata["per_model"]) == {*model.config.linear_views, "lstm"}
    assert len(version.metadata["blend"]) == len(model.config.views) + 2  # a weight per member, the intercept
    assert len(version.metadata["blend_long"]) == len(model.config.long_views) + 2
    texts = ["a superb delightful film", "a dreadful boring waste", "the plot", "loved it"] * 3
    assert model.view_logits(texts).shape == (len(texts), len(model.config.linear_views) + 1)
    batch = model.predict(texts)
    one_by_one = [model.predict_one(t) for t in texts]
    assert [v.label for v in batch] == [v.label for v in one_by_one]
    np.testing.assert_allclose([v.positive_probability for v in batch],
                               [v.positive_probability for v in one_by_one], rtol=1e-5)
    assert [v.label for v in batch[:2]] == ["positive", "negative"]
    # a large batch is judged in two halves on two threads: the same answers as in small batches
    many = [f"{text} {n}" for n in range(30) for text in texts]
    assert len(many) >= 2 * serving.HALF_BATCH
    np.testing.assert_allclose(model.logits(many), np.concatenate([model.logits(many[i:i + 100])
                                                                   for i in range(0, len(many), 100)]), rtol=1e-5)
    # stored as plain arrays: no pickle in the version folder
    with np.load(version.path / WEIGHTS_FILE, allow_pickle=False) as arrays:
        assert "blend" in arrays.files


def test_a_long_review_is_judged_by_the_long_blend_and_a_one_liner_by_the_other(trained, tmp_path) -> None:
    home, _, result = trained
    critic_spec = spec("sentiment")
    version = critic_spec.registry(home).get(result.version)
    model = critic_spec.load(version.path)
    config = model.config
    assert config.long_blend and set(config.long_views) - set(config.views)
    one_liner = "a superb delightful film, loved it"
    long_review = " ".join(["a dreadful boring waste of a film, but the cast tries."] * 8)
    columns, tokens = model.members([one_liner, long_review])
    assert tokens[0] <= config.long_review_tokens < tokens[1]
    weights = {key: np.asarray(version.metadata[key]) for key in ("blend", "blend_long")}
    by_hand = [columns[0, config.blend_members("blend")] @ weights["blend"][:-1] + weights["blend"][-1],
               columns[1, config.blend_members("blend_long")] @ weights["blend_long"][:-1] + weights["blend_long"][-1]]
    np.testing.assert_allclose(model.logits([one_liner, long_review]), by_hand, rtol=1e-5)
    # in a batch of its own kind, a review's answer does not change (members no review reads are skipped)
    np.testing.assert_allclose(model.logits([long_review]), by_hand[1:], rtol=1e-5)
    np.testing.assert_allclose(model.logits([one_liner]), by_hand[:1], rtol=1e-5)
    # a version saved before the long blend (its config has no such fields) judges both with the one blend
    older = tmp_path / version.path.name
    shutil.copytree(version.path, older)
    saved = json.loads((older / CONFIG_FILE).read_text("utf-8"))
    del saved["long_views"], saved["long_review_tokens"]
    (older / CONFIG_FILE).write_text(json.dumps(saved), "utf-8")
    single = SentimentModel.load(older)
    np.testing.assert_allclose(single.logits([long_review]),
                               [columns[1, config.blend_members("blend")] @ weights["blend"][:-1] + weights["blend"][-1]],
                               rtol=1e-5)


def test_the_lstm_member_reads_a_short_review_whole_and_a_long_one_by_its_first_and_last_window() -> None:
    ids = np.array([5, 6, 7, 8, 9, 10, 11, 3, 4], np.int64)
    row = np.array([0, 0, 0, 0, 0, 0, 0, 2, 2])  # review 1 has no tokens
    windows, owner = review_windows(ids, row, 3, window=4)
    assert owner.tolist() == [0, 1, 2, 0]
    assert windows.tolist() == [[5, 6, 7, 8], [0, 0, 0, OOV], [0, 0, 3, 4], [8, 9, 10, 11]]
    assert capped(np.array([2, 9_999, 10_000]), 10_000).tolist() == [2, 9_999, OOV]


def test_the_numpy_lstm_serves_what_keras_computes() -> None:
    """The served member (and the wide-and-deep branch) step windows in numpy: the same logits as
    the Keras model they were trained as, padding and windows of every length included."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(3)
    tokens = keras.Input((None,), dtype="int32")
    h = layers.Embedding(50, 8, mask_zero=True, name="embedding")(tokens)
    h = layers.LSTM(6, name="lstm")(h)
    out = layers.Dense(1, name="logit")(h)
    model = keras.Model(tokens, out)
    rng = np.random.default_rng(0)
    for layer in model.layers[1:]:  # weights large enough that a wrong step shows
        layer.set_weights([rng.normal(0, 0.5, w.shape).astype(np.float32) for w in layer.get_weights()])
    windows = np.zeros((5, 7), np.int32)
    for r, length in enumerate([7, 1, 4, 3, 6]):
        windows[r, 7 - length:] = np.random.default_rng(r).integers(1, 50, length)
    kernel, recurrent, bias = model.get_layer("lstm").get_weights()
    dense_w, dense_b = model.get_layer("logit").get_weights()
    lstm = WindowLSTM(model.get_layer("embedding").get_weights()[0], kernel, recurrent, bias, dense_w, dense_b)
    np.testing.assert_allclose(lstm.logits(windows), model.predict(windows, verbose=0).ravel(), rtol=1e-4, atol=1e-5)
    assert np.abs(lstm.logits(windows)).max() > 0.1
    np.testing.assert_allclose(lstm.logits(windows, chunk=2), lstm.logits(windows), rtol=1e-5, atol=1e-6)


def test_a_review_it_cannot_call_is_mixed_and_leans(trained) -> None:
    home, _, result = trained
    model = spec("sentiment").load(spec("sentiment").registry(home).get(result.version).path)
    confident, unsure = model.predict(["a superb delightful brilliant masterpiece", "xyzzy plugh"])
    assert not confident.mixed and confident.as_dict()["mixed"] is False
    assert abs(unsure.positive_probability - 0.5) < model.config.mixed_band and unsure.mixed
    shown = critic.Verdict("x", "positive", 0.56, "v0001", None, mixed=True)
    embed = critic.verdict_response(shown).embed
    assert embed.title == "The critic says: mixed (leans positive, 56%)"
    assert critic.Verdict("x", "negative", 0.3, "v0001", None, mixed=True).leaning() == "leans negative, 70%"
    assert critic.verdict_response(critic.Verdict("x", "negative", 0.1, "v1", None)).embed.title == (
        "The critic says: negative")


def test_predict_json_says_mixed(trained) -> None:
    home, _, _ = trained
    env = {**os.environ, "PLAYBILL_HOME": str(home), "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    run = subprocess.run([sys.executable, "-m", "playbill.cli", "predict", "--json", "xyzzy plugh"], capture_output=True,
                         env=env, timeout=120, cwd=home.parent, check=True)
    answer = json.loads(run.stdout.decode().strip().splitlines()[-1])
    assert answer["mixed"] is True and answer["label"] in ("positive", "negative")


def test_versions_of_the_hand_hashed_layout_still_serve(tmp_path: Path) -> None:
    """A version saved before issue 20 (config `ngrams`, tables of hashed ids) loads and judges."""
    from playbill.engine.sentiment.ngrams import review_ids

    table = np.zeros(2**21 + 1, np.float32)
    [good] = review_ids(["superb"], ("words_p",))["words_p"]
    [bad] = review_ids(["awful"], ("words_p",))["words_p"]
    table[good], table[bad] = 3.0, -3.0
    weights = {**ngram_arrays("words_p", table, 0.0), "blend": np.array([1.0, 0.0], np.float32)}
    folder = tmp_path / "v0001"
    folder.mkdir()
    np.savez(folder / WEIGHTS_FILE, **weights)
    config = {"name": "quick", "ngrams": ["words_p"], "community_l2": 0.03, "memory_min_weight": 1.0}
    (folder / CONFIG_FILE).write_text(json.dumps(config))
    model = SentimentModel.load(folder)
    assert model.config.ngrams == ("words_p",) and not model.config.views
    verdicts = model.predict(["superb", "awful", "superb superb"])
    assert [v.label for v in verdicts] == ["positive", "negative", "positive"]
    assert verdicts[0].positive_probability == pytest.approx(1 / (1 + np.exp(-3.0)), rel=1e-5)


def test_a_checkpoint_of_the_hand_hashed_layout_trains_todays_profile(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    write_imdb(data_dir, {"train": 60, "test": 5}, review)
    critic_spec = spec("sentiment")
    legacy = SentimentConfig(name="quick", ngrams=("words_p",))
    result = critic_spec.train(legacy, tmp_path, data_dir, progress=False)
    assert result.extra["profile"] == "quick" and set(result.extra["per_model"]) == set(
        critic_spec.config_from({}, profile="quick").views)
    # the quick profile has no LSTM member: its versions serve on the views alone
    quick = critic_spec.load(critic_spec.registry(tmp_path).get(result.version).path)
    assert quick.config.sequence_units == 0 and quick.view_logits(["fine"]).shape == (1, len(quick.config.views))


def test_bench_sentiment_measures_the_critic_as_served_with_and_without_its_lstm(trained, tmp_path: Path) -> None:
    """`playbill bench sentiment` in small: quality on the test and short reviews, the blend
    without the LSTM member beside it, and the served speed (timed in a fresh process)."""
    from playbill.engine.sentiment.bench import run_bench

    _, data_dir, _ = trained
    (data_dir / "sst2_dev.tsv").write_text("positive\tA superb, delightful film.\nnegative\tA dreadful waste.\n"
                                           "positive\tLoved it, brilliant.\nnegative\tBoring and awful.\n", "utf-8")
    try:
        report = run_bench(spec("sentiment").config_from({}), tmp_path, data_dir, skip_tutorial=True, progress=False)
    finally:
        (data_dir / "sst2_dev.tsv").unlink()
    default = report["default"]
    assert default["accuracy"] >= 0.9 and default["short_accuracy"] >= 0.75
    assert 0.0 <= default["short_accuracy_without_lstm"] <= 1.0 and default["val_accuracy_without_lstm"] >= 0.5
    assert default["throughput"] > 0 and 0 < default["latency_ms"] <= default["latency_p99_ms"]
    assert "without the LSTM: short" in report["table"] and report["tfidf"]["accuracy"] >= 0.5
