"""OphNet 2024 (ophthalmic surgery, ECCV 2024): the localisation CSVs of ``annotation/`` and the
ActivityNet-style JSONs of ``baselines/task2/dataset/tal_annotations/``. Times are seconds in the untrimmed
video ``<video_id>.mp4`` (``case_0002.mp4``).

CSV, comma-separated, one row a segment, rows of a video in time order::

    video_id,start,end,split,surgery_id,phase_id,operation_id       OphNet2024_loca_all.csv, ..._challenge.csv
    case_0002,0,10,train,5,3,2
    case_0002,11.33,15.23,train,0,6,8

    video_id,start,end,split,surgery_id,phase_id                    OphNet2024_loca_challenge_phase.csv
    case_0002,0,10,train,5,3

The header decides the kind: with ``operation_id`` each row is an operation and becomes an ``"event"``
segment (``label`` the operation id as text, ``text`` ``"Operation 2."``, ``meta`` ``name``
``"operation 2"``, ``surgery_id`` and ``phase_id``); without it, a phase and becomes a ``"phase"`` segment
(``label`` ``"3"``, ``text`` ``"Phase 3."``, ``meta`` ``name`` ``"phase 3"`` and ``surgery_id``). No id→name
table ships with the dataset (the official one is a Google Sheet), so ids are the names, except the
challenge files' "Others" classes (phase 51, operation 106: ids with under 15 clips merged), named so.
``split`` (``train``/``val``/``test``) is the row's and must be the same for every row of a video. A
segment's ``source_id`` is ``"<video_id>/<i>"``, ``i`` the row's index among its video's rows (0-based,
skipped rows counted): for the phase CSV that is the trimmed clip ``OphNet2024_trimmed_phase/<case>/<case>_<i>.mp4``.
The CSVs give no video duration (``None``; the builder reads the video's).

JSON, the ActivityNet-1.3 layout (read by ``activitynet13.database_annotations``)::

    {"version": "OphNet2024",
     "database": {"case_0002": {"subset": "train", "duration": 299.38, "fps": 59.9,
                                "annotations": [{"label": "3", "label_id": 3, "segment": [0.0, 10.0]}, ...]}}}

``OphNet2024_phase.json`` holds the rows of the challenge phase CSV (phase segments) and
``OphNet2024_operation.json`` those of the challenge CSV (operation events): the file name says which (it
must contain ``phase`` or ``operation``); ``source_id`` is ``"<case>/<k>"`` as for the CSV, ``meta`` adds
``label_id``. Windows ending after ``duration`` (about 600 of each file, by up to 3.6 s) are clamped.

``path`` is one CSV or JSON file, or a folder: then its phase files are read, not recursively — the CSVs
whose name contains ``phase`` (``OphNet2024_loca_challenge_phase.csv``), or, when there is none, the JSONs
whose name does (``OphNet2024_phase.json``; both hold the same segments, so only one is read). Operation
files are read when named as ``path``. ``OphNet2024_surgery.csv`` (surgery types per video, no times) is
not a segment file and is refused. File quirks: CRLF line ends, and a UTF-8 byte-order mark on
``loca_all``, ``loca_challenge`` and ``surgery`` (read as ``utf-8-sig`` with the csv module).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from medscope.suite.adapters import AdapterError, LoadContext, Where, read_lines
from medscope.suite.adapters.activitynet13 import SUBSETS, database_annotations
from medscope.suite.records import Segment, SegmentKind, VideoAnnotation

SOURCE = "ophnet"
LEADING = ("video_id", "start", "end", "split")  # the first columns of every localisation CSV
LAYOUT = "'video_id,start,end,split,surgery_id,phase_id' (phases) or '...,phase_id,operation_id' (operations)"
# The challenge files merge rare classes (< 15 clips) into one "Others" id; elsewhere these ids are real classes.
OTHERS = {"phase": "51", "event": "106"}


def load(path: Path, ctx: LoadContext) -> list[VideoAnnotation]:
    out: list[VideoAnnotation] = []
    for file in _files(path):
        out += _json(file, ctx) if file.suffix.lower() == ".json" else _csv(file, ctx)
    return out


def _files(path: Path) -> list[Path]:
    if not path.is_dir():
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such file or folder")
        return [path]
    phase = [p for p in sorted(path.iterdir()) if p.is_file() and "phase" in p.name.lower()]
    files = [p for p in phase if p.suffix.lower() == ".csv"] or [p for p in phase if p.suffix.lower() == ".json"]
    if not files:
        raise AdapterError(f"{path}: no OphNet phase file in this folder (OphNet2024_loca_challenge_phase.csv or "
                           "OphNet2024_phase.json); pass an operation file itself to read operations")
    return files


def describer(kind: SegmentKind, challenge: bool) -> Callable[[str], tuple[str, dict[str, Any]]]:
    """A class id → the segment's text and meta name (``"3"`` → ``"Phase 3."``, ``{"name": "phase 3"}``)."""
    noun = "phase" if kind == "phase" else "operation"

    def describe(label: str) -> tuple[str, dict[str, Any]]:
        if challenge and label == OTHERS[kind]:
            return f"An {noun} of the 'Others' class (rare {noun}s merged).", {"name": f"other {noun}s"}
        return f"{noun.capitalize()} {label}.", {"name": f"{noun} {label}"}

    return describe


