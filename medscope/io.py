"""Atomic file writes: a reader never sees half a file, and a failed write leaves the old one intact."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on failure it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=f"{path.suffix}.tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        # mkstemp makes the file private (0600); give it the mode a plain open() would have, so outputs (and
        # a shipped model folder) are readable as usual.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


@cache
def _umask() -> int:
    # Reading the umask means setting it; do it once per process, not on every write (another thread creating a
    # file in between would get the temporary value).
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_text_atomic(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def repair_text(text: str) -> str:
    """``text`` with lone UTF-16 surrogates (``"\\ud800"``, which a server's JSON can carry) replaced by U+FFFD, so
    it can be written as UTF-8; valid pairs are joined. Everything else is unchanged."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def json_line(record: object) -> str:
    """One JSONL line (``\\n``-terminated) that can always be written as UTF-8, whatever text the record holds."""
    return repair_text(json.dumps(record, ensure_ascii=False)) + "\n"
