"""The critic: tokenization, long reviews, numpy serving == Keras, checkpoints, versions, CLI."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from playbill.engine.checkpoints import CheckpointManager
from playbill.engine.errors import CheckpointError, InvalidInput, ModelUnavailable
from playbill.engine.imdb import load_csv, load_imdb
from playbill.engine.registry import ModelRegistry
from playbill.engine.sentiment import (
    CONFIG_FILE,
    MAX_CHARS,
    MODEL_FILE,
    VOCAB_FILE,
    WEIGHTS_FILE,
    ReviewRequest,
    SentimentConfig,
    SentimentLimits,
    SentimentModel,
    encode,
    evaluate_sentiment,
    features,
    fit_blend,
    pad_windows,
    split_windows,
    train_sentiment,
)
from playbill.engine.text import OOV, Vocabulary, hashed_ngrams, ngram_ids, standardize, tokenize

ROOT = Path(__file__).resolve().parents[1]
GOOD = ["wonderful", "superb", "delightful", "masterpiece", "loved", "brilliant"]
BAD = ["awful", "boring", "dreadful", "waste", "hated", "terrible"]
FILLER = ["the", "movie", "plot", "actor", "scene", "and", "a", "director", "film", "was", "story", "of"]


def synthetic_reviews(n: int, seed: int = 0) -> list[tuple[str, int]]:
    """Neutral filler with two or three sentiment words at random places; label = their polarity."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        label = i % 2
        words = list(rng.choice(FILLER, size=int(rng.integers(6, 30))))
        for _ in range(int(rng.integers(2, 4))):
            words.insert(int(rng.integers(0, len(words) + 1)), str(rng.choice(GOOD if label else BAD)))
        out.append((" ".join(words) + (" !" if rng.random() < 0.3 else "."), label))
    return out


def write_csv(path: Path, rows, labels=("negative", "positive")) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        for text, label in rows:
            writer.writerow([text, labels[label]])
    return path


def tiny_config(**overrides):

    values = dict(vocab_size=64, ngram_buckets=512, window=8, embedding_dim=8, lstm_units=8,
                  dropout=0.0, learning_rate=0.02, batch_size=32, epochs=3, patience=5, validation_fraction=0.2)
    values.update(overrides)
    return SentimentConfig(**values)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny model trained on a synthetic CSV, shared by the read-only tests."""

    base = tmp_path_factory.mktemp("critic")
    data = write_csv(base / "reviews.csv", synthetic_reviews(400))
    result = train_sentiment(tiny_config(), base / "home", base / "no-data", data=data, progress=False)
    return base / "home", result, data


# ---------------------------------------------------------------- tokenization


def test_standardize_handles_html_punctuation_and_case() -> None:
    assert standardize("Great movie!!<br /><br />I LOVED it... 7/10.") == "great movie ! ! i loved it 7 10"
    assert standardize("Don&#39;t watch &quot;this&quot; 'film', it's BAD?") == "don't watch this film it's bad ?"
    assert standardize("line<br>break<BR/>and <i>tags</i>") == "line break and tags"
    assert standardize("   ") == ""
    assert standardize("naïve café — 😀") == "naïve café"


def test_vocabulary_round_trip(tmp_path: Path) -> None:
    texts = ["the movie was good !", "the movie was bad ?", "good good acting"]
    vocab = Vocabulary.build((tokenize(t) for t in texts), max_size=100)
    assert vocab.tokens[:2] == ["", "[UNK]"] and vocab.tokens[2] == "good"  # most frequent first
    tokens = tokenize("The movie was GOOD!")
    ids = vocab.encode(tokens)
    assert vocab.decode(ids) == tokens  # every known word comes back
    assert vocab.encode(["unseen"]).tolist() == [OOV]
    vocab.save(tmp_path / "vocab.json")
    again = Vocabulary.load(tmp_path / "vocab.json")
    assert again.tokens == vocab.tokens and again.encode(tokens).tolist() == ids.tolist()


def test_hashed_ngrams_are_stable_unique_and_in_range() -> None:
    tokens = ["a", "fine", "film", "a", "fine", "film", "\U0001f3ac"]
    grams = hashed_ngrams(tokens, buckets=1000)
    assert grams.tolist() == sorted(set(grams.tolist()))  # each n-gram once: presence, not counts
    assert grams.min() >= 1 and grams.max() <= 1000  # 0 stays the padding id
    assert len(grams) == 4 + 4  # unigrams a, fine, film, emoji; bigrams a-fine, fine-film, film-a, film-emoji
    assert grams.tolist() == hashed_ngrams(list(tokens), 1000).tolist()
    # a fixed formula, not Python's salted hash(): the same ids in every process
    code = "from engine.text import hashed_ngrams; print(hashed_ngrams(['a', 'fine', 'film'], 1000).tolist())"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                           env={**os.environ, "PYTHONHASHSEED": "123"}, check=True)
    assert other.stdout.strip() == str(hashed_ngrams(["a", "fine", "film"], 1000).tolist())
    assert hashed_ngrams([], 1000).tolist() == []


def test_features_hash_known_and_unknown_words_alike() -> None:
    """Serving looks up known words' hashes by id; unknown words are hashed on the fly: same ids."""

    vocab = Vocabulary.build([["a", "fine", "film"]], max_size=10)
    tokens = ["a", "fine", "unseen", "film", "ünïcode", "a"]
    ids, grams = features(tokens, vocab, SentimentConfig(ngram_buckets=10_000))
    assert ids.tolist() == vocab.encode(tokens).tolist()
    assert grams.tolist() == hashed_ngrams(tokens, 10_000).tolist()
    ids, grams = features([], vocab, SentimentConfig(ngram_buckets=10_000))
    assert ids.tolist() == [OOV] and grams.tolist() == []


