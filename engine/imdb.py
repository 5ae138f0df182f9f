"""Labelled reviews: the IMDB archive (read in place, never extracted) or a user's CSV.

The data directory may be read-only, so the `.tar.gz` is streamed member by member
with `tarfile` instead of being unpacked. Labels: positive = 1, negative = 0.
"""

from __future__ import annotations

import csv
import io
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path

from playbill.engine.datasets import IMDB, fingerprint, locate
from playbill.engine.errors import DataUnavailable, InvalidInput

_MEMBER = re.compile(r"(?:^|/)aclImdb/(train|test)/(pos|neg)/[^/]+\.txt$")
POSITIVE_WORDS = {"1", "positive", "pos"}
NEGATIVE_WORDS = {"0", "negative", "neg"}


@dataclass
class Reviews:
    texts: list[str]
    labels: list[int]
    source: str  # what was read, for messages and metadata
    fingerprint: str  # of the bytes read

    def __len__(self) -> int:
        return len(self.texts)


def load_imdb(data_dir: Path, split: str, download: bool = True) -> Reviews:
    """All reviews of `split` ("train" or "test"), in a fixed order (sorted by path)."""
    if split not in ("train", "test"):
        raise ValueError(f"unknown IMDB split {split!r}")
    source = locate(IMDB, Path(data_dir), download=download)
    found: list[tuple[str, int, str]] = []
    if source.is_dir():
        root = source if source.name == "aclImdb" else source / "aclImdb"
        for label_name, label in (("neg", 0), ("pos", 1)):
            for path in (root / split / label_name).glob("*.txt"):
                found.append((str(path.relative_to(root.parent)), label, path.read_text("utf-8", errors="replace")))
    else:
        try:
            with tarfile.open(source, "r|gz") as archive:  # streaming: one pass, no extraction
                for member in archive:
                    match = _MEMBER.search(member.name)
                    if not member.isfile() or not match or match.group(1) != split:
                        continue
                    data = archive.extractfile(member).read()  # type: ignore[union-attr]
                    found.append((member.name, 1 if match.group(2) == "pos" else 0, data.decode("utf-8", "replace")))
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise DataUnavailable(f"{source} is not a readable IMDB archive ({exc}); download it again") from None
    if not found:
        raise DataUnavailable(f"{source} holds no aclImdb/{split}/pos|neg reviews")
    found.sort()
    return Reviews([t for _, _, t in found], [y for _, y, _ in found], f"IMDB {split} ({source})", fingerprint(source))


def load_csv(path: Path) -> Reviews:
    """A CSV with a header and columns `text` and `label` (positive/negative or 1/0)."""
    path = Path(path)
    if not path.is_file():
        raise InvalidInput(f"no such file: {path}")
    try:
        raw = path.read_bytes()
        content = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidInput(f"{path} is not UTF-8 text; save it as UTF-8 CSV") from None
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc}") from None
    if "\x00" in content:
        raise InvalidInput(f"{path} looks binary, not a CSV")
    reader = csv.DictReader(io.StringIO(content, newline=""))
    fields = [f.strip().lower() for f in (reader.fieldnames or [])]
    if "text" not in fields or "label" not in fields:
        raise InvalidInput(f"{path} needs a header row with columns 'text' and 'label' (found: {', '.join(fields) or 'none'})")
    reader.fieldnames = fields
    texts, labels = [], []
    try:
        for row in reader:
            line = reader.line_num
            text, label = (row.get("text") or "").strip(), (row.get("label") or "").strip().lower()
            if label in POSITIVE_WORDS:
                y = 1
            elif label in NEGATIVE_WORDS:
                y = 0
            else:
                raise InvalidInput(f"{path}, line {line}: label must be positive/negative or 1/0, not {label[:30]!r}")
            if not text:
                raise InvalidInput(f"{path}, line {line}: empty text")
            texts.append(text)
            labels.append(y)
    except csv.Error as exc:
        raise InvalidInput(f"{path} is not valid CSV: {exc}") from None
    if not texts:
        raise InvalidInput(f"{path} has no reviews under its header")
    return Reviews(texts, labels, f"CSV {path}", fingerprint(path))
