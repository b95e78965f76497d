"""ActivityNet-1.3 (temporal action localisation): ``activity_net.v1-3.min.json``, and other files in its layout.

One JSON object whose ``"database"`` maps each YouTube id (no ``v_`` prefix) to its video, times in seconds::

    {"version": "VERSION 1.3",
     "taxonomy": [{"nodeId": 0, "nodeName": "Root", "parentId": null, "parentName": null}, ...],
     "database": {"sJFgo9H6zNo": {"subset": "training", "duration": 139.042, "resolution": "1280x720",
                                  "url": "https://www.youtube.com/watch?v=sJFgo9H6zNo",
                                  "annotations": [{"segment": [0.0, 48.58], "label": "Ballet"}, ...]},
                  ...}}

Each annotation is one record and becomes an ``"event"`` segment: ``label`` the class name, ``text``
``"Ballet."``, ``source_id`` ``"sJFgo9H6zNo/0"`` (database key / index in ``annotations``), in file order. The
split is ``subset`` (``training``/``validation``/``testing`` → ``train``/``val``/``test``); it is only set on
the ``VideoAnnotation`` (``load_annotations`` applies ``--split``). The videos are named ``v_<id>`` (``.mp4``,
``.mkv`` or ``.webm``): ``video_id`` is ``f"v_{id}"`` (unless the key already starts with ``v_``) and ``video``
``f"v_{id}.mp4"``; the builder finds the real file by its stem in any container. ``taxonomy``, ``version``,
``resolution``, ``url`` and an optional ``fps`` are not read (the builder reads the video's own frame rate).

Known quirks: the testing subset has empty ``annotations`` (the labels are withheld), so those videos are
skipped and each noted ("no annotations"; not an error even with ``strict``); windows end slightly after
``duration`` (clamped, noted). ``database_annotations`` reads this layout for other sources too: OphNet's
``OphNet2024_phase.json`` and ``OphNet2024_operation.json`` (``medscope.suite.adapters.ophnet``) add
``label_id`` and ``fps`` and use ``train``/``val``/``test`` subsets.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from medscope.suite.adapters import LoadContext, Where, duration, need, pair, read_json, text
from medscope.suite.records import Segment, SegmentKind, VideoAnnotation

SOURCE = "activitynet13"
SUBSETS = {"training": "train", "validation": "val", "testing": "test", "train": "train", "val": "val",
           "test": "test"}

# What a label becomes: the segment's text and meta (ActivityNet: "Ballet" -> "Ballet.", no meta).
Describe = Callable[[str], tuple[str, dict[str, Any]]]


def load(path: Path, ctx: LoadContext) -> list[VideoAnnotation]:
    return database_annotations(path, ctx, source=SOURCE, kind="event", video_id=anet_video_id)


def anet_video_id(key: str) -> str:
    """ActivityNet's database keys are bare YouTube ids; its video files are ``v_<id>``."""
    return key if key.startswith("v_") else f"v_{key}"


def describe_class(label: str) -> tuple[str, dict[str, Any]]:
    return f"{label.rstrip('.')}.", {}


def database_annotations(path: Path, ctx: LoadContext, *, source: str, kind: SegmentKind = "event",
                         video_id: Callable[[str], str] = anet_video_id,
                         describe: Describe = describe_class) -> list[VideoAnnotation]:
    """The ``VideoAnnotation``s of a JSON file in the ActivityNet-1.3 ``"database"`` layout (module docstring).

    ``source`` names the records, ``kind`` is every segment's kind, ``video_id`` turns a database key into the
    video's id (its file stem; ``video`` is that ``+ ".mp4"``) and ``describe`` a label into the segment's text
    and meta. A video and each of its annotations are records of ``ctx``; a video with no annotations is
    skipped and noted without being an error."""
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("database"), dict):
        got = f"a {type(data).__name__}" if not isinstance(data, dict) else (
            f"'database': {type(data.get('database')).__name__}" if "database" in data else "no 'database'")
        raise Where(path).error(f"top level has {got}; expected an object with a \"database\" object keyed by "
                                "video id (the ActivityNet-1.3 layout)", "not an ActivityNet-1.3 database")
    out = []
    for key, record in data["database"].items():
        where = Where(path)["database"][key]
        with ctx.record(where, key):
            annotation = _video(key, record, where, ctx, source, kind, video_id(key), describe)
            if annotation.segments:
                out.append(annotation)
    return out


def _video(key: str, record: Any, where: Where, ctx: LoadContext, source: str, kind: SegmentKind,
           video_id: str, describe: Describe) -> VideoAnnotation:
    length = duration(need(record, "duration", where), where["duration"])
    split = _split(record, where)
    annotations = need(record, "annotations", where)
    if not isinstance(annotations, list):
        raise where["annotations"].error(f"got {type(annotations).__name__}; expected a list")
    if not annotations:
        # The testing subset withholds its labels: nothing to ask about, but not a fault (noted, never raised).
        ctx.note("skipped", where["annotations"].error(
            f"no annotations (subset {record.get('subset')!r}; the testing subset has none); video skipped",
            "no annotations"), key)
    segments = []
    for k, item in enumerate(annotations):
        record_id = f"{key}/{k}"
        at = where["annotations"][k]
        with ctx.record(at, record_id):
            label = text(need(item, "label", at), at["label"])
            start, end = ctx.window(*pair(need(item, "segment", at), at["segment"]), length, at["segment"], record_id)
            words, meta = describe(label)
            if "label_id" in item:  # OphNet's numeric class id, kept to join with its CSVs
                meta = {**meta, "label_id": item["label_id"]}
            segments.append(Segment(start, end, words, kind, label, meta=meta, source_id=record_id))
    return VideoAnnotation(video_id, f"{video_id}.mp4", length, tuple(segments), source, split=split)


def _split(record: dict[str, Any], where: Where) -> str | None:
    if "subset" not in record:
        return None
    subset = record["subset"]
    if not isinstance(subset, str) or subset.strip().lower() not in SUBSETS:
        raise where["subset"].error(f"got {subset!r}; expected one of training, validation, testing "
                                    "(or train, val, test)", "unknown subset")
    return SUBSETS[subset.strip().lower()]
