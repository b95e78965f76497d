"""The clinician's evidence report: one self-contained HTML file for one episode or a run of several.

``render_report(episodes, out_path)`` shows, per episode, the question and the final answer, who answered and
at what cost, a timeline of the whole video (overview samples, each tool call's window numbered by turn, the
evidence and the ground truth with their IoU), every turn's reasoning, call, notes, errors and key frames,
and the raw trace. Thumbnails are re-extracted from the video at the trace's frame indices and inlined as
JPEG data URIs, so the file needs nothing beside it. A video that cannot be read leaves the text and the
timeline and says the frames are unavailable.

All text that comes from a model or a trace goes through Jinja2's autoescaping; the template marks nothing
``|safe``. This module computes no benchmark metric: ``interval_iou`` is the readout the report shows.
"""

from __future__ import annotations

import base64
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2

from medscope.agent.trace import Episode, ObservationRecord, TurnRecord
from medscope.io import write_text_atomic
from medscope.video.errors import VideoError
from medscope.video.source import VideoSource

Window = tuple[float, float]

_TEMPLATE = "episode.html.jinja"
_JPEG_QUALITY = 85
_TICK_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200)
_TIME_TOLERANCE = 0.01  # seconds between a trace timestamp and the re-extracted frame before we warn


@dataclass(frozen=True)
class Thumb:
    """One key frame: the timestamp the model was shown and, when the video could be read, its pixels."""

    seconds: float | None
    index: int | None
    src: str | None = None  # data:image/jpeg;base64,... or None when unavailable
    width: int = 0
    height: int = 0


@dataclass(frozen=True)
class Mark:
    """A timeline element; ``left`` and ``width`` are percentages of the video's duration."""

    kind: str  # css class: sample | crop | frame | evidence | truth, plus " error" for a failed call
    left: float
    width: float
    title: str
    label: str = ""


@dataclass(frozen=True)
class Lane:
    label: str
    marks: tuple[Mark, ...]


@dataclass(frozen=True)
class TurnView:
    number: int
    turn: TurnRecord
    call: str | None
    thumbs: tuple[Thumb, ...]


@dataclass(frozen=True)
class EpisodeView:
    anchor: str
    number: int
    ep: Episode
    video_name: str
    frames_note: str | None  # why no frame could be shown, or None
    warnings: tuple[str, ...]
    overview: tuple[Thumb, ...]
    turns: tuple[TurnView, ...]
    axis: tuple[Mark, ...]
    lanes: tuple[Lane, ...]
    evidence: tuple[Window, ...]
    truth: tuple[Window, ...]
    iou: float | None
    reference_answer: str | None
    trace_json: str


def render_report(
    episodes: Sequence[Episode],
    out_path: str | Path,
    *,
    video_dir: Path | None = None,
    thumb_max_pixels: int = 160 * 120,
) -> Path:
    """Write the report of ``episodes`` to ``out_path`` atomically and return the path.

    ``video_dir`` resolves episodes whose ``video`` is a relative path; ``thumb_max_pixels`` caps each
    thumbnail's size (aspect ratio kept).
    """
    html = render_html(episodes, video_dir=video_dir, thumb_max_pixels=thumb_max_pixels)
    return write_text_atomic(out_path, html)


def render_html(
    episodes: Sequence[Episode], *, video_dir: Path | None = None, thumb_max_pixels: int = 160 * 120
) -> str:
    """The report as a string (``render_report`` writes it)."""
    if not episodes:
        raise ValueError("render_html needs at least one episode")
    if thumb_max_pixels < 1:
        raise ValueError(f"thumb_max_pixels must be >= 1, got {thumb_max_pixels}")
    videos = _Videos(video_dir)
    try:
        views = [_episode_view(n, ep, videos, thumb_max_pixels) for n, ep in enumerate(episodes, start=1)]
    finally:
        videos.close()
    title = views[0].ep.question if len(views) == 1 else f"{len(views)} episodes"
    return _environment().get_template(_TEMPLATE).render(title=title, episodes=views)


def interval_iou(a: Sequence[Sequence[float]], b: Sequence[Sequence[float]]) -> float | None:
    """IoU of two sets of ``[start, end]`` windows, each taken as the union of its windows.

    Returns None when both unions are empty (only moments, or no windows): there is nothing to compare.
    """
    union_a, union_b = _union(a), _union(b)
    both = _measure(_union([*union_a, *union_b]))
    if both <= 0:
        return None
    overlap = sum(max(0.0, min(e1, e2) - max(s1, s2)) for s1, e1 in union_a for s2, e2 in union_b)
    return overlap / both


# ---- frames -------------------------------------------------------------------------------------------------
class _Videos:
    """Opens each video once per report; remembers why one could not be opened."""

    def __init__(self, video_dir: Path | None) -> None:
        self.video_dir = video_dir
        self._open: dict[Path, VideoSource | str] = {}

    def resolve(self, video: str) -> Path:
        path = Path(video)
        return path if path.is_absolute() or self.video_dir is None else Path(self.video_dir) / path

    def get(self, video: str) -> VideoSource | str:
        if not video:
            return "the trace names no video file"
        path = self.resolve(video)
        if path not in self._open:
            try:
                self._open[path] = VideoSource(path)
            except (VideoError, OSError) as exc:
                self._open[path] = str(exc)
        return self._open[path]

    def close(self) -> None:
        for source in self._open.values():
            if isinstance(source, VideoSource):
                source.close()


