"""The model-facing video tools: the overview, ``crop_video`` and ``get_frame``.

``VideoTools`` wraps one ``VideoSource`` for one episode. It validates the arguments a model wrote, clamps
times into the video and says so, enforces the episode's frame budget, and returns either an
``Observation`` (frames with their real timestamps) or a ``ToolError`` whose message tells the model what
was wrong. It never raises on model input: errors the model caused are observations, errors we caused
(an unreadable file) are exceptions. A damaged stretch of an otherwise readable file is neither: frames that
cannot be decoded are left out and named in the observation's notes (a call that decodes none is a
``ToolError`` naming the time), so the episode goes on.

Rendering observations into chat messages is the protocol's job (``medscope.agent.protocol``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from medscope.cache import LRU
from medscope.video.errors import CorruptVideoError
from medscope.video.source import Frame, VideoSource


@dataclass(frozen=True)
class ToolConfig:
    """Frame counts, pixel caps and the frame budget of an episode (the defaults README's "The video tools" gives)."""

    overview_frames: int = field(default=16, metadata={"help": "frames in the coarse overview"})
    overview_max_pixels: int = field(default=224 * 224, metadata={"help": "pixel cap per overview frame"})
    crop_frames: int = field(default=8, metadata={"help": "frames returned by crop_video"})
    crop_max_pixels: int = field(default=224 * 224, metadata={"help": "pixel cap per crop_video frame"})
    get_frame_count: int = field(default=3, metadata={"help": "frames around the timestamp from get_frame"})
    get_frame_max_pixels: int = field(default=448 * 448, metadata={"help": "pixel cap per get_frame frame"})
    max_frames: int = field(default=64, metadata={"help": "frames an episode may see, overview included"})
    snap_to_keyframes: bool = field(
        default=True,
        metadata={"help": "overview/crop_video: take a keyframe within a quarter sampling gap of a sample point "
                          "(decodes alone, still labelled with its real time); get_frame is always exact"},
    )

    def __post_init__(self) -> None:
        for name in ("overview_frames", "crop_frames", "get_frame_count", "max_frames"):
            if getattr(self, name) < 1:
                raise ValueError(f"ToolConfig.{name} must be >= 1, got {getattr(self, name)}")


@dataclass(frozen=True)
class Observation:
    """What a tool returned: the frames (ordered by time) and notes such as clamped arguments."""

    tool: str
    arguments: dict[str, float]
    frames: tuple[Frame, ...]
    notes: tuple[str, ...] = ()

    @property
    def timestamps(self) -> list[float]:
        return [f.pts_seconds for f in self.frames]


@dataclass(frozen=True)
class ToolError:
    """A tool call the model got wrong; ``message`` is shown to the model so it can correct itself."""

    tool: str
    message: str


# OpenAI function-calling schemas; the protocol puts them in the system prompt.
TOOL_SPECS: tuple[dict[str, Any], ...] = (
    {
        "type": "function",
        "function": {
            "name": "crop_video",
            "description": "Watch an interval of the video densely: returns frames spread uniformly between "
            "start_time and end_time, each labelled with its timestamp.",
            "parameters": {
                "type": "object",
                "properties": {
                    "start_time": {"type": "number", "description": "interval start, seconds from video start"},
                    "end_time": {"type": "number", "description": "interval end, seconds; > start_time"},
                },
                "required": ["start_time", "end_time"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_frame",
            "description": "Inspect one moment at high resolution: returns the frames nearest the timestamp.",
            "parameters": {
                "type": "object",
                "properties": {"timestamp": {"type": "number", "description": "seconds from video start"}},
                "required": ["timestamp"],
            },
        },
    },
)
TOOL_ARGUMENTS: dict[str, tuple[str, ...]] = {
    spec["function"]["name"]: tuple(spec["function"]["parameters"]["required"]) for spec in TOOL_SPECS
}


class VideoTools:
    """The tools of one episode over one video; counts the frames it has shown."""

    def __init__(self, source: VideoSource, config: ToolConfig | None = None) -> None:
        self.source = source
        self.config = config or ToolConfig()
        self.frames_used = 0

    @property
    def frames_left(self) -> int:
        return self.config.max_frames - self.frames_used

    def overview(self) -> Observation:
        """K frames spread over the whole video (bin centres, or the keyframe nearest each centre). The same video
        asked again (another question of an eval, another rollout) gets them from a process-wide cache."""
        indices = self._sample(0.0, self.source.duration_seconds, self.config.overview_frames)
        key = _overview_key(self.source, indices, self.config.overview_max_pixels)
        cached = _OVERVIEWS.get(key)
        frames, notes = cached if cached is not None else self._decode(indices, self.config.overview_max_pixels)
        if cached is None and frames:
            _OVERVIEWS.put(key, (frames, notes))
        if not frames:
            raise CorruptVideoError(f"{self.source.path}: no overview frame can be decoded; " + "; ".join(notes))
        self.frames_used += len(frames)
        return Observation("overview", {"duration": self.source.duration_seconds}, tuple(frames), tuple(notes))

    def call(self, name: object, arguments: object) -> Observation | ToolError:
        """Run the tool a model asked for; any mistake in the request comes back as a ``ToolError``."""
        if not isinstance(name, str) or name not in TOOL_ARGUMENTS:
            known = ", ".join(f"{n}({', '.join(a)})" for n, a in TOOL_ARGUMENTS.items())
            return ToolError(str(name), f"Unknown tool {name!r}. Available tools: {known}.")
        if not isinstance(arguments, Mapping):
            return ToolError(name, f"{name} arguments must be a JSON object, got {type(arguments).__name__}.")
        values, notes, error = self._read_times(name, arguments)
        if error is not None:
            return ToolError(name, error)
        if name == "crop_video":
            return self._crop_video(values["start_time"], values["end_time"], notes)
        return self._get_frame(values["timestamp"], notes)

    def crop_video(self, start_time: object, end_time: object) -> Observation | ToolError:
        return self.call("crop_video", {"start_time": start_time, "end_time": end_time})

    def get_frame(self, timestamp: object) -> Observation | ToolError:
        return self.call("get_frame", {"timestamp": timestamp})

    # ---- internals ------------------------------------------------------------------------------------------
    def _sample(self, start: float, end: float, n: int) -> list[int]:
        """Distinct frame indices nearest the centres of ``n`` equal bins of [start, end], kept inside it."""
        times = self.source.frame_times
        lo = int(times.searchsorted(start, side="left"))
        hi = int(times.searchsorted(end, side="right")) - 1
        gap = (end - start) / n
        picked: set[int] = set()
        for j in range(n):
            centre = start + (j + 0.5) * gap
            index = min(max(self.source.index_at(centre), lo), hi)
            if self.config.snap_to_keyframes:
                key = self.source.nearest_keyframe(centre)
                # A keyframe decodes alone; take it when it is close enough to keep the sampling uniform.
                if lo <= key <= hi and abs(times[key] - centre) <= gap / 4 and key not in picked:
                    index = key
            picked.add(index)
        return sorted(picked)

    def _read_times(
        self, name: str, arguments: Mapping[Any, Any]
    ) -> tuple[dict[str, float], list[str], str | None]:
        duration = self.source.duration_seconds
        expected = TOOL_ARGUMENTS[name]
        missing = [a for a in expected if a not in arguments]
        if missing:
            return {}, [], f"{name} needs {', '.join(expected)} (seconds); missing: {', '.join(missing)}."
        notes = [f"ignored unknown argument {k!r}" for k in arguments if k not in expected]
        values: dict[str, float] = {}
        for key in expected:
            raw = arguments[key]
            if isinstance(raw, bool) or not isinstance(raw, int | float):
                return {}, [], f"{name}: {key} must be a number of seconds, got {_shown(raw)}."
            seconds = finite_seconds(raw)
            if seconds is None:
                return {}, [], f"{name}: {key} must be a finite number of seconds, got {_shown(raw)}."
            value = min(max(seconds, 0.0), duration)
            if value != seconds:
                notes.append(f"{key} {seconds:g}s clamped to {value:g}s (the video spans 0-{duration:g}s)")
            values[key] = value
        if name == "crop_video" and values["end_time"] <= values["start_time"]:
            asked = f"[{float(arguments['start_time']):g}, {float(arguments['end_time']):g}]"
            return {}, [], (
                f"crop_video: end_time must be greater than start_time; got {asked} "
                f"(after clamping to the video 0-{duration:g}s: [{values['start_time']:g}, {values['end_time']:g}])."
            )
        return values, notes, None

    def _charge(self, name: str, count: int) -> ToolError | None:
        if count > self.frames_left:
            return ToolError(
                name,
                f"Frame budget exhausted: {name} needs {count} frames but only {self.frames_left} of "
                f"{self.config.max_frames} are left. Answer with the evidence you have.",
            )
        self.frames_used += count
        return None

    def _crop_video(self, start: float, end: float, notes: list[str]) -> Observation | ToolError:
        times = self.source.frame_times
        lo = int(times.searchsorted(start, side="left"))
        hi = int(times.searchsorted(end, side="right")) - 1
        if lo > hi:  # the interval falls between two frames: show the one nearest its middle
            indices = [self.source.index_at((start + end) / 2)]
            notes.append("the interval is shorter than one frame; showing the nearest frame")
        else:
            indices = self._sample(start, end, self.config.crop_frames)
        error = self._charge("crop_video", len(indices))
        if error is not None:
            return error
        frames, bad = self._decode(indices, self.config.crop_max_pixels)
        if not frames:
            return ToolError("crop_video", f"no frame between {start:g}s and {end:g}s can be decoded (the file is "
                                           "damaged there); look elsewhere or answer with what you have.")
        return Observation("crop_video", {"start_time": start, "end_time": end}, tuple(frames), (*notes, *bad))

    def _get_frame(self, timestamp: float, notes: list[str]) -> Observation | ToolError:
        count = min(self.config.get_frame_count, self.source.num_frames)
        centre = self.source.index_at(timestamp)
        lo = max(0, min(centre - (count - 1) // 2, self.source.num_frames - count))
        error = self._charge("get_frame", count)
        if error is not None:
            return error
        frames, bad = self._decode(list(range(lo, lo + count)), self.config.get_frame_max_pixels)
        if not frames:
            return ToolError("get_frame", f"the frames at {timestamp:g}s cannot be decoded (the file is damaged "
                                          "there); look elsewhere or answer with what you have.")
        return Observation("get_frame", {"timestamp": timestamp}, tuple(frames), (*notes, *bad))

    def _decode(self, indices: list[int], max_pixels: int) -> tuple[list[Frame], list[str]]:
        """The frames that decode, and a note per frame that does not (one damaged packet must not end an
        episode). Frames come back in one pass when nothing is damaged."""
        try:
            return self.source.frames_at_indices(indices, max_pixels=max_pixels), []
        except CorruptVideoError:
            frames, notes = [], []
            for index in indices:
                try:
                    frames += self.source.frames_at_indices([index], max_pixels=max_pixels)
                except CorruptVideoError:
                    notes.append(f"the frame at {self.source.frame_times[index]:.2f}s could not be decoded "
                                 "(the file is damaged there)")
            return frames, notes


# Overview frames by (file, its size and mtime, frame indices, pixel cap). The images are shared, never modified:
# a backend that caches per image (the OpenAI backend's encodings) hits too.
_OVERVIEWS: LRU[tuple[Any, ...], tuple[list[Frame], list[str]]] = LRU(32)


def _overview_key(source: VideoSource, indices: list[int], max_pixels: int) -> tuple[Any, ...]:
    stat = source.path.stat()
    return (str(source.path.resolve()), stat.st_size, stat.st_mtime_ns, tuple(indices), max_pixels)


def finite_seconds(value: object) -> float | None:
    """``value`` as a finite float, or None: a bool, a non-number, inf/nan, or an int too large for a float
    (a model can write 400 digits) is not a time. Never raises."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        seconds = float(value)
    except OverflowError:
        return None
    return seconds if math.isfinite(seconds) else None


def _shown(value: object, limit: int = 60) -> str:
    text = repr(value)  # JSON ints stop at 4,300 digits (Python's str limit), so repr works; it may be long
    return text if len(text) <= limit else text[: limit - 3] + "..."