def test_fasttext_layout_ngram_ids_are_offset() -> None:
    ids = np.array([2, 3, 2, 3, OOV], dtype=np.int32)
    grams = ngram_ids(ids, vocab_size=10, buckets=7)
    assert set(grams[grams < 10]) == {2, 3}  # unigrams without the unknown id
    assert all(10 <= g < 17 for g in grams[grams >= 10])  # bigrams in their own range
    assert len(grams) == len(set(grams.tolist()))


def test_csv_errors_are_clear(tmp_path: Path) -> None:
    (tmp_path / "cols.csv").write_text("review,score\nnice,1\n")
    with pytest.raises(InvalidInput, match="'text' and 'label'"):
        load_csv(tmp_path / "cols.csv")
    (tmp_path / "label.csv").write_text("text,label\nnice,maybe\n")
    with pytest.raises(InvalidInput, match="line 2"):
        load_csv(tmp_path / "label.csv")
    (tmp_path / "bin.csv").write_bytes(b"\x00\x01\xff\xfe")
    with pytest.raises(InvalidInput):
        load_csv(tmp_path / "bin.csv")
    ok = load_csv(write_csv(tmp_path / "ok.csv", [("fine film", 1), ("dull", 0)], labels=("0", "1")))
    assert ok.labels == [1, 0] and ok.texts == ["fine film", "dull"]


# ---------------------------------------------------------------- long reviews


def test_windows_cover_every_token() -> None:
    ids = np.arange(2, 2 + 1003, dtype=np.int32)
    windows = split_windows(ids, 200)
    assert len(windows) == 6 and max(len(w) for w in windows) <= 200
    assert np.concatenate(windows).tolist() == ids.tolist()  # nothing dropped, order kept
    assert len(split_windows(ids[:5], 200)) == 1


def test_long_review_with_sentiment_at_the_start(trained) -> None:
    home, _, _ = trained
    model = SentimentModel.load_current(home)
    filler = " ".join(FILLER * 8)  # ~96 neutral words: a dozen windows of 8
    for words, label in ((GOOD, "positive"), (BAD, "negative")):
        review = " ".join(words) + " " + filler
        assert len(split_windows(encode(review, model.vocab), model.config.window)) > 10
        assert model.predict_one(review).label == label  # the start is not cut off


