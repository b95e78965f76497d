"""Cataract-101 (cataract surgery workflow): phase starts in ``annotations.csv``, frames and fps in ``videos.csv``.

The official dataset root ``cataract-101/`` holds ``annotations.csv``, ``videos.csv``, ``phases.csv`` and
``videos/case_<VideoID>.mp4``. The CSVs are ``;``-separated with a header, LF lines, ASCII (``videos.csv`` has
no trailing newline). ``annotations.csv`` has one row per phase *start* (0-based frame); ``videos.csv`` one
row per video (Surgeon and Experience are not used here); ``phases.csv`` the phase names::

    VideoID;FrameNo;Phase         VideoID;Frames;FPS;Surgeon;Experience         Phase;Meaning
    269;68;1                      269;14734;25;4;1                              1;Incision
    269;1043;2                    270;20500;25;4;1                              2;Viscous agent injection
    ...                           ...                                           ...
    269;14138;10                                                                5;Phacoemulsificiation
    269;14623;10                                                                10;Tonifying and antibiotics

``path`` is the folder holding the CSVs, or ``annotations.csv`` itself with ``videos.csv`` beside it (a
missing ``videos.csv`` is an error: it holds each video's length and frame rate). ``phases.csv`` is optional:
without it (or when it cannot be read, noted) the official names below are used. Each annotation row is a
record: a row with a bad integer, a video not in ``videos.csv``, a frame at or after the video's end or not
after the video's previous row, or an unknown phase id is skipped and noted with its line. A malformed
``videos.csv`` row is skipped and noted too (its video's rows are then skipped as unknown).

A phase runs from its row's frame to the next row of the same video (the last to the video's ``Frames``);
rows repeating the phase before them (10 is often listed twice in a row) extend that phase rather than
start another. Each run becomes a ``"phase"`` segment: ``label`` the name as ``phases.csv`` spells it,
``text`` ``"The <readable name> phase."``, ``meta["name"]`` the readable name, ``source_id``
``"annotations:<line>"`` (the run's first row). Frames become seconds with the video's ``FPS`` from
``videos.csv`` (all 25 in the official file), or ``--fps`` when given (a disagreement is noted). The frames
before a video's first row are unannotated (the first row is frame 0 in only 4 of 101 videos): no segment.
``duration`` is ``Frames / FPS``. Videos are ``video_id`` ``"case_<VideoID>"``, ``video``
``"case_<VideoID>.mp4"`` as the official files are named, in order of first appearance in
``annotations.csv``; videos without a kept row are left out. The dataset ships no split (``split`` None).

Known quirks: phase 5 is spelled "Phacoemulsificiation" in ``phases.csv``; the label keeps that spelling
(so labels match the official files) and the readable name corrects it.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

from medscope.suite.adapters import AdapterError, LoadContext, Where, read_lines
from medscope.suite.adapters.cholec80 import phase_segments
from medscope.suite.records import VideoAnnotation

SOURCE = "cataract101"
PHASES = {1: "Incision", 2: "Viscous agent injection", 3: "Rhexis", 4: "Hydrodissection",
          5: "Phacoemulsificiation", 6: "Irrigation and aspiration", 7: "Capsule polishing",
          8: "Lens implant setting-up", 9: "Viscous agent removal", 10: "Tonifying and antibiotics"}
ANNOTATION_HEADER = ("VideoID", "FrameNo", "Phase")
VIDEO_COLUMNS = ("VideoID", "Frames", "FPS")  # the columns of videos.csv read here (of five)
PHASE_HEADER = ("Phase", "Meaning")
_SPELLING = {"Phacoemulsificiation": "phacoemulsification"}  # the official name's typo, fixed in the text only


class VideoRow(NamedTuple):
    """A ``videos.csv`` row: the video's length in frames, its frame rate, and the line it is on."""

    frames: int
    fps: float
    where: Where


