"""MultiBypass140 (laparoscopic Roux-en-Y gastric bypass, CAMMA): one JSON file of phases and steps per video.

The official layout is ``labels/bern/labels_by70/BBPnn.mp4.json`` and ``labels/strasbourg/labels_by70/SBPnn.mp4.json``
(70 videos each). Each file is one line, a plain object of two lists, times in integer **milliseconds**::

    {"phases": [{"start": 13301, "end": 1371912, "label_name": "preparation", "label_id": 0},
                {"start": 53583, "end": 75743, "label_name": "out_of_body", "label_id": 12}, ...],
     "steps":  [{"start": 13301, "end": 79263, "label_name": "s0_null_step", "label_id": 0},
                {"start": 79263, "end": 127825, "label_name": "s1_cavity_exploration", "label_id": 1}, ...]}

Each entry is one record. The 12 phases of the ontology (ids 0–11, ``preparation`` … ``other_intervention``)
become ``"phase"`` segments: ``label`` the ``label_name``, ``text`` ``"The gastric pouch creation phase."``,
``meta`` ``name`` (readable) and ``label_id``. Steps become ``"event"`` segments: ``label`` the name without its
``sNN_`` prefix (``"cavity_exploration"``), ``text`` ``"Cavity exploration."``, ``meta`` ``name``, ``label_id``
and the verbatim ``label_name``. Times become seconds (``/ 1000``); ``source_id`` is
``"<video>/phases/<k>"`` or ``"<video>/steps/<k>"`` (k the index in the file's list); segments keep file order.

The two extra "phases" are not phases: they lie inside the regular ones (preparation 13301–1371912 ms holds
out_of_body 53583–75743 ms), so as phases they would make "which phase is under way at t" ambiguous.
``out_of_body`` (id 12, the camera outside the patient) becomes an ``"event"`` segment (``label``
``"out_of_body"``), keeping the phase track non-overlapping; ``severe_index`` (id 13; its meaning is not
documented with the labels, and the official training uses phases 0–12 only) and ``s0_null_step`` (time with
no step) are not kept: each is noted as skipped ("severe_index marker", "null step"), never an error, even
with ``strict``.

``path`` is one JSON file or a folder searched recursively (the per-centre folders) for ``*.mp4.json``, or for
``*.json`` when there is none. ``video_id`` is the file name without ``.mp4.json`` (``BBP01``), the videos'
stem; ``video`` ``BBP01.mp4``. A file that is not valid JSON or not of this layout is skipped (noted). The files
give no video duration (``None``; the builder reads the video's) and no split: the official splits are 5-fold
cross-validation pickles per centre (``labels_by70_splits/``), not read here, so ``split`` is ``None``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from medscope.suite.adapters import AdapterError, LoadContext, Where, input_files, need, number, read_json, text
from medscope.suite.records import Segment, VideoAnnotation

SOURCE = "multibypass140"
LISTS = ("phases", "steps")
OUT_OF_BODY = "out_of_body"
SKIPPED = {("phases", "severe_index"): ("severe_index marker", "marks an undocumented severity index, not a phase"),
           ("steps", "s0_null_step"): ("null step", "is the null step (no surgical step under way)")}
_STEP_PREFIX = re.compile(r"^s\d+_")


def load(path: Path, ctx: LoadContext) -> list[VideoAnnotation]:
    where = "MultiBypass140's labels_by70/"
    try:
        files = input_files(path, "*.mp4.json", recursive=True, where=where)
    except AdapterError:  # copies that dropped the .mp4 from the label files' names
        files = input_files(path, "*.json", recursive=True, where=where)
    out = []
    for file in files:
        with ctx.record(Where(file), file.name):
            annotation = _video(file, ctx)
            if annotation.segments:
                out.append(annotation)
    return out


def video_id_of(path: Path) -> str:
    """``BBP01.mp4.json`` → ``BBP01`` (the video's stem)."""
    name = path.name.removesuffix(".json")
    return Path(name).stem if Path(name).suffix.lower() == ".mp4" else name


def _video(path: Path, ctx: LoadContext) -> VideoAnnotation:
    data = read_json(path)
    where = Where(path)
    if not isinstance(data, dict):
        raise where.error(f"top level is a {type(data).__name__}; expected an object with 'phases' and 'steps'",
                          "not a MultiBypass140 label file")
    for name in LISTS:
        if not isinstance(need(data, name, where), list):
            raise where[name].error(f"got {type(data[name]).__name__}; expected a list of segments")
    if not data["phases"] and not data["steps"]:
        raise where.error("'phases' and 'steps' are both empty; expected annotated segments", "no segments")
    video_id = video_id_of(path)
    segments = []
    for name in LISTS:
        for k, item in enumerate(data[name]):
            record_id = f"{video_id}/{name}/{k}"
            with ctx.record(where[name][k], record_id):
                segment = _segment(item, name, where[name][k], ctx, record_id)
                if segment is not None:
                    segments.append(segment)
    return VideoAnnotation(video_id, f"{video_id}.mp4", None, tuple(segments), SOURCE)


def _segment(item: Any, kind: str, where: Where, ctx: LoadContext, record_id: str) -> Segment | None:
    start, end = (number(need(item, key, where), where[key], "a time in milliseconds") / 1000
                  for key in ("start", "end"))
    start, end = ctx.window(start, end, None, where, record_id)
    label = text(need(item, "label_name", where), where["label_name"])
    label_id = need(item, "label_id", where)
    if isinstance(label_id, bool) or not isinstance(label_id, int) or label_id < 0:
        raise where["label_id"].error(f"got {label_id!r}; expected a class id (an integer >= 0)")
    if (kind, label) in SKIPPED:
        # Deliberately not kept (module docstring): noted so the count shows, but not a fault of the file.
        reason, why = SKIPPED[kind, label]
        ctx.note("skipped", where.error(f"{label!r} {why}; not kept", reason), record_id)
        return None
    if kind == "steps":
        short = _STEP_PREFIX.sub("", label, count=1)
        name = short.replace("_", " ")
        return Segment(start, end, f"{name[:1].upper()}{name[1:]}.", "event", short,
                       meta={"name": name, "label_id": label_id, "label_name": label}, source_id=record_id)
    if label == OUT_OF_BODY:
        return Segment(start, end, "The camera is outside the patient's body.", "event", label,
                       meta={"name": "camera out of the body", "label_id": label_id}, source_id=record_id)
    name = label.replace("_", " ")
    return Segment(start, end, f"The {name} phase.", "phase", label, meta={"name": name, "label_id": label_id},
                   source_id=record_id)
