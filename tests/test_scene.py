"""The playwright: corpus split, vocabulary, training/resume, the numpy sampler, the CLI.

Tiny models on tiny corpora written by the tests; one shared trained model per module.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from playbill.engine.checkpoints import CheckpointManager
from playbill.engine.errors import CheckpointError, DataUnavailable, InvalidInput
from playbill.engine.scene import (
    Corpus,
    SceneConfig,
    SceneLimits,
    SceneRequest,
    SceneWriter,
    Vocabulary,
    cut_at_boundary,
    epoch_arrays,
    evaluate_scene,
    evaluate_text,
    get_profile,
    quantized,
    train_scene,
)
from playbill.engine.scene.sampler import prime_batch, teacher_forced_loss

LINES = [
    "ROMEO:\nBut soft, what light through yonder window breaks?\n\n",
    "JULIET:\nO Romeo, Romeo, wherefore art thou Romeo?\n\n",
    "MERCUTIO:\nA plague on both your houses! They have made worms' meat of me.\n\n",
    "NURSE:\nFaith, I can tell how to answer that; I am the nurse.\n\n",
]
TEXT = "".join(LINES) * 12  # ~2,800 characters, 4 speakers

TINY = SceneConfig(
    name="tiny", embedding_dim=8, rnn_units=16, rnn_layers=1, dropout=0.0, seq_length=20,
    batch_size=8, learning_rate=1e-2, final_lr_fraction=0.5, epochs=2, seed=7,
)


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "plays.txt"
    path.write_text(TEXT, "utf-8")
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, corpus_file: Path):
    """One tiny two-layer model trained for two epochs (with dropout, as the default profile)."""
    home = tmp_path_factory.mktemp("scene-home")
    config = replace(TINY, rnn_layers=2, dropout=0.1)
    result = train_scene(config, home, home / "data", corpus=corpus_file, progress=False)
    return home, result


# ----------------------------------------------------------------- corpus and vocabulary


def test_vocabulary_round_trip(tmp_path: Path) -> None:
    vocab = Vocabulary.from_text(TEXT)
    ids = vocab.encode(TEXT)
    assert ids.dtype == np.int32 and vocab.decode(ids) == TEXT
    vocab.save(tmp_path / "v.json")
    again = Vocabulary.load(tmp_path / "v.json")
    assert again.chars == vocab.chars == sorted(set(TEXT))
    assert again.unknown("Romeo ✨ é!") == ["✨", "é"]


def test_trained_model_keeps_its_vocabulary(trained) -> None:
    home, result = trained
    writer = SceneWriter.load_current(home)
    assert writer.version == result.version
    assert writer.vocabulary == sorted(set(TEXT))
    assert writer.unknown_characters("ROMEO: 😀 hi~") == ["😀", "~"]


def test_held_out_block_is_the_last_tenth(corpus_file: Path) -> None:
    corpus = Corpus.load(corpus_file, 0.1, TINY.seq_length)
    split = int(len(TEXT) * 0.9)
    assert corpus.train == TEXT[:split] and corpus.validation == TEXT[split:]
    vocab = corpus.vocabulary()
    train_ids = vocab.encode(corpus.train)
    x, y = epoch_arrays(train_ids, TINY, epoch=3)
    assert x.shape == y.shape and x.shape[1] == TINY.seq_length and len(x) % TINY.batch_size == 0
    np.testing.assert_array_equal(x[:, 1:], y[:, :-1])  # targets are the inputs shifted by one
    for row_x, row_y in zip(x, y, strict=True):  # every training sequence lies inside the training block
        assert vocab.decode(np.append(row_x, row_y[-1])) in corpus.train
    again = epoch_arrays(train_ids, TINY, epoch=3)
    other = epoch_arrays(train_ids, TINY, epoch=4)
    np.testing.assert_array_equal(x, again[0])  # the same epoch always sees the same data
    assert not np.array_equal(x[: len(other[0])], other[0][: len(x)])


def test_extra_texts_train_only_and_known_characters_only(corpus_file: Path) -> None:
    plain = Corpus.load(corpus_file, 0.1, TINY.seq_length)
    extra = Corpus.load(corpus_file, 0.1, TINY.seq_length, extra_texts=["ROMEO: a new line 🎭", "  "])
    assert extra.validation == plain.validation  # validation stays comparable across versions
    assert extra.train.startswith(plain.train) and "ROMEO: a new line" in extra.train
    assert "🎭" not in extra.train and extra.fingerprint != plain.fingerprint


def test_bad_corpora_are_clear_errors(tmp_path: Path) -> None:
    binary = tmp_path / "b.bin"
    binary.write_bytes(b"\x89PNG\x00\x01\x02" * 400)
    latin = tmp_path / "latin.txt"
    latin.write_bytes("Roméo ".encode("latin-1") * 400)
    short = tmp_path / "short.txt"
    short.write_text("To be or not to be.", "utf-8")
    with pytest.raises(InvalidInput, match="binary"):
        Corpus.load(binary, 0.1, 100)
    with pytest.raises(InvalidInput, match="not UTF-8"):
        Corpus.load(latin, 0.1, 100)
    with pytest.raises(InvalidInput, match="too short"):
        Corpus.load(short, 0.1, 100)
    with pytest.raises(DataUnavailable, match="does not exist"):
        Corpus.load(tmp_path / "nope.txt", 0.1, 100)
    with pytest.raises(InvalidInput, match="unknown scene profile"):
        get_profile("huge")


# ----------------------------------------------------------------- training and checkpoints


def test_resume_equals_straight_through(tmp_path: Path, corpus_file: Path) -> None:
    straight = train_scene(TINY, tmp_path / "a", tmp_path, corpus=corpus_file, epochs=2, progress=False)
    first = train_scene(TINY, tmp_path / "b", tmp_path, corpus=corpus_file, epochs=1, progress=False)
    resumed = train_scene(None, tmp_path / "b", tmp_path, resume=True, epochs=1, progress=False)
    assert first.last_epoch == 1 and resumed.last_epoch == 2 and resumed.started_from is not None
    a = np.load(tmp_path / "a/models/scene" / straight.version / "sampler.npz")
    b = np.load(tmp_path / "b/models/scene" / resumed.version / "sampler.npz")
    assert sorted(a.files) == sorted(b.files)
    for key in a.files:
        np.testing.assert_allclose(a[key], b[key], rtol=1e-5, atol=1e-6, err_msg=key)
    assert resumed.metrics["val_loss"] == pytest.approx(straight.metrics["val_loss"], rel=1e-4)
    epochs = [(c.run, c.epoch) for c in CheckpointManager(tmp_path / "b/checkpoints", "scene").list()]
    assert [e for _, e in epochs] == [1, 2] and epochs[0][0] != epochs[1][0]  # counter continues in a new run


def test_resume_without_checkpoint_and_corrupt_checkpoint(
    tmp_path: Path, trained, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    from playbill.cli import main

    with pytest.raises(CheckpointError, match="no valid scene checkpoint"):
        train_scene(None, tmp_path, tmp_path, resume=True, progress=False)
    home, _ = trained
    ckpt = CheckpointManager(home / "checkpoints", "scene").list()[0]
    copy_home = tmp_path / "copy"
    target = copy_home / "checkpoints/scene" / ckpt.run
    target.mkdir(parents=True)
    (target / ckpt.path.name).write_bytes(ckpt.path.read_bytes()[:100])  # truncated
    (target / ckpt.path.with_suffix(".json").name).write_text(ckpt.path.with_suffix(".json").read_text())
    with pytest.raises(CheckpointError, match="corrupt"):
        train_scene(None, copy_home, tmp_path, checkpoint=f"{ckpt.run}/{ckpt.path.name}", progress=False)
    with pytest.raises(CheckpointError, match="no valid scene checkpoint"):  # --resume skips the corrupt one
        train_scene(None, copy_home, tmp_path, resume=True, progress=False)
    monkeypatch.setenv("PLAYBILL_HOME", str(copy_home))
    assert main(["checkpoints", "scene"]) == 0
    assert "corrupt" in capsys.readouterr().out


def test_version_records_metrics_profile_and_corpus(trained, corpus_file: Path) -> None:
    home, result = trained
    meta = json.loads((home / "models/scene" / result.version / "metadata.json").read_text())
    assert meta["profile"] == "tiny" and meta["epochs"] == 2
    assert meta["corpus"]["source"] == str(corpus_file) and len(meta["corpus"]["fingerprint"]) >= 16
    assert 0 < meta["metrics"]["val_loss"] < np.log(len(set(TEXT)))  # it learned something
    evaluated = evaluate_scene(home, home / "data")
    assert evaluated["model_version"] == result.version
    assert evaluated["val_loss"] == pytest.approx(result.metrics["val_loss"], rel=1e-6)
    assert evaluated["bits_per_char"] == pytest.approx(evaluated["val_loss"] / np.log(2))


# ----------------------------------------------------------------- the numpy sampler


def test_numpy_sampler_matches_keras_probabilities(trained) -> None:
    import keras

    home, result = trained
    model = keras.models.load_model(home / "models/scene" / result.version / "model.keras")
    writer = SceneWriter.load_current(home)
    ids = np.array([writer.vocabulary.index(c) for c in "JULIET:\nO Romeo, Romeo!"], np.int32)
    keras_probs = keras.ops.convert_to_numpy(keras.ops.softmax(model(ids[None], training=False), axis=-1))[0]
    state = writer.net.new_state(1)
    numpy_probs = []
    for i in ids:
        logits = writer.net.step(state, np.array([i])).astype(np.float64)
        p = np.exp(logits - logits.max())
        numpy_probs.append((p / p.sum())[0])
    np.testing.assert_allclose(np.array(numpy_probs), keras_probs, atol=2e-6)
    assert keras_probs.max(axis=-1).mean() > 1.5 / len(writer.vocabulary)  # not a uniform (untrained) model


def ask(prompt: str, length: int, temperature: float = 1.0, **options) -> SceneRequest:
    """A request with the old defaults of these tests: no boundary cut unless asked for."""
    return SceneRequest(prompt, length, temperature, **{"stop_at_boundary": False, **options})


def test_seeded_generation_is_reproducible(trained) -> None:
    home, _ = trained
    writer = SceneWriter.load_current(home)
    one = writer.generate(ask("ROMEO:", 120, 0.8, seed=42))
    assert len(one) == 120
    assert set(one) <= set(writer.vocabulary)
    assert writer.generate(ask("ROMEO:", 120, 0.8, seed=42)) == one
    assert writer.generate(ask("ROMEO:", 120, 0.8, seed=43)) != one
    pieces = list(writer.stream(ask("ROMEO:", 120, 0.8, seed=42), chunk_chars=7))
    assert "".join(pieces) == one
    assert len(pieces) > 5
    batch = writer.generate_batch(["ROMEO:", "NURSE:\nFaith", "J"], ask("", 80, 0.8, top_k=5, seed=1))
    assert [len(t) for t in batch] == [80, 80, 80]
    assert writer.generate_batch(["ROMEO:", "NURSE:\nFaith", "J"], ask("", 80, 0.8, top_k=5, seed=1)) == batch
    greedy = writer.generate(ask("JULIET:", 60, top_k=1, seed=1))
    assert writer.generate(ask("JULIET:", 60, top_k=1, seed=2)) == greedy  # top-1 is deterministic



def test_stop_at_boundary_is_the_one_cut_for_every_way_of_writing(trained) -> None:
    home, _ = trained
    writer = SceneWriter.load_current(home)
    prompts = ["MERCUTIO:", "NURSE:", "JULIET:", "R", "ROMEO:\nBut"]
    for seed in range(5):
        full = writer.generate(ask("MERCUTIO:", 150, 0.9, seed=seed))
        short = writer.generate(ask("MERCUTIO:", 150, 0.9, seed=seed, stop_at_boundary=True))
        assert short == cut_at_boundary(full, 150)
        streamed = writer.stream(ask("MERCUTIO:", 150, 0.9, seed=seed, stop_at_boundary=True), chunk_chars=9)
        assert "".join(streamed) == short
    greedy = writer.generate_batch(prompts, ask("", 150, top_k=1))
    stopped = writer.generate_batch(prompts, ask("", 150, top_k=1, stop_at_boundary=True))
    assert stopped == [cut_at_boundary(text, 150) for text in greedy]


@pytest.mark.parametrize(
    ("text", "cut"),
    [
        ("I shall say good night till it be morrow. Parting is", "I shall say good night till it be morrow."),
        ("Good night! Parting is such sweet sorrow, that I sha", "Good night! Parting is such sweet sorrow, that I"),
        ("He said.\n\nROMEO:\nI", "He said.\n\n"),
        ("no boundary at all here but wor", "no boundary at all here but"),
        ("unbroken", "unbroken"),
        ("", ""),
    ],
)
def test_cut_at_boundary(text: str, cut: str) -> None:
    assert cut_at_boundary(text) == cut


def test_cut_at_boundary_keeps_the_first_two_thirds_of_the_length() -> None:
    text = "Aye. " + "word " * 20  # the only sentence end comes early
    assert cut_at_boundary(text, len(text)) == text.rstrip()



@pytest.mark.parametrize(
    ("prompt", "options", "message"),
    [
        ("", {}, "the prompt is empty"),
        ("   \n", {}, "the prompt is empty"),
        ("ROMEO:" * 2000, {}, "the prompt is too long"),
        ("ROMEO 🗡️ é", {}, "never seen these characters: '🗡' \\(U\\+1F5E1\\), U\\+FE0F \\(variation selector-16\\), 'é'"),
        ("ROMEO:", {"temperature": 0}, "temperature must be between 0.1 and 2"),
        ("ROMEO:", {"temperature": 0.05}, "temperature must be between 0.1 and 2"),
        ("ROMEO:", {"temperature": 2.5}, "temperature must be between 0.1 and 2"),
        ("ROMEO:", {"temperature": float("nan")}, "temperature must be between"),
        ("ROMEO:", {"temperature": "hot"}, "temperature must be between"),
        ("ROMEO:", {"length": 0}, "length must be a whole number from 1 to 2000"),
        ("ROMEO:", {"length": 2001}, "length must be a whole number from 1 to 2000"),
        ("ROMEO:", {"length": 20.5}, "length must be a whole number"),
        ("ROMEO:", {"top_k": 0}, "top-k"),
        ("ROMEO:", {"seed": -1}, "seed"),
    ],
)
def test_bad_prompts_and_options(trained, prompt: str, options: dict, message: str) -> None:
    writer = SceneWriter.load_current(trained[0])
    request = SceneRequest(prompt, **{"length": 20, "temperature": 1.0, **options})
    with pytest.raises(InvalidInput, match=message):
        writer.check(request)
    with pytest.raises(InvalidInput, match=message):
        writer.generate(request)
    with pytest.raises(InvalidInput, match=message):
        writer.stream(request)
    with pytest.raises(InvalidInput, match=message):
        writer.generate_batch(["ROMEO:", prompt], request)


def test_limits_bound_every_request_the_same_way(trained) -> None:
    """The temperature range ends at 0.1 and 2.0 inclusive; the length bound comes from the limits."""
    writer = SceneWriter.load_current(trained[0], SceneLimits(max_length=30))
    assert writer.check(SceneRequest("ROMEO:", 30, 2.0)).temperature == 2.0
    assert writer.check(SceneRequest("ROMEO:", 1, 0.1)).length == 1
    with pytest.raises(InvalidInput, match="from 1 to 30"):
        writer.check(SceneRequest("ROMEO:", 31, 1.0))
    assert SceneLimits().check_temperature(0.8) == 0.8  # as the settings' default temperature is checked
    with pytest.raises(ValueError, match="temperature range"):
        SceneLimits(min_temperature=2.0, max_temperature=1.0)



# ----------------------------------------------------------------- the int8 step (LiteRT)

# Largest next-character probability difference between the int8 step and the float32
# sampler allowed on the tiny trained model: measured 1.4e-4 here (1.5e-3 on a random
# tutorial-size model; the trained tutorial-size model's figure is in docs/benchmarks.md).
# A float (unquantized) step differs by ~1e-7, hence the lower bound.
INT8_MAX_PROB_DIFF = 1e-3


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _copy_version(trained, tmp_path: Path) -> Path:
    import shutil

    home, result = trained
    return Path(shutil.copytree(home / "models/scene" / result.version, tmp_path / "version"))


def test_int8_step_is_close_to_float32(trained) -> None:
    home, result = trained
    version_dir = home / "models/scene" / result.version
    assert (version_dir / quantized.CACHE_FILE).is_file()  # converted at training time
    writer = SceneWriter.load_current(home, backend="int8")
    assert writer.backend == "int8" and writer.net_for(1) is writer.int8_net
    from ai_edge_litert.interpreter import Interpreter

    kinds = {d["dtype"] for d in Interpreter(model_content=writer.int8_net.blob).get_tensor_details()}
    assert np.int8 in kinds  # the weights really are int8
    texts = ["JULIET:\nO Romeo, Romeo!", "NURSE:\nFaith, I can tel", "MERCUTIO:\nA plague on bo"]
    ids = np.array([[writer.vocabulary.index(c) for c in t[:20]] for t in texts])
    exact, int8 = writer.net.new_state(3), writer.int8_net.new_state(3)
    diffs = []
    for t in range(ids.shape[1]):
        p_float = _softmax(writer.net.step(exact, ids[:, t]))
        p_int8 = _softmax(writer.int8_net.step(int8, ids[:, t]))
        diffs.append(np.abs(p_float - p_int8).max())
    assert 1e-6 < max(diffs) < INT8_MAX_PROB_DIFF, max(diffs)  # close, and not secretly the float path
    float_loss = teacher_forced_loss(writer.net, ids[:, :-1], ids[:, 1:])
    assert abs(teacher_forced_loss(writer.int8_net, ids[:, :-1], ids[:, 1:]) - float_loss) < 0.01


def test_int8_generation_is_reproducible_and_batch_equals_singles(trained) -> None:
    writer = SceneWriter.load_current(trained[0], backend="int8")
    prompts = ["ROMEO:", "NURSE:\nFaith", "J"]
    one = writer.generate(ask("ROMEO:", 100, 0.8, seed=42))
    assert writer.generate(ask("ROMEO:", 100, 0.8, seed=42)) == one
    batch = writer.generate_batch(prompts, ask("", 80, 0.8, top_k=5, seed=1))
    assert writer.generate_batch(prompts, ask("", 80, 0.8, top_k=5, seed=1)) == batch
    assert writer.generate_batch(prompts, ask("", 80, 0.8, top_k=5, seed=2)) != batch
    # Each row's int8 step depends on that row only (the state is quantized row by row, and
    # int32 sums are exact), so with greedy sampling a batch writes what each prompt writes
    # alone. Random sampling differs by design: the batch draws its numbers row-interleaved.
    # (Float32 numpy gives no such promise: BLAS may sum a B-row product in another order.)
    greedy = writer.generate_batch(prompts, ask("", 60, top_k=1))
    assert greedy == [writer.generate(ask(p, 60, top_k=1)) for p in prompts]
    primed = prime_batch(writer.int8_net, [writer.encode(p) for p in prompts])
    for row, prompt in enumerate(prompts):  # primed together, each row ends as if primed alone
        alone = prime_batch(writer.int8_net, [writer.encode(prompt)])
        np.testing.assert_array_equal(primed.logits[row], alone.logits[0])
        for n in range(len(alone.h)):
            np.testing.assert_array_equal(primed.h[n][row], alone.h[n][0])
            np.testing.assert_array_equal(primed.c[n][row], alone.c[n][0])


def test_int8_threads_each_get_their_own_interpreter(trained) -> None:
    import concurrent.futures

    writer = SceneWriter.load_current(trained[0], backend="int8")
    jobs = [(["ROMEO:", "JULIET:"], seed) for seed in range(6)]
    alone = [writer.generate_batch(prompts, ask("", 60, seed=seed)) for prompts, seed in jobs]
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        together = list(pool.map(lambda job: writer.generate_batch(job[0], ask("", 60, seed=job[1])), jobs))
    assert together == alone


def test_auto_backend_is_int8_where_available(trained) -> None:
    home = trained[0]
    auto = SceneWriter.load_current(home)  # "auto" is the default
    exact = SceneWriter.load_current(home, backend="float32")
    int8 = SceneWriter.load_current(home, backend="int8")
    assert auto.backend == "auto"
    assert exact.backend == "float32"
    assert exact.int8_net is None
    assert auto.net_for(1) is auto.int8_net  # int8 is faster at every batch size measured
    assert auto.net_for(8) is auto.int8_net
    assert exact.net_for(1) is exact.net
    assert exact.net_for(8) is exact.net
    assert auto.generate(ask("ROMEO:", 80, seed=3)) == int8.generate(ask("ROMEO:", 80, seed=3))
    request = ask("", 80, seed=3)
    assert auto.generate_batch(["ROMEO:", "J"], request) == int8.generate_batch(["ROMEO:", "J"], request)


def test_corrupt_or_stale_int8_cache_is_rebuilt(trained, tmp_path: Path, caplog) -> None:
    import json as json_

    version_dir = _copy_version(trained, tmp_path)
    cache, note = version_dir / quantized.CACHE_FILE, version_dir / quantized.NOTE_FILE
    good = cache.read_bytes()
    reference = SceneWriter.load(version_dir, backend="int8").generate_batch(["ROMEO:", "J"], ask("", 40, seed=5))

    cache.write_bytes(good[: len(good) // 2])  # truncated: checksum mismatch
    with caplog.at_level("WARNING"):
        writer = SceneWriter.load(version_dir, backend="int8")
    assert writer.backend == "int8" and "corrupt" in caplog.text
    assert cache.read_bytes() == good  # rebuilt (conversion is deterministic) and cached again
    assert writer.generate_batch(["ROMEO:", "J"], ask("", 40, seed=5)) == reference

    garbage = b"not a flatbuffer" * 100  # checksum in the note matches, the content is junk
    cache.write_bytes(garbage)
    note.write_text(json_.dumps({**json_.loads(note.read_text()), "tflite_sha256": hashlib.sha256(garbage).hexdigest()}))
    caplog.clear()
    with caplog.at_level("WARNING"):
        assert SceneWriter.load(version_dir, backend="int8").backend == "int8"
    assert "unusable" in caplog.text and cache.read_bytes() == good

    note.write_text("{ half a note")
    assert SceneWriter.load(version_dir, backend="int8").backend == "int8"
    assert json_.loads(note.read_text())["weights_sha256"] == quantized.weights_digest(version_dir / "sampler.npz")
    note.write_text(json_.dumps({**json_.loads(note.read_text()), "weights_sha256": "0" * 64}))  # other weights
    cache.write_bytes(b"stale")
    assert SceneWriter.load(version_dir, backend="int8").backend == "int8" and cache.read_bytes() == good
    cache.unlink()
    note.unlink()
    assert SceneWriter.load(version_dir, backend="int8").backend == "int8" and cache.read_bytes() == good


def test_int8_unavailable_falls_back_to_float32(trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 caplog) -> None:
    version_dir = _copy_version(trained, tmp_path)
    (version_dir / quantized.CACHE_FILE).write_bytes(b"corrupt")

    def broken(arrays):
        raise RuntimeError("converter exploded")

    monkeypatch.setattr(quantized, "convert", broken)
    with caplog.at_level("WARNING"):
        writer = SceneWriter.load(version_dir, backend="int8")
    assert writer.backend == "float32" and "converter exploded" in caplog.text and "using float32" in caplog.text
    exact = SceneWriter.load(version_dir, backend="float32")
    assert writer.generate_batch(["ROMEO:", "J"], ask("", 40, seed=5)) == exact.generate_batch(["ROMEO:", "J"], ask("", 40, seed=5))

    def no_litert():
        raise quantized.QuantizedUnavailable("the int8 backend needs the ai-edge-litert package (gone)")

    monkeypatch.setattr(quantized, "interpreter_class", no_litert)
    caplog.clear()
    with caplog.at_level("WARNING"):
        assert SceneWriter.load(version_dir).backend == "float32"
    assert "ai-edge-litert" in caplog.text


def test_backend_option_errors(trained, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    from playbill.cli import main
    from playbill.settings import load_settings

    home, result = trained
    with pytest.raises(InvalidInput, match="unknown scene backend 'fp16'; choose one of: auto, float32, int8"):
        SceneWriter.load(home / "models/scene" / result.version, backend="fp16")
    monkeypatch.setenv("PLAYBILL_HOME", str(home))
    with pytest.raises(SystemExit) as exit_info:
        main(["write", "ROMEO:", "--backend", "fp16"])
    assert exit_info.value.code == 2 and "invalid choice: 'fp16'" in capsys.readouterr().err
    monkeypatch.setenv("PLAYBILL_SCENE__BACKEND", "fp16")
    with pytest.raises(ValueError, match="backend"):
        load_settings()
    monkeypatch.setenv("PLAYBILL_SCENE__BACKEND", "int8")
    assert load_settings().scene.backend == "int8"
    assert main(["write", "ROMEO:", "--length", "30", "--seed", "1", "--no-stop", "--json"]) == 0
    assert main(["evaluate", "scene", "--backend", "int8", "--json"]) == 0
    out = capsys.readouterr().out.splitlines()
    scores = json.loads(out[1])
    assert len(json.loads(out[0])["text"]) == 30 and scores["backend"] == "int8"
    assert scores["val_loss_delta"] == pytest.approx(scores["val_loss"] - scores["float32_val_loss"])
    assert abs(scores["val_loss_delta"]) < 0.01 and 0 < scores["max_prob_diff"] < INT8_MAX_PROB_DIFF


# ----------------------------------------------------------------- command line


def test_cli_write_checkpoints_evaluate(trained, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    from playbill.cli import main

    home, result = trained
    monkeypatch.setenv("PLAYBILL_HOME", str(home))
    assert main(["write", "ROMEO:", "--length", "50", "--seed", "3", "--no-stop", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["text"]) == 50 and out["model_version"] == result.version and out["chars_per_s"] > 0
    assert main(["write", "ROMEO:", "--length", "50", "--seed", "3", "--no-stop"]) == 0
    assert capsys.readouterr().out == "ROMEO:" + out["text"] + "\n"

    assert main(["write", "Hi 😀", "--length", "20"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "'😀'" in err and "Traceback" not in err
    assert main(["write", "ROMEO:", "--temperature", "0"]) == 2
    assert "temperature" in capsys.readouterr().err
    assert main(["write", "ROMEO:", "--length", "999999"]) == 2
    assert "length must be a whole number from 1 to 2000" in capsys.readouterr().err
    assert main(["write", "ROMEO:", "--temperature", "4"]) == 2  # the one range, as on Discord
    assert "temperature must be between 0.1 and 2" in capsys.readouterr().err

    assert main(["checkpoints", "scene"]) == 0
    listing = capsys.readouterr().out
    assert "epoch-0001.keras" in listing and "epoch-0002.keras" in listing and "valid" in listing
    assert main(["evaluate", "scene", "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert set(scores) >= {"val_loss", "bits_per_char", "model_version"}


def test_cli_train_errors(home: Path, tmp_path: Path, capsys) -> None:
    from playbill.cli import main

    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"\xff\xfe" + "x".encode("utf-16-le") * 2000)
    assert main(["train", "scene", "--corpus", str(bad)]) == 2
    assert "not UTF-8" in capsys.readouterr().err
    assert main(["train", "scene", "--resume"]) == 2
    assert "no valid scene checkpoint" in capsys.readouterr().err
    assert main(["train", "scene", "--profile", "giant"]) == 2
    assert "unknown scene profile" in capsys.readouterr().err
    assert main(["write", "ROMEO:"]) == 2
    assert "train scene" in capsys.readouterr().err


def test_real_corpus_split(real_data_dir: Path) -> None:
    from playbill.engine.datasets import SHAKESPEARE, locate

    corpus = Corpus.load(locate(SHAKESPEARE, real_data_dir, download=False), 0.1, 100)
    assert len(corpus.vocabulary()) == 65
    assert len(corpus.validation) == pytest.approx(111_540, abs=2)


def test_cli_write_stops_at_a_boundary_by_default(trained, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    from playbill.cli import main

    monkeypatch.setenv("PLAYBILL_HOME", str(trained[0]))
    assert main(["write", "ROMEO:", "--length", "90", "--seed", "5", "--json"]) == 0
    stopped = json.loads(capsys.readouterr().out)["text"]
    assert main(["write", "ROMEO:", "--length", "90", "--seed", "5", "--no-stop", "--json"]) == 0
    full = json.loads(capsys.readouterr().out)["text"]
    assert stopped == cut_at_boundary(full, 90)


def test_bench_runs_both_samplers_on_the_same_weights(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    from playbill.cli import main

    assert main(["bench", "scene", "--length", "20", "--tutorial-length", "3", "--batch", "2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["parameters"] > 5_000_000  # the tutorial-size model
    assert result["tutorial_chars_per_s"] > 0 and result["single_chars_per_s"] > 0 and result["batch_chars_per_s"] > 0
    assert result["int8_single_chars_per_s"] > 0 and result["int8_batch_chars_per_s"] > 0
    assert result["single_vs_tutorial"] == pytest.approx(result["single_chars_per_s"] / result["tutorial_chars_per_s"])
    assert result["int8_batch_vs_float32"] == pytest.approx(result["int8_batch_chars_per_s"] / result["batch_chars_per_s"])
    assert main(["bench", "scene", "--profile", "default", "--length", "10", "--tutorial-length", "2", "--batch", "2",
                 "--json"]) == 0
    default = json.loads(capsys.readouterr().out)
    assert default["weights"].startswith("default") and default["parameters"] < result["parameters"] / 2
    assert main(["bench", "scene", "--profile", "huge"]) == 2
    assert "unknown profile 'huge'" in capsys.readouterr().err


def test_int8_threads_follow_the_model_size() -> None:
    """0 means: one thread when the int8 matrices fit one core's cache, two when they do not."""
    auto_threads = quantized.auto_threads

    def arrays(units: int, layers: int = 1) -> dict[str, np.ndarray]:
        out = {"dense_kernel": np.zeros((units, 65), np.int8)}
        for n in range(layers):
            out[f"lstm{n}_recurrent"] = np.zeros((units, 4 * units), np.int8)
            out[f"lstm{n}_kernel"] = np.zeros((256 if n == 0 else units, 4 * units), np.int8)
        return out

    assert auto_threads(arrays(512)) == 1  # the default profile: 1.1 MB
    assert auto_threads(arrays(1024)) == 2  # the tutorial size: 4.3 MB
    assert auto_threads(arrays(512, layers=2)) == 2  # the second layer's kernel counts too
