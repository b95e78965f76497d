"""Source adapters: each turns one dataset's annotation files into ``VideoAnnotation``s, all times in seconds.

``load_annotations(source, path, ctx)`` dispatches on the source name; ``ADAPTERS`` maps each name to its
``load(path, ctx)``. One module per source format, each pure parsing of the annotation files (the only video
access is through ``ctx``: durations and frame rates of the videos that are there; nothing is downloaded):

    synthclin       our SynthClin JSON (``"schema": "synthclin/1"``): phases, events, instruments, captions
    activitynet     ActivityNet Captions JSON ``{video_id: {duration, timestamps, sentences}}``
    activitynet13   ActivityNet-1.3 ``{"database": {id: {annotations: [{label, segment}], duration, subset}}}``
    charades        Charades-STA text lines ``VID start end##sentence`` (durations: ``--lengths`` Charades CSV)
    qvhighlights    QVHighlights JSONL ``{qid, query, duration, vid, relevant_windows}``
    medvidqa        MedVidQA JSON list of ``{sample_id, question, answer_start_second, ..., video_id}``
    cholec80        Cholec80 ``videoNN-phase.txt`` (one row a frame) and ``videoNN-tool.txt`` (instruments)
    autolaparo      AutoLaparo phase labels (one row a second)
    cataract101     Cataract-101 ``annotations.csv`` (phase starts) and ``videos.csv`` (frames, fps)
    ophnet          OphNet CSV ``video_id,start,end,split,...`` or ActivityNet-style JSON
    multibypass140  MultiBypass140 JSON (phases and steps in milliseconds)
    svu31k          SVU-31K (SurgVidLM) ``messages``/``videos``/``timecodes``/``tag`` records

Every record is read through ``LoadContext`` (``medscope.suite.loading``): by default a malformed record is
skipped and a window overrunning the video is clamped, each noted with its file, line or JSON path, field and
reason; ``strict`` makes them errors. A file that cannot be read at all raises ``AdapterError``. The small
helpers below (``need``, ``number``, ``text``, ...) are shared by the adapter modules.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from medscope.suite.loading import DURATION_TOLERANCE_S, AdapterError, LoadContext, Where
from medscope.suite.records import Segment, VideoAnnotation

__all__ = ["ADAPTERS", "AdapterError", "LoadContext", "Where", "load_annotations"]


def read_json(path: Path) -> Any:
    """Parse a JSON file; a syntax error names its line and column."""
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise Where(path).error(f"is not UTF-8 text ({exc.reason} at byte {exc.start}); expected a JSON file") from exc
    except json.JSONDecodeError as exc:
        raise Where(path, exc.lineno).error(f"invalid JSON: {exc.msg} (column {exc.colno})") from exc


def read_lines(path: Path) -> list[str]:
    """The lines of a UTF-8 text file (a byte-order mark dropped), without their line endings."""
    try:
        return path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as exc:
        raise Where(path).error(f"is not UTF-8 text ({exc.reason} at byte {exc.start})") from exc


def input_files(path: Path, pattern: str, *, recursive: bool = False, where: str = "") -> list[Path]:
    """``path`` itself, or the files in the folder ``path`` (below it, with ``recursive``) matching ``pattern``,
    sorted; none is an error that says where the dataset keeps them (``where``)."""
    if not path.is_dir():
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such file or folder")
        return [path]
    found = path.rglob(pattern) if recursive else path.glob(pattern)
    files = sorted(p for p in found if p.is_file())
    if not files:
        below = "under" if recursive else "in"
        raise AdapterError(f"{path}: no {pattern} files {below} this folder{f' ({where})' if where else ''}")
    return files


def need(record: Any, key: str, where: Where) -> Any:
    """``record[key]``, where ``record`` must be a JSON object holding ``key``."""
    if not isinstance(record, dict):
        raise where.error(f"got {type(record).__name__} {short(record)}; expected a JSON object")
    if key not in record:
        raise where.error(f"missing field {key!r}; expected a record with {key!r}")
    return record[key]


def number(value: Any, where: Where, expected: str = "a number of seconds") -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise where.error(f"got {short(value)}; expected {expected}")
    return float(value)


def duration(value: Any, where: Where) -> float:
    seconds = number(value, where, "a video duration in seconds")
    if seconds <= 0:
        raise where.error(f"got {seconds:g}; expected a video duration > 0 seconds")
    return seconds


def text(value: Any, where: Where) -> str:
    """A non-empty string, stripped."""
    if not isinstance(value, str) or not value.strip():
        raise where.error(f"got {short(value)}; expected a non-empty string")
    return value.strip()


def pair(value: Any, where: Where) -> tuple[float, float]:
    """A JSON ``[start, end]`` of numbers (not yet checked as a window)."""
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise where.error(f"got {short(value)}; expected a [start, end] pair of seconds")
    return number(value[0], where[0]), number(value[1], where[1])


class VideoGroups:
    """Segments grouped by video, checking that every record of a video states the same duration."""

    def __init__(self, source: str, split: str | None = None) -> None:
        self.source = source
        self.split = split
        self.videos: dict[str, tuple[float, list[Segment]]] = {}

    def add(self, video_id: str, length: float, where: Where, what: str) -> list[Segment]:
        """The video's segments, to append to; ``what`` names the record kind for the error ("line", "sample")."""
        known, segments = self.videos.setdefault(video_id, (length, []))
        if abs(known - length) > DURATION_TOLERANCE_S:
            raise where.error(f"got {length:g} but an earlier {what} of {video_id!r} says {known:g}",
                              "duration disagrees with an earlier record")
        return segments

    def annotations(self) -> list[VideoAnnotation]:
        return [VideoAnnotation(v, f"{v}.mp4", length, tuple(segs), self.source, split=self.split)
                for v, (length, segs) in self.videos.items() if segs]


