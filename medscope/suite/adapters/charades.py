"""Charades-STA (temporal sentence grounding): ``charades_sta_train.txt``, ``charades_sta_test.txt``.

One query a line, the video id, start and end in seconds separated by spaces, then ``##`` and the
sentence; blank lines are skipped::

    AO8RW 0.0 6.9##a person is putting a book on a shelf.
    AO8RW 2.5 9.1##person begins to play on a phone.

Each line becomes a ``"query"`` segment (``source_id`` ``"<file stem>:<line>"``); lines are grouped into one
``VideoAnnotation`` per video id, in order of first appearance, with ``video`` ``f"{id}.mp4"``. The format
carries no duration: ``--lengths Charades_v1_test.csv`` (the Charades CSV, columns ``id`` and ``length`` in
seconds, CRLF lines) gives one, which windows are checked against; the builder checks them again against
the video file, whose duration wins. Known faults of the official files: 4 train lines end before they
start (skipped), 562 of 3,720 test windows end up to 1.5 s after the CSV's length (clamped). The split is
the file name's.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

from medscope.suite.adapters import AdapterError, LoadContext, Where, read_lines, split_of
from medscope.suite.records import Segment, VideoAnnotation

SOURCE = "charades"
_LAYOUT = "'VIDEO_ID START END##sentence'"


def load(path: Path, ctx: LoadContext) -> list[VideoAnnotation]:
    lengths = charades_lengths(Path(ctx.options.lengths)) if ctx.options.lengths else {}
    videos: dict[str, list[Segment]] = {}
    for number, line in enumerate(read_lines(path), start=1):
        if not line.strip():
            continue
        record_id = f"{path.stem}:{number}"
        with ctx.record(Where(path, number), record_id):
            video_id, segment = _parse(line, Where(path, number), record_id, ctx, lengths)
            videos.setdefault(video_id, []).append(segment)
    return [VideoAnnotation(v, f"{v}.mp4", lengths.get(v), tuple(segs), SOURCE, split=split_of(path))
            for v, segs in videos.items()]


def charades_lengths(path: Path) -> dict[str, float]:
    """``{video id: length in seconds}`` from ``Charades_v1_train.csv`` / ``Charades_v1_test.csv``."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError) as exc:
        raise AdapterError(f"{path}: cannot read the Charades CSV ({exc})") from exc
    if not rows or not {"id", "length"} <= set(rows[0]):
        raise AdapterError(f"{path}: expected the Charades CSV with columns 'id' and 'length' (seconds)")
    lengths = {}
    for row in rows:
        try:
            lengths[row["id"]] = float(row["length"])
        except (TypeError, ValueError):
            continue  # a row without a usable length: its videos fall back to the video file
    return lengths


def _parse(line: str, where: Where, record_id: str, ctx: LoadContext,
           lengths: dict[str, float]) -> tuple[str, Segment]:
    head, sep, sentence = line.partition("##")
    if not sep:
        raise where.error(f"no '##' before the sentence in {line.strip()!r}; expected {_LAYOUT}", "no '##'")
    fields = head.split()
    if len(fields) != 3:
        raise where.error(f"{len(fields)} fields before '##' in {head.strip()!r}; expected {_LAYOUT}",
                          "wrong number of fields")
    try:
        start, end = float(fields[1]), float(fields[2])
    except ValueError:
        raise where.error(f"times {fields[1]!r} {fields[2]!r} are not numbers; expected {_LAYOUT}",
                          "times are not numbers") from None
    if not (math.isfinite(start) and math.isfinite(end)):
        raise where.error(f"times {fields[1]!r} {fields[2]!r} are not finite; expected {_LAYOUT}",
                          "times are not numbers")
    if not sentence.strip():
        raise where.error(f"empty sentence after '##'; expected {_LAYOUT}", "empty sentence")
    start, end = ctx.window(start, end, lengths.get(fields[0]), where, record_id)
    return fields[0], Segment(start, end, sentence.strip(), "query", source_id=record_id)
