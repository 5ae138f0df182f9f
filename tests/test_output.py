"""Output a person can read: downloads with a progress bar and the published checksum checked
(tested with local file:// URLs, never the network), progress on evaluations, and no native
TensorFlow/LiteRT log lines unless -v."""

from __future__ import annotations

import hashlib
import io
import logging

import pytest

from playbill.engine import datasets
from playbill.engine.datasets import IMDB, SHAKESPEARE, Dataset, locate
from playbill.engine.errors import DataUnavailable


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
    caplog.set_level(logging.INFO, logger="playbill.engine.datasets")
    datasets._copy_with_progress(io.BytesIO(b"x" * (4 << 20)), io.BytesIO(), 4 << 20, "archive.tar.gz", io.StringIO())
    assert [r.getMessage() for r in caplog.records][-1] == "archive.tar.gz: 100% of 4.0 MiB"


# --- native log lines --------------------------------------------------------------------

NOISE = (b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
         b"I0000 00:00:1796123811.145075   20494 port.cc:153] oneDNN custom operations are on. You may see ...\n"
         b"E0000 00:00:1796123825.336589   20494 util.cc:131] oneDNN supports DT_BOOL only on platforms with AVX-512.\n"
         b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n")


def test_native_banners_are_hidden_and_everything_else_passes() -> None:
    import subprocess
    import sys

    code = ("import os, sys; from playbill.logs import hide_native_logs; hide_native_logs(); "
            f"os.write(2, {NOISE!r}); os.write(2, b'F0000 a real native failure\\n'); "
            "print('python line', file=sys.stderr, end='\\n')")
    err = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True).stderr
    assert sorted(err.decode().splitlines()) == ["F0000 a real native failure", "python line"]


def cli(home, *args: str):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    return subprocess.run([sys.executable, "-m", "playbill", *args], capture_output=True, text=True, timeout=600,
                          env={**env, "PLAYBILL_HOME": str(home), "PLAYBILL_SCENE__BACKEND": "int8"})


@pytest.mark.slow
def test_train_and_write_print_no_native_banners_unless_verbose(tmp_path) -> None:
    from fakes import train_tiny_scene

    home = tmp_path / "home"
    train_tiny_scene(home, tmp_path / "work")
    reviews = tmp_path / "reviews.csv"
    reviews.write_text("text,label\n" + "a wonderful film,positive\nan awful film,negative\n" * 20)
    quiet = [cli(home, "train", "sentiment", "--data", str(reviews), "--epochs", "1"),
             cli(home, "write", "ROMEO:", "--length", "20")]
    verbose = cli(home, "-v", "write", "ROMEO:", "--length", "20")
    shown = [line for r in quiet for line in r.stderr.splitlines() if "oneDNN" in line or "XNNPACK" in line]
    assert ([r.returncode for r in quiet], shown, "XNNPACK" in verbose.stderr) == ([0, 0], [], True)


def test_an_evaluation_reports_its_progress(tmp_path) -> None:
    from fakes import TINY_REVIEWS, train_tiny_sentiment
    from playbill.engine.models import spec

    train_tiny_sentiment(tmp_path / "home", tmp_path / "work")
    reviews = [(text, 1 if label == "positive" else 0) for text, label in TINY_REVIEWS[0] + TINY_REVIEWS[1]] * 300
    seen: list[tuple[int, int]] = []
    spec("sentiment").evaluate(tmp_path / "home", tmp_path, data=reviews, progress=lambda d, t: seen.append((d, t)))
    assert seen == [(0, 2400), (2048, 2400), (2400, 2400)]
