"""Loading annotations from real files: bad records are skipped and counted, never allowed to sink a file.

Official annotation files have faults (ActivityNet Captions has windows that end before they start, Charades-STA
windows that end after the video). ``LoadContext`` is what every adapter reads a file through:

- ``ctx.record(where, record_id)`` wraps one record: an ``AdapterError`` inside skips that record and notes
  it (file, line or JSON path, field, reason, record id); with ``strict`` the error propagates instead.
- ``ctx.window(start, end, length, where)`` checks a window: a negative start or an end before the start is
  an error (the record is skipped); a window that starts inside the video and overruns its end is clamped
  and the repair noted; one that starts at or after the end is an error.
- ``ctx.video(video_id)`` finds a video by its stem in any container (``.mp4``, ``.mkv``, ``.webm``, ``.ts``,
  ...) under the videos folder and reads its duration and frame rate; ``ctx.fps(...)`` is the frame rate a
  frame-indexed annotation is read with: ``--fps`` when given, else the video's, else an error saying so.
- ``ctx.notes`` lists every skip, clamp and disagreement; ``ctx.counts()`` counts them by action and reason
  (the funnel and the dataset card show these; the builder writes the notes to ``load_notes.jsonl``).
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from medscope.video.errors import VideoError
from medscope.video.source import VideoSource

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".ts", ".mts", ".m2ts", ".mpg",
                            ".mpeg", ".flv", ".wmv", ".ogv", ".3gp", ".mxf"})
ROUNDING_S = 1e-6  # an overrun this small is how a decimal time was stored, not a fault
DURATION_TOLERANCE_S = 1.0  # annotation and video durations further apart than this (and 1 %) are reported


class AdapterError(ValueError):
    """A source annotation that does not fit its format; the message names the file, line or JSON path.

    ``reason`` is a short class of fault ("reversed window", "missing field 'query'") used to count skips."""

    def __init__(self, message: str, reason: str = "malformed record", where: str = "") -> None:
        super().__init__(message)
        self.reason = reason
        self.where = where


@dataclass(frozen=True)
class Where:
    """A place in a source file: the file, a 1-based line (text, JSONL, JSON syntax) and a JSON path."""

    path: Path
    line: int | None = None
    at: str = ""

    def __getitem__(self, key: str | int) -> Where:
        step = f"[{key}]" if isinstance(key, int) else (f".{key}" if self.at else key)
        return Where(self.path, self.line, self.at + step)

    def __str__(self) -> str:
        place = f"{self.path}:{self.line}" if self.line is not None else str(self.path)
        return f"{place}: {self.at}" if self.at else place

    @property
    def field(self) -> str | None:
        """The last named field of the JSON path (``v_x.timestamps[2]`` → ``timestamps``)."""
        names = re.findall(r"[A-Za-z_][\w ]*", self.at.split(".")[-1]) if self.at else []
        return names[0] if names else None

    def error(self, problem: str, reason: str | None = None) -> AdapterError:
        default = f"bad field '{self.field}'" if self.field else "malformed record"
        return AdapterError(f"{self}: {problem}", reason or default, str(self))


@dataclass(frozen=True)
class LoadOptions:
    strict: bool = field(default=False, metadata={"help": "a bad record or a clamped window is an error"})
    fps: float | None = field(
        default=None, metadata={"help": "frame rate of frame-indexed annotations (default: the video's)"})
    split: str | None = field(default=None, metadata={"help": "keep only this split of the source (train, val, test)"})
    lengths: str | None = field(
        default=None, metadata={"help": "side file of video durations (Charades_v1_*.csv; used without a video)"})


@dataclass(frozen=True)
class Note:
    """A record skipped, a window clamped, or a disagreement found while loading."""

    action: Literal["skipped", "clamped", "disagrees"]
    reason: str
    where: str
    record: str | None
    detail: str


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    duration: float
    fps: float | None


class VideoIndex:
    """The video files under a folder, by stem (``v_abc.webm`` is found as ``v_abc``); probed once each."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        self._by_stem: dict[str, Path] | None = None
        self._probed: dict[Path, VideoInfo | None] = {}

    def find(self, video_id: str, declared: str | None = None) -> Path | None:
        if self.folder is None:
            return None
        if declared:
            path = Path(declared) if Path(declared).is_absolute() else self.folder / declared
            if path.is_file():
                return path
        if self._by_stem is None:
            self._by_stem = {}
            for path in sorted(self.folder.rglob("*")):
                if path.suffix.lower() in VIDEO_SUFFIXES and path.is_file():
                    self._by_stem.setdefault(path.stem, path)
        stems = [video_id, Path(declared).stem] if declared else [video_id]
        return next((self._by_stem[s] for s in stems if s in self._by_stem), None)

    def probe(self, path: Path) -> VideoInfo | None:
        """Duration and frame rate from the file; None (logged) when FFmpeg cannot read it."""
        if path not in self._probed:
            try:
                with VideoSource(path) as source:
                    self._probed[path] = VideoInfo(path, source.duration_seconds, source.fps or None)
            except VideoError as exc:
                log.warning("cannot read %s: %s", path, exc)
                self._probed[path] = None
        return self._probed[path]


