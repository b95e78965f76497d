"""Charades-STA (temporal sentence grounding): ``charades_sta_train.txt``, ``charades_sta_test.txt``.

One query a line, the video id, start and end in seconds separated by spaces, then ``##`` and the
sentence; blank lines are skipped::

    AO8RW 0.0 6.9##a person is putting a book on a shelf.
    AO8RW 2.5 9.1##person begins to play on a phone.

Each line becomes a ``"query"`` segment (``meta["line"]`` its line number); lines are grouped into one
``VideoAnnotation`` per video id, in order of first appearance, with ``video`` ``f"{id}.mp4"``. The format
carries no video duration, so ``duration`` is ``None`` and windows are only checked for
``0 <= start <= end``.
"""

from __future__ import annotations

import math
from pathlib import Path

from medscope.suite.adapters import Where, read_lines, window
from medscope.suite.records import Segment, VideoAnnotation

SOURCE = "charades"
_LAYOUT = "'VIDEO_ID START END##sentence'"


def load(path: str | Path) -> list[VideoAnnotation]:
    path = Path(path)
    videos: dict[str, list[Segment]] = {}
    for number, line in enumerate(read_lines(path), start=1):
        if line.strip():
            video_id, segment = _parse(line, Where(path, number), number)
            videos.setdefault(video_id, []).append(segment)
    return [VideoAnnotation(v, f"{v}.mp4", None, tuple(segs), SOURCE) for v, segs in videos.items()]


def _parse(line: str, where: Where, number: int) -> tuple[str, Segment]:
    head, sep, sentence = line.partition("##")
    if not sep:
        raise where.error(f"no '##' before the sentence in {line.strip()!r}; expected {_LAYOUT}")
    fields = head.split()
    if len(fields) != 3:
        raise where.error(f"{len(fields)} fields before '##' in {head.strip()!r}; expected {_LAYOUT}")
    try:
        start, end = float(fields[1]), float(fields[2])
    except ValueError:
        raise where.error(f"times {fields[1]!r} {fields[2]!r} are not numbers; expected {_LAYOUT}") from None
    if not (math.isfinite(start) and math.isfinite(end)):
        raise where.error(f"times {fields[1]!r} {fields[2]!r} are not finite; expected {_LAYOUT}")
    if not sentence.strip():
        raise where.error(f"empty sentence after '##'; expected {_LAYOUT}")
    start, end = window(start, end, None, where)
    return fields[0], Segment(start, end, sentence.strip(), "query", meta={"line": number})
