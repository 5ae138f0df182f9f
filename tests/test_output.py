"""Output a person can read: downloads with a progress bar and the published checksum checked
(tested with local file:// URLs, never the network), progress on evaluations, and no native
TensorFlow/LiteRT log lines unless -v."""

from __future__ import annotations

import hashlib
import io
import logging

import pytest

from engine import datasets
from engine.datasets import IMDB, SHAKESPEARE, Dataset, locate
from engine.errors import DataUnavailable


def local(tmp_path, payload: bytes, **checksums) -> Dataset:
    source = tmp_path / "published" / "archive.tar.gz"
    source.parent.mkdir()
    source.write_bytes(payload)
    return Dataset(name="A dataset", url=source.as_uri(), filename="archive.tar.gz", **checksums)


def test_a_download_with_the_published_checksum_is_kept(tmp_path) -> None:
    payload = b"reviews " * 1000
    dataset = local(tmp_path, payload, sha256=hashlib.sha256(payload).hexdigest())
    assert locate(dataset, tmp_path / "data").read_bytes() == payload


def test_a_corrupt_download_is_refused_and_removed(tmp_path) -> None:
    dataset = local(tmp_path, b"truncated", sha256=IMDB.sha256)
    with pytest.raises(DataUnavailable, match="corrupt: its sha256 is"):
        locate(dataset, tmp_path / "data")
    assert list((tmp_path / "data").iterdir()) == []


def test_the_md5_is_checked_too(tmp_path) -> None:
    dataset = local(tmp_path, b"not shakespeare", md5=SHAKESPEARE.md5)
    with pytest.raises(DataUnavailable, match="its md5 is"):
        locate(dataset, tmp_path / "data")


def test_the_real_datasets_carry_their_published_checksums() -> None:
    assert (len(IMDB.sha256 or ""), SHAKESPEARE.md5) == (64, "6fb458f1232090904fb40fe944165e91")


def test_the_shipped_shakespeare_matches_its_checksum(real_data_dir) -> None:
    assert datasets.checksum_problem(SHAKESPEARE, real_data_dir / SHAKESPEARE.filename) is None


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_download_shows_a_progress_bar_on_a_terminal() -> None:
    shown = Terminal()
    datasets._copy_with_progress(io.BytesIO(b"x" * (3 << 20)), io.BytesIO(), 3 << 20, "archive.tar.gz", shown)
    assert shown.getvalue().rstrip().endswith("[####################] 3.0 / 3.0 MiB (100%)\x1b[K")


def test_a_download_logs_its_progress_when_not_on_a_terminal(caplog) -> None:
    caplog.set_level(logging.INFO, logger="engine.datasets")
    datasets._copy_with_progress(io.BytesIO(b"x" * (4 << 20)), io.BytesIO(), 4 << 20, "archive.tar.gz", io.StringIO())
    assert [r.getMessage() for r in caplog.records][-1] == "archive.tar.gz: 100% of 4.0 MiB"
