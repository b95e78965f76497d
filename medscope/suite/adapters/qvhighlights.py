"""QVHighlights (moment retrieval): ``highlight_train_release.jsonl``, ``highlight_val_release.jsonl``.

JSON Lines, one query a line, times in seconds (other keys such as ``relevant_clip_ids`` and
``saliency_scores`` are ignored); blank lines are skipped::

    {"qid": 8737, "query": "A family is playing basketball together on a green court outside.",
     "duration": 126, "vid": "bP5KfdFJzC4_660.0_810.0", "relevant_windows": [[0, 16]], ...}

Each line becomes a ``"query"`` segment: ``text`` the query, ``windows`` every relevant window in file
order, ``start``/``end`` the first of them, ``meta["qid"]`` the qid. Lines are grouped into one
``VideoAnnotation`` per ``vid`` (order of first appearance; ``video`` ``f"{vid}.mp4"``), whose lines must
agree on ``duration`` within 1 s. The public test split has no ``relevant_windows``: it is an error here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from medscope.suite.adapters import VideoGroups, Where, duration, need, pair, read_lines, text, window
from medscope.suite.records import Segment, VideoAnnotation

SOURCE = "qvhighlights"


def load(path: str | Path) -> list[VideoAnnotation]:
    path = Path(path)
    videos = VideoGroups(SOURCE)
    for number, line in enumerate(read_lines(path), start=1):
        if not line.strip():
            continue
        where = Where(path, number)
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise where.error(
                f"invalid JSON: {exc.msg} (column {exc.colno}); expected one JSON object a line"
            ) from exc
        vid = text(need(record, "vid", where), where["vid"])
        length = duration(need(record, "duration", where), where["duration"])
        known, segments = videos.add(vid, length, where["duration"], "line")
        segments.append(_query(record, where, known))
    return videos.annotations()


def _query(record: dict[str, Any], where: Where, length: float) -> Segment:
    qid = need(record, "qid", where)
    if isinstance(qid, bool) or not isinstance(qid, int | str):
        raise where["qid"].error(f"got {qid!r}; expected an integer or string id")
    query = text(need(record, "query", where), where["query"])
    if "relevant_windows" not in record:
        raise where.error("missing field 'relevant_windows' (the test split has none); expected annotated queries")
    raw = record["relevant_windows"]
    if not isinstance(raw, list) or not raw:
        raise where["relevant_windows"].error(f"got {raw!r}; expected a non-empty list of [start, end] pairs")
    places = [where["relevant_windows"][k] for k in range(len(raw))]
    windows = tuple(window(*pair(w, place), length, place) for w, place in zip(raw, places, strict=True))
    return Segment(*windows[0], query, "query", windows=windows, meta={"qid": qid})