# ---------------------------------------------------------------- serving


def test_numpy_serving_matches_keras(trained) -> None:
    import keras

    home, _, _ = trained
    model = SentimentModel.load_current(home)
    keras_model = keras.models.load_model(model.path / MODEL_FILE)
    with np.load(model.path / WEIGHTS_FILE) as data:
        a, b, c = (float(v) for v in data["blend"])
    texts = [t for t, _ in synthetic_reviews(12, seed=5)] + [" ".join(GOOD + FILLER * 3), "zzz unknown", "!"]
    expected = []
    for text in texts:  # Keras scores one window at a time; the review's deep logit = mean over its windows
        ids, grams = model.features(text)
        windows = split_windows(ids, model.config.window)
        x = {"window": pad_windows(windows, model.config.window), "ngrams": np.repeat(grams[None], len(windows), 0)}
        out = keras_model.predict(x, verbose=0)
        expected.append((text, a * float(out["deep"].mean()) + b * float(out["wide"][0, 0]) + c))
    assert any(len(split_windows(encode(t, model.vocab), 8)) > 1 for t, _ in expected)
    got = model.logits([t for t, _ in expected])
    np.testing.assert_allclose(got, [e for _, e in expected], atol=1e-4)
    batched = model.predict([t for t, _ in expected])
    one_by_one = [model.predict_one(t) for t, _ in expected]
    assert [v.label for v in batched] == [v.label for v in one_by_one]
    np.testing.assert_allclose([v.positive_probability for v in batched],
                               [v.positive_probability for v in one_by_one], atol=1e-6)


def test_predictions_learned_and_inputs_checked(trained) -> None:
    home, result, _ = trained
    model = SentimentModel.load_current(home)
    held_out = synthetic_reviews(100, seed=99)
    verdicts = model.predict([t for t, _ in held_out])
    accuracy = np.mean([(v.label == "positive") == bool(y) for v, (_, y) in zip(verdicts, held_out)])
    assert accuracy > 0.9
    for bad in ("", "   \n\t"):
        with pytest.raises(InvalidInput, match="empty"):
            model.predict_one(bad)
    with pytest.raises(InvalidInput, match="too long"):
        model.predict_one("x" * (MAX_CHARS + 1))
    for odd in ("😀😀", "\x00\x01binary\xff", "@everyone **bold** `code`", "word " * 5000):
        verdict = model.predict_one(odd)
        assert 0.0 <= verdict.positive_probability <= 1.0
        assert verdict.label == ("positive" if verdict.positive_probability >= 0.5 else "negative")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the review is empty; give some text to judge"),
        (" \n\t", "the review is empty; give some text to judge"),
        ("x" * 101, "the review is too long \\(101 characters; the limit is 100\\)"),
        (None, "a review must be text"),
    ],
)
def test_one_review_rule_for_check_and_predict(trained, text, message: str) -> None:
    model = SentimentModel.load_current(trained[0], SentimentLimits(max_chars=100))
    with pytest.raises(InvalidInput, match=message):
        model.check(ReviewRequest(text))
    with pytest.raises(InvalidInput, match=message):
        model.predict(["a fine film", text])


def test_a_review_at_the_limit_is_judged(trained) -> None:
    model = SentimentModel.load_current(trained[0], SentimentLimits(max_chars=100))
    review = ("superb " * 20)[:100]
    assert model.check(ReviewRequest(review)) == ReviewRequest(review)
    assert model.predict_one(review).label == "positive"


def test_evaluation_takes_reviews_in_memory(trained) -> None:
    home, result, data = trained
    rows = synthetic_reviews(60, seed=7)
    in_memory = evaluate_sentiment(home, home, data=rows)
    on_disk = evaluate_sentiment(home, home, data=write_csv(home.parent / "rows.csv", rows))
    assert in_memory == {**on_disk, "n": 60}
    assert in_memory["model_version"] == result.version
    assert in_memory["accuracy"] > 0.9


