"""Damaged model versions: verified when loaded, set aside, the previous good one served;
the commands that read the registry say what they found and print no traceback."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from fakes import publish_numpy_scene, train_tiny_sentiment
from playbill.engine.errors import CheckpointError, ModelUnavailable
from playbill.engine.models import spec
from playbill.engine.registry import CHECKSUMS_FILE, POINTER_FILE
from playbill.engine.serving import ModelHolder
from playbill.cli import main

SCENE = spec("scene")
SENTIMENT = spec("sentiment")


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def nan_weights(path: Path) -> None:
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    first = sorted(arrays)[0]
    arrays[first] = np.full_like(arrays[first], np.nan)
    np.savez(path, **arrays)


DAMAGE = {
    "a file missing": lambda v: (v / "vocabulary.json").unlink(),
    "junk weights": lambda v: (v / "sampler.npz").write_bytes(b"not an npz at all"),
    "flipped bytes in the npz": lambda v: flip_byte(v / "sampler.npz"),
    "garbled metadata.json": lambda v: (v / "metadata.json").write_text("{not json", "utf-8"),
    "NaN weights": lambda v: nan_weights(v / "sampler.npz"),
}


@pytest.fixture
def two_scenes(home: Path) -> tuple[str, str]:
    """Two promoted playwright versions (real, numpy-made); the second is current."""
    return publish_numpy_scene(home, seed=1), publish_numpy_scene(home, seed=2)


def folder(home: Path, model: str, version: str) -> Path:
    return home / "models" / model / version


@pytest.fixture(scope="module")
def trained_critic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home with one tiny trained critic, trained once for the module; tests copy it."""
    home = tmp_path_factory.mktemp("critic") / "home"
    train_tiny_sentiment(home, home.parent / "work")
    return home / "models" / "sentiment"


def test_a_published_version_records_the_checksums_of_its_files(trained_critic: Path) -> None:
    version = next(p for p in trained_critic.iterdir() if p.is_dir())
    recorded = json.loads((version / CHECKSUMS_FILE).read_text("utf-8"))["sha256"]
    assert {"serving.npz", "vocabulary.json", "config.json", "model.keras"} <= set(recorded)


def test_an_intact_version_verifies(trained_critic: Path, home: Path) -> None:
    shutil.copytree(trained_critic, home / "models" / "sentiment")
    version = SENTIMENT.registry(home).current_version()
    assert SENTIMENT.verify(home, version) == []


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_current_version_is_set_aside_and_the_previous_one_served(
        home: Path, two_scenes: tuple[str, str], damage: str, caplog: pytest.LogCaptureFixture) -> None:
    first, second = two_scenes
    DAMAGE[damage](folder(home, "scene", second))
    holder = ModelHolder(SCENE, home, {"backend": "float32"})
    with caplog.at_level(logging.WARNING, logger="playbill.engine.serving"):
        holder.refresh()
    assert holder.version == first
    assert f"scene {second} is damaged and set aside" in caplog.text


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_verify_names_each_problem(home: Path, two_scenes: tuple[str, str], damage: str) -> None:
    _, second = two_scenes
    DAMAGE[damage](folder(home, "scene", second))
    assert SCENE.verify(home, second) != []


def test_nan_weights_are_refused_even_without_recorded_checksums(home: Path, two_scenes: tuple[str, str]) -> None:
    first, second = two_scenes
    (folder(home, "scene", second) / CHECKSUMS_FILE).unlink()  # a version from before checksums
    nan_weights(folder(home, "scene", second) / "sampler.npz")
    with pytest.raises(ModelUnavailable, match="NaN or infinite"):
        SCENE.load(folder(home, "scene", second), backend="float32")


def test_a_version_from_before_checksums_still_serves(home: Path, two_scenes: tuple[str, str]) -> None:
    _, second = two_scenes
    (folder(home, "scene", second) / CHECKSUMS_FILE).unlink()
    holder = ModelHolder(SCENE, home, {"backend": "float32"})
    holder.refresh()
    assert holder.version == second


