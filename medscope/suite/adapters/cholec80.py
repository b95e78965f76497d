"""Cholec80 (laparoscopic cholecystectomy): phase files and tool-presence files, one pair per video.

The official layout is ``phase_annotations/videoNN-phase.txt`` and ``tool_annotations/videoNN-tool.txt``,
tab-separated with a header. Phases: one row per frame (the videos are 25 fps); tools: one row every 25th
frame (1 per second), 0/1 per instrument::

    Frame	Phase                          Frame	Grasper	Bipolar	Hook	Scissors	Clipper	Irrigator	SpecimenBag
    0	Preparation                     0	1	0	0	0	0	0	0
    1	Preparation                     25	1	0	0	0	0	0	0
    ...                                 ...

``path`` is one phase file or a folder searched recursively for ``*-phase.txt``; a video's tool file is the
``<id>-tool.txt`` found under the same root (or beside the phase file). Frame numbers become seconds with
the frame rate of ``ctx.fps``: ``--fps`` when given, else the video file's; without either the file is
skipped with the reason "fps unknown" (nothing is assumed). A run of one phase becomes a ``"phase"``
segment from its first frame to the next run's first frame; a run of 1s of one tool becomes an
``"instrument"`` segment from its first row to the row after its last. ``duration`` is
``(last phase frame + 1) / fps``. Phase names are made readable (``"CalotTriangleDissection"`` → ``"Calot
triangle dissection"``). A malformed row skips the video's file with its line named.
"""

from __future__ import annotations

import re
from pathlib import Path

from medscope.suite.adapters import AdapterError, LoadContext, Where, input_files, read_lines
from medscope.suite.records import Segment, VideoAnnotation

SOURCE = "cholec80"
PHASE_HEADER = ("Frame", "Phase")
TOOLS = ("Grasper", "Bipolar", "Hook", "Scissors", "Clipper", "Irrigator", "SpecimenBag")
FPS_HINT = "Cholec80 videos are 25 fps: --fps 25"
# Cholec80's seven names; others are split at capitals ("GallbladderDissection" -> "gallbladder dissection").
_READABLE = {"ClippingCutting": "clipping and cutting", "CleaningCoagulation": "cleaning and coagulation",
             "SpecimenBag": "specimen bag"}
_PROPER = {"calot": "Calot"}


def load(path: Path, ctx: LoadContext) -> list[VideoAnnotation]:
    files = input_files(path, "*-phase.txt", recursive=True, where="Cholec80's phase_annotations/")
    root = path if path.is_dir() else path.parent.parent
    out = []
    for file in files:
        with ctx.record(Where(file), file.name):
            out.append(_video(file, root, ctx))
    return out


