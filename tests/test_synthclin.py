"""SynthClin and the frame code: frame-exact files, deterministic content, honest annotations."""

from __future__ import annotations

import dataclasses
import itertools
import json
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from medscope.video.framecode import FRAME_CODE_BITS, draw_frame_code, read_frame_code
from medscope.video.synthclin import (
    EVENT_KINDS,
    INSTRUMENTS,
    PHASES,
    POSITIONS,
    SynthClinConfig,
    SynthClinVideo,
    frames_in,
    generate,
    plan_annotation,
)

TEN_MIN = SynthClinConfig(duration_seconds=600.0, seed=3)  # default config but the seed


@dataclass
class Decoded:
    codes: list[int]
    times: list[float]
    thumbs: np.ndarray  # (N, 60, 80, 3): enough for colour statistics
    full: dict[int, np.ndarray]  # full-size frames around every event boundary


def _decode(path: Path, keep: set[int]) -> Decoded:
    codes, times, thumbs, full = [], [], [], {}
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            rgb = frame.to_ndarray(format="rgb24")
            codes.append(read_frame_code(rgb))
            times.append(float(frame.time))
            thumbs.append(np.asarray(Image.fromarray(rgb).resize((80, 60), Image.Resampling.BILINEAR)))
            if i in keep:
                full[i] = rgb
    return Decoded(codes, times, np.stack(thumbs), full)


def _event_bounds(annotation: dict) -> set[int]:
    keep: set[int] = set()
    for e in annotation["events"]:
        idx = frames_in(e["start"], e["end"], annotation["fps"], annotation["num_frames"])
        keep |= {int(idx[0]) - 1, int(idx[0]), int(idx[-1]), int(idx[-1]) + 1}
    return keep


@pytest.fixture(scope="module")
def ten_min(tmp_path_factory: pytest.TempPathFactory) -> SynthClinVideo:
    return generate(TEN_MIN, tmp_path_factory.mktemp("synthclin"))


@pytest.fixture(scope="module")
def ten_min_decoded(ten_min: SynthClinVideo) -> Decoded:
    return _decode(ten_min.video_path, _event_bounds(ten_min.annotation))


# ---------------------------------------------------------------- frame code


@pytest.mark.parametrize("index", [0, 1, 2400, 123_456, 2**FRAME_CODE_BITS - 1])
@pytest.mark.parametrize("size", [(320, 240), (640, 360)])
def test_frame_code_round_trip_at_scales(index: int, size: tuple[int, int]) -> None:
    width, height = size
    rgb = np.random.default_rng(index).integers(0, 256, (height, width, 3), dtype=np.uint8)
    draw_frame_code(rgb, index)
    assert read_frame_code(rgb) == index
    image = Image.fromarray(rgb)
    for scale in (0.7, 149 / 320, 112 / 320):
        small = image.resize((round(width * scale), round(height * scale)), Image.Resampling.BILINEAR)
        assert read_frame_code(small) == index, small.size
    assert read_frame_code(image.convert("L")) == index


def test_frame_code_rejects_bad_input() -> None:
    rgb = np.zeros((240, 320, 3), dtype=np.uint8)
    for bad in (-1, 2**FRAME_CODE_BITS):
        with pytest.raises(ValueError, match="does not fit"):
            draw_frame_code(rgb, bad)
    with pytest.raises(ValueError, match="no frame code"):
        read_frame_code(np.full((240, 320, 3), 128, dtype=np.uint8))


# ---------------------------------------------------------------- the video file


def test_every_decoded_frame_carries_its_index(ten_min: SynthClinVideo, ten_min_decoded: Decoded) -> None:
    n, fps = ten_min.annotation["num_frames"], ten_min.annotation["fps"]
    assert n == 2400
    assert ten_min_decoded.codes == list(range(n))
    assert np.allclose(ten_min_decoded.times, np.arange(n) / fps, atol=1e-3)


