"""Random access on hour-long videos: medscope's tools against naive decoding, the one-GOP floor and OpenCV.

Generates (once, cached under benchmarks/cache/) a 1-hour 1280x720 H.264 video with a keyframe every 10 s
and a default-size SynthClin video, then measures in one run:

- medscope ``get_frame`` at random times, cold (cache miss) and repeated (cache hit);
- medscope ``crop_video``: 8 frames over 60 s, 32 frames over 10 min;
- the physical floor: seek to the keyframe and decode exactly one GOP;
- naive decoding from the start up to the 45-minute mark;
- OpenCV's ``CAP_PROP_POS_MSEC`` seek (when opencv-python-headless is installed), with its frame accuracy.

Prints a table and writes JSON with medians and the ratios medscope/floor and naive/medscope.
Run: ``python benchmarks/video_access.py [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import numpy as np

from medscope.io import atomic_path, write_text_atomic
from medscope.video.framecode import draw_frame_code, read_frame_code
from medscope.video.source import VideoSource
from medscope.video.synthclin import SynthClinConfig, generate
from medscope.video.tools import Observation, ToolConfig, VideoTools

HERE = Path(__file__).parent


def make_hd_video(path: Path, *, minutes: float, fps: int, keyframe_seconds: float) -> Path:
    """A textured 1280x720 video that scrolls (so every frame differs) with a frame-index code."""
    if path.exists():
        return path
    width, height = 1280, 720
    rng = np.random.default_rng(0)
    from PIL import Image

    noise = rng.integers(0, 256, (height // 8, width // 4, 3), dtype=np.uint8)
    texture = np.asarray(Image.fromarray(noise).resize((width * 2, height), Image.Resampling.BILINEAR))
    with atomic_path(path) as tmp, av.open(str(tmp), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        gop = str(int(fps * keyframe_seconds))
        stream.options = {"preset": "ultrafast", "crf": "23", "g": gop, "keyint_min": gop, "sc_threshold": "0"}
        for i in range(int(minutes * 60 * fps)):
            offset = (i * 2) % width
            frame = np.ascontiguousarray(texture[:, offset : offset + width])
            draw_frame_code(frame, i)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def one_gop_floor(path: Path, source: VideoSource, t: float) -> float:
    """Seconds to seek to the keyframe before ``t`` and decode its whole GOP, nothing more (no conversion)."""
    key = source.keyframe_at_or_before(source.index_at(t))
    keys = list(source.keyframe_indices)
    pos = keys.index(key)
    end = keys[pos + 1] if pos + 1 < len(keys) else source.num_frames
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        start_pts = round(source.frame_times[key] / float(stream.time_base))
        started = time.perf_counter()
        container.seek(start_pts, stream=stream, backward=True, any_frame=False)
        for count, _ in enumerate(container.decode(stream), start=1):
            if count >= end - key:
                break
        return time.perf_counter() - started


def naive_decode(path: Path, t: float) -> float:
    """Seconds to decode sequentially from the first frame until the frame at ``t``."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        started = time.perf_counter()
        for frame in container.decode(stream):
            if frame.time is not None and frame.time >= t:
                break
        return time.perf_counter() - started


def opencv_seek(path: Path, source: VideoSource, times: list[float]) -> dict[str, Any] | None:
    try:
        import cv2
    except ImportError:
        return None
    cap = cv2.VideoCapture(str(path))
    durations, exact = [], 0
    for t in times:
        started = time.perf_counter()
        cap.set(cv2.CAP_PROP_POS_MSEC, t * 1000.0)
        ok, bgr = cap.read()
        durations.append(time.perf_counter() - started)
        if ok and read_frame_code(np.ascontiguousarray(bgr[:, :, ::-1])) == source.index_at(t):
            exact += 1
    cap.release()
    return {"median_s": statistics.median(durations), "exact_fraction": exact / len(times)}


