"""The clinician's evidence report: one self-contained HTML file for one episode or a run of several.

``render_report(episodes, out_path)`` shows, per episode, the question and the final answer with its verdict
(right, partly, wrong or unknown, coloured as in the review workspace), who answered and at what cost, the
video at the evidence window when the video can be reached from the report's folder, a timeline of the whole
video (overview samples, each tool call's window numbered by turn, the answer's windows, the evidence and the
ground truth with their IoU), every turn's reasoning, call, notes, errors and key frames, and the raw trace.
Thumbnails are re-extracted from the video at the trace's frame indices and inlined as JPEG data URIs, so the
file needs nothing beside it but the video it plays. A video that cannot be read leaves the text and the
timeline and says the frames are unavailable.

All text that comes from a model or a trace goes through Jinja2's autoescaping; the template marks nothing
``|safe``. The timelines are laid out in ``medscope.report.timeline``; the IoU readout (``interval_iou``) is
the evaluator's ``medscope.eval.metrics.set_iou``, so the report shows the number the evaluation reports.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2

from medscope.agent.trace import Episode, ObservationRecord, TurnRecord
from medscope.eval.metrics import set_iou
from medscope.io import write_text_atomic
from medscope.report.timeline import (
    Timeline,
    Window,
    answer_windows,
    clock,
    episode_timelines,
    is_number,
    parse_windows,
    reference_answer,
    seconds,
    verdict,
)
from medscope.video.errors import VideoError
from medscope.video.source import VideoSource

_TEMPLATE = "episode.html.jinja"
_JPEG_QUALITY = 85
_NUMBER_ARRAY = re.compile(r"\[\s+([-+0-9.eE,\s]+?)\s+\]")
_TIME_TOLERANCE = 0.01  # seconds between a trace timestamp and the re-extracted frame before we warn


@dataclass(frozen=True)
class Thumb:
    """One key frame: the timestamp the model was shown and, when the video could be read, its pixels."""

    seconds: float | None
    index: int | None
    src: str | None = None  # data:image/jpeg;base64,... or None when unavailable
    width: int = 0
    height: int = 0
    in_evidence: bool = False
    in_truth: bool = False


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
    timelines: tuple[Timeline, ...]  # the whole video, then a closer view when the action is brief
    evidence: tuple[Window, ...]
    truth: tuple[Window, ...]
    iou: float | None
    reference_answer: str | None
    trace_json: str
    verdict: str
    video_href: str | None  # the video relative to the report's folder, when it can be reached from there
    play_window: Window  # where the player starts and stops
    play_what: str  # which window that is: evidence, answer or ground truth


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
    html = render_html(episodes, video_dir=video_dir, thumb_max_pixels=thumb_max_pixels,
                       link_from=Path(out_path).parent)
    return write_text_atomic(out_path, html)


def render_html(
    episodes: Sequence[Episode],
    *,
    video_dir: Path | None = None,
    thumb_max_pixels: int = 160 * 120,
    link_from: Path | None = None,
) -> str:
    """The report as a string (``render_report`` writes it). ``link_from``: the folder the page will be opened
    from; the video is linked (a relative path) and played at the evidence window when it exists."""
    if not episodes:
        raise ValueError("render_html needs at least one episode")
    if thumb_max_pixels < 1:
        raise ValueError(f"thumb_max_pixels must be >= 1, got {thumb_max_pixels}")
    videos = _Videos(video_dir)
    try:
        views = [_episode_view(n, ep, videos, thumb_max_pixels, link_from) for n, ep in enumerate(episodes, start=1)]
    finally:
        videos.close()
    title = views[0].ep.question if len(views) == 1 else f"{len(views)} episodes"
    return _environment().get_template(_TEMPLATE).render(title=title, episodes=views)


def interval_iou(a: Sequence[Sequence[float]], b: Sequence[Sequence[float]]) -> float | None:
    """IoU of two sets of ``[start, end]`` windows: ``metrics.set_iou``, the number the evaluator reports.

    Each set is merged into disjoint intervals; IoU = total intersection / total union. Only windows with
    ``end > start`` count. Returns None when either side has no length (no windows, or only moments): IoU is
    not defined there (``set_iou`` would say 0).
    """
    spans_a = [(float(s), float(e)) for s, e in a if e > s]
    spans_b = [(float(s), float(e)) for s, e in b if e > s]
    if not spans_a or not spans_b:
        return None
    return set_iou(spans_a, spans_b)


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
            except (VideoError, OSError) as exc:  # the message names the file, not where it lies on this machine
                self._open[path] = str(exc).replace(str(path), path.name)
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
    episode: Episode, source: VideoSource | str, max_pixels: int
) -> tuple[dict[int, Thumb], str | None, list[str]]:
    """Decode every frame the episode was shown in one pass: thumbs by frame index, why none, warnings."""
    if isinstance(source, str):
        return {}, source, []
    observations = [episode.overview, *(t.observation for t in episode.turns)]
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
        warnings.append(
            f"{len(wanted) - len(valid)} frame indices in the trace lie outside this video "
            f"(0-{source.num_frames - 1}): the video may not be the one the episode ran on."
        )
    try:
        frames = source.frames_at_indices(valid, max_pixels=max_pixels)
    except VideoError as exc:
        return {}, str(exc), warnings
    thumbs, moved = {}, 0
    for frame in frames:
        buffer = io.BytesIO()
        frame.image.convert("RGB").save(buffer, format="JPEG", quality=_JPEG_QUALITY)
        src = "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
        thumbs[frame.index] = Thumb(frame.pts_seconds, frame.index, src, frame.image.width, frame.image.height)
        traced = wanted[frame.index]
        moved += traced is not None and abs(traced - frame.pts_seconds) > _TIME_TOLERANCE
    if moved:
        warnings.append(
            f"{moved} frames sit at other times in this video than in the trace: "
            "the video may have been re-encoded since the episode ran."
        )
    return thumbs, None, warnings


def _thumbs_for(
    obs: ObservationRecord | None,
    thumbs: dict[int, Thumb],
    source: VideoSource | str,
    evidence: Sequence[Window],
    truth: Sequence[Window],
) -> tuple[Thumb, ...]:
    """The observation's frames in the order shown, labelled with the timestamps the model was given."""
    if obs is None:
        return ()
    indices = _observation_indices(obs, source if isinstance(source, VideoSource) else None)
    out = []
    for k, index in enumerate(indices):
        found = thumbs.get(index) if index is not None else None
        at = obs.timestamps[k] if k < len(obs.timestamps) else (found.seconds if found else None)
        src, width, height = (found.src, found.width, found.height) if found else (None, 0, 0)
        out.append(Thumb(at, index, src, width, height, _inside(at, evidence), _inside(at, truth)))
    return tuple(out)