def test_keyframes_are_regular(ten_min: SynthClinVideo) -> None:
    with av.open(str(ten_min.video_path)) as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height, stream.codec_context.pix_fmt) == (320, 240, "yuv420p")
        packets = sorted((p.pts, p.is_keyframe) for p in container.demux(stream) if p.pts is not None)
    keyframes = [i for i, (_, key) in enumerate(packets) if key]
    gop = round(TEN_MIN.fps * TEN_MIN.keyframe_seconds)
    assert keyframes == list(range(0, len(packets), gop))


def test_files_are_named_and_complete(ten_min: SynthClinVideo) -> None:
    assert ten_min.video_path.name == "synthclin_s3_10m.mp4"
    assert sorted(p.name for p in ten_min.video_path.parent.iterdir()) == [
        "synthclin_s3_10m.json",
        "synthclin_s3_10m.mp4",
    ]
    assert json.loads(ten_min.annotation_path.read_text()) == ten_min.annotation


def test_same_seed_same_video_other_seed_other_plan(tmp_path: Path) -> None:
    config = SynthClinConfig(duration_seconds=60.0, seed=1)
    first, second = generate(config, tmp_path / "a"), generate(config, tmp_path / "b", name="copy")
    first_json, second_json = (
        json.loads(first.annotation_path.read_text()),
        json.loads(second.annotation_path.read_text()),
    )
    assert {**first_json, "video": None} == {**second_json, "video": None}
    picks = {0, 57, 120, 121, 239}
    a, b = _decode(first.video_path, picks), _decode(second.video_path, picks)
    for i in picks:
        assert np.array_equal(a.full[i], b.full[i])
    other = plan_annotation(dataclasses.replace(config, seed=2))
    assert other["phases"] != first.annotation["phases"]
    assert not np.array_equal(a.full[120][20:], a.full[121][20:])  # below the frame code the scene moves too


# ---------------------------------------------------------------- the annotation


def test_annotation_schema(ten_min: SynthClinVideo) -> None:
    ann, duration = ten_min.annotation, 600.0
    assert ann["schema"] == "synthclin/1" and ann["video"] == ten_min.video_path.name
    assert (ann["duration"], ann["fps"], ann["width"], ann["height"], ann["seed"]) == (duration, 4.0, 320, 240, 3)
    assert SynthClinConfig(**ann["config"]) == TEN_MIN
    phases = ann["phases"]
    assert [p["label"] for p in phases] == list(PHASES)
    assert phases[0]["start"] == 0.0 and phases[-1]["end"] == duration
    assert all(p["end"] == q["start"] and p["start"] < p["end"] for p, q in itertools.pairwise(phases))
    instruments = ann["instruments"]
    assert len(instruments) >= 5
    for x in instruments:
        assert x["label"] in INSTRUMENTS and x["side"] in ("left", "right") and 0 <= x["start"] < x["end"] <= duration
    events = ann["events"]
    assert len(events) == 6 and len({e["label"] for e in events}) >= 3
    for e in events:
        assert e["label"] in EVENT_KINDS and 0 <= e["start"] < e["end"] <= duration
        assert (e["position"] is None) == (e["label"] == "smoke") and e["position"] in (*POSITIONS, None)
    assert all(e["end"] < f["start"] for e, f in itertools.pairwise(events))
    captions = ann["captions"]
    assert len(captions) == len(phases) + len(instruments) + len(events)
    assert [c["start"] for c in captions] == sorted(c["start"] for c in captions)
    spans = {(c["start"], c["end"]): c["text"] for c in captions}
    for e in events:
        assert e["label"].split("_")[0] in spans[e["start"], e["end"]].lower()
        assert e["position"] is None or e["position"] in spans[e["start"], e["end"]]
    summary = ann["summary"].lower()
    assert all(p.replace("_", " ") in summary for p in PHASES)
    assert not any(word in summary for word in ("bleeding", "smoke", "gauze", "clip applied", "clip_applied"))