def test_garbled_critic_config_falls_back(trained_critic: Path, home: Path) -> None:
    shutil.copytree(trained_critic, home / "models" / "sentiment")
    registry = SENTIMENT.registry(home)
    first = registry.current_version()
    with registry.new_version({"metrics": {}}) as staged:  # a second version: a copy of the first
        for item in (registry.root / first).iterdir():
            if item.name not in ("metadata.json", CHECKSUMS_FILE):
                shutil.copy(item, staged.path / item.name)
    registry.promote(staged.version)
    (registry.root / staged.version / "config.json").write_text("[1, 2", "utf-8")
    holder = ModelHolder(SENTIMENT, home)
    holder.refresh()
    assert holder.version == first


def test_with_every_version_damaged_nobody_is_told_none_was_trained(home: Path, two_scenes: tuple[str, str]) -> None:
    for version in two_scenes:
        flip_byte(folder(home, "scene", version) / "sampler.npz")
    holder = ModelHolder(SCENE, home, {"backend": "float32"})
    holder.refresh()
    with pytest.raises(ModelUnavailable, match="versions are damaged"):
        holder.model  # noqa: B018 - the property raises


def test_a_repaired_version_is_served_again(home: Path, two_scenes: tuple[str, str]) -> None:
    _, second = two_scenes
    weights = folder(home, "scene", second) / "sampler.npz"
    good = weights.read_bytes()
    flip_byte(weights)
    holder = ModelHolder(SCENE, home, {"backend": "float32"})
    holder.refresh()
    weights.write_bytes(good)
    holder.refresh()
    assert holder.version == second


def test_a_non_utf8_pointer_counts_the_last_promoted_version(home: Path, two_scenes: tuple[str, str]) -> None:
    _, second = two_scenes
    (home / "models" / "scene" / POINTER_FILE).write_bytes(b"\xff\xfe\x00v")
    assert SCENE.registry(home).current_version() == second


def test_an_empty_pointer_after_a_rollback_keeps_the_version_rolled_back_to(
        home: Path, two_scenes: tuple[str, str]) -> None:
    first, _ = two_scenes
    registry = SCENE.registry(home)
    registry.rollback()
    (registry.root / POINTER_FILE).write_text("", "utf-8")
    assert registry.current_version() == first


def test_models_list_says_what_it_found(home: Path, two_scenes: tuple[str, str], capsys) -> None:
    _, second = two_scenes
    flip_byte(folder(home, "scene", second) / "sampler.npz")
    assert main(["models", "list", "scene"]) == 0
    assert "sampler.npz does not match its recorded checksum" in capsys.readouterr().out


