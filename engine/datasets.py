"""The two public datasets: found in the data directory, or downloaded there once.

A read-only data directory holding the files (as in CI) works: nothing is written to it
when the file is already there.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from engine.errors import DataUnavailable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Dataset:
    name: str
    url: str
    filename: str
    also_accepted: tuple[str, ...] = ()  # other names or extracted folders that mean "already here"
    md5: str | None = None


IMDB = Dataset(
    name="IMDB Large Movie Review Dataset",
    url="https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz",
    filename="aclImdb_v1.tar.gz",
    also_accepted=("aclImdb", "aclImdb_v1_labeled.tar.gz"),
)

SHAKESPEARE = Dataset(
    name="Tiny Shakespeare",
    url="https://storage.googleapis.com/download.tensorflow.org/data/shakespeare.txt",
    filename="shakespeare.txt",
    md5="6fb458f1232090904fb40fe944165e91",
)


def locate(dataset: Dataset, data_dir: Path, download: bool = True) -> Path:
    """Path of the dataset in `data_dir` (an extracted folder or an archive), downloading if absent."""
    data_dir = Path(data_dir)
    for name in (*dataset.also_accepted, dataset.filename):
        candidate = data_dir / name
        if candidate.exists():
            return candidate
    if not download:
        raise DataUnavailable(_missing_message(dataset, data_dir, "downloads are off"))
    return _download(dataset, data_dir)


def _missing_message(dataset: Dataset, data_dir: Path, why: str) -> str:
    return (
        f"{dataset.name} is not available ({why}): download {dataset.url} and put "
        f"{dataset.filename} in {data_dir.resolve()} (or set PLAYBILL_DATA_DIR to the folder that has it)"
    )


def _download(dataset: Dataset, data_dir: Path) -> Path:
    target = data_dir / dataset.filename
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        log.info("downloading %s from %s", dataset.name, dataset.url)
        with tempfile.NamedTemporaryFile(dir=data_dir, prefix=".download-", delete=False) as tmp:
            with urllib.request.urlopen(dataset.url, timeout=60) as response:  # noqa: S310 - fixed https URL
                shutil.copyfileobj(response, tmp, length=1 << 20)
        tmp_path = Path(tmp.name)
        if dataset.md5 and _md5(tmp_path) != dataset.md5:
            tmp_path.unlink(missing_ok=True)
            raise DataUnavailable(_missing_message(dataset, data_dir, "the download was corrupt"))
        tmp_path.replace(target)
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise DataUnavailable(_missing_message(dataset, data_dir, f"offline or unreachable: {exc}")) from None
    return target


def hash_file(path: Path, digest=None):
    """Feed a file's bytes into `digest` (default: a new SHA-256) in 1 MiB blocks; return it."""
    digest = hashlib.sha256() if digest is None else digest
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest


def _md5(path: Path) -> str:
    return hash_file(path, hashlib.md5()).hexdigest()  # noqa: S324 - matches the published checksum


def fingerprint(*paths: Path) -> str:
    """A short SHA-256 over files' bytes: records exactly which data a model saw."""
    digest = hashlib.sha256()
    for path in paths:
        path = Path(path)
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            digest.update(file.name.encode())
            hash_file(file, digest)
    return digest.hexdigest()[:16]