def readable(phase: str) -> str:
    """``"CalotTriangleDissection"`` -> ``"Calot triangle dissection"``; lower case but for proper nouns."""
    words = _READABLE.get(phase) or " ".join(re.findall(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+", phase)) or phase
    return " ".join(_PROPER.get(w.lower(), w.lower()) for w in words.replace("_", " ").split())


def phase_segments(rows: list[tuple[int, str]], fps: float, end_frame: int) -> list[Segment]:
    """Runs of one label in ``(first frame, label)`` rows → ``"phase"`` segments ending where the next run
    starts (the last at ``end_frame``). Shared by the frame-indexed phase adapters."""
    segments = []
    starts = [k for k in range(len(rows)) if k == 0 or rows[k][1] != rows[k - 1][1]]
    for k, first in enumerate(starts):
        frame, phase = rows[first]
        last = rows[starts[k + 1]][0] if k + 1 < len(starts) else end_frame
        name = readable(phase)
        segments.append(Segment(frame / fps, last / fps, f"The {name} phase.", "phase", phase,
                                meta={"name": name}))
    return segments


def _video(path: Path, root: Path, ctx: LoadContext) -> VideoAnnotation:
    video_id = path.name.removesuffix("-phase.txt") if path.name.endswith("-phase.txt") else path.stem
    rows = frame_rows(path, PHASE_HEADER, "'Frame<TAB>Phase'")
    fps = ctx.fps(video_id, Where(path), dataset_fps=FPS_HINT)
    end_frame = rows[-1][0] + 1
    segments = phase_segments([(frame, fields[0]) for frame, fields in rows], fps, end_frame)
    tool_file = next((p for p in (path.parent / f"{video_id}-tool.txt", *root.rglob(f"{video_id}-tool.txt"))
                      if p.is_file()), None)
    if tool_file is not None:
        segments += _tools(tool_file, fps, end_frame, ctx)
    segments.sort(key=lambda s: (s.start, s.end))
    return VideoAnnotation(video_id, f"{video_id}.mp4", end_frame / fps, tuple(segments), SOURCE)


def _tools(path: Path, fps: float, end_frame: int, ctx: LoadContext) -> list[Segment]:
    """Presence runs per instrument; a malformed tool file is skipped (noted) without losing the phases."""
    segments: list[Segment] = []
    with ctx.record(Where(path), path.name):
        rows = frame_rows(path, ("Frame", *TOOLS), "'Frame<TAB>Grasper<TAB>...<TAB>SpecimenBag'")
        for frame, fields in rows:
            if any(v not in ("0", "1") for v in fields):
                raise Where(path).error(f"frame {frame}: tool values {fields}; expected 0 or 1", "tool value not 0/1")
        step = rows[1][0] - rows[0][0] if len(rows) > 1 else round(fps)
        for column, tool in enumerate(TOOLS):
            name = readable(tool)
            frames = [frame for frame, fields in rows if fields[column] == "1"]
            for first, last in _runs(frames, step):
                segments.append(Segment(first / fps, min(last + step, end_frame) / fps, f"A {name} is in view.",
                                        "instrument", tool, meta={"name": name}))
    return segments


def _runs(frames: list[int], step: int) -> list[tuple[int, int]]:
    """Consecutive rows (``step`` apart) as ``(first, last)`` frames."""
    runs: list[tuple[int, int]] = []
    for frame in frames:
        if runs and frame - runs[-1][1] <= step:
            runs[-1] = (runs[-1][0], frame)
        else:
            runs.append((frame, frame))
    return runs


def frame_rows(path: Path, header: tuple[str, ...], layout: str) -> list[tuple[int, list[str]]]:
    """``(frame, other fields)`` rows of a whitespace- or tab-separated file with ``header``; frames must
    increase. A bad row raises ``AdapterError`` naming its line."""
    rows: list[tuple[int, list[str]]] = []
    header_seen = False
    for number, line in enumerate(read_lines(path), start=1):
        if not line.strip():
            continue
        where = Where(path, number)
        fields = [f.strip() for f in (line.split("\t") if "\t" in line else line.split())]
        if not header_seen:
            if tuple(f.lower() for f in fields) != tuple(h.lower() for h in header):
                raise where.error(f"header {line.strip()!r}; expected {layout}", "unexpected header")
            header_seen = True
            continue
        if len(fields) != len(header) or not all(fields):
            raise where.error(f"row {line.strip()!r} has {len(fields)} fields; expected {len(header)} ({layout})",
                              "wrong number of fields")
        try:
            frame = int(fields[0])
        except ValueError:
            raise where.error(f"frame {fields[0]!r} is not an integer; expected a frame index >= 0",
                              "frame is not an integer") from None
        if frame < 0 or (rows and frame <= rows[-1][0]):
            after = f" after frame {rows[-1][0]}" if rows else ""
            raise where.error(f"frame {frame}{after}; expected frame indices >= 0, increasing",
                              "frames not increasing")
        rows.append((frame, fields[1:]))
    if not rows:
        raise AdapterError(f"{path}: no frame rows; expected a header and one row per frame ({layout})",
                           "no rows", str(path))
    return rows
