"""The two public datasets: found in the data directory, or downloaded there once.

A read-only data directory holding the files (as in CI) works: nothing is written to it
when the file is already there.
"""

from __future__ import annotations

import hashlib
import logging
import sys
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from playbill.engine.errors import DataUnavailable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Dataset:
    name: str
    url: str
    filename: str
    also_accepted: tuple[str, ...] = ()  # other names or extracted folders that mean "already here"
    md5: str | None = None  # the published checksums a download must match
    sha256: str | None = None


IMDB = Dataset(
    name="IMDB Large Movie Review Dataset",
    url="https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz",
    filename="aclImdb_v1.tar.gz",
    also_accepted=("aclImdb", "aclImdb_v1_labeled.tar.gz"),
    # As published with the dataset's loaders (TensorFlow Datasets, MLDatasets.jl; md5 in PaddlePaddle's).
    sha256="c40f74a18d3b61f90feba1e17730e0d38e8b97c05fde7008942e91923d1658fe",
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
    """Fetch the file into data_dir (a bar on a terminal's stderr), keep it only if its checksum
    is the published one."""
    target = data_dir / dataset.filename
    tmp_path: Path | None = None
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        log.info("downloading %s from %s", dataset.name, dataset.url)
        with tempfile.NamedTemporaryFile(dir=data_dir, prefix=".download-", delete=False) as tmp:
            tmp_path = Path(tmp.name)
            with urllib.request.urlopen(dataset.url, timeout=60) as response:  # noqa: S310 - fixed https URL
                total = int(response.headers.get("Content-Length") or 0)
                _copy_with_progress(response, tmp, total, dataset.filename)
        problem = checksum_problem(dataset, tmp_path)
        if problem:
            raise DataUnavailable(_missing_message(dataset, data_dir, f"the download was corrupt: {problem}"))
        tmp_path.replace(target)
        tmp_path = None
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise DataUnavailable(_missing_message(dataset, data_dir, f"offline or unreachable: {exc}")) from None
    finally:
        if tmp_path is not None:
            tmp_path.unlink(missing_ok=True)
    return target


def checksum_problem(dataset: Dataset, path: Path) -> str | None:
    """None if the file matches the dataset's published checksums, else what differs."""
    for name, expected in (("sha256", dataset.sha256), ("md5", dataset.md5)):
        if expected:
            found = hash_file(path, hashlib.new(name)).hexdigest()  # md5: only to match the published sum
            if found != expected:
                return f"its {name} is {found}, the published one is {expected}"
    return None


def _copy_with_progress(source, target, total: int, label: str, stream=None) -> None:
    """Copy in 1 MiB blocks, showing `label [###      ] 12.0 / 80.2 MiB (15%)` on a terminal, redrawn in place
    (a log line at each quarter when stderr is not a terminal)."""
    stream = stream if stream is not None else sys.stderr
    live = getattr(stream, "isatty", lambda: False)()
    done, shown = 0, -1
    while block := source.read(1 << 20):
        target.write(block)
        done += len(block)
        percent = int(done * 100 / total) if total else -1
        if live:
            bar = f"[{'#' * (percent // 5):<20}] " if total else ""
            of = f" / {total / 2**20:.1f} MiB ({percent}%)" if total else " MiB"
            stream.write(f"\r  {label} {bar}{done / 2**20:.1f}{of}\x1b[K")
            stream.flush()
        elif total and percent // 25 > shown:
            shown = percent // 25
            log.info("%s: %d%% of %.1f MiB", label, percent, total / 2**20)
    if live:
        stream.write("\n")
        stream.flush()


def hash_file(path: Path, digest=None):
    """Feed a file's bytes into `digest` (default: a new SHA-256) in 1 MiB blocks; return it."""
    digest = hashlib.sha256() if digest is None else digest
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest


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
