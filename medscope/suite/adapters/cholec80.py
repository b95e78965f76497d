"""Cholec80 surgical phases: ``phase_annotations/videoNN-phase.txt``, one file per video.

Tab-separated, a header then one row per frame at 25 fps (``fps`` is a parameter), frames increasing::

    Frame	Phase
    0	Preparation
    1	Preparation
    ...
    1234	CalotTriangleDissection

``path`` is one such file or a folder of ``*-phase.txt`` (sorted by name). A row labels the frames up to
the next row, so runs of one phase become contiguous ``"phase"`` segments from ``first_frame / fps`` to
the next run's first frame ``/ fps``; ``duration`` is ``(last_frame + 1) / fps``. ``label`` is the phase
name as written; ``text`` is readable, ``"The Calot triangle dissection phase."`` (``meta["name"]``:
``"Calot triangle dissection"``). ``video_id`` is the file stem less ``-phase``; ``video`` is
``f"{video_id}.mp4"``.
"""

from __future__ import annotations

import re
from pathlib import Path

from medscope.suite.adapters import AdapterError, Where, input_files, read_lines
from medscope.suite.records import Segment, VideoAnnotation

SOURCE = "cholec80"
DEFAULT_FPS = 25.0
HEADER = ("Frame", "Phase")
# Cholec80's seven names; others are split at capitals ("GallbladderDissection" -> "gallbladder dissection").
_READABLE = {"ClippingCutting": "clipping and cutting", "CleaningCoagulation": "cleaning and coagulation"}
_PROPER = {"calot": "Calot"}


def load(path: str | Path, *, fps: float = DEFAULT_FPS) -> list[VideoAnnotation]:
    if not fps > 0:
        raise ValueError(f"fps={fps!r} is out of range: valid fps is > 0")
    return [_video(file, fps) for file in input_files(Path(path), "*-phase.txt")]


def readable(phase: str) -> str:
    """``"CalotTriangleDissection"`` -> ``"Calot triangle dissection"``; lower case but for proper nouns."""
    words = _READABLE.get(phase) or " ".join(re.findall(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+", phase)) or phase
    return " ".join(_PROPER.get(w.lower(), w.lower()) for w in words.replace("_", " ").split())


def _video(path: Path, fps: float) -> VideoAnnotation:
    rows = _rows(path)
    segments = []
    starts = [k for k in range(len(rows)) if k == 0 or rows[k][1] != rows[k - 1][1]]
    for k, first in enumerate(starts):
        frame, phase = rows[first]
        end_frame = rows[starts[k + 1]][0] if k + 1 < len(starts) else rows[-1][0] + 1
        name = readable(phase)
        text = f"The {name} phase."
        segments.append(Segment(frame / fps, end_frame / fps, text, "phase", phase, meta={"name": name}))
    video_id = path.name.removesuffix("-phase.txt") if path.name.endswith("-phase.txt") else path.stem
    return VideoAnnotation(video_id, f"{video_id}.mp4", (rows[-1][0] + 1) / fps, tuple(segments), SOURCE)


def _rows(path: Path) -> list[tuple[int, str]]:
    rows: list[tuple[int, str]] = []
    header_seen = False
    for number, line in enumerate(read_lines(path), start=1):
        if not line.strip():
            continue
        where = Where(path, number)
        fields = [f.strip() for f in (line.split("\t") if "\t" in line else line.split())]
        if not header_seen:
            if tuple(fields) != HEADER:
                raise where.error(f"header {line.strip()!r}; expected 'Frame<TAB>Phase'")
            header_seen = True
            continue
        if len(fields) != 2 or not fields[1]:
            raise where.error(f"row {line.strip()!r} has {len(fields)} fields; expected '<frame><TAB><phase>'")
        try:
            frame = int(fields[0])
        except ValueError:
            raise where.error(f"frame {fields[0]!r} is not an integer; expected a frame index >= 0") from None
        if frame < 0 or (rows and frame <= rows[-1][0]):
            after = f" after frame {rows[-1][0]}" if rows else ""
            raise where.error(f"frame {frame}{after}; expected frame indices >= 0, increasing")
        rows.append((frame, fields[1]))
    if not rows:
        raise AdapterError(f"{path}: no frame rows; expected a 'Frame<TAB>Phase' header and one row per frame")
    return rows