def _json(path: Path, ctx: LoadContext) -> list[VideoAnnotation]:
    name = path.name.lower()
    if ("phase" in name) == ("operation" in name):
        raise Where(path).error("cannot tell phases from operations: expected 'phase' or 'operation' in the file "
                                "name (OphNet2024_phase.json, OphNet2024_operation.json)", "unknown OphNet file")
    kind: SegmentKind = "phase" if "phase" in name else "event"
    # Both official JSONs are built from the challenge CSVs, so 51 / 106 are the "Others" classes there.
    return database_annotations(path, ctx, source=SOURCE, kind=kind, video_id=lambda key: key,
                                describe=describer(kind, challenge=True))


def _csv(path: Path, ctx: LoadContext) -> list[VideoAnnotation]:
    reader = csv.reader(read_lines(path))  # read_lines drops the BOM and the CRLF line ends
    header = [name.strip() for name in next(reader, [])]
    if header == ["video_id", "surgery"]:
        raise Where(path, 1).error("lists the surgery types of each video, not timed segments; expected a "
                                   f"localisation CSV {LAYOUT}", "not a segment file")
    if tuple(header[:4]) != LEADING or "phase_id" not in header or len(set(header)) != len(header):
        raise Where(path, 1).error(f"header {','.join(header)!r}; expected {LAYOUT}", "unexpected header")
    kind: SegmentKind = "event" if "operation_id" in header else "phase"
    describe = describer(kind, challenge="challenge" in path.name.lower())
    rows_of: dict[str, int] = {}  # rows seen per video, skipped ones included: the index in source_id
    videos: dict[str, tuple[str, list[Segment]]] = {}
    for row in reader:
        if not any(field.strip() for field in row):
            continue
        where = Where(path, reader.line_num)
        video_id = row[0].strip()
        index = rows_of[video_id] = rows_of.get(video_id, -1) + 1
        record_id = f"{video_id}/{index}"
        with ctx.record(where, record_id):
            if len(row) != len(header):
                raise where.error(f"row has {len(row)} fields; expected {len(header)} ({','.join(header)})",
                                  "wrong number of fields")
            fields = dict(zip(header, (field.strip() for field in row), strict=True))
            if not video_id:
                raise where["video_id"].error("is empty; expected a video id such as 'case_0002'")
            split = _split(fields["split"], where["split"])
            start, end = ctx.window(_seconds(fields, "start", where), _seconds(fields, "end", where), None, where,
                                    record_id)
            label = _class_id(fields, "operation_id" if kind == "event" else "phase_id", where)
            words, meta = describe(label)
            for column in header[4:]:  # surgery_id (and phase_id beside an operation): kept as ints
                if column not in ("operation_id" if kind == "event" else "phase_id"):
                    meta[column] = int(_class_id(fields, column, where))
            known, segments = videos.setdefault(video_id, (split, []))
            if split != known:
                raise where["split"].error(f"got {split!r} but an earlier row of {video_id!r} says {known!r}",
                                           "split disagrees with an earlier row")
            segments.append(Segment(start, end, words, kind, label, meta=meta, source_id=record_id))
    return [VideoAnnotation(video_id, f"{video_id}.mp4", None, tuple(segments), SOURCE, split=split)
            for video_id, (split, segments) in videos.items()]


def _seconds(fields: dict[str, str], column: str, where: Where) -> float:
    try:
        seconds = float(fields[column])
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds):
        raise where[column].error(f"got {fields[column]!r}; expected a number of seconds")
    return seconds


def _class_id(fields: dict[str, str], column: str, where: Where) -> str:
    """A class id as its canonical text (``"3"``); anything but an integer >= 0 is an error."""
    value = fields[column]
    if not value.isdigit():
        raise where[column].error(f"got {value!r}; expected a class id (an integer >= 0)")
    return str(int(value))


def _split(value: str, where: Where) -> str:
    if value.lower() not in SUBSETS:
        raise where.error(f"got {value!r}; expected train, val or test")
    return SUBSETS[value.lower()]