def test_predict_is_thread_safe(trained) -> None:
    from concurrent.futures import ThreadPoolExecutor

    model = SentimentModel.load_current(trained[0])
    batches = [[t for t, _ in synthetic_reviews(40, seed=s)] for s in range(8)]
    alone = [model.predict(b) for b in batches]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(model.predict, batches))
    assert together == alone


def test_versioned_save_and_load(trained, tmp_path: Path) -> None:
    home, result, data = trained
    registry = ModelRegistry(home / "models", "sentiment")
    version = registry.get(result.version)
    assert {MODEL_FILE, VOCAB_FILE, WEIGHTS_FILE, CONFIG_FILE} <= {p.name for p in version.path.iterdir()}
    meta = version.metadata
    assert meta["data_fingerprint"] and meta["training_seconds"] > 0 and meta["config"]["window"] == 8
    assert 0.5 < meta["metrics"]["val_accuracy"] <= 1.0
    assert registry.current_version() == result.version and result.promoted
    loaded = SentimentModel.load(version.path)
    assert loaded.version == result.version

    # a version not promoted is kept but not used
    other = tmp_path / "home"
    first = train_sentiment(tiny_config(epochs=1), other, tmp_path, data=data, progress=False)
    second = train_sentiment(tiny_config(epochs=1), other, tmp_path, data=data, progress=False, promote=False,
                             extra_examples=[("an extra wonderful review", 1)])
    reg = ModelRegistry(other / "models", "sentiment")
    assert reg.current_version() == first.version != second.version
    assert reg.get(second.version).metadata["extra_examples"] == 1
    assert reg.get(second.version).metadata["data_fingerprint"] != reg.get(first.version).metadata["data_fingerprint"]
    (reg.get(first.version).path / WEIGHTS_FILE).write_bytes(b"garbage")
    with pytest.raises(ModelUnavailable, match="corrupt"):
        SentimentModel.load_current(other)


# ---------------------------------------------------------------- checkpoints


def test_resume_continues_exactly(tmp_path: Path) -> None:
    import keras

    data = write_csv(tmp_path / "r.csv", synthetic_reviews(160, seed=3))
    config = tiny_config(epochs=2, dropout=0.0)
    straight = train_sentiment(config, tmp_path / "a", tmp_path, data=data, progress=False)
    assert straight.last_epoch == 2
    first = train_sentiment(config, tmp_path / "b", tmp_path, data=data, epochs=1, progress=False)
    assert first.last_epoch == 1
    resumed = train_sentiment(config, tmp_path / "b", tmp_path, data=data, resume=True, progress=False)
    assert resumed.last_epoch == 2 and resumed.epochs_run == 1 and resumed.started_from.endswith("epoch-0001.keras")

    def final_checkpoint(home: Path):
        ckpt = [c for c in CheckpointManager(home / "checkpoints", "sentiment").list() if c.epoch == 2]
        assert len(ckpt) == 1
        return keras.models.load_model(ckpt[0].path)

    a, b = final_checkpoint(tmp_path / "a"), final_checkpoint(tmp_path / "b")
    assert int(a.optimizer.iterations) == int(b.optimizer.iterations) == 2 * 4  # 128 training rows / 32
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(wa, wb, atol=1e-5)

    # a chosen checkpoint, and a corrupt one
    manager = CheckpointManager(tmp_path / "b" / "checkpoints", "sentiment")
    chosen = [c for c in manager.list() if c.epoch == 1][0]
    again = train_sentiment(config, tmp_path / "b", tmp_path, data=data, checkpoint=chosen.path, epochs=1, progress=False)
    assert again.last_epoch == 2
    newest = manager.latest_valid()
    assert newest is not None and newest.epoch == 2
    newest.path.write_bytes(b"truncated")

    with pytest.raises(CheckpointError, match="corrupt"):
        train_sentiment(config, tmp_path / "b", tmp_path, data=data, checkpoint=newest.path, progress=False)


