"""SynthClin annotations (``"schema": "synthclin/1"``, written by ``medscope.video.synthclin``).

Reads one JSON file, or every ``*.json`` in a folder whose ``"schema"`` is ``"synthclin/1"`` (other JSON
files there are skipped). The layout, all times in seconds::

    {"schema": "synthclin/1", "video": "<name>.mp4", "duration": 600.0, "fps": 4.0, ...,
     "phases":      [{"label": "preparation", "start": 0.0, "end": 31.5}, ...],
     "instruments": [{"label": "grasper", "start": 4.25, "end": 40.0, "side": "left"}, ...],
     "events":      [{"label": "bleeding", "start": 87.5, "end": 90.25, "position": "upper-left"}, ...],
     "captions":    [{"start": 0.0, "end": 31.5, "text": "The preparation phase begins."}, ...],
     "summary":     "A synthetic laparoscopic cholecystectomy of ..."}

Each phase, event and instrument becomes a segment of that kind (``label``; ``meta`` ``position`` for
events, and ``trace`` ``[end, trace_end]`` where the event leaves a mark; ``side`` for instruments) whose text
is its caption: the caption with the same start, preferring the same end and a text naming the label. Captions
left over become ``"caption"`` segments. One ``VideoAnnotation`` per file: ``video`` as written, ``video_id`` its
stem, the summary and the duration.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medscope.suite.adapters import (
    AdapterError,
    LoadContext,
    Where,
    duration,
    input_files,
    need,
    number,
    read_json,
    text,
)
from medscope.suite.records import Segment, SegmentKind, VideoAnnotation

SOURCE = "synthclin"
SCHEMA = "synthclin/1"
_SAME_S = 1e-3  # the annotation rounds times to 3 decimals


def load(path: Path, ctx: LoadContext) -> list[VideoAnnotation]:
    out = []
    for file in input_files(path, "*.json"):
        data = read_json(file)
        schema = data.get("schema") if isinstance(data, dict) else None
        if schema == SCHEMA:
            with ctx.record(Where(file), file.name):
                out.append(_annotation(data, Where(file), ctx))
        elif not path.is_dir():
            raise Where(file)["schema"].error(f"got {schema!r}; expected {SCHEMA!r}")
    if not out:
        raise AdapterError(f'{path}: no JSON file here has "schema": {SCHEMA!r}')
    return out


_GROUPS: tuple[tuple[str, SegmentKind, str | None], ...] = (
    ("phases", "phase", None),
    ("events", "event", "position"),
    ("instruments", "instrument", "side"),
)


def _annotation(data: dict[str, Any], where: Where, ctx: LoadContext) -> VideoAnnotation:
    length = duration(need(data, "duration", where), where["duration"])
    captions = []
    for w, c in _items(data, "captions", where):
        with ctx.record(w, w.at):
            captions.append((*_window(c, w, length, ctx), text(need(c, "text", w), w["text"])))
    used: set[int] = set()
    segments = []
    for group, kind, extra in _GROUPS:
        for w, item in _items(data, group, where):
            with ctx.record(w, w.at):
                label = text(need(item, "label", w), w["label"])
                start, end = _window(item, w, length, ctx)
                meta = {extra: need(item, extra, w)} if extra else {}
                if kind == "event" and "trace_end" in item:  # the faded mark it leaves, from its end
                    meta["trace"] = [end, max(end, number(item["trace_end"], w["trace_end"]))]
                caption = _take_caption(captions, used, start, end, label) or _fallback(kind, label)
                segments.append(Segment(start, end, caption, kind, label, meta=meta))
    segments += [Segment(s, e, t, "caption") for k, (s, e, t) in enumerate(captions) if k not in used]
    summary = data.get("summary")
    if summary is not None and not isinstance(summary, str):
        raise where["summary"].error(f"got {summary!r}; expected a string or null")
    video = text(need(data, "video", where), where["video"])
    segments.sort(key=lambda s: (s.start, s.end))
    return VideoAnnotation(Path(video).stem, video, length, tuple(segments), SOURCE, summary)


def _window(item: Any, where: Where, length: float, ctx: LoadContext) -> tuple[float, float]:
    start = number(need(item, "start", where), where["start"])
    return ctx.window(start, number(need(item, "end", where), where["end"]), length, where, where.at)


def _items(data: dict[str, Any], key: str, where: Where) -> list[tuple[Where, Any]]:
    items = need(data, key, where)
    if not isinstance(items, list):
        raise where[key].error(f"got {type(items).__name__}; expected a list of records")
    return [(where[key][k], item) for k, item in enumerate(items)]


def _take_caption(
    captions: list[tuple[float, float, str]], used: set[int], start: float, end: float, label: str
) -> str | None:
    """The text of the unused caption starting at ``start`` that best fits (same end, naming the label)."""
    words = label.lower().replace("_", " ").split()
    best, best_rank = None, (False, -1)
    for k, (s, e, caption) in enumerate(captions):
        if k in used or abs(s - start) > _SAME_S:
            continue
        rank = (abs(e - end) <= _SAME_S, sum(word in caption.lower() for word in words))
        if rank > best_rank:
            best, best_rank = k, rank
    if best is None:
        return None
    used.add(best)
    return captions[best][2]


def _fallback(kind: SegmentKind, label: str) -> str:
    name = label.replace("_", " ")
    if kind == "phase":
        return f"The {name} phase."
    if kind == "instrument":
        return f"A {name} is in view."
    return f"{name.capitalize()}."