def bench_video(path: Path, *, samples: int, naive_at: float, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    with VideoSource(path) as probe:
        duration = probe.duration_seconds
    times = [rng.uniform(0, duration) for _ in range(samples)]
    open_s, source = timed(lambda: VideoSource(path))
    unlimited = 10**9  # the benchmark is not an episode: no frame budget
    tools = VideoTools(source, ToolConfig(max_frames=unlimited))
    tools32 = VideoTools(source, ToolConfig(max_frames=unlimited, crop_frames=32))
    cold, exact = [], 0
    for t in times:
        seconds, obs = timed(lambda t=t: tools.get_frame(t))
        assert isinstance(obs, Observation)
        cold.append(seconds)
        exact += read_frame_code(obs.frames[1].image) == source.index_at(t)
    warm = [timed(lambda t=t: tools.get_frame(t))[0] for t in times]
    floor = [one_gop_floor(path, source, t) for t in times]
    crop_short, crop_long = [], []
    for t in times[: max(3, samples // 4)]:
        for seconds, n_tools, out in ((60.0, tools, crop_short), (600.0, tools32, crop_long)):
            start = max(0.0, min(t, duration - seconds))
            source.clear_cache()  # cold crops
            elapsed, obs = timed(lambda s=start, w=seconds, k=n_tools: k.crop_video(s, s + w))
            assert isinstance(obs, Observation), obs
            out.append(elapsed)
    source.clear_cache()
    medscope_at = timed(lambda: tools.get_frame(naive_at))[0]
    naive = naive_decode(path, naive_at)
    result = {
        "video": {"path": str(path), "duration_s": duration, "fps": source.fps, "frames": source.num_frames,
                  "size": f"{source.width}x{source.height}",
                  "gop_frames": int(np.median(np.diff(source.keyframe_indices)))},
        "open_and_index_s": open_s,
        "get_frame_cold_median_s": statistics.median(cold),
        "get_frame_cold_exact_fraction": exact / samples,
        "get_frame_cached_median_s": statistics.median(warm),
        "one_gop_floor_median_s": statistics.median(floor),
        "crop_8_over_60s_median_s": statistics.median(crop_short),
        "crop_32_over_600s_median_s": statistics.median(crop_long),
        "naive_at_s": naive_at,
        "naive_decode_s": naive,
        "get_frame_at_naive_point_s": medscope_at,
        "opencv": opencv_seek(path, source, times),
    }
    source.close()
    result["ratio_cold_over_floor"] = result["get_frame_cold_median_s"] / result["one_gop_floor_median_s"]
    result["ratio_naive_over_medscope"] = naive / medscope_at
    result["ratio_cold_over_cached"] = result["get_frame_cold_median_s"] / result["get_frame_cached_median_s"]
    return result


def print_table(results: dict[str, Any]) -> None:
    rows = [
        ("open + index (once)", "open_and_index_s"),
        ("get_frame, cold (3 frames)", "get_frame_cold_median_s"),
        ("get_frame, cached", "get_frame_cached_median_s"),
        ("one-GOP decode (floor)", "one_gop_floor_median_s"),
        ("crop_video 8 over 60 s", "crop_8_over_60s_median_s"),
        ("crop_video 32 over 10 min", "crop_32_over_600s_median_s"),
        ("get_frame at naive point", "get_frame_at_naive_point_s"),
        ("naive decode to that point", "naive_decode_s"),
    ]
    names = list(results["videos"])
    print(f"| measure (median, ms) | {' | '.join(names)} |")
    print("|---|" + "---|" * len(names))
    for label, key in rows:
        print(f"| {label} | " + " | ".join(f"{results['videos'][n][key] * 1000:.2f}" for n in names) + " |")
    opencv = [results["videos"][n]["opencv"] for n in names]
    print("| OpenCV POS_MSEC seek | " + " | ".join(
        f"{o['median_s'] * 1000:.2f} ({o['exact_fraction']:.0%} exact)" if o else "n/a" for o in opencv) + " |")
    print("| medscope exact | " + " | ".join(
        f"{results['videos'][n]['get_frame_cold_exact_fraction']:.0%}" for n in names) + " |")
    for label, key in [("cold / floor", "ratio_cold_over_floor"), ("naive / medscope", "ratio_naive_over_medscope"),
                       ("cold / cached", "ratio_cold_over_cached")]:
        print(f"| ratio {label} | " + " | ".join(f"{results['videos'][n][key]:.2f}x" for n in names) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(HERE / "results"), help="folder for video_access.json")
    parser.add_argument("--cache", default=str(HERE / "cache"), help="folder for the generated videos")
    parser.add_argument("--minutes", type=float, default=60.0, help="length of both videos")
    parser.add_argument("--fps", type=int, default=25, help="frame rate of the 720p video")
    parser.add_argument("--samples", type=int, default=30, help="random times per measure")
    parser.add_argument("--quick", action="store_true", help="5-minute videos, 10 samples (a smoke run)")
    args = parser.parse_args()
    minutes, samples = (5.0, 10) if args.quick else (args.minutes, args.samples)
    cache = Path(args.cache)
    naive_at = minutes * 60 * 0.75  # the 45-minute mark of an hour
    print(f"generating/reusing videos in {cache} ...", flush=True)
    hd = make_hd_video(cache / f"hd720_{minutes:g}m_{args.fps}fps_gop10s.mp4", minutes=minutes, fps=args.fps,
                       keyframe_seconds=10.0)
    synth = generate(SynthClinConfig(duration_seconds=minutes * 60), cache, name=f"synthclin_{minutes:g}m").video_path
    results: dict[str, Any] = {
        "machine": {"cpu_count": __import__("os").cpu_count(), "platform": platform.platform(),
                    "pyav": av.__version__},
        "videos": {
            "1280x720 H.264": bench_video(hd, samples=samples, naive_at=naive_at, seed=0),
            "SynthClin 320x240": bench_video(synth, samples=samples, naive_at=naive_at, seed=0),
        },
    }
    print_table(results)
    out = write_text_atomic(Path(args.out) / "video_access.json", json.dumps(results, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