def test_checkpoint_runs_are_bounded_unless_the_caller_keeps_them(tmp_path: Path) -> None:
    data = write_csv(tmp_path / "r.csv", synthetic_reviews(80, seed=4))
    home = tmp_path / "home"
    runs = lambda: {c.run for c in CheckpointManager(home / "checkpoints", "sentiment").list()}  # noqa: E731
    for _ in range(3):  # as the nightly job trains: it prunes by model version itself
        train_sentiment(tiny_config(epochs=1), home, tmp_path, data=data, progress=False, keep_runs=None)
    assert len(runs()) == 3
    train_sentiment(tiny_config(epochs=1), home, tmp_path, data=data, progress=False)  # the CLI's default
    assert len(runs()) == 2


def test_wide_branch_uses_naive_bayes_ratios_and_the_blend(trained) -> None:
    """r comes from the data (padding 0, words both ways), and the served logit blends both branches."""
    import keras

    home, result, _ = trained
    model = SentimentModel.load_current(home)
    r = np.asarray(keras.models.load_model(model.path / MODEL_FILE).get_layer("nb_score").r)
    assert r[0] == 0 and r.max() > 0 > r.min()
    with np.load(model.path / WEIGHTS_FILE) as data:
        weights = {k: data[k] for k in data.files}
    feats = [model.features(t) for t in (" ".join(GOOD), " ".join(BAD), " ".join(GOOD + BAD + FILLER * 4))]
    deep, wide = model.branch_logits(feats)
    a, b, c = weights["blend"]
    assert a != 0 and b > 0  # both branches count, and the wide one points the right way
    np.testing.assert_allclose(model.logits_from_features(feats), a * deep + b * wide + c, rtol=1e-5, atol=1e-5)
    only_wide = SentimentModel({**weights, "blend": np.array([0.0, 1.0, 0.0])}, model.vocab, model.config)
    assert only_wide.logits([" ".join(GOOD)])[0] > 0 > only_wide.logits([" ".join(BAD)])[0]


def test_fit_blend_recovers_the_weights_that_made_the_labels() -> None:
    rng = np.random.default_rng(0)
    deep, wide = rng.normal(size=20_000), rng.normal(size=20_000)
    labels = rng.random(20_000) < 1 / (1 + np.exp(-(0.5 * deep + 2.0 * wide - 0.3)))
    np.testing.assert_allclose(fit_blend(deep, wide, labels), [0.5, 2.0, -0.3], atol=0.1)
    separable = fit_blend(np.array([-1.0, 1.0]), np.array([-1.0, 1.0]), np.array([0, 1]))
    assert np.all(np.isfinite(separable)) and separable[0] > 0


def test_models_of_the_fasttext_layout_still_serve(tmp_path: Path) -> None:
    """Versions trained before the NB wide branch: averaged n-gram scores plus the LSTM, no blend."""

    vocab = Vocabulary(["", "[UNK]", "great", "awful"])
    config = SentimentConfig.from_dict({"vocab_size": 4, "bigram_buckets": 5, "window": 8, "lstm_units": 2,
                                        "embedding_dim": 2, "ngram_dim": 16})
    assert config.wide == "fasttext" and config.ngram_buckets == 5
    zeros = lambda *shape: np.zeros(shape, np.float32)  # noqa: E731 - an LSTM that always says 0
    ngram_weight = np.zeros(4 + 5, np.float32)
    ngram_weight[2], ngram_weight[3] = 3.0, -1.0
    weights = {"embedding": zeros(4, 2), "kernel": zeros(2, 8), "recurrent": zeros(2, 8), "bias": zeros(8),
               "dense_w": zeros(2), "dense_b": zeros(1), "ngram_weight": ngram_weight, "wide_b": np.array([0.5])}
    model = SentimentModel(weights, vocab, config)
    # "great awful": unigrams 2 and 3 plus one bigram bucket (score 0), averaged, plus the bias
    np.testing.assert_allclose(model.logits(["great awful"]), [(3.0 - 1.0 + 0.0) / 3 + 0.5], atol=1e-6)