def load(path: Path, ctx: LoadContext) -> list[VideoAnnotation]:
    if path.is_dir():
        annotations, folder = path / "annotations.csv", path
        if not annotations.is_file():
            raise AdapterError(f"{path}: no annotations.csv in this folder (the Cataract-101 root)")
    elif path.exists():
        annotations, folder = path, path.parent
    else:
        raise FileNotFoundError(f"{path}: no such file or folder")
    if not (folder / "videos.csv").is_file():
        raise AdapterError(f"{folder / 'videos.csv'}: not found; Cataract-101's videos.csv (frames and FPS of "
                           f"each video) must sit beside {annotations.name}")
    videos = read_videos(folder / "videos.csv", ctx)
    names = read_phases(folder / "phases.csv", ctx)
    kept: dict[int, list[tuple[int, str, int]]] = {}  # video -> (first frame, phase name, line) of kept rows
    for number, fields in _table(annotations, ANNOTATION_HEADER, "'VideoID;FrameNo;Phase'"):
        where = Where(annotations, number)
        with ctx.record(where, f"{annotations.stem}:{number}"):
            video, frame, phase = _row(fields, where, videos, names, kept)
            kept.setdefault(video, []).append((frame, phase, number))
    return [_video(video, rows, videos[video], annotations.stem, ctx) for video, rows in kept.items()]


def readable(name: str) -> str:
    """``"Phacoemulsificiation"`` → ``"phacoemulsification"``, ``"Lens implant setting-up"`` → ``"lens implant
    setting-up"``: the spelling fixed and the first word in lower case (an acronym kept)."""
    words = _SPELLING.get(name, name).split()
    if words and not (len(words[0]) > 1 and words[0].isupper()):
        words[0] = words[0].lower()
    return " ".join(words)


def read_videos(path: Path, ctx: LoadContext) -> dict[int, VideoRow]:
    """``{VideoID: VideoRow}`` from ``videos.csv``; a malformed row is skipped (noted), a bad header raises."""
    videos: dict[int, VideoRow] = {}
    layout = "'VideoID;Frames;FPS;Surgeon;Experience'"
    table = _table(path, None, layout)
    if not table:
        raise AdapterError(f"{path}: no header; expected {layout}", "no rows", str(path))
    header_line, header = table[0]
    columns = {name.lower(): k for k, name in enumerate(header)}
    if not all(name.lower() in columns for name in VIDEO_COLUMNS):
        raise Where(path, header_line).error(f"header {';'.join(header)!r}; expected {layout}", "unexpected header")
    at = [columns[name.lower()] for name in VIDEO_COLUMNS]
    for number, fields in table[1:]:
        where = Where(path, number)
        # side-file rows are not annotation records: not counted as read (new=False), but skipped and noted
        with ctx.record(where, f"{path.stem}:{number}", new=False):
            if len(fields) != len(header):
                raise where.error(f"row {';'.join(fields)!r} has {len(fields)} fields; expected {len(header)} "
                                  f"({layout})", "wrong number of fields")
            video = _integer(fields[at[0]], where["VideoID"], "a video id")
            frames = _integer(fields[at[1]], where["Frames"], "a frame count > 0")
            fps = _rate(fields[at[2]], where["FPS"])
            if frames <= 0:
                raise where["Frames"].error(f"got {frames}; expected a frame count > 0", "bad frame count")
            if video in videos:
                first = videos[video].where.line
                raise where["VideoID"].error(f"video {video} is listed again (first at line {first})",
                                             "duplicate video")
            videos[video] = VideoRow(frames, fps, where)
    return videos


def read_phases(path: Path, ctx: LoadContext) -> dict[int, str]:
    """``{phase id: name}`` from ``phases.csv``; the official names when it is absent or malformed (noted)."""
    if not path.is_file():
        return dict(PHASES)
    names: dict[int, str] = {}
    # One record for the whole file: half a name table would skip every row of the missing phases.
    with ctx.record(Where(path), path.name, new=False):
        for number, fields in _table(path, PHASE_HEADER, "'Phase;Meaning'"):
            where = Where(path, number)
            if len(fields) != 2 or not fields[1]:
                raise where.error(f"row {';'.join(fields)!r}; expected '<id>;<name>'", "wrong number of fields")
            names[_integer(fields[0], where["Phase"], "a phase id")] = fields[1]
        if not names:
            raise Where(path).error("no phase rows; expected 'Phase;Meaning' then '<id>;<name>' rows", "no rows")
        return names
    return dict(PHASES)  # reached only when the file was skipped


