"""SynthClin: seeded synthetic procedure videos with the annotations a real surgical dataset would have.

``generate(config, out_dir)`` writes ``<name>.mp4`` (H.264, yuv420p, a keyframe every
``keyframe_seconds``) and ``<name>.json``. The video walks through the seven Cholec80 phases in order,
each with its own colour palette and texture under a slowly drifting camera; instruments (grasper, hook,
clipper, scissors, irrigator) slide in from the left or right edge, stay a while and leave; and a few
short, non-overlapping events (bleeding, clip_applied, smoke, gauze) last ``event_seconds`` each, so
that uniform sampling of a long video usually misses them. Every frame carries its index as a frame code
(``medscope.video.framecode``). The same config always gives the same annotation and the same frames.

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
                  for smoke (whole field); events never overlap
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
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from PIL import Image, ImageDraw

from medscope.video.framecode import FRAME_CODE_BITS, draw_frame_code

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

    def __post_init__(self) -> None:
        for name in ("duration_seconds", "fps", "keyframe_seconds", "events_per_10min"):
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


def frames_in(start: float, end: float, fps: float, count: int) -> np.ndarray:
    """Indices of the frames whose timestamp i / fps lies in [start, end): the annotation's rule."""
    times = np.arange(count) / fps
    return np.flatnonzero((times >= start) & (times < end))


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
    events, cursor = [], gap
    for k in range(count):
        start = _on_grid(cursor + offsets[k], config.fps)
        liked = _PHASE_EVENTS[_phase_at(phases, start)]
        label = str(rng.choice(liked if rng.random() < _EVENT_AFFINITY else EVENT_KINDS))
        position = None if label == "smoke" else str(rng.choice(POSITIONS))
        events.append({"label": label, "start": start, "end": round(start + lengths[k], 3), "position": position})
        cursor += lengths[k] + gap
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


# Rendering. Phase looks: (base colour, accent colour, texture), far apart so a phase shows at a glance.
_PHASE_LOOK = {
    "preparation": ((205, 135, 130), (245, 195, 175), "mottled"),
    "calot_triangle_dissection": ((165, 60, 45), (235, 205, 120), "fibrous"),
    "clipping_and_cutting": ((115, 55, 100), (205, 130, 165), "striped"),
    "gallbladder_dissection": ((70, 115, 45), (175, 195, 85), "veined"),
    "gallbladder_packaging": ((55, 75, 130), (160, 175, 210), "cellular"),
    "cleaning_and_coagulation": ((85, 45, 30), (170, 120, 85), "glossy"),
    "gallbladder_retraction": ((185, 155, 65), (245, 225, 155), "speckled"),
}
# Instrument looks: (shaft colour, tip colour, shaft width as a share of the frame height).
_TOOL_LOOK = {
    "grasper": ((70, 70, 80), (0, 200, 220), 0.045),
    "hook": ((25, 25, 25), (245, 245, 245), 0.035),
    "clipper": ((175, 145, 40), (230, 200, 70), 0.06),
    "scissors": ((90, 20, 110), (250, 225, 0), 0.045),
    "irrigator": ((40, 90, 220), (160, 205, 255), 0.07),
}
_TOOL_ANGLE = math.radians(20)  # shafts enter from below the tip, as trocars sit low
_CENTRES = {
    "upper-left": (0.27, 0.33),
    "upper-right": (0.73, 0.33),
    "lower-left": (0.27, 0.72),
    "lower-right": (0.73, 0.72),
    "centre": (0.5, 0.52),
}


def _noise(rng: np.random.Generator, shape: tuple[int, int], cells: tuple[int, int]) -> np.ndarray:
    """Smooth noise in [0, 1]: random values on a coarse grid of ``cells``, bicubically enlarged."""
    coarse = Image.fromarray(rng.random(cells).astype(np.float32))
    big = np.asarray(coarse.resize((shape[1], shape[0]), Image.Resampling.BICUBIC))
    return (big - big.min()) / max(float(np.ptp(big)), 1e-6)


