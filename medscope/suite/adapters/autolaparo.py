"""AutoLaparo task 1 (laparoscopic hysterectomy workflow): phase labels, one file per video, one row a second.

The official layout is ``Task 1 Surgical workflow recognition/labels/label_NN.txt`` (NN = 01..21) beside
``videos/NN.mp4``. The header has two spaces but the rows a tab; frame numbers are 1-based and zero-padded to 4
digits, one row per second of video (the labels are at 1 fps whatever the video's rate); phases are ids 1..7::

    Frame  Phase
    0001	2
    0002	2
    ...
    6388	7

Phase ids and their official names: 1 Preparation, 2 Dividing Ligament and Peritoneum, 3 Dividing Uterine
Vessels and Ligament, 4 Transecting the Vagina, 5 Specimen Removal, 6 Suturing, 7 Washing.

``path`` is one label file or a folder searched recursively for ``label_*.txt``; each file is one record: a
malformed file is skipped (noted with its line) and the others load. Row ``k`` labels second ``k`` of the
video, i.e. the window ``[k - 1, k)`` s, so no frame rate is needed and ``--fps`` does not apply. A run of one
phase id becomes a ``"phase"`` segment from its first row to the next run's first row (the last to the end of
the file), ``label`` the official name, ``text`` ``"The <readable name> phase."``, ``meta["name"]`` the
readable name, ``source_id`` ``"label_NN:<line>"`` (the run's first row). ``duration`` is the last frame
number in seconds.

Video ids: the official videos are ``videos/01.mp4`` ... ``videos/21.mp4`` (the number of ``label_NN.txt``),
so ``label_01.txt`` is ``video_id`` ``"01"`` and ``video`` ``"01.mp4"``; a file not named ``label_NN.txt`` is
read with its stem as the id. ``split`` is the official one by video number: 01–10 train, 11–14 val,
15–21 test (``None`` for another number).

Known quirks: the header/row separator mismatch (read as whitespace for the header, tab for the rows);
phases recur (2, 3, 2, 3) and not every video has every phase (01 and 10 have no 1, 11 only 1–4), so runs
are kept in file order. A gap in the frame numbers, a frame 0 or a phase id outside 1..7 skips the file.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

from medscope.suite.adapters import LoadContext, Where, input_files, read_lines
from medscope.suite.adapters.cholec80 import frame_rows, phase_segments
from medscope.suite.records import VideoAnnotation

SOURCE = "autolaparo"
HEADER = ("Frame", "Phase")
PHASES = {1: "Preparation", 2: "Dividing Ligament and Peritoneum", 3: "Dividing Uterine Vessels and Ligament",
          4: "Transecting the Vagina", 5: "Specimen Removal", 6: "Suturing", 7: "Washing"}
SPLITS = (("train", range(1, 11)), ("val", range(11, 15)), ("test", range(15, 22)))  # the official README's
_LAYOUT = "'Frame  Phase' then '<NNNN><TAB><phase id>' rows"


def load(path: Path, ctx: LoadContext) -> list[VideoAnnotation]:
    files = input_files(path, "label_*.txt", recursive=True, where="AutoLaparo's labels/")
    out = []
    for file in files:
        with ctx.record(Where(file), file.name):
            out.append(_video(file))
    return out


def video_id(path: Path) -> str:
    """``label_01.txt`` → ``"01"`` (the official video is ``01.mp4``); another name → its stem."""
    match = re.fullmatch(r"label_([0-9]+)", path.stem)
    return match.group(1) if match else path.stem


def split(video: str) -> str | None:
    """The official split of video ``"NN"`` (01–10 train, 11–14 val, 15–21 test), else None."""
    if not (video.isascii() and video.isdigit()):
        return None
    return next((name for name, numbers in SPLITS if int(video) in numbers), None)


def _video(path: Path) -> VideoAnnotation:
    rows = frame_rows(path, HEADER, _LAYOUT)
    # frame_rows does not say which line each row came from: its rows are the non-blank lines after the header.
    lines = [n for n, line in enumerate(read_lines(path), start=1) if line.strip()][1:]
    labelled: list[tuple[int, str]] = []
    for (frame, fields), line in zip(rows, lines, strict=True):
        where = Where(path, line)
        expected = labelled[-1][0] + 2 if labelled else 1  # labelled holds 0-based seconds: frame - 1
        if frame != expected:
            previous = f" after frame {expected - 1:04d}" if labelled else ""
            raise where.error(f"frame {frame:04d}{previous}; expected one row a second, frames 0001, 0002, ... "
                              "without gaps", "frames not consecutive")
        try:
            phase = PHASES[int(fields[0])]
        except (ValueError, KeyError):
            raise where.error(f"phase {fields[0]!r} is not an AutoLaparo phase id; expected an integer 1..7",
                              "unknown phase") from None
        labelled.append((frame - 1, phase))
    end = rows[-1][0]  # the last row labels the second [end - 1, end)
    segments = phase_segments(labelled, 1.0, end)
    # The runs phase_segments made, in order: their first rows name the source records.
    starts = [k for k in range(len(labelled)) if k == 0 or labelled[k][1] != labelled[k - 1][1]]
    segments = [replace(s, source_id=f"{path.stem}:{lines[k]}") for s, k in zip(segments, starts, strict=True)]
    video = video_id(path)
    return VideoAnnotation(video, f"{video}.mp4", float(end), tuple(segments), SOURCE, split=split(video))