def _observation_indices(obs: ObservationRecord, source: VideoSource | None) -> list[int | None]:
    """Frame indices of an observation, from the trace or (older traces) from its timestamps."""
    if obs.frame_indices:
        return list(obs.frame_indices)
    if source is None:
        return [None] * len(obs.timestamps)
    return [source.index_at(t) for t in obs.timestamps]


def _episode_thumbs(
    episode: Episode, videos: _Videos, max_pixels: int
) -> tuple[dict[int, ObservationRecord | None], dict[int, Thumb], str | None, list[str]]:
    """Decode every frame the episode showed in one pass; returns thumbs by frame index and why not."""
    observations = [episode.overview, *(t.observation for t in episode.turns)]
    source = videos.get(episode.video)
    if isinstance(source, str):
        return {}, {}, source, []
    wanted: dict[int, float | None] = {}
    for obs in observations:
        if obs is None:
            continue
        for k, index in enumerate(_observation_indices(obs, source)):
            if index is not None:
                wanted.setdefault(index, obs.timestamps[k] if k < len(obs.timestamps) else None)
    valid = sorted(i for i in wanted if 0 <= i < source.num_frames)
    warnings = []
    if len(valid) < len(wanted):
        warnings.append(f"{len(wanted) - len(valid)} frame indices in the trace lie outside this video "
                        f"(0-{source.num_frames - 1}): the video may not be the one the episode ran on.")
    try:
        frames = source.frames_at_indices(valid, max_pixels=max_pixels)
    except VideoError as exc:
        return {}, {}, str(exc), warnings
    thumbs, moved = {}, 0
    for frame in frames:
        buffer = io.BytesIO()
        frame.image.convert("RGB").save(buffer, format="JPEG", quality=_JPEG_QUALITY)
        src = "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
        thumbs[frame.index] = Thumb(frame.pts_seconds, frame.index, src, frame.image.width, frame.image.height)
        traced = wanted[frame.index]
        moved += traced is not None and abs(traced - frame.pts_seconds) > _TIME_TOLERANCE
    if moved:
        warnings.append(f"{moved} frames sit at other times in this video than in the trace: "
                        "the video may have been re-encoded since the episode ran.")
    return {}, thumbs, None, warnings


def _thumbs_for(obs: ObservationRecord | None, thumbs: dict[int, Thumb], source: VideoSource | str) -> tuple:
    if obs is None:
        return ()
    indices = _observation_indices(obs, source if isinstance(source, VideoSource) else None)
    out = []
    for k, index in enumerate(indices):
        seconds = obs.timestamps[k] if k < len(obs.timestamps) else None
        found = thumbs.get(index) if index is not None else None
        if found is None:
            out.append(Thumb(seconds, index))
        else:
            out.append(Thumb(found.seconds if seconds is None else seconds, index, found.src, found.width,
                             found.height))
    return tuple(out)


# ---- timeline -----------------------------------------------------------------------------------------------
def _windows(value: Any) -> list[Window]:
    """``[[s, e], ...]`` (or a single ``[s, e]``) as float pairs; anything malformed is skipped."""
    if not isinstance(value, list | tuple) or not value:
        return []
    if all(_is_number(v) for v in value) and len(value) == 2:
        value = [value]
    out = []
    for item in value:
        if isinstance(item, list | tuple) and len(item) == 2 and all(_is_number(v) for v in item):
            start, end = float(item[0]), float(item[1])
            out.append((min(start, end), max(start, end)))
    return out


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _union(windows: Sequence[Sequence[float]]) -> list[Window]:
    merged: list[Window] = []
    for start, end in sorted((float(s), float(e)) for s, e in windows if e > s):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _measure(windows: Sequence[Window]) -> float:
    return sum(e - s for s, e in windows)


def _window_marks(kind: str, windows: Sequence[Window], pct: Any, what: str) -> tuple[Mark, ...]:
    marks = []
    for start, end in windows:
        span = f"{seconds(start)}" if end <= start else f"{seconds(start)} – {seconds(end)}"
        marks.append(Mark(kind, pct(start), pct(end) - pct(start), f"{what}: {span}"))
    return tuple(marks)


