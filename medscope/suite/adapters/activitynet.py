"""ActivityNet Captions (dense video captioning): ``train.json``, ``val_1.json``, ``val_2.json``.

One JSON object keyed by video id, times in seconds::

    {"v_QOlSCBRmfWY": {"duration": 82.73,
                       "timestamps": [[0.83, 19.86], [17.37, 60.81], ...],
                       "sentences": ["A young woman is seen standing in a room ...", ...]},
     ...}

Each ``(timestamps[k], sentences[k])`` is one record and becomes a ``"caption"`` segment (sentence stripped,
``source_id`` ``"v_QOlSCBRmfWY/2"``), in file order; the two lists must have the same length (else the video
is skipped). Known faults of the official files: 2 of train's 37,421 windows end before they start (skipped),
windows end up to 0.01 s after ``duration`` (clamped). The split is the file name's (``val_1`` → ``val``).
``video`` is ``f"{video_id}.mp4"`` unless the record has a ``"video"`` key; the builder also finds the video
by its stem in any container (ActivityNet's are ``.mp4``, ``.mkv`` and ``.webm``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medscope.suite.adapters import LoadContext, Where, duration, need, pair, read_json, split_of, text
from medscope.suite.records import Segment, VideoAnnotation

SOURCE = "activitynet"


def load(path: Path, ctx: LoadContext) -> list[VideoAnnotation]:
    data = read_json(path)
    if not isinstance(data, dict):
        raise Where(path).error(f"top level is a {type(data).__name__}; expected an object keyed by video id")
    out = []
    for video_id, record in data.items():
        with ctx.record(Where(path)[video_id], video_id):
            annotation = _video(video_id, record, Where(path)[video_id], ctx, split_of(path))
            if annotation.segments:
                out.append(annotation)
    return out


def _video(video_id: str, record: Any, where: Where, ctx: LoadContext, split: str | None) -> VideoAnnotation:
    length = duration(need(record, "duration", where), where["duration"])
    stamps, sentences = need(record, "timestamps", where), need(record, "sentences", where)
    for key, value in (("timestamps", stamps), ("sentences", sentences)):
        if not isinstance(value, list):
            raise where[key].error(f"got {type(value).__name__}; expected a list")
    if len(stamps) != len(sentences):
        raise where.error(
            f"{len(stamps)} timestamps but {len(sentences)} sentences; expected one sentence per timestamp",
            "timestamps and sentences differ in number",
        )
    segments = []
    for k, (stamp, sentence) in enumerate(zip(stamps, sentences, strict=True)):
        record_id = f"{video_id}/{k}"
        with ctx.record(where["timestamps"][k], record_id):
            start, end = ctx.window(*pair(stamp, where["timestamps"][k]), length, where["timestamps"][k], record_id)
            segments.append(Segment(start, end, text(sentence, where["sentences"][k]), "caption",
                                    source_id=record_id))
    video = text(record["video"], where["video"]) if "video" in record else f"{video_id}.mp4"
    return VideoAnnotation(video_id, video, length, tuple(segments), SOURCE, split=split)