def _texture(rng: np.random.Generator, kind: str, shape: tuple[int, int]) -> np.ndarray:
    """A texture in [0, 1] whose features scale with the frame, so every size looks alike."""
    h, w = shape
    base = _noise(rng, shape, (6, 8))
    if kind == "fibrous":  # many rows, few columns: horizontal fibres
        return 0.3 * base + 0.7 * _noise(rng, shape, (70, 4))
    if kind == "striped":
        y, x = np.mgrid[0:h, 0:w]
        return 0.25 * base + 0.75 * (np.sin((x + 0.6 * y) * (2 * np.pi * 14 / w)) > 0.2)
    if kind == "veined":
        return 0.5 * base + 0.5 * (np.abs(_noise(rng, shape, (9, 12)) - 0.5) < 0.035)
    if kind == "cellular":
        return 0.3 * base + 0.7 * (_noise(rng, shape, (12, 16)) > 0.5)
    if kind == "glossy":
        return 0.6 * base + 0.4 * (_noise(rng, shape, (14, 18)) > 0.82)
    if kind == "speckled":
        dots = Image.fromarray((rng.random((60, 80)) > 0.9).astype(np.uint8) * 255)
        return 0.5 * base + 0.5 * np.asarray(dots.resize((w, h), Image.Resampling.NEAREST)) / 255.0
    return 0.7 * base + 0.3 * _noise(rng, shape, (20, 26))  # mottled