def _inside(at: float | None, windows: Sequence[Window]) -> bool:
    return at is not None and any(start <= at <= end for start, end in windows)


# ---- the episode --------------------------------------------------------------------------------------------
def _call_text(turn: TurnRecord) -> str | None:
    if turn.tool is None and turn.arguments is None:
        return None
    if isinstance(turn.arguments, dict):
        args = ", ".join(
            f"{k}={v:g}" if is_number(v) else f"{k}={json.dumps(v, ensure_ascii=False)}"
            for k, v in turn.arguments.items()
        )
    else:
        args = json.dumps(turn.arguments, ensure_ascii=False, default=str)
    return f"{turn.tool or '?'}({args})"


def _video_href(video: Path, folder: Path | None) -> str | None:
    """The video's address relative to the report's folder (a URL path), or None when it cannot be played."""
    if folder is None or not video.is_file():
        return None
    try:
        relative = os.path.relpath(video.resolve(), Path(folder).resolve())
    except ValueError:  # another drive: no relative path
        return None
    return urllib.parse.quote(Path(relative).as_posix())


def _play_window(ep: Episode, truth: Sequence[Window]) -> tuple[Window, str]:
    """Where the report's player starts and stops: the evidence, else the answer's window, else the truth."""
    for what, windows in (("evidence window", parse_windows(ep.evidence)), ("answer window", answer_windows(ep)),
                          ("ground-truth window", list(truth))):
        if windows:
            start, end = windows[0]
            return (start, end if end > start else start + 1.0), what
    return (0.0, max(float(ep.duration), 1.0) if is_number(ep.duration) else 1.0), "whole video"


def _episode_view(number: int, ep: Episode, videos: _Videos, max_pixels: int, link_from: Path | None) -> EpisodeView:
    source = videos.get(ep.video)
    thumbs, frames_note, warnings = _episode_thumbs(ep, source, max_pixels)
    reference = ep.reference or {}
    truth = parse_windows(reference.get("evidence"))
    evidence = parse_windows(ep.evidence)
    turns = tuple(
        TurnView(n, turn, _call_text(turn), _thumbs_for(turn.observation, thumbs, source, evidence, truth))
        for n, turn in enumerate(ep.turns, start=1)
    )
    play_window, play_what = _play_window(ep, truth)
    return EpisodeView(
        anchor=f"episode-{number}",
        number=number,
        ep=ep,
        video_name=Path(ep.video).name if ep.video else "(none)",
        frames_note=frames_note,
        warnings=tuple(warnings),
        overview=_thumbs_for(ep.overview, thumbs, source, evidence, truth),
        turns=turns,
        timelines=episode_timelines(ep, truth),
        evidence=tuple(evidence),
        truth=tuple(truth),
        iou=interval_iou(evidence, truth) if evidence and truth else None,
        reference_answer=reference_answer(ep),
        trace_json=_compact_json(_without_paths(ep.to_dict(), ep.video)),
        verdict=verdict(ep),
        video_href=_video_href(videos.resolve(ep.video), link_from) if ep.video else None,
        play_window=play_window,
        play_what=play_what,
    )


def _without_paths(data: dict[str, Any], video: str) -> dict[str, Any]:
    """The trace as the report shows it: the video by its file name. A report is sent to colleagues; the folder
    layout (a user name, a patient's folder) of the machine that ran the episode stays behind."""
    if not video:
        return data
    name = Path(video).name
    text = json.dumps(data, ensure_ascii=False, default=str)
    for place in {video, str(Path(video).resolve())}:
        text = text.replace(json.dumps(place)[1:-1], name)
    return dict(json.loads(text))


def _compact_json(data: Any) -> str:
    """Indented JSON with arrays of numbers on one line (timestamps and indices stay readable)."""
    text = json.dumps(data, ensure_ascii=False, indent=2, default=str)
    return _NUMBER_ARRAY.sub(lambda m: "[" + " ".join(m.group(1).split()) + "]", text)


# ---- the template -------------------------------------------------------------------------------------------
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