def _turn_lane(number: int, turn: TurnRecord, pct: Any) -> Lane | None:
    """The lane of one tool call: its window (as run, or as asked when it failed) and the frames it returned."""
    obs = turn.observation
    arguments = obs.arguments if obs is not None else turn.arguments
    tool = obs.tool if obs is not None else turn.tool
    if tool is None:
        return None
    state = "" if obs is not None else " error"
    args = arguments if isinstance(arguments, dict) else {}
    marks: list[Mark] = []
    start, end, moment = args.get("start_time"), args.get("end_time"), args.get("timestamp")
    if tool == "crop_video" and _is_number(start) and _is_number(end):
        lo, hi = sorted((float(start), float(end)))
        width = max(pct(hi) - pct(lo), 0.0)
        marks.append(Mark("crop" + state, pct(lo), width, f"turn {number}: crop_video {seconds(lo)} – {seconds(hi)}",
                          str(number)))
    elif tool == "get_frame" and _is_number(moment):
        marks.append(Mark("frame" + state, pct(float(moment)), 0.0, f"turn {number}: get_frame {seconds(moment)}",
                          str(number)))
    if obs is not None:
        marks.extend(Mark("sample", pct(t), 0.0, f"frame shown at {seconds(t)}") for t in obs.timestamps)
    return Lane(f"{number} · {tool}", tuple(marks))


def _timeline(ep: Episode, duration: float, truth: list[Window]) -> tuple[tuple[Mark, ...], tuple[Lane, ...]]:
    def pct(t: float) -> float:
        return min(max(float(t) / duration * 100.0, 0.0), 100.0)

    step = next((s for s in _TICK_STEPS if duration / s <= 10), _TICK_STEPS[-1])
    axis = tuple(Mark("tick", pct(k * step), 0.0, seconds(k * step), clock(k * step))
                 for k in range(int(duration // step) + 1))
    lanes = []
    if ep.overview is not None:
        lanes.append(Lane("overview", tuple(Mark("sample overview", pct(t), 0.0, f"overview frame at {seconds(t)}")
                                            for t in ep.overview.timestamps)))
    for number, turn in enumerate(ep.turns, start=1):
        lane = _turn_lane(number, turn, pct)
        if lane is not None:
            lanes.append(lane)
    lanes.append(Lane(f"evidence ({ep.evidence_source})",
                      _window_marks("evidence", _windows(ep.evidence), pct, "evidence")))
    if truth:
        lanes.append(Lane("ground truth", _window_marks("truth", truth, pct, "ground truth")))
    return axis, tuple(lanes)


# ---- the episode --------------------------------------------------------------------------------------------
def _call_text(turn: TurnRecord) -> str | None:
    if turn.tool is None and turn.arguments is None:
        return None
    if isinstance(turn.arguments, dict):
        args = ", ".join(f"{k}={v:g}" if _is_number(v) else f"{k}={json.dumps(v, ensure_ascii=False)}"
                         for k, v in turn.arguments.items())
    else:
        args = json.dumps(turn.arguments, ensure_ascii=False, default=str)
    return f"{turn.tool or '?'}({args})"


def _episode_view(number: int, ep: Episode, videos: _Videos, max_pixels: int) -> EpisodeView:
    _, thumbs, frames_note, warnings = _episode_thumbs(ep, videos, max_pixels)
    source = videos.get(ep.video)
    reference = ep.reference or {}
    truth = _windows(reference.get("evidence"))
    seen = [t for obs in (ep.overview, *(t.observation for t in ep.turns)) if obs for t in obs.timestamps]
    ends = [e for _, e in (*_windows(ep.evidence), *truth)]
    duration = ep.duration if _is_number(ep.duration) and ep.duration > 0 else max([*seen, *ends, 1.0])
    axis, lanes = _timeline(ep, duration, truth)
    evidence = _windows(ep.evidence)
    turns = tuple(TurnView(n, turn, _call_text(turn), _thumbs_for(turn.observation, thumbs, source))
                  for n, turn in enumerate(ep.turns, start=1))
    answer = reference.get("answer")
    return EpisodeView(
        anchor=f"episode-{number}",
        number=number,
        ep=ep,
        video_name=Path(ep.video).name if ep.video else "(none)",
        frames_note=frames_note,
        warnings=tuple(warnings),
        overview=_thumbs_for(ep.overview, thumbs, source),
        turns=turns,
        axis=axis,
        lanes=lanes,
        evidence=tuple(evidence),
        truth=tuple(truth),
        iou=interval_iou(evidence, truth) if evidence and truth else None,
        reference_answer=None if answer is None else str(answer),
        trace_json=json.dumps(ep.to_dict(), ensure_ascii=False, indent=2, default=str),
    )


# ---- formatting and the template ----------------------------------------------------------------------------
def seconds(value: float | None) -> str:
    """``87.5 s``: the timestamp as the model was shown it."""
    if value is None:
        return "?"
    return f"{float(value):.2f}".rstrip("0").rstrip(".") + " s"


def clock(value: float | None) -> str:
    """``1:27.5`` (or ``1:02:07``): for reading a long video's timeline."""
    if value is None:
        return "?"
    total = float(value)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{secs:04.1f}".removesuffix(".0") if secs % 1 else f"{int(secs):02d}"
    return f"{int(hours)}:{int(minutes):02d}:{text}" if hours else f"{int(minutes)}:{text}"


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).with_name("templates")),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["seconds"] = seconds
    env.filters["clock"] = clock
    return env
