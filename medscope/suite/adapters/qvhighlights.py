"""QVHighlights (moment retrieval): ``highlight_train_release.jsonl``, ``highlight_val_release.jsonl``.

JSON Lines, one query a line, times in seconds (other keys such as ``relevant_clip_ids`` and
``saliency_scores`` are ignored); blank lines are skipped and the last line may lack its newline::

    {"qid": 8737, "query": "A family is playing basketball together on a green court outside.",
     "duration": 126, "vid": "bP5KfdFJzC4_660.0_810.0", "relevant_windows": [[0, 16]], ...}

Each line becomes a ``"query"`` segment: ``text`` the query, ``windows`` every relevant window in file
order (up to 25 in val), ``start``/``end`` the first of them, ``source_id`` the qid. Lines are grouped into
one ``VideoAnnotation`` per ``vid`` (order of first appearance; ``video`` ``f"{vid}.mp4"``), whose lines must
agree on ``duration`` within 1 s (a line that does not is skipped). A line without ``relevant_windows`` (the
public test split) is skipped with that reason. The split is the file name's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from medscope.suite.adapters import LoadContext, VideoGroups, Where, duration, need, pair, read_lines, split_of, text
from medscope.suite.records import Segment, VideoAnnotation

SOURCE = "qvhighlights"


def load(path: Path, ctx: LoadContext) -> list[VideoAnnotation]:
    videos = VideoGroups(SOURCE, split_of(path))
    for number, line in enumerate(read_lines(path), start=1):
        if not line.strip():
            continue
        where = Where(path, number)
        with ctx.record(where, f"line {number}"):
            try:
                record = json.loads(line)
            except (ValueError, RecursionError) as exc:
                raise where.error(f"invalid JSON ({exc}); expected one JSON object a line", "invalid JSON") from exc
            vid = text(need(record, "vid", where), where["vid"])
            length = duration(need(record, "duration", where), where["duration"])
            query = _query(record, where, length, ctx)
            videos.add(vid, length, where["duration"], "line").append(query)
    return videos.annotations()


def _query(record: dict[str, Any], where: Where, length: float, ctx: LoadContext) -> Segment:
    qid = need(record, "qid", where)
    if isinstance(qid, bool) or not isinstance(qid, int | str):
        raise where["qid"].error(f"got {qid!r}; expected an integer or string id")
    query = text(need(record, "query", where), where["query"])
    if "relevant_windows" not in record:
        raise where.error("missing field 'relevant_windows' (the public test split has none); expected annotated "
                          "queries", "no relevant_windows (test split)")
    raw = record["relevant_windows"]
    if not isinstance(raw, list) or not raw:
        raise where["relevant_windows"].error(f"got {raw!r}; expected a non-empty list of [start, end] pairs")
    places = [where["relevant_windows"][k] for k in range(len(raw))]
    windows = tuple(ctx.window(*pair(w, place), length, place, qid) for w, place in zip(raw, places, strict=True))
    return Segment(*windows[0], query, "query", windows=windows, source_id=str(qid))
