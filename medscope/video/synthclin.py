"""SynthClin: seeded synthetic procedure videos with the annotations a real surgical dataset would have.

``generate(config, out_dir)`` writes ``<name>.mp4`` (H.264, yuv420p, a keyframe every
``keyframe_seconds``) and ``<name>.json``. The video walks through the seven Cholec80 phases in order,
each with its own colour palette and texture under a slowly drifting camera; instruments (grasper, hook,
clipper, scissors, irrigator) slide in from the left or right edge, stay a while and leave; and a few
short, non-overlapping events (bleeding, clip_applied, smoke, gauze) last ``event_seconds`` each, so
that uniform sampling of a long video usually misses them. With ``trace_seconds`` an event leaves a faded mark
for that long after it (a clip stays on the duct, blood stains the field), so a coarse overview can show that
an event happened before a frame while only a closer look shows when: the kind of cue that makes searching
pay against uniform frames. Every frame carries its index as a frame code (``medscope.video.framecode``). The
same config always gives the same annotation and the same frames.

``plan_annotation(config)`` gives the annotation alone, without rendering (cheap: tests and question
generation can study many seeds), and ``frames_in`` is the rule that maps an interval to frame indices.

It does not imitate real anatomy or optics: it is a world in which a tiny model can learn, and tests can
check, that looking on purpose finds evidence that an overview misses.

Annotation (``"schema": "synthclin/1"``; all times are seconds from the first frame, rounded to 3 decimals;
frame ``i`` has timestamp ``i / fps`` and belongs to an interval when ``start <= i / fps < end``)::

    schema, video (mp4 file name), duration, fps, width, height, num_frames, seed,
    config        the SynthClinConfig as a dict
    phases        [{label, start, end}]: the 7 phases in order, contiguous, covering [0, duration]
    instruments   [{label, start, end, side}]: side is "left" or "right" (the edge it enters from)
    events        [{label, start, end, position}]: label in EVENT_KINDS; position in POSITIONS, or null
                  for smoke (whole field); events never overlap. With trace_seconds > 0 also trace_end: the
                  faded mark spans [end, trace_end) (it may lie under later events of other kinds)
    captions      [{start, end, text}]: one per phase, instrument and event, sorted by start
    summary       video-level text naming the phase sequence only (never the events: they are the
                  local evidence that a global summary must not give away)

Files are written under temporary names in ``out_dir`` and renamed into place, the JSON last, so a
present JSON means a complete video.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medscope.video.framecode import FRAME_CODE_BITS
from medscope.video.synthclin_render import encode, frames_in

__all__ = ["EVENT_KINDS", "INSTRUMENTS", "PHASES", "POSITIONS", "SCHEMA", "SynthClinConfig", "SynthClinVideo",
           "default_name", "frames_in", "generate", "num_frames", "plan_annotation"]

SCHEMA = "synthclin/1"
PHASES = (
    "preparation",
    "calot_triangle_dissection",
    "clipping_and_cutting",
    "gallbladder_dissection",
    "gallbladder_packaging",
    "cleaning_and_coagulation",
    "gallbladder_retraction",
)
INSTRUMENTS = ("grasper", "hook", "clipper", "scissors", "irrigator")
EVENT_KINDS = ("bleeding", "clip_applied", "smoke", "gauze")
POSITIONS = ("upper-left", "upper-right", "lower-left", "lower-right", "centre")

# Typical Cholec80 phase proportions (calot and dissection dominate); each video jitters them.
_PHASE_SHARE = (0.06, 0.33, 0.08, 0.28, 0.08, 0.11, 0.06)
# The right hand's likely tools per phase; the left hand mostly holds a grasper.
_PHASE_TOOLS = {
    "preparation": ("grasper", "hook"),
    "calot_triangle_dissection": ("hook",),
    "clipping_and_cutting": ("clipper", "scissors"),
    "gallbladder_dissection": ("hook",),
    "gallbladder_packaging": ("grasper",),
    "cleaning_and_coagulation": ("irrigator", "hook"),
    "gallbladder_retraction": ("grasper",),
}
# Events follow the procedure, as in real surgery: clips in the clipping phase, bleeding and smoke while
# dissecting, gauze when cleaning up. The phases are visible in a coarse overview while the events are not, so
# a model can learn to look in the right phase (coarse) and then find the event in it (fine).
_PHASE_EVENTS = {
    "preparation": ("bleeding", "smoke"),
    "calot_triangle_dissection": ("bleeding", "smoke"),
    "clipping_and_cutting": ("clip_applied",),
    "gallbladder_dissection": ("bleeding", "smoke"),
    "gallbladder_packaging": ("gauze",),
    "cleaning_and_coagulation": ("smoke", "gauze"),
    "gallbladder_retraction": ("gauze",),
}
_EVENT_AFFINITY = 0.8  # probability that an event is of a kind its phase favours
_EVENT_GAP_S = 5.0  # minimum quiet time between two events, and before the first / after the last


def _range_error(name: str, value: object, valid: str) -> ValueError:
    return ValueError(f"{name}={value!r} is out of range: valid {name} is {valid}")


@dataclass(frozen=True)
class SynthClinConfig:
    """What to generate. Validated on construction; the CLI is generated from these fields."""

    duration_seconds: float = field(default=600.0, metadata={"help": "video length in seconds (60-3600)"})
    fps: float = field(default=4.0, metadata={"help": "frames per second"})
    width: int = field(default=320, metadata={"help": "frame width in pixels (even)"})
    height: int = field(default=240, metadata={"help": "frame height in pixels (even)"})
    seed: int = field(default=0, metadata={"help": "random seed: same seed, same video"})
    keyframe_seconds: float = field(default=5.0, metadata={"help": "seconds between keyframes (GOP length)"})
    crf: int = field(default=23, metadata={"help": "H.264 quality, 0 (lossless) to 51 (worst)"})
    event_seconds: tuple[float, float] = field(
        default=(2.0, 5.0), metadata={"help": "shortest and longest event, in seconds"}
    )
    events_per_10min: float = field(default=6.0, metadata={"help": "short events per 10 minutes of video"})
    trace_seconds: float = field(default=0.0, metadata={
        "help": "seconds an event's faded mark stays after it (0: none); it ends where the next event of its kind "
                "starts"})
    distinct_events: bool = field(default=False, metadata={
        "help": "each event of a kind the video has not shown yet, while kinds remain (one window per 'when' "
                "question)"})

    def __post_init__(self) -> None:
        for name in ("duration_seconds", "fps", "keyframe_seconds", "events_per_10min", "trace_seconds"):
            object.__setattr__(self, name, float(getattr(self, name)))  # JSON and CLI may give ints
        if not 60.0 <= self.duration_seconds <= 3600.0:
            raise _range_error("duration_seconds", self.duration_seconds, "60 to 3600 seconds")
        if not 0.5 <= self.fps <= 240.0:
            raise _range_error("fps", self.fps, "0.5 to 240")
        for name, low, high in (("width", 64, 3840), ("height", 48, 2160)):
            value = getattr(self, name)
            if value % 2 or not low <= value <= high:
                raise _range_error(name, value, f"an even number from {low} to {high}")
        if self.seed < 0:
            raise _range_error("seed", self.seed, ">= 0")
        if self.keyframe_seconds <= 0:
            raise _range_error("keyframe_seconds", self.keyframe_seconds, "> 0")
        if not 0 <= self.crf <= 51:
            raise _range_error("crf", self.crf, "0 to 51")
        lo, hi = (float(x) for x in self.event_seconds)  # a CLI may pass a list
        object.__setattr__(self, "event_seconds", (lo, hi))
        if not 1.0 / self.fps <= lo <= hi <= 60.0:
            raise _range_error(
                "event_seconds", self.event_seconds, f"(min, max) with {1 / self.fps:g} <= min <= max <= 60"
            )
        if not 0.0 <= self.events_per_10min <= 60.0:
            raise _range_error("events_per_10min", self.events_per_10min, "0 to 60")
        if not 0.0 <= self.trace_seconds <= 3600.0:
            raise _range_error("trace_seconds", self.trace_seconds, "0 to 3600")
        if num_frames(self) > 2**FRAME_CODE_BITS:
            raise ValueError(f"{num_frames(self)} frames do not fit the {FRAME_CODE_BITS}-bit frame code")


@dataclass(frozen=True)
class SynthClinVideo:
    """A generated video: its files and its annotation (the JSON's content)."""

    video_path: Path
    annotation_path: Path
    annotation: dict[str, Any]


def num_frames(config: SynthClinConfig) -> int:
    """Number of frames: those with timestamp i / fps < duration."""
    return math.ceil(config.duration_seconds * config.fps - 1e-9)


def default_name(config: SynthClinConfig) -> str:
    return f"synthclin_s{config.seed}_{config.duration_seconds / 60:g}m"


def _on_grid(seconds: float, fps: float) -> float:
    """Snap a time up to the next frame timestamp, rounded as the annotation stores it."""
    return round(math.ceil(seconds * fps - 1e-9) / fps, 3)


def _plan_phases(rng: np.random.Generator, config: SynthClinConfig) -> list[dict[str, Any]]:
    share = np.asarray(_PHASE_SHARE) * rng.uniform(0.7, 1.3, len(PHASES))
    bounds = np.concatenate([[0.0], np.cumsum(share / share.sum())]) * config.duration_seconds
    times = [0.0]
    for b in bounds[1:-1]:  # on frame times, and at least one frame long even at the lowest fps
        times.append(max(_on_grid(b, config.fps), _on_grid(times[-1] + 1 / config.fps, config.fps)))
    times.append(round(config.duration_seconds, 3))
    return [{"label": p, "start": times[k], "end": times[k + 1]} for k, p in enumerate(PHASES)]


def _phase_at(phases: list[dict[str, Any]], t: float) -> str:
    return next((p["label"] for p in phases if p["start"] <= t < p["end"]), phases[-1]["label"])


def _plan_instruments(rng: np.random.Generator, config: SynthClinConfig, phases: list[dict[str, Any]]) -> list[dict]:
    duration, out = config.duration_seconds, []
    for side in ("left", "right"):  # two hands, each holding one instrument at a time
        t = rng.uniform(2.0, 20.0)
        while t < duration - 4.0:
            end = min(t + rng.uniform(15.0, 75.0), duration)
            if side == "left":
                label = "grasper" if rng.random() < 0.8 else str(rng.choice(INSTRUMENTS[1:]))
            else:
                liked = _PHASE_TOOLS[_phase_at(phases, t)]
                label = str(rng.choice(liked if rng.random() < 0.7 else INSTRUMENTS))
            start, stop = _on_grid(t, config.fps), _on_grid(end, config.fps)
            if stop - start >= 4.0:
                out.append({"label": label, "start": start, "end": min(stop, round(duration, 3)), "side": side})
            t = end + rng.uniform(8.0, 45.0)
    return sorted(out, key=lambda x: (x["start"], x["side"]))


def _plan_events(
    rng: np.random.Generator, config: SynthClinConfig, phases: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    count = round(config.events_per_10min * config.duration_seconds / 600.0)
    lo, hi = config.event_seconds
    lengths = [max(1, round(rng.uniform(lo, hi) * config.fps)) / config.fps for _ in range(count)]
    # Gaps of at least one frame survive the snapping below, so events cannot touch or overlap.
    gap = max(_EVENT_GAP_S, 2.0 / config.fps)
    free = config.duration_seconds - sum(lengths) - (count + 1) * gap
    if free < 0:
        raise ValueError(f"{count} events of {lo:g}-{hi:g} s do not fit in {config.duration_seconds:g} s")
    offsets = np.sort(rng.uniform(0.0, free, count))
    events: list[dict[str, Any]] = []
    cursor = gap
    for k in range(count):
        start = _on_grid(cursor + offsets[k], config.fps)
        liked: tuple[str, ...] = _PHASE_EVENTS[_phase_at(phases, start)]
        kinds: tuple[str, ...] = EVENT_KINDS
        if config.distinct_events:
            shown = {e["label"] for e in events}
            fresh = [kind for kind in EVENT_KINDS if kind not in shown] or list(EVENT_KINDS)
            liked, kinds = tuple(kind for kind in liked if kind in fresh) or tuple(fresh), tuple(fresh)
        label = str(rng.choice(liked if rng.random() < _EVENT_AFFINITY else kinds))
        position = None if label == "smoke" else str(rng.choice(POSITIONS))
        events.append({"label": label, "start": start, "end": round(start + lengths[k], 3), "position": position})
        cursor += lengths[k] + gap
    if config.trace_seconds > 0:
        for k, event in enumerate(events):
            later = [float(e["start"]) for e in events[k + 1:] if e["label"] == event["label"]]
            end = _on_grid(float(event["end"]) + config.trace_seconds, config.fps)
            event["trace_end"] = min([end, *later, round(config.duration_seconds, 3)])
    return events


def _where(position: str | None) -> str:
    return "the field" if position is None else f"the {position} of the field"


def _captions(phases: list[dict], instruments: list[dict], events: list[dict]) -> list[dict[str, Any]]:
    caps = [(p["start"], p["end"], f"The {p['label'].replace('_', ' ')} phase begins.") for p in phases]
    caps += [(x["start"], x["end"], f"A {x['label']} enters from the {x['side']}.") for x in instruments]
    texts = {
        "bleeding": "Bleeding appears in {}.",
        "clip_applied": "A clip is applied in {}.",
        "smoke": "Smoke fills {}.",
        "gauze": "Gauze is placed in {}.",
    }
    caps += [(e["start"], e["end"], texts[e["label"]].format(_where(e["position"]))) for e in events]
    return [{"start": s, "end": e, "text": text} for s, e, text in sorted(caps, key=lambda c: (c[0], c[1]))]


def _summary(config: SynthClinConfig, phases: list[dict[str, Any]]) -> str:
    steps = ", ".join(f"{p['label'].replace('_', ' ')} ({p['start']:.0f}-{p['end']:.0f} s)" for p in phases)
    return (
        f"A synthetic laparoscopic cholecystectomy of {config.duration_seconds / 60:.1f} minutes. "
        f"It proceeds through {len(phases)} phases in order: {steps}."
    )


def plan_annotation(config: SynthClinConfig, video_name: str | None = None) -> dict[str, Any]:
    """The annotation of the video ``config`` describes, without rendering anything (cheap)."""
    rng = np.random.default_rng(config.seed)
    phases = _plan_phases(rng, config)
    instruments = _plan_instruments(rng, config, phases)
    events = _plan_events(rng, config, phases)
    return {
        "schema": SCHEMA,
        "video": video_name or f"{default_name(config)}.mp4",
        "duration": round(config.duration_seconds, 3),
        "fps": config.fps,
        "width": config.width,
        "height": config.height,
        "num_frames": num_frames(config),
        "seed": config.seed,
        "config": json.loads(json.dumps(asdict(config))),  # tuples → lists, as the JSON file has them
        "phases": phases,
        "instruments": instruments,
        "events": events,
        "captions": _captions(phases, instruments, events),
        "summary": _summary(config, phases),
    }


def generate(config: SynthClinConfig, out_dir: str | Path, *, name: str | None = None) -> SynthClinVideo:
    """Render the video and write ``<name>.mp4`` and ``<name>.json`` into ``out_dir`` (created if needed)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    name = name or default_name(config)
    video_path, annotation_path = out / f"{name}.mp4", out / f"{name}.json"
    annotation = plan_annotation(config, video_path.name)
    tmp_video = out / f".{name}.mp4.{os.getpid()}.tmp"
    tmp_json = out / f".{name}.json.{os.getpid()}.tmp"
    try:
        encode(config, annotation, tmp_video)
        tmp_json.write_text(json.dumps(annotation, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp_video, video_path)
        os.replace(tmp_json, annotation_path)  # last: a present JSON means a complete video
    finally:
        tmp_video.unlink(missing_ok=True)
        tmp_json.unlink(missing_ok=True)
    return SynthClinVideo(video_path, annotation_path, annotation)