def split_of(path: Path, names: tuple[str, ...] = ("train", "val", "test")) -> str | None:
    """The split a file name states (``charades_sta_test.txt`` → ``test``, ``val_1.json`` → ``val``), else None."""
    words = path.stem.lower().replace("-", "_").split("_")
    return next((name for name in names if name in words), None)


def short(value: Any, limit: int = 60) -> str:
    shown = repr(value)
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


# The adapter modules import the helpers above, so they are imported after them.
from medscope.suite.adapters import (  # noqa: E402
    activitynet,
    activitynet13,
    autolaparo,
    cataract101,
    charades,
    cholec80,
    medvidqa,
    multibypass140,
    ophnet,
    qvhighlights,
    svu31k,
    synthclin,
)

ADAPTERS: dict[str, Callable[[Path, LoadContext], list[VideoAnnotation]]] = {
    "synthclin": synthclin.load,
    "activitynet": activitynet.load,
    "charades": charades.load,
    "qvhighlights": qvhighlights.load,
    "cholec80": cholec80.load,
    "medvidqa": medvidqa.load,
    "activitynet13": activitynet13.load,
    "autolaparo": autolaparo.load,
    "cataract101": cataract101.load,
    "ophnet": ophnet.load,
    "multibypass140": multibypass140.load,
    "svu31k": svu31k.load,
}


def load_annotations(source: str, path: str | Path, ctx: LoadContext | None = None) -> list[VideoAnnotation]:
    """The ``VideoAnnotation``s of ``path`` read as ``source`` (one of ``ADAPTERS``), through ``ctx``."""
    if source not in ADAPTERS:
        raise ValueError(f"unknown annotation source {source!r}; known sources: {', '.join(ADAPTERS)}")
    ctx = ctx if ctx is not None else LoadContext()
    return [a for a in ADAPTERS[source](Path(path), ctx) if ctx.wanted(a.split)]