# ---------------------------------------------------------------- command line


def playbill(*args: str, home: Path, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PLAYBILL_HOME": str(home), "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-m", "playbill.cli", *args], capture_output=True, env=env,
                          input=stdin, timeout=120, cwd=home.parent)


def test_cli_predict_and_errors(trained, tmp_path: Path) -> None:
    home, result, data = trained
    ok = playbill("predict", "--json", "A wonderful, brilliant film 😀", home=home)
    assert ok.returncode == 0, ok.stderr
    verdict = json.loads(ok.stdout)
    assert verdict["label"] == "positive" and 0.5 < verdict["positive_probability"] <= 1

    reviews = tmp_path / "reviews.txt"
    reviews.write_text("awful boring waste\n\nsuperb delightful\n" + "film " * 20000 + "\n", encoding="utf-8")
    many = playbill("predict", "--file", str(reviews), "--json", home=home)
    assert many.returncode == 0, many.stderr
    lines = [json.loads(line) for line in many.stdout.splitlines()]
    assert [v["label"] for v in lines[:2]] == ["negative", "positive"] and len(lines) == 3

    binary = tmp_path / "binary.bin"
    binary.write_bytes(bytes(range(256)))
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("words,stars\nhello,5\n")
    for args, message in (
        (("predict", "   "), "empty"),
        (("predict", ""), "empty"),
        (("predict",), "give a review"),
        (("predict", "--file", str(tmp_path / "missing.txt")), "cannot read"),
        (("predict", "--file", str(binary)), "binary"),
        (("evaluate", "sentiment", "--data", str(bad_csv)), "'text' and 'label'"),
        (("train", "sentiment", "--data", str(bad_csv)), "'text' and 'label'"),
        (("train", "sentiment", "--epochs", "0"), "at least 1"),
        (("train", "sentiment", "--profile", "huge"), "unknown sentiment profile 'huge'"),
    ):
        run = playbill(*args, home=home)
        assert run.returncode == 2, (args, run.stderr)
        assert message in run.stderr.decode() and b"Traceback" not in run.stderr

    empty_home = tmp_path / "empty"
    empty_home.mkdir()
    none = playbill("predict", "hello", home=empty_home)
    assert none.returncode == 2 and b"playbill train sentiment" in none.stderr and b"Traceback" not in none.stderr

    listed = playbill("checkpoints", "sentiment", "--json", home=home)
    assert listed.returncode == 0
    epochs = [json.loads(line)["epoch"] for line in listed.stdout.splitlines()]
    assert epochs == [1, 2, 3]

    evaluated = playbill("evaluate", "sentiment", "--data", str(data), "--json", home=home)
    assert evaluated.returncode == 0, evaluated.stderr
    figures = json.loads(evaluated.stdout)
    assert figures["n"] == 400 and figures["model_version"] == result.version and figures["accuracy"] > 0.9


# ---------------------------------------------------------------- real data


@pytest.mark.real_data
def test_short_training_on_real_imdb_beats_75_percent(real_data_dir: Path, tmp_path: Path) -> None:
    config = SentimentConfig(max_train_reviews=3000, epochs=2, window=100, lstm_units=16, ngram_buckets=100_000)
    result = train_sentiment(config, tmp_path / "home", real_data_dir, evaluate_test=False, progress=False)
    model = SentimentModel.load_current(tmp_path / "home")
    test = load_imdb(real_data_dir, "test", download=False)
    rows = np.random.default_rng(0).choice(len(test), size=1000, replace=False)
    verdicts = model.predict([test.texts[i] for i in rows])
    accuracy = np.mean([(v.label == "positive") == bool(test.labels[i]) for v, i in zip(verdicts, rows)])
    assert result.metrics["val_accuracy"] > 0.75
    assert accuracy > 0.75, accuracy
