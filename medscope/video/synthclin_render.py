"""SynthClin rendering: draws the frames an annotation describes and encodes them with libx264.

Split from ``synthclin`` (which plans the annotation) so each file has one job. Everything costly is
precomputed per video (phase textures, instrument sprites, event assets); a frame is a crop and a few pastes.
"""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import av
import numpy as np
from PIL import Image, ImageDraw

from medscope.video.framecode import draw_frame_code

if TYPE_CHECKING:  # synthclin imports this module; the config is only needed for annotations here
    from medscope.video.synthclin import SynthClinConfig


def frames_in(start: float, end: float, fps: float, count: int) -> np.ndarray:
    """Indices of the frames whose timestamp i / fps lies in [start, end): the annotation's rule."""
    times = np.arange(count) / fps
    return np.flatnonzero((times >= start) & (times < end))


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


def _paste(out: np.ndarray, rgb: np.ndarray, mask: np.ndarray, top: int, left: int, alpha: float = 1.0) -> None:
    """Copy ``rgb`` where ``mask`` into ``out`` at (top, left), clipped to the frame; with ``alpha`` < 1 blended
    over what is there (an event's faded trace)."""
    h, w = out.shape[:2]
    t0, l0 = max(0, -top), max(0, -left)
    t1, l1 = min(rgb.shape[0], h - top), min(rgb.shape[1], w - left)
    if t1 > t0 and l1 > l0:
        region = out[top + t0 : top + t1, left + l0 : left + l1]
        src = rgb[t0:t1, l0:l1]
        if alpha < 1.0:
            src = (alpha * src + (1 - alpha) * region).astype(np.uint8)
        np.copyto(region, src, where=mask[t0:t1, l0:l1, None])


def _paste_window(out: np.ndarray, rgb: np.ndarray, mask: np.ndarray, box: tuple[int, int, int, int], y0: int,
                  x0: int) -> None:
    """Paste the frame-sized window of a layer at (y0, x0) into ``out``, only where it meets ``box`` (the mask's
    bounding box): the whole window, mostly masked out, was 40% of rendering a video, for the same pixels."""
    h, w = out.shape[:2]
    r0, r1, c0, c1 = box
    top, bottom, left, right = max(y0, r0), min(y0 + h, r1), max(x0, c0), min(x0 + w, c1)
    if bottom > top and right > left:
        _paste(out, rgb[top:bottom, left:right], mask[top:bottom, left:right], top - y0, left - x0)


_TRACE_ALPHA = 0.5  # a trace's opacity: plain in a small frame, and unlike the event itself