def _row(fields: list[str], where: Where, videos: dict[int, VideoRow], names: dict[int, str],
         kept: dict[int, list[tuple[int, str, int]]]) -> tuple[int, int, str]:
    if len(fields) != 3:
        raise where.error(f"row {';'.join(fields)!r} has {len(fields)} fields; expected 3 ('VideoID;FrameNo;Phase')",
                          "wrong number of fields")
    video = _integer(fields[0], where["VideoID"], "a video id")
    frame = _integer(fields[1], where["FrameNo"], "a frame number >= 0")
    phase = _integer(fields[2], where["Phase"], "a phase id")
    if video not in videos:
        raise where["VideoID"].error(f"video {video} is not in videos.csv (or its row there was skipped); expected "
                                     "a VideoID listed in videos.csv", "unknown video")
    length = videos[video].frames
    if frame < 0 or frame >= length:
        raise where["FrameNo"].error(f"frame {frame} is outside video {video} ({length} frames in videos.csv); "
                                     f"expected 0 <= FrameNo < {length}", "frame outside the video")
    previous = kept.get(video)
    if previous and frame <= previous[-1][0]:
        raise where["FrameNo"].error(f"frame {frame} after frame {previous[-1][0]} of video {video} (line "
                                     f"{previous[-1][2]}); expected each video's phase starts in increasing "
                                     "frame order", "frames not increasing")
    if phase not in names:
        known = ", ".join(str(k) for k in sorted(names))
        raise where["Phase"].error(f"phase {phase} is not a Cataract-101 phase id; expected one of {known}",
                                   "unknown phase")
    return video, frame, names[phase]


def _video(video: int, rows: list[tuple[int, str, int]], info: VideoRow, stem: str,
           ctx: LoadContext) -> VideoAnnotation:
    video_id = f"case_{video}"
    fps = info.fps
    if ctx.options.fps:
        if abs(ctx.options.fps - fps) > 0.01 * fps:
            ctx.disagrees(info.where, f"--fps {ctx.options.fps:g} but videos.csv says {fps:g} fps for video "
                          f"{video}; using --fps", "fps disagrees with videos.csv", video_id)
        fps = ctx.options.fps
    segments = phase_segments([(frame, phase) for frame, phase, _ in rows], fps, info.frames)
    # phase_segments merges rows repeating the phase before them; a segment's first row names its record.
    starts = [k for k in range(len(rows)) if k == 0 or rows[k][1] != rows[k - 1][1]]
    segments = [replace(s, text=f"The {readable(s.label or '')} phase.", meta={"name": readable(s.label or '')},
                        source_id=f"{stem}:{rows[k][2]}") for s, k in zip(segments, starts, strict=True)]
    return VideoAnnotation(video_id, f"{video_id}.mp4", info.frames / fps, tuple(segments), SOURCE)


def _table(path: Path, header: tuple[str, ...] | None, layout: str) -> list[tuple[int, list[str]]]:
    """``(line, fields)`` of the non-blank lines of a ``;``-separated file; with ``header``, the first line must
    be it (case aside) and is left out, else it is returned first."""
    rows = [(n, [f.strip() for f in line.split(";")]) for n, line in enumerate(read_lines(path), start=1)
            if line.strip()]
    if header is None:
        return rows
    if not rows or tuple(f.lower() for f in rows[0][1]) != tuple(h.lower() for h in header):
        line, shown = (rows[0][0], ";".join(rows[0][1])) if rows else (1, "")
        raise Where(path, line).error(f"header {shown!r}; expected {layout}", "unexpected header")
    return rows[1:]


def _integer(value: str, where: Where, expected: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise where.error(f"got {value!r}; expected {expected} (an integer)", "not an integer") from None


def _rate(value: str, where: Where) -> float:
    try:
        fps = float(value)
    except ValueError:
        fps = math.nan
    if not math.isfinite(fps) or fps <= 0:
        raise where.error(f"got {value!r}; expected a frame rate > 0", "bad frame rate")
    return fps
