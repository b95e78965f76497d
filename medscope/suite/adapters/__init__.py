"""Source adapters: each turns one dataset's annotation files into ``VideoAnnotation``s, all times in seconds.

``load_annotations(source, path)`` dispatches on the source name; ``ADAPTERS`` maps each name to its
``load(path)``. One module per source format, each pure parsing (no video is opened, nothing downloaded):

    synthclin     our SynthClin JSON (``"schema": "synthclin/1"``): phases, events, instruments, captions
    activitynet   ActivityNet Captions JSON ``{video_id: {duration, timestamps, sentences}}``
    charades      Charades-STA text lines ``VID start end##sentence``
    qvhighlights  QVHighlights JSONL ``{qid, query, duration, vid, relevant_windows}``
    cholec80      Cholec80 phase TSV ``videoNN-phase.txt`` (``Frame\\tPhase``, one row a frame at 25 fps)
    medvidqa      MedVidQA JSON list of ``{sample_id, question, answer_start_second, ..., video_id}``

A malformed file raises ``AdapterError`` naming the file, the 1-based line (text and JSONL formats, and a
JSON syntax error) or the JSON path of the record (``v_abc.timestamps[2]``), what is wrong and what was
expected. The small helpers below (``Where``, ``need``, ``number``, ...) are shared by the adapter modules.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medscope.suite.records import Segment, VideoAnnotation

__all__ = ["ADAPTERS", "AdapterError", "load_annotations"]

TOLERANCE_S = 1.0  # how far past the video's end a window may reach before it is an error (it is clamped)


class AdapterError(ValueError):
    """A source annotation that does not fit its format; the message names the file, line or JSON path."""


@dataclass(frozen=True)
class Where:
    """A place in a source file: the file, a 1-based line (text, JSONL, JSON syntax) and a JSON path."""

    path: Path
    line: int | None = None
    at: str = ""

    def __getitem__(self, key: str | int) -> Where:
        step = f"[{key}]" if isinstance(key, int) else (f".{key}" if self.at else key)
        return Where(self.path, self.line, self.at + step)

    def __str__(self) -> str:
        place = f"{self.path}:{self.line}" if self.line is not None else str(self.path)
        return f"{place}: {self.at}" if self.at else place

    def error(self, problem: str) -> AdapterError:
        return AdapterError(f"{self}: {problem}")


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


def input_files(path: Path, pattern: str) -> list[Path]:
    """``path`` itself, or the files in the folder ``path`` matching ``pattern`` (sorted; none is an error)."""
    if not path.is_dir():
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such file or folder")
        return [path]
    files = sorted(p for p in path.glob(pattern) if p.is_file())
    if not files:
        raise AdapterError(f"{path}: no {pattern} files in this folder")
    return files


def need(record: Any, key: str, where: Where) -> Any:
    """``record[key]``, where ``record`` must be a JSON object holding ``key``."""
    if not isinstance(record, dict):
        raise where.error(f"got {type(record).__name__} {_short(record)}; expected a JSON object")
    if key not in record:
        raise where.error(f"missing field {key!r}; expected a record with {key!r}")
    return record[key]


def number(value: Any, where: Where, expected: str = "a number of seconds") -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise where.error(f"got {_short(value)}; expected {expected}")
    return float(value)


def duration(value: Any, where: Where) -> float:
    seconds = number(value, where, "a video duration in seconds")
    if seconds <= 0:
        raise where.error(f"got {seconds:g}; expected a video duration > 0 seconds")
    return seconds


def text(value: Any, where: Where) -> str:
    """A non-empty string, stripped."""
    if not isinstance(value, str) or not value.strip():
        raise where.error(f"got {_short(value)}; expected a non-empty string")
    return value.strip()


def pair(value: Any, where: Where) -> tuple[float, float]:
    """A JSON ``[start, end]`` of numbers (not yet checked as a window)."""
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise where.error(f"got {_short(value)}; expected a [start, end] pair of seconds")
    return number(value[0], where[0]), number(value[1], where[1])


def window(start: float, end: float, length: float | None, where: Where) -> tuple[float, float]:
    """Check ``0 <= start <= end <= length``; an end up to ``TOLERANCE_S`` past ``length`` is clamped to it."""
    if start < 0 or end < start:
        raise where.error(f"window [{start:g}, {end:g}] is reversed or negative; expected 0 <= start <= end")
    if length is not None and end > length:
        if end > length + TOLERANCE_S:
            raise where.error(
                f"window [{start:g}, {end:g}] ends after the video's duration {length:g} s "
                f"(more than the {TOLERANCE_S:g} s tolerance); expected end <= duration"
            )
        end, start = length, min(start, length)
    return start, end


class VideoGroups:
    """Segments grouped by video, checking that every record of a video states the same duration."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.videos: dict[str, tuple[float, list[Segment]]] = {}

    def add(self, video_id: str, length: float, where: Where, what: str) -> tuple[float, list[Segment]]:
        """The video's (duration, segments); ``what`` names the record kind for the error ("line", "sample")."""
        known, segments = self.videos.setdefault(video_id, (length, []))
        if abs(known - length) > TOLERANCE_S:
            raise where.error(f"got {length:g} but an earlier {what} of {video_id!r} says {known:g}")
        return known, segments

    def annotations(self) -> list[VideoAnnotation]:
        return [VideoAnnotation(v, f"{v}.mp4", length, tuple(segs), self.source)
                for v, (length, segs) in self.videos.items()]


def _short(value: Any, limit: int = 60) -> str:
    shown = repr(value)
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


# The adapter modules import the helpers above, so they are imported after them.
from medscope.suite.adapters import (  # noqa: E402
    activitynet,
    charades,
    cholec80,
    medvidqa,
    qvhighlights,
    synthclin,
)

ADAPTERS: dict[str, Callable[[Path], list[VideoAnnotation]]] = {
    "synthclin": synthclin.load,
    "activitynet": activitynet.load,
    "charades": charades.load,
    "qvhighlights": qvhighlights.load,
    "cholec80": cholec80.load,
    "medvidqa": medvidqa.load,
}


def load_annotations(source: str, path: str | Path) -> list[VideoAnnotation]:
    """The ``VideoAnnotation``s of ``path`` read as ``source`` (one of ``ADAPTERS``)."""
    if source not in ADAPTERS:
        raise ValueError(f"unknown annotation source {source!r}; known sources: {', '.join(ADAPTERS)}")
    return ADAPTERS[source](Path(path))