def test_events_are_sparse_for_a_uniform_overview(ten_min: SynthClinVideo) -> None:
    def hit_share(ann: dict) -> float:
        centres = (np.arange(16) + 0.5) * ann["duration"] / 16
        events = ann["events"]
        return sum(any(e["start"] <= t < e["end"] for t in centres) for e in events) / len(events)

    gap = ten_min.annotation["duration"] / 16
    assert all(e["end"] - e["start"] < gap for e in ten_min.annotation["events"])
    assert hit_share(ten_min.annotation) < 0.5
    shares = [hit_share(plan_annotation(SynthClinConfig(seed=seed))) for seed in range(40)]
    assert np.mean(shares) < 0.25  # on average a 16-frame overview sees few events


# ---------------------------------------------------------------- what the frames show


def test_phases_look_distinct(ten_min: SynthClinVideo, ten_min_decoded: Decoded) -> None:
    fps, n = ten_min.annotation["fps"], ten_min.annotation["num_frames"]
    means = [
        np.median(ten_min_decoded.thumbs[frames_in(p["start"], p["end"], fps, n)].reshape(-1, 3), axis=0)
        for p in ten_min.annotation["phases"]
    ]
    for a, b in itertools.combinations(means, 2):
        assert np.linalg.norm(a - b) > 25, (a, b)


