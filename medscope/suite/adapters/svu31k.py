"""SVU-31K (SurgVidLM surgical video QA): ``svu-31k-{video-clip,full-video}-train.json.json``.

A JSON list of LLaMA-Factory "sharegpt" records (no verbatim record is public; this layout is read off the
authors' loaders: ``clip_inference_batch.py``, ``full_video_inference_batch.py``, ``vision_process.py``)::

    [{"id": 17,                                                   # full-video records: "total_id"
      "messages": [{"role": "user", "content": "<video>What is the surgeon doing with the grasper?"},
                   {"role": "assistant", "content": "Retracting the gallbladder fundus cranially."}],
      "videos": ["/data/authors/SVU/vd01en3812.mp4"],             # the authors' absolute path: one video
      "timecodes": [30, 75],                                      # seconds of the full video; end -1 = its end
      "tag": "Visual Perception Reasoning"},                      # or "Visual Temporal Reasoning",
     ...]                                                         # "video clip description"

Each record becomes a ``"qa"`` segment: ``text`` the user turn without its leading ``<video>`` token,
``meta["answer"]`` the assistant turn, ``meta["tag"]`` the tag as written, ``meta["task"]`` from the tag:
``"video clip description"`` and ``"full video detailed description"`` → ``fine_caption`` (the paper scores
descriptions as captions, not as answers), ``"Visual Temporal Reasoning"`` and ``"Visual Perception
Reasoning"`` → ``grounded_vqa`` (tags compared ignoring case and spacing; any other tag is skipped with
reason "unknown tag"). ``start``/``end`` are ``timecodes``, checked by ``ctx.window`` (an end past the video is
clamped, as the authors' loader clamps it); ``source_id`` is the record id. Records are grouped into one
``VideoAnnotation`` per video (order of first appearance): ``video`` is the file name of ``videos[0]`` and
``video_id`` its stem, since the authors' paths exist nowhere else and the builder finds the file by stem
under ``--videos``; ``duration`` is the video file's when found (the annotations carry no duration), else
None. The split is the file name's (``train``; the ``.json.json`` double suffix is looked through).

Quirks and choices:

- ``timecodes`` end ``-1`` means "to the end of the video": it is replaced by the video file's duration; when
  the file is not there the record is skipped (reason "end -1 needs the video: pass --videos").
- Full-video records have no ``timecodes`` (the key is absent; ``null`` is read the same way) and cover the
  whole video: they become a ``[0, duration]`` segment when the video file gives the duration, and are
  skipped otherwise (reason "full-video record (no timecodes)"). Their task follows the tag like any other
  (descriptions → ``fine_caption``: the generator has no whole-video ``caption`` for ``"qa"`` segments). They
  are not used as ``VideoAnnotation.summary``: the summary is shown to the filters' judge, and a reference
  answer there would let it answer the very sample it checks.
- The id is ``id`` for clip records and ``total_id`` for full-video ones (as the authors' readers index them),
  each falling back to the other; an int id becomes its decimal string.
- ``messages`` must be exactly two turns, ``user`` then ``assistant`` (the authors' code reads ``[0]`` and
  ``[1]``); ``videos`` exactly one path. Other shapes are skipped rather than guessed at.

Uncertain (no annotation file or sample record is public):

- the test split's file name(s) (the README says only ``test_data.json``); any name is read, the split is
  whatever the name states;
- the full-video tag string (``score_description.py`` says ``"full video detailed description"``,
  ``evaluate_metrics_full.py`` filters on ``"video clip description"``): both map to ``fine_caption``;
- whether ids are ints or strings, and whether full-video records carry ``id`` as well as ``total_id``;
- whether the public clip questions are the original ones or the stage-2 prompts (``"You are given a video
  segment and the background information of the full video: ..."``); they are kept as written;
- whether ``timecodes`` are ints or floats (both are read), and the videos' extension (found by stem).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from medscope.suite.adapters import LoadContext, Where, need, pair, read_json, short, split_of, text
from medscope.suite.records import Segment, VideoAnnotation

SOURCE = "svu31k"
VIDEO_TOKEN = "<video>"
# Tags as the authors' evaluation scripts spell them, lower-cased; the value is the sample task.
TAG_TASKS = {
    "video clip description": "fine_caption",
    "full video detailed description": "fine_caption",
    "visual temporal reasoning": "grounded_vqa",
    "visual perception reasoning": "grounded_vqa",
}
END_OF_VIDEO = -1  # a timecodes end of -1: up to the end of the video (vision_process.py)


@dataclass
class _Video:
    name: str
    duration: float | None
    segments: list[Segment] = field(default_factory=list)


def load(path: Path, ctx: LoadContext) -> list[VideoAnnotation]:
    data = read_json(path)
    if not isinstance(data, list):
        raise Where(path).error(f"top level is a {type(data).__name__}; expected a JSON list of records")
    videos: dict[str, _Video] = {}
    for k, record in enumerate(data):
        where = Where(path)[k]
        with ctx.record(where, _label(record, k)):
            video_id, name, length, segment = _record(record, where, ctx)
            videos.setdefault(video_id, _Video(name, length)).segments.append(segment)
    split = split_of(_single_suffix(path))
    return [VideoAnnotation(video_id, video.name, video.duration, tuple(video.segments), SOURCE, split=split)
            for video_id, video in videos.items()]


def _record(record: Any, where: Where, ctx: LoadContext) -> tuple[str, str, float | None, Segment]:
    """``(video_id, video file name, video duration or None, segment)`` of one record."""
    raw_tag = text(need(record, "tag", where), where["tag"])
    task = TAG_TASKS.get(" ".join(raw_tag.lower().split()))
    if task is None:
        known = ", ".join(repr(t) for t in TAG_TASKS)
        raise where["tag"].error(f"got {raw_tag!r}; expected one of {known} (any case)", "unknown tag")
    full_video = record.get("timecodes") is None
    record_id = _record_id(record, where, full_video)
    question, answer = _turns(record, where)
    name = _video_name(record, where)
    video_id = PurePosixPath(name).stem
    info = ctx.video(video_id, name)
    length = info.duration if info is not None else None
    if full_video:
        if length is None:
            raise where.error(f"full-video record (no timecodes) covers all of {name}, whose duration only the "
                              f"video file gives, and no video file for {video_id!r} was found; pass --videos",
                              "full-video record (no timecodes)")
        start, end = 0.0, length
    else:
        at = where["timecodes"]
        start, end = pair(record["timecodes"], at)
        if end == END_OF_VIDEO:
            if length is None:
                raise at.error(f"end -1 means the end of {name}, whose duration only the video file gives, and no "
                               f"video file for {video_id!r} was found; pass --videos",
                               "end -1 needs the video: pass --videos")
            if start >= length:  # said here: ctx.window would call [start, length] "reversed", not the fault
                raise at.error(f"window [{start:g}, -1] starts at or after the video's end ({length:g} s)",
                               "window after the video")
            end = length
        start, end = ctx.window(start, end, length, at, record_id)
    meta = {"answer": answer, "task": task, "tag": raw_tag}
    return video_id, name, length, Segment(start, end, question, "qa", meta=meta, source_id=record_id)


def _record_id(record: dict[str, Any], where: Where, full_video: bool) -> str:
    """``id`` (clip records) or ``total_id`` (full-video records), each falling back to the other."""
    keys = ("total_id", "id") if full_video else ("id", "total_id")
    key = next((k for k in keys if k in record), None)
    if key is None:
        raise where.error("missing fields 'id' and 'total_id'; expected a record id", "missing field 'id'")
    value = record[key]
    if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).strip():
        raise where[key].error(f"got {value!r}; expected an integer or non-empty string id")
    return str(value).strip()


def _turns(record: dict[str, Any], where: Where) -> tuple[str, str]:
    """The question (user turn, its ``<video>`` token dropped) and the answer (assistant turn)."""
    messages = need(record, "messages", where)
    at = where["messages"]
    if not isinstance(messages, list) or len(messages) != 2:
        shown = f"{len(messages)} turns" if isinstance(messages, list) else type(messages).__name__
        raise at.error(f"got {shown}; expected 2 turns, the user's question then the assistant's answer")
    question, answer = (_content(turn, role, at[n]) for n, (turn, role) in
                        enumerate(zip(messages, ("user", "assistant"), strict=True)))
    question = question.removeprefix(VIDEO_TOKEN).strip()
    if not question:
        raise at[0]["content"].error(f"holds only the {VIDEO_TOKEN} token; expected a question after it")
    return question, answer


def _content(turn: Any, role: str, where: Where) -> str:
    said = need(turn, "role", where)
    if said != role:
        raise where["role"].error(f"got {said!r}; expected {role!r}")
    return text(need(turn, "content", where), where["content"])


def _video_name(record: dict[str, Any], where: Where) -> str:
    """The file name of ``videos[0]`` (the authors' directories are theirs; POSIX or Windows separators)."""
    videos = need(record, "videos", where)
    if not isinstance(videos, list) or len(videos) != 1:
        raise where["videos"].error(f"got {short(videos)}; expected a list of one video path")
    declared = text(videos[0], where["videos"][0])
    name = PurePosixPath(declared.replace("\\", "/")).name
    if not PurePosixPath(name).stem:
        raise where["videos"][0].error(f"got {declared!r}; expected the path of a video file")
    return name


def _label(record: Any, k: int) -> str:
    """The record's id for the skip notes, before it is checked (its index when it has none)."""
    if isinstance(record, dict):
        for key in ("total_id", "id") if record.get("timecodes") is None else ("id", "total_id"):
            if isinstance(record.get(key), int | str) and not isinstance(record[key], bool):
                return str(record[key])
    return f"[{k}]"


def _single_suffix(path: Path) -> Path:
    """``x-train.json.json`` → ``x-train.json`` so that ``split_of`` sees the split word (the HF file names)."""
    base = path.name
    while base.lower().endswith(".json"):
        base = base[: -len(".json")]
    return path.with_name(base + ".json") if base else path