def test_models_promote_refuses_a_damaged_version_one_line_per_problem(home: Path, two_scenes, capsys) -> None:
    first, second = two_scenes
    main(["models", "rollback", "scene"])
    version = folder(home, "scene", second)
    flip_byte(version / "sampler.npz")
    (version / "vocabulary.json").unlink()
    capsys.readouterr()
    assert main(["models", "promote", "scene", second]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[1:] == ["  sampler.npz does not match its recorded checksum (changed or damaged)",
                       "  vocabulary.json is missing"]


def test_models_rollback_refuses_a_damaged_target(home: Path, two_scenes, capsys) -> None:
    first, _ = two_scenes
    flip_byte(folder(home, "scene", first) / "sampler.npz")
    assert main(["models", "rollback", "scene"]) == 2
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize("pointer", [b"\xff\xfe", b"", b"v9999-gone\n"])
def test_models_commands_on_a_damaged_pointer_give_no_traceback(home: Path, two_scenes, capsys, pointer) -> None:
    (home / "models" / "scene" / POINTER_FILE).write_bytes(pointer)
    (home / "models" / "scene" / "promotions.jsonl").open("ab").write(b"\xff garbage\n")
    codes = [main(["models", "list"]), main(["models", "rollback", "scene"]),
             main(["models", "promote", "scene", two_scenes[1]])]
    assert codes == [0, 0, 0]


def test_write_serves_the_previous_version_when_the_current_is_damaged(home: Path, two_scenes, capsys) -> None:
    _, second = two_scenes
    (folder(home, "scene", second) / "metadata.json").write_text("{", "utf-8")
    assert main(["write", "ROMEO:", "--length", "20", "--backend", "float32", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["model_version"] == two_scenes[0]


def test_write_with_a_damaged_version_asked_for_is_one_error(home: Path, two_scenes, capsys) -> None:
    _, second = two_scenes
    flip_byte(folder(home, "scene", second) / "sampler.npz")
    assert main(["write", "ROMEO:", "--version", second, "--backend", "float32"]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_predict_with_a_non_utf8_pointer_serves(trained_critic: Path, home: Path, capsys) -> None:
    shutil.copytree(trained_critic, home / "models" / "sentiment")
    (home / "models" / "sentiment" / POINTER_FILE).write_bytes(b"\x80\x81")
    assert main(["predict", "a wonderful film", "--json"]) == 0
    assert "positive_probability" in capsys.readouterr().out


@pytest.mark.parametrize("sidecar", [b"\xff\xfe", b"[1, 2]", b'{"epoch": "x", "sha256": 3}'])
def test_checkpoints_with_a_bad_sidecar_give_no_traceback(home: Path, capsys, sidecar: bytes) -> None:
    run = home / "checkpoints" / "scene" / "run-20260101T000000000000"
    run.mkdir(parents=True)
    (run / "epoch-0001.keras").write_bytes(b"x")
    (run / "epoch-0001.json").write_bytes(sidecar)
    assert main(["checkpoints", "scene"]) == 0
    assert main(["checkpoints", "sentiment"]) == 0
    with pytest.raises(CheckpointError, match="cannot be used"):
        SCENE.checkpoints(home).resolve(run / "epoch-0001.keras")  # `train --checkpoint`: one line


def console_transcript(settings, script: str) -> str:
    import asyncio
    import io

    from playbill.bot.console import run_console

    out = io.StringIO()
    asyncio.run(run_console(settings, io.StringIO(script), out))
    return out.getvalue()


def test_the_console_serves_the_previous_version_when_the_current_is_damaged(settings, two_scenes) -> None:
    first, second = two_scenes
    flip_byte(folder(settings.home, "scene", second) / "sampler.npz")
    out = console_transcript(settings, "/write-scene ROMEO: 20\n")
    assert f"scene {first}" in out and "scene model" not in out


def test_the_console_says_the_versions_are_damaged_not_that_none_was_trained(settings, two_scenes) -> None:
    for version in two_scenes:
        (folder(settings.home, "scene", version) / "vocabulary.json").unlink()
    out = console_transcript(settings, "/write-scene ROMEO: 20\n")
    assert "Every scene version is damaged" in out and "scene model is trained yet" not in out
    assert "No trained sentiment model yet" in out  # the critic, never trained, is told apart


@pytest.fixture
def small_checkpoints_disk(home: Path):
    """`<home>/checkpoints` on a real 64 KiB file system (a tmpfs): the first checkpoint fills it."""
    import subprocess

    folder = home / "checkpoints"
    folder.mkdir(parents=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (it needs root); tests/test_retrain_faults.py injects ENOSPC")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=False)


def test_a_full_disk_during_train_is_one_line_and_leaves_no_checkpoint(home: Path, tmp_path: Path,
                                                                       small_checkpoints_disk: Path) -> None:
    import subprocess
    import sys

    from fakes import TINY_PLAY

    corpus = tmp_path / "play.txt"
    corpus.write_text(TINY_PLAY * 3, encoding="utf-8")
    run = subprocess.run([sys.executable, "-m", "playbill.cli", "train", "playwright", "--profile", "quick",
                          "--epochs", "1", "--corpus", str(corpus)], capture_output=True, text=True, timeout=600)
    assert run.returncode == 2, run.stderr[-2000:]
    assert run.stderr.strip().splitlines() == [run.stderr.strip()]  # one line
    assert run.stderr.startswith(f"error: cannot write {small_checkpoints_disk / 'scene' / 'run-'}")
    assert "No space left on device; the disk is full" in run.stderr and "Traceback" not in run.stderr
    assert list((small_checkpoints_disk / "scene").iterdir()) == []  # no failed checkpoint, no empty run folder
