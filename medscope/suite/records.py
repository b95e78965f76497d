"""ClinVideoSuite records: what adapters produce (``VideoAnnotation`` of ``Segment``s) and what the builder
writes (``Sample``, ``Trajectory``), with JSONL reading that names the line and field of any bad record.

All times are seconds from the start of the video. These records depend on no model or training library.

A sample's ``video`` is stored relative to the folder of the JSONL file that holds it (or absolute when no
relative path exists, e.g. another drive), so a suite folder can be moved with its videos and read from any
working folder: ``write_jsonl`` writes it that way and ``read_jsonl`` resolves it against the file's folder.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from medscope.io import atomic_path, json_line

log = logging.getLogger(__name__)

SAMPLE_SCHEMA = "medscope.sample/2"  # /2: video paths relative to the file, source_id and split
TRAJECTORY_SCHEMA = "medscope.trajectory/2"
_OLD_SCHEMAS = ("medscope.sample/1", "medscope.trajectory/1")
TASKS = ("grounding", "grounded_vqa", "mcq", "caption", "fine_caption")
Task = Literal["grounding", "grounded_vqa", "mcq", "caption", "fine_caption"]
SegmentKind = Literal["caption", "phase", "event", "instrument", "query", "question", "qa"]


class RecordError(ValueError):
    """A record that does not fit the schema; the message names the file, line and field."""


@dataclass(frozen=True)
class Segment:
    """A timestamped piece of annotation: a caption, a phase, an event, a grounding query or a question.

    ``kind == "question"`` holds a question in ``text`` whose visual answer is the window (MedVidQA);
    ``kind == "query"`` a sentence to localise (Charades-STA, QVHighlights); ``kind == "qa"`` a question in
    ``text`` with its answer in ``meta["answer"]`` and its task in ``meta["task"]`` (``grounded_vqa`` or
    ``fine_caption``), the window being its evidence (SVU-31K). ``label`` is a class name
    (phase, event, instrument) when there is one; ``windows``, when set, lists every window of a multi-window
    query (the first is also ``start``/``end``).
    """

    start: float
    end: float
    text: str
    kind: SegmentKind = "caption"
    label: str | None = None
    windows: tuple[tuple[float, float], ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)
    source_id: str | None = None  # the record this came from in the source (MedVidQA sample_id, QVHighlights qid)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.start) and math.isfinite(self.end)) or self.end < self.start:
            raise ValueError(f"segment [{self.start}, {self.end}] is not a valid window (need finite start <= end)")


@dataclass(frozen=True)
class VideoAnnotation:
    """Everything an adapter knows about one video, in seconds."""

    video_id: str
    video: str  # path of the video file, relative to the videos folder (or absolute)
    duration: float | None
    segments: tuple[Segment, ...]
    source: str
    summary: str | None = None  # a video-level description, if the source has one
    split: str | None = None  # the source's split (train, val, test, ...) when it has them


@dataclass(frozen=True)
class Sample:
    """One evidence-aligned question: the answer is supported by the frames inside ``evidence``."""

    id: str
    video: str
    duration: float
    question: str
    answer: str
    task: Task
    evidence: list[list[float]]
    source: str
    options: list[str] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    source_id: str | None = None  # the source record(s) it came from, to join results with the official files
    split: str | None = None  # the source's split
    schema: str = SAMPLE_SCHEMA

    def __post_init__(self) -> None:
        validate_sample(dataclasses.asdict(self))


@dataclass(frozen=True)
class Trajectory:
    """A ``Sample`` and the assistant turns a teacher produced for it, in the agent's protocol.

    Each turn is ``{"text": assistant text, "observation": {"tool", "arguments", "timestamps"}|None}``;
    the observation is what replaying the turn's tool call on the video returns (timestamps only)."""

    sample: Sample
    turns: list[dict[str, Any]]
    kind: Literal["vcot", "cot"] = "vcot"
    overview: list[float] = field(default_factory=list)  # timestamps of the overview the teacher saw
    schema: str = TRAJECTORY_SCHEMA


def _need(record: dict[str, Any], name: str, kinds: type | tuple[type, ...]) -> Any:
    if name not in record:
        raise RecordError(f"missing field {name!r}")
    value = record[name]
    if not isinstance(value, kinds) or isinstance(value, bool):
        names = kinds.__name__ if isinstance(kinds, type) else " or ".join(k.__name__ for k in kinds)
        raise RecordError(f"field {name!r} must be {names}, got {value!r}")
    return value


