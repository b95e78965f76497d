"""ActivityNet Captions (dense video captioning): ``train.json``, ``val_1.json``, ``val_2.json``.

One JSON object keyed by video id, times in seconds::

    {"v_QOlSCBRmfWY": {"duration": 82.73,
                       "timestamps": [[0.83, 19.86], [17.37, 60.81], ...],
                       "sentences": ["A young woman is seen standing in a room ...", ...]},
     ...}

Each ``(timestamps[k], sentences[k])`` becomes a ``"caption"`` segment (sentence stripped), in file order;
the two lists must have the same length. A window ending up to 1 s past ``duration`` is clamped to it,
further is an error. ``video`` is ``f"{video_id}.mp4"`` unless the record has a ``"video"`` key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medscope.suite.adapters import Where, duration, need, pair, read_json, text, window
from medscope.suite.records import Segment, VideoAnnotation

SOURCE = "activitynet"


def load(path: str | Path) -> list[VideoAnnotation]:
    path = Path(path)
    data = read_json(path)
    if not isinstance(data, dict):
        raise Where(path).error(f"top level is a {type(data).__name__}; expected an object keyed by video id")
    return [_video(video_id, record, Where(path)[video_id]) for video_id, record in data.items()]


def _video(video_id: str, record: Any, where: Where) -> VideoAnnotation:
    length = duration(need(record, "duration", where), where["duration"])
    stamps, sentences = need(record, "timestamps", where), need(record, "sentences", where)
    for key, value in (("timestamps", stamps), ("sentences", sentences)):
        if not isinstance(value, list):
            raise where[key].error(f"got {type(value).__name__}; expected a list")
    if len(stamps) != len(sentences):
        raise where.error(
            f"{len(stamps)} timestamps but {len(sentences)} sentences; expected one sentence per timestamp"
        )
    segments = []
    for k, (stamp, sentence) in enumerate(zip(stamps, sentences, strict=True)):
        start, end = window(*pair(stamp, where["timestamps"][k]), length, where["timestamps"][k])
        segments.append(Segment(start, end, text(sentence, where["sentences"][k]), "caption"))
    video = text(record["video"], where["video"]) if "video" in record else f"{video_id}.mp4"
    return VideoAnnotation(video_id, video, length, tuple(segments), SOURCE)
