"""Settings, the model registry, checkpoints and dataset lookup."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from playbill.engine.checkpoints import CheckpointManager
from playbill.engine.datasets import IMDB, SHAKESPEARE, locate
from playbill.engine.errors import CheckpointError, DataUnavailable, ModelUnavailable
from playbill.engine.registry import ModelRegistry
from playbill.settings import discord_token, load_settings


def test_settings_layering(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Path("config.toml").write_text('[scene]\ntemperature = 0.5\ndefault_length = 300\n')
    monkeypatch.setenv("PLAYBILL_SCENE__DEFAULT_LENGTH", "123")
    monkeypatch.delenv("PLAYBILL_DATA_DIR", raising=False)
    s = load_settings()
    assert s.scene.temperature == 0.5  # from the file
    assert s.scene.default_length == 123  # the environment wins over the file
    assert s.home == home
    assert s.database_url == f"sqlite:///{home / 'playbill.db'}"
    assert s.data_dir == home / "data"


def test_token_only_from_environment(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Path("config.toml").write_text('[bot]\ntoken = "abc"\n')
    with pytest.raises(ValueError, match="environment only"):
        load_settings()
    monkeypatch.setenv("DISCORD_TOKEN", "  secret  ")
    token = discord_token()
    assert token is not None and token.get_secret_value() == "secret"
    assert "secret" not in repr(token)


def test_bad_setting_is_an_error(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLAYBILL_JOBS__KEEP_VERSIONS", "0")
    with pytest.raises(ValueError, match="keep_versions"):
        load_settings()


def test_limits_from_the_old_bot_section_move_to_the_model_sections(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Path("config.toml").write_text("[bot]\nmax_review_chars = 300\n")
    monkeypatch.setenv("PLAYBILL_BOT__MAX_PROMPT_CHARS", "40")
    s = load_settings()
    assert (s.sentiment.max_chars, s.scene.max_prompt_chars) == (300, 40)


def test_every_model_has_its_settings_section(settings) -> None:
    from playbill.engine.models import MODEL_NAMES
    from playbill.settings import MODEL_SECTIONS

    assert MODEL_SECTIONS == set(MODEL_NAMES)


def test_a_section_becomes_the_config_the_spec_makes_of_it(settings) -> None:
    from playbill.engine.models import spec

    settings.scene.seed, settings.scene.validation_fraction = 7, 0.2
    config = spec("scene").config_from(settings.section("scene"))
    assert (config.seed, config.validation_fraction) == (7, 0.2)


def test_the_model_section_wins_over_an_old_bot_key(home: Path) -> None:
    Path("config.toml").write_text("[bot]\nmax_review_chars = 300\n[sentiment]\nmax_chars = 200\n")
    assert load_settings().sentiment.max_chars == 200


def test_example_config_is_valid_and_complete(home: Path) -> None:
    import tomllib

    from playbill.settings import Settings

    example = Path(__file__).resolve().parents[1] / "config.example.toml"
    data = tomllib.loads(example.read_text())
    load_settings(example)  # every key in it parses
    documented = set(data) | {f"{k}.{kk}" for k, v in data.items() if isinstance(v, dict) for kk in v}
    expected = set()
    for name, field in Settings.model_fields.items():
        expected.add(name)
        sub = getattr(field.annotation, "model_fields", None)
        if sub:
            expected |= {f"{name}.{kk}" for kk in sub}
    missing = {key for key in expected - documented if "." in key or key not in data}
    # optional top-level keys may be shown commented out; nested keys too
    text = example.read_text()
    missing = {key for key in missing if f"{key.split('.')[-1]} =" not in text}
    assert not missing, f"config.example.toml does not document {sorted(missing)}"


def test_registry_versions_promote_rollback(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path, "critic")
    with pytest.raises(ModelUnavailable, match="playbill train critic"):
        reg.current()
    made = []
    for acc in (0.8, 0.9):
        with reg.new_version({"metrics": {"accuracy": acc}}) as staged:
            (staged.path / "weights").write_text(str(acc))
        made.append(staged.version)
    assert reg.current().version == made[0]  # the second waits to be promoted
    reg.promote(made[0])
    assert reg.current().metrics == {"accuracy": 0.8}
    reg.promote(made[1])
    assert reg.rollback() == made[0]
    assert reg.current_version() == made[0]


def test_registry_unpromoted_version_is_not_current(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path, "critic")
    with reg.new_version({}) as first:
        pass
    assert reg.current_version() == first.version  # the only version is the one used
    assert not reg.pinned()  # a registry that never had a pointer
    with reg.new_version({}) as candidate:
        pass
    assert reg.current_version() == first.version  # a candidate waits for promote()
    assert reg.pinned()
    reg.promote(first.version)
    with pytest.raises(ModelUnavailable, match="no earlier version"):
        reg.rollback()  # the first promotion has nothing before it
    reg.promote(candidate.version)
    assert reg.rollback() == first.version


def test_registry_failed_write_leaves_nothing(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path, "critic")
    with pytest.raises(RuntimeError):
        with reg.new_version({}) as staged:
            (staged.path / "half").write_text("x")
            raise RuntimeError("killed")
    assert reg.versions() == []
    assert list(reg.root.iterdir()) == []


class _FakeModel:
    """Anything with .save(path) can be checkpointed."""

    def __init__(self, payload: bytes) -> None:
        self.payload = payload

    def save(self, path: str) -> None:
        Path(path).write_bytes(self.payload)


def test_checkpoints_checksum_and_latest(tmp_path: Path) -> None:
    mgr = CheckpointManager(tmp_path, "scene")
    run = mgr.new_run()
    mgr.save(_FakeModel(b"one"), run, 1, {"val_loss": 2.0})
    second = mgr.save(_FakeModel(b"two"), run, 2, {"val_loss": 1.5})
    assert [c.epoch for c in mgr.list()] == [1, 2]
    assert mgr.latest_valid() == second
    second.path.write_bytes(b"tw")  # truncated on disk
    latest = mgr.latest_valid()
    assert latest is not None and latest.epoch == 1
    with pytest.raises(CheckpointError, match="corrupt"):
        mgr.resolve(second.path)
    assert mgr.resolve(f"{run}/epoch-0001.keras").val_loss == 2.0


def test_checkpoint_without_sidecar_is_ignored(tmp_path: Path) -> None:
    mgr = CheckpointManager(tmp_path, "scene")
    run = mgr.new_run()
    (mgr.root / run / "epoch-0001.keras").write_bytes(b"half-written")
    assert mgr.list() == [] and mgr.latest_valid() is None


def test_dataset_found_without_download(tmp_path: Path) -> None:
    (tmp_path / "aclImdb_v1_labeled.tar.gz").write_bytes(b"")
    assert locate(IMDB, tmp_path).name == "aclImdb_v1_labeled.tar.gz"
    (tmp_path / "shakespeare.txt").write_text("x")
    assert locate(SHAKESPEARE, tmp_path).name == "shakespeare.txt"


def test_missing_dataset_offline_is_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(DataUnavailable) as info:
        locate(SHAKESPEARE, tmp_path / "empty", download=False)
    message = str(info.value)
    assert "shakespeare.txt" in message and SHAKESPEARE.url in message and "\n" not in message


def test_cli_help_lists_commands() -> None:
    out = subprocess.run([sys.executable, "-m", "playbill.cli", "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "playbill" in out.stdout


def test_cli_bad_config_is_clear(home: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "playbill.cli", "--config", "missing.toml", "config"],
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 2
    assert "missing.toml does not exist" in out.stderr and "Traceback" not in out.stderr


def test_cli_config_shows_settings_but_not_token(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLAYBILL_DISCORD_TOKEN", "very-secret-token")
    out = subprocess.run([sys.executable, "-m", "playbill.cli", "config"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    shown = json.loads(out.stdout)
    assert shown["home"] == str(home) and shown["discord_token"] == "set (from the environment)"
    assert "very-secret-token" not in out.stdout + out.stderr


def test_a_version_and_its_run_copied_to_a_sandbox(tmp_path: Path) -> None:
    reg, mgr = ModelRegistry(tmp_path / "models", "critic"), CheckpointManager(tmp_path / "checkpoints", "critic")
    run = mgr.new_run()
    saved = mgr.save(_FakeModel(b"one"), run, 1, {"val_loss": 2.0})
    with reg.new_version({"run": run}) as staged:
        (staged.path / "weights").write_text("w")
    sandbox_reg = ModelRegistry(tmp_path / "sandbox" / "models", "critic")
    sandbox_mgr = CheckpointManager(tmp_path / "sandbox" / "checkpoints", "critic")
    sandbox_reg.copy_in(reg.get(staged.version))
    mgr.copy_run(run, sandbox_mgr)
    assert sandbox_reg.lineage() == {run: staged.version}
    assert sandbox_mgr.resume_point(sandbox_reg.lineage(), sandbox_reg.current_version()).sha256 == saved.sha256


def test_rejected_runs_are_never_resumed_and_pruned_first(tmp_path: Path) -> None:
    mgr = CheckpointManager(tmp_path, "critic")
    kept, turned_down = mgr.new_run(), mgr.new_run()
    mgr.save(_FakeModel(b"one"), kept, 1, {})
    mgr.save(_FakeModel(b"two"), turned_down, 2, {})
    mgr.reject_runs([turned_down], "v0002")  # marked: kept until the next prune, never resumed by a retrain
    assert mgr.resume_point({}, None).run == kept
    assert mgr.prune(keep=2, protected=[kept]) == [turned_down]
    assert mgr.runs() == [kept]