def _check_schema(record: dict[str, Any], expected: str) -> None:
    if record.get("schema") in _OLD_SCHEMAS:
        raise RecordError(f"schema {record['schema']!r} is from an older medscope (video paths relative to the "
                          "working folder); rebuild the suite with `medscope suite build`")
    if record.get("schema") != expected:
        raise RecordError(f"field 'schema' must be {expected!r}, got {record.get('schema')!r}")


def validate_sample(record: dict[str, Any]) -> None:
    """Raise ``RecordError`` naming the first field that does not fit the sample schema."""
    _check_schema(record, SAMPLE_SCHEMA)
    for name in ("id", "video", "question", "answer", "source"):
        if not _need(record, name, str).strip():
            raise RecordError(f"field {name!r} is empty")
    duration = float(_need(record, "duration", (int, float)))
    if not math.isfinite(duration) or duration <= 0:
        raise RecordError(f"field 'duration' must be > 0 seconds, got {duration}")
    if _need(record, "task", str) not in TASKS:
        raise RecordError(f"field 'task' must be one of {', '.join(TASKS)}, got {record['task']!r}")
    evidence = _need(record, "evidence", list)
    if not evidence:  # every task has one (a whole-video caption: [0, duration])
        raise RecordError("field 'evidence' is empty; every sample needs at least one [start, end] window")
    for window in evidence:
        if not (isinstance(window, list) and len(window) == 2 and all(isinstance(v, int | float) for v in window)):
            raise RecordError(f"field 'evidence' must be a list of [start, end] pairs, got {window!r}")
        if not 0 <= window[0] <= window[1] <= duration + 1e-6:
            raise RecordError(f"field 'evidence' window {window} is outside [0, {duration}] or reversed")
    options = record.get("options")
    if options is not None and not (isinstance(options, list) and all(isinstance(o, str) for o in options)):
        raise RecordError(f"field 'options' must be null or a list of strings, got {options!r}")
    if record["task"] == "mcq" and not options:
        raise RecordError("field 'options' is required for task 'mcq'")
    for name in ("source_id", "split"):
        if record.get(name) is not None and not isinstance(record[name], str):
            raise RecordError(f"field {name!r} must be null or a string, got {record[name]!r}")


def sample_from_dict(record: dict[str, Any]) -> Sample:
    validate_sample(record)
    known = {f.name for f in dataclasses.fields(Sample)}
    return Sample(**{k: v for k, v in record.items() if k in known})


def trajectory_from_dict(record: dict[str, Any]) -> Trajectory:
    _check_schema(record, TRAJECTORY_SCHEMA)
    sample = sample_from_dict(_need(record, "sample", dict))
    turns = _need(record, "turns", list)
    if not turns or not all(isinstance(t, dict) and isinstance(t.get("text"), str) for t in turns):
        raise RecordError("field 'turns' must be a non-empty list of {'text': ..., 'observation': ...}")
    overview = record.get("overview", [])
    return Trajectory(sample, turns, _need(record, "kind", str), overview)


def _relative_video(record: dict[str, Any], folder: Path) -> None:
    sample = record.get("sample", record)
    video = os.path.abspath(sample["video"])
    try:
        sample["video"] = Path(os.path.relpath(video, os.path.abspath(folder))).as_posix()
    except ValueError:  # no relative path between them (Windows drives): keep it absolute
        sample["video"] = video


def _resolve_video(record: Any, folder: Path) -> None:
    sample = record.get("sample", record) if isinstance(record, dict) else None
    if isinstance(sample, dict) and isinstance(sample.get("video"), str) and sample["video"].strip():
        sample["video"] = os.path.normpath(folder / sample["video"])  # an absolute path stays as it is


def write_jsonl(path: str | Path, records: Iterable[Sample | Trajectory]) -> int:
    """Write records atomically, one JSON object a line, video paths relative to the file; returns the count."""
    count = 0
    folder = Path(path).parent
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as handle:
        for record in records:
            row = dataclasses.asdict(record)
            _relative_video(row, folder)
            handle.write(json_line(row))
            count += 1
    return count


def read_jsonl(
    path: str | Path, kind: Literal["sample", "trajectory"] = "sample", *, on_error: str = "raise"
) -> Iterator[Any]:
    """Yield records; a bad line raises ``RecordError`` with ``path:line`` (or is logged with ``on_error='skip'``)."""
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    build = sample_from_dict if kind == "sample" else trajectory_from_dict
    with Path(path).open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                if not isinstance(record, dict):
                    raise RecordError("a line must hold one JSON object")
                _resolve_video(record, Path(path).parent)
                yield build(record)
            except (json.JSONDecodeError, RecordError, TypeError) as exc:
                message = f"{path}:{number}: {exc}"
                if on_error == "raise":
                    raise RecordError(message) from exc
                log.warning("skipped %s", message)