class Renderer:
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
        # Per tool and side: its layer's pixels, mask, and the mask's bounding box (rows, then columns, end-exclusive).
        self.layers: dict[tuple[str, str], tuple[np.ndarray, np.ndarray, tuple[int, int, int, int]]] = {}
        self.events = [
            self._event_asset(rng, e, frames_in(e["start"], e["end"], self.fps, n)) for e in annotation["events"]
        ]
        # Traces after tools and before events: a mark lies on the tissue, a new event over it.
        for k, e in enumerate(annotation["events"]):
            if "trace_end" in e:
                for i in frames_in(e["end"], e["trace_end"], self.fps, n):
                    self.active[i].append(("trace", k))
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

    def _layer(self, label: str, side: str) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int, int]]:
        if (label, side) not in self.layers:
            rgb, mask = _tool_layer(label, self.w, self.h, self.pad)
            if side != "left":
                rgb, mask = rgb[:, ::-1], mask[:, ::-1]
            rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
            box = (int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1) if rows.size else (0, 0, 0, 0)
            self.layers[label, side] = (rgb, mask, box)
        return self.layers[label, side]

    def _draw_tool(self, out: np.ndarray, tool: dict[str, Any], t: float) -> None:
        slide = min(1.5, 0.25 * (tool["end"] - tool["start"]))
        inserted = float(np.clip(min(t - tool["start"], tool["end"] - t) / slide, 0.0, 1.0))
        # Fully retracted still shows a quarter of the shaft: the tool is visible over its whole interval.
        back = (1 - inserted) * 0.75 * 0.42 * self.w / math.cos(_TOOL_ANGLE)
        vx = -back * math.cos(_TOOL_ANGLE) + 0.01 * self.w * math.sin(t / 0.5 + tool["wob"])
        vy = back * math.sin(_TOOL_ANGLE) + tool["jitter"] + 0.01 * self.w * math.sin(t / 0.7 + tool["wob"])
        vx = -vx if tool["side"] == "right" else vx
        rgb, mask, box = self._layer(tool["label"], tool["side"])
        x0 = int(np.clip(self.pad - round(vx), 0, 2 * self.pad))
        y0 = int(np.clip(self.pad - round(vy), 0, 2 * self.pad))
        _paste_window(out, rgb, mask, box, y0, x0)

    def _draw_event(self, out: np.ndarray, ev: dict[str, Any], i: int) -> None:
        progress = (i - ev["first"]) / max(1, ev["count"] - 1)
        if ev["label"] == "smoke":
            self._haze(out, ev, i, 0.45 + 0.25 * math.sin(math.pi * progress))
            return
        cy, cx = ev["centre"]
        mask = ev["dist"] <= 0.5 + 0.5 * progress if ev["label"] == "bleeding" else ev["mask"]
        _paste(out, ev["rgb"], mask, cy - mask.shape[0] // 2, cx - mask.shape[1] // 2)

    def _haze(self, out: np.ndarray, ev: dict[str, Any], i: int, level: float) -> None:
        """Smoke's grey haze over the whole field at opacity about ``level``, drifting sideways with time."""
        shift = int(i / self.fps * 0.03 * self.w) % self.w
        alpha = level * (0.6 + 0.4 * ev["haze"][:, shift : shift + self.w])
        out[:] = (out * (1 - alpha[..., None]) + 200 * alpha[..., None]).astype(np.uint8)

    def _draw_trace(self, out: np.ndarray, ev: dict[str, Any], i: int) -> None:
        """What an event leaves behind: its last look, faded (a darker, dried stain for blood; a thin haze for
        smoke), so that a frame tells the trace from the event itself."""
        if ev["label"] == "smoke":
            self._haze(out, ev, i, 0.4 * _TRACE_ALPHA)
            return
        cy, cx = ev["centre"]
        mask = ev["dist"] <= 1.0 if ev["label"] == "bleeding" else ev["mask"]
        rgb = ev["rgb"] // 2 if ev["label"] == "bleeding" else ev["rgb"]
        _paste(out, rgb, mask, cy - mask.shape[0] // 2, cx - mask.shape[1] // 2, alpha=_TRACE_ALPHA)

    def frame(self, i: int) -> np.ndarray:
        t = i / self.fps
        m = self.margin
        ox = m + round(0.9 * m * math.sin(2 * math.pi * t / 47 + self.drift[0]))
        oy = m + round(0.9 * m * math.sin(2 * math.pi * t / 61 + self.drift[1]))
        out = self.tiles[self.phase_of[i]][oy : oy + self.h, ox : ox + self.w].copy()
        # Tools first, then events on top: the evidence must stay visible even under an instrument.
        for kind, k in self.active[i]:  # tools were registered before traces, traces before events
            if kind == "tool":
                self._draw_tool(out, self.tools[k], t)
            elif kind == "trace":
                self._draw_trace(out, self.events[k], i)
            else:
                self._draw_event(out, self.events[k], i)
        draw_frame_code(out, i)
        return out


def encode(config: SynthClinConfig, annotation: dict[str, Any], path: Path) -> None:
    gop = max(1, round(config.fps * config.keyframe_seconds))
    # mbtree off: with it on, x264 made the first frames' quantisers differ from run to run in this process
    # layout (measured: 4 of 5 runs differed); without it the same frames give the same bitstream.
    options = {"crf": str(config.crf), "preset": "veryfast", "g": str(gop), "keyint_min": str(gop)}
    options |= {"sc_threshold": "0", "x264-params": "mbtree=0"}
    renderer = Renderer(config, annotation)
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(config.fps).limit_denominator(1001), options=options)
        stream.width, stream.height, stream.pix_fmt = config.width, config.height, "yuv420p"
        for i in range(annotation["num_frames"]):
            frame = av.VideoFrame.from_ndarray(renderer.frame(i), format="rgb24")
            frame.pts = i  # the stream's time base is 1 / fps
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))