def _signature(label: str, rgb: np.ndarray) -> float:
    """How strongly a frame shows an event of this kind (more = more visible)."""
    rgb = rgb[rgb.shape[0] // 12 :]  # below the frame code, whose white blocks would count as "bright"
    r, g, b = (rgb[..., k].astype(int) for k in range(3))
    if label == "bleeding":
        return float(np.mean((r > 100) & (g < 40) & (b < 50)))
    if label == "smoke":  # grey haze washes the colour out
        return -float(np.mean(rgb.max(axis=2).astype(int) - rgb.min(axis=2)))
    return float(np.mean((r > 220) & (g > 220) & (b > 220)))  # the silver clip, the white gauze


def test_events_show_on_exactly_their_frames(ten_min: SynthClinVideo, ten_min_decoded: Decoded) -> None:
    fps, n = ten_min.annotation["fps"], ten_min.annotation["num_frames"]
    for e in ten_min.annotation["events"]:
        idx = frames_in(e["start"], e["end"], fps, n)
        first, last = int(idx[0]), int(idx[-1])
        assert len(idx) == round((e["end"] - e["start"]) * fps)
        s = {i: _signature(e["label"], ten_min_decoded.full[i]) for i in (first - 1, first, last, last + 1)}
        margin = 10.0 if e["label"] == "smoke" else 0.002
        assert s[first] > s[first - 1] + margin and s[last] > s[last + 1] + margin, (e, s)


# ---------------------------------------------------------------- configuration


def test_config_validation() -> None:
    with pytest.raises(ValueError, match=r"duration_seconds=10.*60 to 3600"):
        SynthClinConfig(duration_seconds=10)
    with pytest.raises(ValueError, match=r"width=321.*even"):
        SynthClinConfig(width=321)
    with pytest.raises(ValueError, match="event_seconds"):
        SynthClinConfig(event_seconds=(5.0, 2.0))
    assert SynthClinConfig(event_seconds=[1, 3]).event_seconds == (1.0, 3.0)  # type: ignore[arg-type]
    assert all(f.metadata.get("help") for f in dataclasses.fields(SynthClinConfig))


def test_a_tool_is_pasted_only_where_its_box_meets_the_frame() -> None:
    """``_paste_window`` (the tool's bounding box only) writes the pixels pasting the whole window writes, for
    every tool, both sides and windows that cut the tool at every edge."""
    from medscope.video.synthclin import plan_annotation
    from medscope.video.synthclin_render import Renderer, _paste, _paste_window

    config = SynthClinConfig(duration_seconds=60.0, seed=3)
    renderer = Renderer(config, plan_annotation(config, "x.mp4"))
    rng = np.random.default_rng(0)
    h, w, pad = renderer.h, renderer.w, renderer.pad
    for label in ("grasper", "hook", "clipper", "scissors", "irrigator"):
        for side in ("left", "right"):
            rgb, mask, box = renderer._layer(label, side)
            assert mask.any() and box[1] > box[0] and box[3] > box[2]
            for y0, x0 in [(0, 0), (2 * pad, 2 * pad), *rng.integers(0, 2 * pad + 1, (20, 2)).tolist()]:
                base = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
                whole, boxed = base.copy(), base.copy()
                _paste(whole, rgb[y0 : y0 + h, x0 : x0 + w], mask[y0 : y0 + h, x0 : x0 + w], 0, 0)
                _paste_window(boxed, rgb, mask, box, y0, x0)
                assert np.array_equal(whole, boxed)


# ---------------------------------------------------------------- traces


TRACED = SynthClinConfig(duration_seconds=120.0, fps=2.0, keyframe_seconds=0.5, events_per_10min=20.0, seed=5,
                         trace_seconds=20.0, distinct_events=True)


def test_an_event_leaves_a_trace_until_its_kind_comes_again() -> None:
    traced = plan_annotation(TRACED)
    plain = plan_annotation(dataclasses.replace(TRACED, trace_seconds=0.0))
    assert all("trace_end" not in e for e in plain["events"])
    assert [(e["start"], e["end"], e["label"]) for e in plain["events"]] == [
        (e["start"], e["end"], e["label"]) for e in traced["events"]]  # a trace changes nothing else
    labels = [e["label"] for e in traced["events"]]
    assert len(labels) == 4 and len(set(labels)) == 4  # distinct kinds while kinds remain
    for k, e in enumerate(traced["events"]):
        again = [x["start"] for x in traced["events"][k + 1:] if x["label"] == e["label"]]
        assert e["end"] < e["trace_end"] <= min([e["end"] + 20.0, *again, traced["duration"]])
        assert e["trace_end"] > e["end"] + 19.0 or e["trace_end"] in again or e["trace_end"] == traced["duration"]
    # Without distinct kinds the same plan repeats a kind (seed 5): its trace ends where it comes again.
    mixed = plan_annotation(dataclasses.replace(TRACED, distinct_events=False, trace_seconds=600.0))
    ends = {(e["label"], e["trace_end"]) for e in mixed["events"]}
    repeated = [e for k, e in enumerate(mixed["events"]) if e["label"] in {x["label"] for x in mixed["events"][:k]}]
    assert repeated and all((r["label"], r["start"]) in ends for r in repeated)
    with pytest.raises(ValueError, match="trace_seconds"):
        SynthClinConfig(trace_seconds=-1.0)


def test_a_trace_shows_on_its_frames_only_and_unlike_its_event() -> None:
    from medscope.video.synthclin_render import Renderer

    traced = plan_annotation(TRACED, "x.mp4")
    plain = plan_annotation(dataclasses.replace(TRACED, trace_seconds=0.0), "x.mp4")
    with_traces, without = Renderer(TRACED, traced), Renderer(dataclasses.replace(TRACED, trace_seconds=0.0), plain)
    n, fps = traced["num_frames"], traced["fps"]
    marked: set[int] = set()
    for e in traced["events"]:
        marked |= {int(i) for i in frames_in(e["end"], e["trace_end"], fps, n)}
    for i in range(0, n, 3):
        same = np.array_equal(with_traces.frame(i), without.frame(i))
        assert same == (i not in marked), i
    for e in traced["events"]:
        last = int(frames_in(e["start"], e["end"], fps, n)[-1])
        after = last + 1  # the first frame of its trace
        event = _signature(e["label"], with_traces.frame(last))
        trace = _signature(e["label"], with_traces.frame(after))
        bare = _signature(e["label"], without.frame(after))  # the same frame with no trace
        margin = 5.0 if e["label"] == "smoke" else 0.002
        assert event > trace + margin, (e, event, trace)  # fainter than the event...
        if e["label"] == "smoke":  # ...and still there: a thin haze
            assert trace > bare + margin, (e, trace, bare)