class LoadContext:
    """Options, the videos, and the notes of one load (see the module docstring)."""

    def __init__(self, options: LoadOptions | None = None, videos: Path | None = None) -> None:
        self.options = options or LoadOptions()
        self.index = VideoIndex(videos)
        self.notes: list[Note] = []
        self.records = 0  # records read (skipped ones included)

    @property
    def strict(self) -> bool:
        return self.options.strict

    def note(self, action: Literal["skipped", "clamped", "disagrees"], error: AdapterError,
             record: str | None = None) -> None:
        self.notes.append(Note(action, error.reason, error.where, record, str(error)))

    @contextmanager
    def record(self, where: Where, record_id: object = None, *, new: bool = True) -> Iterator[None]:
        """One record (counted as read when ``new``); an ``AdapterError`` inside skips it (raised with ``strict``)."""
        self.records += new
        try:
            yield
        except AdapterError as exc:
            if self.strict:
                raise
            self.note("skipped", exc, None if record_id is None else str(record_id))
            log.debug("skipped %s", exc)

    def window(self, start: float, end: float, length: float | None, where: Where,
               record_id: object = None) -> tuple[float, float]:
        """``(start, end)`` checked against ``[0, length]``; an overrun of the end is clamped (and noted)."""
        if start < 0:
            raise where.error(f"window [{start:g}, {end:g}] starts before 0 s; expected 0 <= start", "negative time")
        if end < start:
            raise where.error(f"window [{start:g}, {end:g}] is reversed: it ends before it starts; expected "
                              "start <= end", "reversed window")
        if length is not None and start >= length + ROUNDING_S:
            raise where.error(f"window [{start:g}, {end:g}] starts at or after the video's end ({length:g} s)",
                              "window after the video")
        if length is not None and length < end <= length + ROUNDING_S:
            end = length  # float noise (ActivityNet stores 156.32999999999998), not a fault worth a note
        if length is not None and end > length:
            overrun = f"window [{start:g}, {end:g}] ends {end - length:.3g} s after the video's end ({length:g} s)"
            problem = (f"{overrun}; expected end <= duration (without --strict it is clamped)" if self.strict
                       else f"{overrun}; clamped to it")
            error = where.error(problem, "window overruns the video")
            if self.strict:
                raise error
            self.note("clamped", error, None if record_id is None else str(record_id))
            end = length
        return min(start, end), end

    def disagrees(self, where: Where, problem: str, reason: str, record_id: object = None) -> None:
        """A reported disagreement (annotation vs video duration, --fps vs the video's): not an error."""
        self.note("disagrees", where.error(problem, reason), None if record_id is None else str(record_id))

    def video(self, video_id: str, declared: str | None = None) -> VideoInfo | None:
        path = self.index.find(video_id, declared)
        return self.index.probe(path) if path is not None else None

    def fps(self, video_id: str, where: Where, *, dataset_fps: str = "") -> float:
        """The frame rate of a frame-indexed annotation: ``--fps``, else the video file's; never assumed."""
        info = self.video(video_id)
        if self.options.fps:
            if info and info.fps and abs(info.fps - self.options.fps) > 0.01 * self.options.fps:
                self.disagrees(where, f"--fps {self.options.fps:g} but the video {info.path.name} has "
                               f"{info.fps:g} fps; using --fps", "fps disagrees with the video")
            return self.options.fps
        if info and info.fps:
            return info.fps
        hint = f" ({dataset_fps})" if dataset_fps else ""
        raise where.error(f"frame numbers need a frame rate: no video file for {video_id!r} was found and no "
                          f"--fps was given; pass --fps{hint} or --videos with the videos", "fps unknown")

    def wanted(self, split: str | None) -> bool:
        """Whether a record of ``split`` is kept under ``--split`` (records of a source without splits are)."""
        return self.options.split is None or split is None or split == self.options.split

    def counts(self) -> dict[str, dict[str, int]]:
        """``{"skipped": {reason: n}, "clamped": {...}, "disagrees": {...}}``."""
        table: dict[str, Counter[str]] = {"skipped": Counter(), "clamped": Counter(), "disagrees": Counter()}
        for note in self.notes:
            table[note.action][note.reason] += 1
        return {action: dict(sorted(counter.items())) for action, counter in table.items()}
