"""The one list of model specs, the requests' rules and the shared numpy LSTM step."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from playbill.engine.errors import InvalidInput
from playbill.engine.lstm import cell_step, fuse_gates, input_table
from playbill.engine.models import MODEL_CHOICES, MODEL_NAMES, MODELS, canonical, spec
from playbill.engine.scene import PROFILES, SceneConfig, SceneLimits, SceneRequest, SceneWriter
from playbill.engine.sentiment import PROFILES as SENTIMENT_PROFILES
from playbill.engine.sentiment import ReviewRequest, SentimentConfig, SentimentLimits, SentimentModel

ROOT = Path(__file__).resolve().parents[1]
PLAY = "ROMEO:\nBut soft, what light through yonder window breaks?\n\nJULIET:\nO Romeo, wherefore art thou?\n\n" * 20


def test_the_list_names_each_model_once() -> None:
    assert MODEL_NAMES == ("sentiment", "scene")
    assert [s.title for s in MODELS] == ["critic", "playwright"]
    assert spec("scene").train_command == "playbill train scene"
    assert spec("sentiment").config_type is SentimentConfig
    assert spec("scene").request_type is SceneRequest


def test_an_unknown_model_is_one_clear_line() -> None:
    with pytest.raises(InvalidInput, match=r"^model must be one of sentiment, scene \(or critic, playwright\)$"):
        spec("poet")


def test_the_serving_side_imports_without_tensorflow() -> None:
    code = ("import sys, engine.models, engine.sentiment, engine.scene; "
            "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert run.stdout.strip() == "[]"


def test_the_people_facing_names_are_aliases() -> None:
    assert spec("critic") is spec("sentiment") and spec("playwright") is spec("scene")
    assert [canonical(name) for name in ("critic", "playwright", "sentiment")] == ["sentiment", "scene", "sentiment"]
    assert MODEL_CHOICES == ("sentiment", "scene", "critic", "playwright")


def test_settings_sections_become_configs_in_one_place() -> None:
    section = {"epochs": 3, "batch_size": 32, "validation_fraction": 0.2, "patience": 1, "seed": 7, "unrelated": 1}
    assert spec("sentiment").config_from(section) == replace(SENTIMENT_PROFILES["default"], epochs=3, batch_size=32,
                                                             validation_fraction=0.2, patience=1, seed=7)
    assert spec("sentiment").config_from(section, profile="quick").views == ("words12",)
    scene = {"profile": "tutorial", "epochs": None, "validation_fraction": 0.2, "seed": 5, "temperature": 0.8}
    config = spec("scene").config_from(scene)
    assert config == replace(PROFILES["tutorial"], validation_fraction=0.2, seed=5)
    assert spec("scene").config_from({"profile": None, "epochs": 4}).epochs == 4
    with pytest.raises(InvalidInput, match="unknown scene profile 'huge'"):
        spec("scene").config_from({"profile": "huge"})


def test_settings_sections_become_limits_and_serving_options() -> None:
    assert spec("scene").limits_from({"max_length": 300, "temperature": 0.8}) == SceneLimits(max_length=300)
    assert spec("sentiment").limits_from({"max_chars": 5000, "epochs": 8}) == SentimentLimits(max_chars=5000)
    assert spec("scene").serving_from({"backend": "int8", "int8_threads": 2, "seed": 1}) == {
        "backend": "int8", "int8_threads": 2}
    assert spec("sentiment").serving_from({"epochs": 8}) == {}
    assert spec("scene").data_from({"corpus": "/plays.txt"}) == Path("/plays.txt")
    assert spec("scene").data_from({"corpus": None}) is None


@pytest.mark.parametrize("temperature", [0.0, 0.09, 2.01, 4.0, float("inf"), True])
def test_one_temperature_range_for_every_front_end(temperature: float) -> None:
    with pytest.raises(InvalidInput, match=r"^temperature must be between 0.1 and 2 \(0.5 is careful, 1.0 is wild\)$"):
        spec("scene").check(SceneRequest("ROMEO:", 10, temperature))


def test_a_checked_request_has_plain_numbers() -> None:
    checked = spec("scene").check(SceneRequest("ROMEO:", np.int64(10), np.float32(0.5), top_k=np.int32(3)))
    assert checked == SceneRequest("ROMEO:", 10, 0.5, top_k=3)
    assert type(checked.length) is int
    assert type(checked.temperature) is float


def test_the_review_rule_needs_no_model() -> None:
    with pytest.raises(InvalidInput, match="^the review is empty; give some text to judge$"):
        spec("sentiment").check(ReviewRequest("  "))
    assert spec("sentiment").check(ReviewRequest("fine")) == ReviewRequest("fine")


def test_the_shared_lstm_step_is_keras_lstm_math() -> None:
    """Fused gates and one tanh give what the textbook LSTM (Keras's gate order i, f, c, o) gives."""
    rng = np.random.default_rng(0)
    batch, inputs, units, vocab = 3, 5, 4, 7
    embedding = rng.normal(size=(vocab, inputs)).astype(np.float32)
    kernel = rng.normal(size=(inputs, 4 * units)).astype(np.float32)
    recurrent = rng.normal(size=(units, 4 * units)).astype(np.float32)
    bias = rng.normal(size=4 * units).astype(np.float32)
    ids = np.array([1, 4, 6])
    h0, c0 = rng.normal(size=(batch, units)).astype(np.float32), rng.normal(size=(batch, units)).astype(np.float32)

    def sigmoid(x):
        return 1 / (1 + np.exp(-x))

    z = embedding[ids].astype(np.float64) @ kernel + h0 @ recurrent + bias
    i, f, g, o = np.split(z, 4, axis=1)
    c_expected = sigmoid(f) * c0 + sigmoid(i) * np.tanh(g)
    h_expected = sigmoid(o) * np.tanh(c_expected)

    fused = input_table(embedding, kernel, bias)[ids] + h0 @ fuse_gates(recurrent)
    h, c, tmp = h0.copy(), c0.copy(), np.empty_like(h0)
    cell_step(fused, h, c, tmp)
    np.testing.assert_allclose(c, c_expected, atol=1e-5)
    np.testing.assert_allclose(h, h_expected, atol=1e-5)


def test_train_load_and_evaluate_through_the_spec(tmp_path: Path) -> None:
    corpus = tmp_path / "play.txt"
    corpus.write_text(PLAY, "utf-8")
    playwright = spec("scene")
    config = SceneConfig(name="tiny", embedding_dim=8, rnn_units=16, seq_length=20, batch_size=8, epochs=1)
    result = playwright.train(config, tmp_path / "home", tmp_path, data=corpus, extra=["ROMEO:\nAnon!\n"],
                              progress=False)
    assert playwright.registry(tmp_path / "home").current_version() == result.version
    assert [c.epoch for c in playwright.checkpoints(tmp_path / "home").list()] == [1]
    section = {"max_length": 50, "backend": "float32"}
    writer = playwright.load(playwright.registry(tmp_path / "home").current().path,
                             playwright.limits_from(section), **playwright.serving_from(section))
    assert isinstance(writer, SceneWriter)
    assert writer.backend == "float32"
    with pytest.raises(InvalidInput, match="from 1 to 50"):
        writer.check(SceneRequest("ROMEO:", 51, 1.0))
    held_out = playwright.evaluate(tmp_path / "home", tmp_path)
    assert held_out["val_loss"] == pytest.approx(result.metrics["val_loss"], rel=1e-6)
    in_memory = playwright.evaluate(tmp_path / "home", tmp_path, data=PLAY[:201])
    assert in_memory["chars"] == 200
    assert in_memory["model_version"] == result.version


def test_sentiment_loads_through_the_spec_with_its_limits(tmp_path: Path) -> None:
    import csv

    data = tmp_path / "reviews.csv"
    with data.open("w", newline="", encoding="utf-8") as fh:
        rows = csv.writer(fh)
        rows.writerow(["text", "label"])
        for n in range(120):
            rows.writerow([("a wonderful superb film" if n % 2 else "an awful boring film") + " of the year", n % 2])
    critic = spec("sentiment")
    config = SentimentConfig(vocab_size=64, ngram_buckets=512, window=8, embedding_dim=8, lstm_units=8, epochs=2,
                             batch_size=32, validation_fraction=0.2)
    result = critic.train(config, tmp_path / "home", tmp_path, data=data, progress=False, keep_runs=1)
    model = critic.load(critic.registry(tmp_path / "home").current().path, critic.limits_from({"max_chars": 30}))
    assert isinstance(model, SentimentModel)
    assert model.version == result.version
    with pytest.raises(InvalidInput, match="the limit is 30"):
        model.predict(["wonderful " * 4])
    figures = critic.evaluate(tmp_path / "home", tmp_path, data=[("superb wonderful", 1), ("awful boring", 0)])
    assert figures == {"accuracy": 1.0, "n": 2, "model_version": result.version, "split": "all"}


def test_training_logs_one_line_per_epoch_outside_a_terminal(tmp_path, capfd) -> None:
    from fakes import TINY_PLAY
    from playbill.engine.scene import SceneConfig

    corpus = tmp_path / "play.txt"
    corpus.write_text(TINY_PLAY, encoding="utf-8")
    config = SceneConfig(name="tiny", embedding_dim=8, rnn_units=16, seq_length=20, batch_size=8, epochs=3, seed=7)
    spec("scene").train(config, tmp_path / "home", tmp_path, data=corpus, progress=True)  # stdout: a pipe here
    out = capfd.readouterr().out
    assert "\r" not in out and "\x1b" not in out and "\x08" not in out  # no progress-bar frames
    keras_lines = [line for line in out.splitlines() if "val_loss" in line]
    assert len(keras_lines) == 3  # one per epoch
