"""MedVidQA (medical instructional video question answering): ``train.json``, ``val.json``, ``test.json``.

A JSON list of samples; the answer is the visual window of the video, given twice::

    [{"sample_id": 1, "question": "How to place a cervical collar?",
      "answer_start": "01:14", "answer_end": "02:28",            # "MM:SS" (or "HH:MM:SS")
      "answer_start_second": 74, "answer_end_second": 148,
      "video_length": 324, "video_id": "YdZJ7xk2RaU",
      "video_url": "https://www.youtube.com/watch?v=YdZJ7xk2RaU"},  # some copies say "video_link"
     ...]

Each sample becomes a ``"question"`` segment: ``text`` the question, the window from the ``*_second``
fields (or, where those are missing, parsed from ``answer_start``/``answer_end``; where both are given they
must agree within 1 s), ``source_id`` the ``sample_id``, ``meta["url"]`` the video's URL. Samples are grouped
into one ``VideoAnnotation`` per ``video_id`` (order of first appearance, ``video`` ``f"{video_id}.mp4"``),
whose samples must agree on ``video_length`` (seconds, the ``duration``) within 1 s; a sample that does not
is skipped. The split is the file name's (``train``, ``val``, ``test``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from medscope.suite.adapters import (
    LoadContext,
    VideoGroups,
    Where,
    duration,
    need,
    number,
    read_json,
    split_of,
    text,
)
from medscope.suite.loading import DURATION_TOLERANCE_S
from medscope.suite.records import Segment, VideoAnnotation

SOURCE = "medvidqa"
_CLOCK = re.compile(r"(?:(\d+):)?(\d+):(\d+(?:\.\d+)?)")


def load(path: Path, ctx: LoadContext) -> list[VideoAnnotation]:
    data = read_json(path)
    if not isinstance(data, list):
        raise Where(path).error(f"top level is a {type(data).__name__}; expected a JSON list of samples")
    videos = VideoGroups(SOURCE, split_of(path))
    for k, record in enumerate(data):
        where = Where(path)[k]
        sample_id = record.get("sample_id", f"[{k}]") if isinstance(record, dict) else f"[{k}]"
        with ctx.record(where, sample_id):
            video_id = text(need(record, "video_id", where), where["video_id"])
            length = duration(need(record, "video_length", where), where["video_length"])
            question = _question(record, where, length, ctx)
            videos.add(video_id, length, where["video_length"], "sample").append(question)
    return videos.annotations()


def clock_seconds(value: str) -> float | None:
    """``"MM:SS"`` or ``"HH:MM:SS"`` (seconds may have decimals) in seconds; ``None`` if it is neither."""
    match = _CLOCK.fullmatch(value.strip())
    if not match:
        return None
    hours, minutes, seconds = match.groups()
    return int(hours or 0) * 3600 + int(minutes) * 60 + float(seconds)


def _question(record: dict[str, Any], where: Where, length: float, ctx: LoadContext) -> Segment:
    sample_id = need(record, "sample_id", where)
    start, end = (_time(record, name, where) for name in ("answer_start", "answer_end"))
    start, end = ctx.window(start, end, length, where, sample_id)
    url = record.get("video_url", record.get("video_link"))
    question = text(need(record, "question", where), where["question"])
    return Segment(start, end, question, "question", meta={"url": url}, source_id=str(sample_id))


def _time(record: dict[str, Any], name: str, where: Where) -> float:
    """``<name>_second`` if present, else ``<name>`` parsed; when both are there they must agree."""
    seconds = number(record[f"{name}_second"], where[f"{name}_second"]) if f"{name}_second" in record else None
    clock = None
    if name in record:
        clock = clock_seconds(record[name]) if isinstance(record[name], str) else None
        if clock is None:
            raise where[name].error(f"got {record[name]!r}; expected a time 'MM:SS' or 'HH:MM:SS'")
    if seconds is None:
        if clock is None:
            raise where.error(f"missing fields {name + '_second'!r} and {name!r}; expected at least one")
        return clock
    if clock is not None and abs(seconds - clock) > DURATION_TOLERANCE_S:
        raise where.error(
            f"{name}_second={seconds:g} but {name}={record[name]!r} is {clock:g} s; "
            f"expected them to agree within {DURATION_TOLERANCE_S:g} s"
        )
    return seconds
