"""Models through the database: hosts with separate homes share versions through the database
alone (history/model_store.py), on SQLite and on PostgreSQL."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from fakes import publish_fake_version, publish_numpy_scene
from playbill.engine.errors import ModelUnavailable
from playbill.engine.models import spec
from playbill.engine.scene import SceneRequest
from playbill.engine.scene.config import VOCABULARY_FILE, WEIGHTS_FILE
from playbill.engine.registry import DamagedVersion, ModelRegistry, PromotionConflict, open_registry
from playbill.engine.serving import ModelHolder
from playbill.history import db
from playbill.history.model_store import (
    DatabaseRegistry,
    ModelTooLarge,
    forget_stores,
    model_store,
    use_model_store,
    uses_database,
)
from playbill.history.models import ModelPromotion, StoredModelFile, StoredModelVersion
from playbill.settings import load_settings

PG_ENV = "PLAYBILL_TEST_DATABASE_URL"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty, migrated database: a SQLite file, or a fresh schema on the test PostgreSQL server."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'shared-db' / 'playbill.db'}"
        db.upgrade(url)
        yield url
        forget_stores()
        return
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(f"{PG_ENV} is not set")
    schema = f"pbfleet_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base)
    with admin.begin() as connection:
        connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)
    try:
        db.upgrade(url)
        yield url
    finally:
        forget_stores()
        with admin.begin() as connection:
            connection.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


def host_settings(tmp_path: Path, host: str, url: str, **store):
    """The settings of one host: its own home, the shared database, models in the database."""
    home = tmp_path / host
    home.mkdir(exist_ok=True)
    settings = load_settings(home=home, database_url=url, model_store={"kind": "database", **store})
    assert use_model_store(settings)
    return settings


@pytest.fixture
def hosts(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    a, b = host_settings(tmp_path, "a", db_url), host_settings(tmp_path, "b", db_url)
    yield a, b
    for s in (a, b):
        use_model_store(load_settings(home=s.home))  # back to files for these folders


def rows(url: str, model) -> int:
    with model_store_for(url).sessions() as session:
        return session.scalar(sa.select(sa.func.count()).select_from(model))


def model_store_for(url: str):
    return model_store(load_settings(database_url=url))


def test_the_registry_kind_follows_the_settings(tmp_path: Path) -> None:
    sqlite = load_settings(home=tmp_path / "h")
    assert not uses_database(sqlite)
    assert uses_database(load_settings(home=tmp_path / "h", database_url="postgresql+psycopg://u@db/playbill"))
    assert not uses_database(load_settings(home=tmp_path / "h", database_url="postgresql+psycopg://u@db/p",
                                           model_store={"kind": "files"}))
    assert uses_database(load_settings(home=tmp_path / "h", model_store={"kind": "database"}))
    assert not use_model_store(sqlite)
    assert type(open_registry(sqlite.models_dir, "scene")) is ModelRegistry


def test_a_version_published_on_one_host_is_served_on_another(hosts) -> None:
    a, b = hosts
    version = publish_numpy_scene(a.home)  # trained and promoted on host a
    on_b = spec("scene").registry(b.home)
    assert isinstance(on_b, DatabaseRegistry)
    assert not (b.models_dir / "scene" / version).exists()  # nothing shared but the database
    assert on_b.current_version() == version
    assert [v.version for v in on_b.versions()] == [version]

    holder = ModelHolder(spec("scene"), b.home, b.section("scene"))
    assert holder.refresh() and holder.version == version  # downloaded, verified, loaded
    assert holder.model.generate(SceneRequest(prompt="ROMEO:", length=20, temperature=0.8))
    for name in (WEIGHTS_FILE, VOCABULARY_FILE):
        assert (b.models_dir / "scene" / version / name).read_bytes() == (a.models_dir / "scene" / version / name).read_bytes()

    newer = publish_numpy_scene(a.home, seed=1)
    assert holder.refresh() and holder.version == newer  # the next refresh serves the promotion
    assert [step["version"] for step in on_b.promotions()] == [version, newer]


def test_promotion_is_compare_and_swap(hosts, db_url: str) -> None:
    a, b = hosts
    first = publish_fake_version(a.home, "sentiment")
    second = publish_fake_version(a.home, "sentiment")
    on_a, on_b = spec("sentiment").registry(a.home), spec("sentiment").registry(b.home)
    on_a.promote(first, expected=on_a.current_version())
    before = rows(db_url, ModelPromotion)
    on_b.promote(second, reason="b first", expected=first)
    with pytest.raises(PromotionConflict, match="another process promoted first"):
        on_a.promote(first, reason="a too late", expected=first)  # a still thinks `first` is current
    assert on_a.current_version() == second
    assert rows(db_url, ModelPromotion) == before + 1  # the refused promotion left no record

    assert on_a.rollback() == first  # from any host
    assert on_b.current_version() == first
    assert on_b.promotions()[-1]["reason"] == f"rollback from {second}"


@pytest.mark.postgres
def test_concurrent_promotions_one_wins(hosts) -> None:
    a, b = hosts
    if not str(a.database_url).startswith("postgresql"):
        pytest.skip("row locks: the server database")
    base = publish_fake_version(a.home, "sentiment")
    candidates = [publish_fake_version(a.home, "sentiment") for _ in range(4)]
    registry = spec("sentiment").registry(a.home)
    registry.promote(base)
    outcomes: list[str] = []

    def promote(version: str, home: Path) -> None:
        try:
            spec("sentiment").registry(home).promote(version, expected=base)
            outcomes.append("promoted")
        except PromotionConflict:
            outcomes.append("conflict")

    threads = [threading.Thread(target=promote, args=(v, (a if i % 2 else b).home)) for i, v in enumerate(candidates)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(outcomes) == ["conflict"] * 3 + ["promoted"]
    assert registry.current_version() in candidates


def test_a_damaged_cache_is_downloaded_again_and_damaged_rows_are_refused(hosts, db_url: str) -> None:
    a, b = hosts
    version = publish_numpy_scene(a.home)
    on_b = spec("scene").registry(b.home)
    assert on_b.verify(version) == []
    cached = b.models_dir / "scene" / version / WEIGHTS_FILE
    cached.write_bytes(b"not the weights")
    assert on_b.verify(version) == []  # downloaded again
    assert cached.read_bytes() != b"not the weights"

    with model_store_for(db_url).sessions.begin() as session:
        session.execute(sa.update(StoredModelFile).where(StoredModelFile.path == WEIGHTS_FILE)
                        .values(content=b"damaged in the database"))
    cached.write_bytes(b"damaged here too")
    problems = on_b.verify(version)
    assert problems == ["sampler.npz in the database does not match its recorded checksum"]
    with pytest.raises(DamagedVersion, match="sampler.npz in the database"):
        on_b.promote(version)


def test_a_version_too_large_is_refused_with_the_limit(tmp_path: Path, db_url: str, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    small = host_settings(tmp_path, "small", db_url, max_version_mb=0.001)  # 1,000 bytes
    try:
        registry = spec("sentiment").registry(small.home)
        with pytest.raises(ModelTooLarge, match=r"more than the database model store takes \(0 MB, \[model_store\] max_version_mb"):
            with registry.new_version({"metrics": {}}) as staged:
                (staged.path / "weights.bin").write_bytes(b"x" * 5000)
        assert registry.versions() == []
        assert rows(db_url, StoredModelVersion) == 0
        assert [p.name for p in (small.models_dir / "sentiment").iterdir() if not p.name.startswith(".")] == []
    finally:
        use_model_store(load_settings(home=small.home))


def test_remove_and_prune_reach_every_host(hosts, db_url: str) -> None:
    a, b = hosts
    versions = [publish_fake_version(a.home, "sentiment") for _ in range(4)]
    on_a, on_b = spec("sentiment").registry(a.home), spec("sentiment").registry(b.home)
    on_a.promote(versions[1])
    for v in versions:
        on_b.get(v)  # cached on b
    with pytest.raises(ModelUnavailable, match="is the current version"):
        on_b.remove(versions[1])
    assert sorted(on_b.prune(keep=1)) == [versions[0], versions[2]]
    assert [v.version for v in on_a.versions()] == [versions[1], versions[3]]
    assert rows(db_url, StoredModelVersion) == 2
    assert not (b.models_dir / "sentiment" / versions[0]).exists()
    (a.models_dir / "sentiment" / versions[2]).mkdir(exist_ok=True)  # a stale copy a prune on b left on a
    os.utime(a.models_dir / "sentiment" / versions[2], (0, 0))
    assert versions[2] in on_a.remove_leftovers()


def test_models_commands_work_from_a_host_that_never_trained(hosts, capsys, monkeypatch) -> None:
    from playbill.cli import main

    a, b = hosts
    first = publish_numpy_scene(a.home, {"val_loss": 2.0})
    second = publish_numpy_scene(a.home, {"val_loss": 1.9}, seed=1, promote=False)
    monkeypatch.setenv("PLAYBILL_HOME", str(b.home))
    monkeypatch.setenv("PLAYBILL_DATABASE_URL", str(b.database_url))
    monkeypatch.setenv("PLAYBILL_MODEL_STORE__KIND", "database")
    assert main(["models", "list", "scene"]) == 0
    listing = capsys.readouterr().out
    assert f"* {first}" in listing and second in listing and "DAMAGED" not in listing
    assert main(["models", "promote", "scene", second]) == 0
    assert spec("scene").registry(a.home).current_version() == second
    assert main(["models", "rollback", "scene"]) == 0
    assert f"rolled back from {second} to {first}" in capsys.readouterr().out
    assert spec("scene").registry(a.home).current_version() == first
    assert main(["models", "promote", "scene", "v9999-nothing"]) == 2  # one line, no traceback
    assert "has no version 'v9999-nothing'" in capsys.readouterr().err


def test_a_file_registry_can_be_imported(tmp_path: Path, db_url: str, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    old = load_settings(home=tmp_path / "old")
    use_model_store(old)
    versions = [publish_fake_version(old.home, "sentiment") for _ in range(2)]
    ModelRegistry(old.models_dir, "sentiment").promote(versions[0])
    new = host_settings(tmp_path, "old", db_url)  # the same home, now on the database
    try:
        registry = spec("sentiment").registry(new.home)
        assert registry.import_folder(ModelRegistry(old.models_dir, "sentiment")) == versions
        assert registry.current_version() == versions[0]
        assert registry.import_folder(ModelRegistry(old.models_dir, "sentiment")) == []
    finally:
        use_model_store(old)


@pytest.mark.slow
def test_a_host_without_checkpoints_continues_from_the_current_version(hosts, tmp_path: Path) -> None:
    from fakes import train_tiny_sentiment

    from playbill.engine.checkpoints import CheckpointManager
    from playbill.engine.sentiment import SentimentConfig

    a, b = hosts
    version = train_tiny_sentiment(a.home, tmp_path / "work")  # trained and promoted on host a
    started = CheckpointManager(a.checkpoints_dir, "sentiment").best_valid()
    on_b = spec("sentiment").registry(b.home)
    assert not b.checkpoints_dir.exists()
    assert on_b.restore_checkpoint()
    restored = CheckpointManager(b.checkpoints_dir, "sentiment").resume_point(on_b.lineage(), version)
    assert restored is not None and restored.label() == started.label() and restored.verify()
    assert not on_b.restore_checkpoint()  # already there

    config = SentimentConfig(vocab_size=200, ngram_buckets=500, window=16, embedding_dim=8, lstm_units=8,
                             batch_size=16, epochs=1)
    result = spec("sentiment").train(config, b.home, tmp_path / "work", epochs=1, resume=True,
                                     data=tmp_path / "work" / "reviews.csv", progress=False, promote=False)
    assert result.started_from == started.label()  # continued, not started afresh
    assert result.version in [v.version for v in spec("sentiment").registry(a.home).versions()]  # published


def test_a_database_without_versions_adopts_the_hosts_folder(tmp_path: Path, db_url: str, monkeypatch) -> None:
    """Moving an install that kept models in files onto the database: nothing to do by hand."""
    monkeypatch.chdir(tmp_path)
    files = load_settings(home=tmp_path / "h")
    use_model_store(files)
    first = publish_numpy_scene(files.home)
    publish_numpy_scene(files.home, seed=1, promote=False)
    (files.models_dir / "scene" / first / "checksums.json").unlink()  # a version from before checksums
    on_db = host_settings(tmp_path, "h", db_url)
    try:
        registry = spec("scene").registry(on_db.home)
        assert len(registry.versions()) == 2 and registry.current_version() == first
        assert registry.verify(first) == []
        other = spec("scene").registry(host_settings(tmp_path, "other", db_url).home)
        assert other.current_version() == first and other.verify(first) == []
    finally:
        use_model_store(files)
