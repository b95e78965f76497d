"""Work split over machines: ``--shard K/N`` takes every N-th item starting at the K-th (1-based), and ``merge``
puts the N output folders back together, refusing shards of different runs, missing or repeated shards, and
items that two shards both did.

One shard per GPU server or SLURM array task::

    medscope eval --samples suite/samples.jsonl --backend openai ... --shard 2/4 --out runs/eval/shard2
    medscope merge eval --out runs/eval runs/eval/shard1 runs/eval/shard2 runs/eval/shard3 runs/eval/shard4
    medscope suite build --source activitynet ... --shard 2/4 --out runs/suite/shard2
    medscope merge suite --out runs/suite runs/suite/shard*

An eval shard sets its uniform baseline at its own agent's mean frames (shards of one suite agree closely); a
suite shard builds its filters' priors from its own samples.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

from medscope.config import differences
from medscope.io import write_text_atomic

T = TypeVar("T")
_SHARD = re.compile(r"(\d+)/(\d+)")


def parse_shard(spec: str | None) -> tuple[int, int] | None:
    """``"2/4"`` → ``(2, 4)``; None or "" → None (no sharding)."""
    if not spec:
        return None
    match = _SHARD.fullmatch(spec.strip())
    if not match or not 1 <= int(match.group(1)) <= int(match.group(2)):
        raise ValueError(f"--shard {spec!r}: write K/N with 1 <= K <= N, e.g. --shard 2/4")
    return int(match.group(1)), int(match.group(2))


def take(items: Sequence[T], shard: tuple[int, int] | None) -> list[T]:
    """The shard's items: every N-th, starting at the K-th (an even split of any order)."""
    if shard is None:
        return list(items)
    k, n = shard
    return [item for i, item in enumerate(items) if i % n == k - 1]


def _shard_of(folder: Path, record: dict[str, Any]) -> tuple[int, int]:
    shard = parse_shard(record.get("shard"))
    if shard is None:
        raise ValueError(f"{folder}: its run record names no shard; merge takes the folders of `--shard K/N` runs")
    return shard


def read_shards(shards: Sequence[str | Path], record: str, command: str, *,
                may_differ: frozenset[str] = frozenset()) -> tuple[list[Path], list[dict[str, Any]]]:
    """The shards' folders and the run record each holds (``record``: ``manifest.json``, ``build.json``), checked
    to be all shards of one run, each once, none missing. They may differ only in their shard, the code's
    recorded version and ``may_differ`` (e.g. their output folders)."""
    folders = [Path(f) for f in shards]
    records = []
    for folder in folders:
        if not (folder / record).exists():
            raise ValueError(f"{folder}: no {record}; give the --out folders of `{command} --shard K/N`")
        records.append(json.loads((folder / record).read_text(encoding="utf-8")))
    numbers = [_shard_of(f, r) for f, r in zip(folders, records, strict=True)]
    counts = {n for _, n in numbers}
    if len(counts) != 1:
        raise ValueError(f"shards of different splits: {sorted(f'{k}/{n}' for k, n in numbers)}")
    n = counts.pop()
    ks = sorted(k for k, _ in numbers)
    if ks != list(range(1, n + 1)):
        missing = sorted(set(range(1, n + 1)) - set(ks))
        twice = sorted({k for k in ks if ks.count(k) > 1})
        raise ValueError(f"need shards 1..{n} once each: missing {missing}, given twice {twice}")
    ignore = frozenset({"shard", "recorded"}) | may_differ
    for folder, other in zip(folders[1:], records[1:], strict=True):
        diff = differences(records[0], other, ignore=ignore)
        if diff:
            raise ValueError(f"{folder} is a shard of another run than {folders[0]}: {'; '.join(diff)}")
    return folders, records


def concat_jsonl(files: Sequence[Path], out: Path, *, key: str | None = "id") -> int:
    """Concatenate JSONL files; with ``key``, a record that two files both hold is an error. Returns the count."""
    seen: dict[str, Path] = {}
    lines: list[str] = []
    for file in files:
        if not file.exists():
            continue
        for line in file.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            if key is not None:
                ident = str(json.loads(line)[key])
                if ident in seen:
                    raise ValueError(f"{ident!r} is in both {seen[ident]} and {file}: shards overlap")
                seen[ident] = file
            lines.append(line + "\n")
    write_text_atomic(out, "".join(lines))
    return len(lines)