def _tool_layer(label: str, width: int, height: int, pad: int) -> tuple[np.ndarray, np.ndarray]:
    """RGB and mask of an instrument at rest, entering from the left, on a canvas padded by ``pad``."""
    shaft, tip, thick = _TOOL_LOOK[label]
    img = Image.new("RGBA", (width + 2 * pad, height + 2 * pad))
    draw = ImageDraw.Draw(img)
    d = np.array([math.cos(_TOOL_ANGLE), -math.sin(_TOOL_ANGLE)])  # along the shaft, towards the tip
    n = np.array([-d[1], d[0]])  # across the shaft
    tip_at = np.array([pad + 0.42 * width, pad + 0.58 * height])
    w, s = max(3, round(thick * height)), 0.09 * width

    def line(a: np.ndarray, b: np.ndarray, colour: tuple[int, int, int], lw: int) -> None:
        draw.line([tuple(a), tuple(b)], fill=colour, width=lw)

    line(tip_at - d * tip_at[0] / d[0], tip_at, shaft, w)
    if label == "grasper":  # open jaws
        for side in (1, -1):
            line(tip_at, tip_at + s * (d + 0.45 * side * n), tip, max(2, w // 2 + 1))
    elif label == "hook":  # L-shaped electrode
        line(tip_at, tip_at + 0.6 * s * d, tip, max(2, w // 2))
        line(tip_at + 0.6 * s * d, tip_at + 0.6 * s * d + 0.45 * s * n, tip, max(2, w // 2))
    elif label == "clipper":  # two parallel flat jaws
        for side in (1, -1):
            line(tip_at + side * 0.35 * w * n, tip_at + side * 0.35 * w * n + s * d, tip, max(2, w // 2))
    elif label == "scissors":  # crossed blades
        for side in (1, -1):
            line(tip_at - 0.2 * s * d + side * 0.3 * s * n, tip_at + s * d - side * 0.3 * s * n, tip, max(2, w // 2))
    else:  # irrigator: round nozzle
        c, r = tip_at + 0.2 * s * d, 0.8 * w
        draw.ellipse([c[0] - r, c[1] - r, c[0] + r, c[1] + r], fill=tip)
    arr = np.asarray(img)
    return arr[..., :3].copy(), arr[..., 3] > 0


def _paste(out: np.ndarray, rgb: np.ndarray, mask: np.ndarray, top: int, left: int) -> None:
    """Copy ``rgb`` where ``mask`` into ``out`` at (top, left), clipped to the frame."""
    h, w = out.shape[:2]
    t0, l0 = max(0, -top), max(0, -left)
    t1, l1 = min(rgb.shape[0], h - top), min(rgb.shape[1], w - left)
    if t1 > t0 and l1 > l0:
        region = out[top + t0 : top + t1, left + l0 : left + l1]
        np.copyto(region, rgb[t0:t1, l0:l1], where=mask[t0:t1, l0:l1, None])


class _Renderer:
    """Draws frame i of an annotated video. Everything costly is precomputed; a frame is a crop and pastes."""

    def __init__(self, config: SynthClinConfig, annotation: dict[str, Any]) -> None:
        self.w, self.h, self.fps = config.width, config.height, config.fps
        rng = np.random.default_rng([config.seed, 1])  # its own stream: rendering never shifts the plan
        self.margin, self.pad = max(2, round(0.08 * self.w)), self.w // 2
        tile_shape = (self.h + 2 * self.margin, self.w + 2 * self.margin)
        self.tiles = []
        for p in annotation["phases"]:
            base, accent, kind = _PHASE_LOOK[p["label"]]
            v = _texture(rng, kind, tile_shape)[..., None]
            self.tiles.append((np.asarray(base) * (1 - v) + np.asarray(accent) * v).astype(np.uint8))
        self.drift = rng.uniform(0, 2 * np.pi, 2)
        n = annotation["num_frames"]
        self.phase_of = np.zeros(n, dtype=int)
        for k, p in enumerate(annotation["phases"]):
            self.phase_of[frames_in(p["start"], p["end"], self.fps, n)] = k
        self.active: list[list[tuple[str, int]]] = [[] for _ in range(n)]
        self.tools = [
            dict(x, jitter=rng.uniform(-0.15, 0.15) * self.h, wob=rng.uniform(0, 6.3))
            for x in annotation["instruments"]
        ]
        for k, x in enumerate(self.tools):
            for i in frames_in(x["start"], x["end"], self.fps, n):
                self.active[i].append(("tool", k))
        self.layers: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
        self.events = [
            self._event_asset(rng, e, frames_in(e["start"], e["end"], self.fps, n)) for e in annotation["events"]
        ]
        for k, e in enumerate(self.events):
            for i in e["frames"]:
                self.active[i].append(("event", k))

    def _event_asset(self, rng: np.random.Generator, event: dict[str, Any], frames: np.ndarray) -> dict[str, Any]:
        asset: dict[str, Any] = {
            "label": event["label"],
            "frames": frames,
            "first": int(frames[0]),
            "count": len(frames),
        }
        if event["position"] is not None:
            fx, fy = _CENTRES[event["position"]]
            asset["centre"] = (round(fy * self.h), round(fx * self.w))
        if event["label"] == "bleeding":
            r = math.ceil(0.17 * self.h)
            y, x = np.mgrid[-r : r + 1, -r : r + 1]
            angle = np.arctan2(y, x)
            wobble = sum(0.12 * np.sin(k * angle + rng.uniform(0, 6.3)) for k in (2, 3, 5))
            asset["dist"] = np.hypot(y, x) / (1 + wobble) / (0.13 * self.h)  # 1.0 = full-grown edge
            shade = _noise(rng, (2 * r + 1, 2 * r + 1), (4, 4))
            asset["rgb"] = np.stack([120 + 90 * shade, 8 * shade, 10 + 12 * shade], axis=-1).astype(np.uint8)
        elif event["label"] == "clip_applied":
            s = max(10, round(0.22 * self.h))
            img = Image.new("RGBA", (s, s))
            u = [(0.3 * s, 0.15 * s), (0.3 * s, 0.8 * s), (0.7 * s, 0.8 * s), (0.7 * s, 0.15 * s)]
            ImageDraw.Draw(img).line(u, fill=(20, 20, 30), width=max(4, s // 5), joint="curve")  # dark rim
            ImageDraw.Draw(img).line(u, fill=(240, 242, 250), width=max(2, s // 9), joint="curve")
            arr = np.asarray(img.rotate(rng.uniform(0, 180), resample=Image.Resampling.NEAREST, expand=True))
            asset["rgb"], asset["mask"] = arr[..., :3].copy(), arr[..., 3] > 0
        elif event["label"] == "gauze":
            gh, gw = max(6, round(0.2 * self.h)), max(8, round(0.26 * self.h))
            y, x = np.mgrid[0:gh, 0:gw]
            weave = ((y % max(3, gh // 8)) == 0) | ((x % max(3, gh // 8)) == 0)
            asset["rgb"] = np.where(weave[..., None], 205, 246).astype(np.uint8).repeat(3, axis=2)
            asset["mask"] = np.ones((gh, gw), dtype=bool)
        else:  # smoke: a haze field twice as wide as the frame that drifts sideways
            asset["haze"] = _noise(rng, (self.h, 2 * self.w), (4, 10)).astype(np.float32)
        return asset

    def _layer(self, label: str, side: str) -> tuple[np.ndarray, np.ndarray]:
        if (label, side) not in self.layers:
            rgb, mask = _tool_layer(label, self.w, self.h, self.pad)
            self.layers[label, side] = (rgb, mask) if side == "left" else (rgb[:, ::-1], mask[:, ::-1])
        return self.layers[label, side]

    def _draw_tool(self, out: np.ndarray, tool: dict[str, Any], t: float) -> None:
        slide = min(1.5, 0.25 * (tool["end"] - tool["start"]))
        inserted = float(np.clip(min(t - tool["start"], tool["end"] - t) / slide, 0.0, 1.0))
        # Fully retracted still shows a quarter of the shaft: the tool is visible over its whole interval.
        back = (1 - inserted) * 0.75 * 0.42 * self.w / math.cos(_TOOL_ANGLE)
        vx = -back * math.cos(_TOOL_ANGLE) + 0.01 * self.w * math.sin(t / 0.5 + tool["wob"])
        vy = back * math.sin(_TOOL_ANGLE) + tool["jitter"] + 0.01 * self.w * math.sin(t / 0.7 + tool["wob"])
        vx = -vx if tool["side"] == "right" else vx
        rgb, mask = self._layer(tool["label"], tool["side"])
        x0 = int(np.clip(self.pad - round(vx), 0, 2 * self.pad))
        y0 = int(np.clip(self.pad - round(vy), 0, 2 * self.pad))
        _paste(out, rgb[y0 : y0 + self.h, x0 : x0 + self.w], mask[y0 : y0 + self.h, x0 : x0 + self.w], 0, 0)

    def _draw_event(self, out: np.ndarray, ev: dict[str, Any], i: int) -> None:
        progress = (i - ev["first"]) / max(1, ev["count"] - 1)
        if ev["label"] == "smoke":
            shift = int(i / self.fps * 0.03 * self.w) % self.w
            alpha = (0.45 + 0.25 * math.sin(math.pi * progress)) * (0.6 + 0.4 * ev["haze"][:, shift : shift + self.w])
            out[:] = (out * (1 - alpha[..., None]) + 200 * alpha[..., None]).astype(np.uint8)
            return
        cy, cx = ev["centre"]
        mask = ev["dist"] <= 0.5 + 0.5 * progress if ev["label"] == "bleeding" else ev["mask"]
        _paste(out, ev["rgb"], mask, cy - mask.shape[0] // 2, cx - mask.shape[1] // 2)

    def frame(self, i: int) -> np.ndarray:
        t = i / self.fps
        m = self.margin
        ox = m + round(0.9 * m * math.sin(2 * math.pi * t / 47 + self.drift[0]))
        oy = m + round(0.9 * m * math.sin(2 * math.pi * t / 61 + self.drift[1]))
        out = self.tiles[self.phase_of[i]][oy : oy + self.h, ox : ox + self.w].copy()
        # Tools first, then events on top: the evidence must stay visible even under an instrument.
        for kind, k in self.active[i]:  # tools were registered before events
            if kind == "tool":
                self._draw_tool(out, self.tools[k], t)
            else:
                self._draw_event(out, self.events[k], i)
        draw_frame_code(out, i)
        return out


def _encode(config: SynthClinConfig, annotation: dict[str, Any], path: Path) -> None:
    gop = max(1, round(config.fps * config.keyframe_seconds))
    # mbtree off: with it on, x264 made the first frames' quantisers differ from run to run in this process
    # layout (measured: 4 of 5 runs differed); without it the same frames give the same bitstream.
    options = {"crf": str(config.crf), "preset": "veryfast", "g": str(gop), "keyint_min": str(gop)}
    options |= {"sc_threshold": "0", "x264-params": "mbtree=0"}
    renderer = _Renderer(config, annotation)
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(config.fps).limit_denominator(1001), options=options)
        stream.width, stream.height, stream.pix_fmt = config.width, config.height, "yuv420p"
        for i in range(annotation["num_frames"]):
            frame = av.VideoFrame.from_ndarray(renderer.frame(i), format="rgb24")
            frame.pts = i  # the stream's time base is 1 / fps
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


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
        _encode(config, annotation, tmp_video)
        tmp_json.write_text(json.dumps(annotation, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp_video, video_path)
        os.replace(tmp_json, annotation_path)  # last: a present JSON means a complete video
    finally:
        tmp_video.unlink(missing_ok=True)
        tmp_json.unlink(missing_ok=True)
    return SynthClinVideo(video_path, annotation_path, annotation)
