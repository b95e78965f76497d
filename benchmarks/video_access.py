"""The tool job on long videos: medscope against decord, OpenCV, the decode floor and naive decoding.

Videos (generated once, cached under ``--cache``): 1280x720 H.264 at 25 fps with B-frames (x264 ``veryfast``,
3 B-frames, as a camera or an operating-room recorder writes) at two keyframe spacings, 2 s and 10 s, and a
default SynthClin video (320x240, 4 fps). Each frame carries its index as a pixel code, so every variant's
frame accuracy is checked, not assumed.

For each target time t the *tool job* is what one episode asks around it: ``get_frame(t)`` (the 3 frames around
t) and ``crop_video(t - 30, t + 30)`` (8 frames), from a cold decoder and an empty frame cache. The variants run
interleaved, target by target in rotating order, so drift in the machine's load hits them alike:

- ``medscope``: the tools as an episode runs them (keyframe snapping on: a crop may take a keyframe within a
  quarter sampling gap of a sample point, labelled with its real time);
- ``medscope, no snapping``: exactly the frames every other variant fetches;
- ``decord``: ``VideoReader.get_batch`` of the same frame indices (when decord is installed);
- ``OpenCV``: ``CAP_PROP_POS_FRAMES`` then ``read`` per frame (when opencv-python-headless is installed);
- ``floor``: the least decoding that reaches the frames: one seek per GOP that holds any, decode up to the
  last one wanted there, nothing more (PyAV, no colour conversion, no resizing);
- ``naive``: decode sequentially from the start to t, at targets in the first minutes and around the time
  where it stops being cheaper (the break-even time it reports).

Times are medians over the targets, per video; ratios are against ``medscope`` from the same run. Opening and
indexing are measured apart (once per video and tool). medscope resizes frames during conversion (≤224² for
crops, ≤448² for get_frame) where decord and OpenCV return full frames. Writes ``video_access.json``.
Run: ``python benchmarks/video_access.py [--minutes 60] [--targets 20] [--quick]``.
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
from medscope.video.tools import ToolConfig, VideoTools

HERE = Path(__file__).parent
UNLIMITED = ToolConfig(max_frames=10**9)  # a benchmark is not an episode: no frame budget


def make_camera_video(path: Path, *, minutes: float, fps: int, keyframe_seconds: float) -> Path:
    """A textured 1280x720 video that scrolls (every frame differs), with B-frames and a frame-index code."""
    if path.exists():
        return path
    width, height = 1280, 720
    rng = np.random.default_rng(0)
    from PIL import Image

    noise = rng.integers(0, 256, (height // 8, width // 4, 3), dtype=np.uint8)
    texture = np.asarray(Image.fromarray(noise).resize((width * 2, height), Image.Resampling.BILINEAR))
    gop = str(int(fps * keyframe_seconds))
    with atomic_path(path) as tmp, av.open(str(tmp), "w", format="mp4") as container:
        stream: av.VideoStream = container.add_stream("libx264", rate=fps)  # type: ignore[assignment]
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "23", "g": gop, "keyint_min": gop, "sc_threshold": "0",
                          "bf": "3"}
        for i in range(int(minutes * 60 * fps)):
            offset = (i * 2) % width
            frame = np.ascontiguousarray(texture[:, offset : offset + width])
            draw_frame_code(frame, i)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))
    return path


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def job_indices(source: VideoSource, t: float) -> list[int]:
    """The frames of the tool job at ``t`` without snapping: get_frame's 3 and crop_video's 8 (sorted, unique)."""
    centre = source.index_at(t)
    frame = [max(0, min(source.num_frames - 1, centre + d)) for d in (-1, 0, 1)]
    start, end = max(0.0, t - 30.0), min(source.duration_seconds, t + 30.0)
    crop = VideoTools(source, ToolConfig(max_frames=10**9, snap_to_keyframes=False))._sample(start, end, 8)
    return sorted(set(frame + crop))


class Variants:
    """Each way of doing the tool job, opened once per video."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.open_s: dict[str, float] = {}
        self.open_s["medscope"], self.source = timed(lambda: VideoSource(path))
        self.snap = VideoTools(self.source, UNLIMITED)
        self.exact = VideoTools(self.source, ToolConfig(max_frames=10**9, snap_to_keyframes=False))
        self.decord = self._decord()
        self.opencv = self._opencv()

    def _decord(self) -> Any:
        try:
            from decord import VideoReader, cpu
        except ImportError:
            return None
        seconds, reader = timed(lambda: VideoReader(str(self.path), ctx=cpu(0)))
        self.open_s["decord"] = seconds
        return reader

    def _opencv(self) -> Any:
        try:
            import cv2
        except ImportError:
            return None
        seconds, capture = timed(lambda: cv2.VideoCapture(str(self.path)))
        self.open_s["OpenCV"] = seconds
        return capture

    def medscope(self, t: float, snapping: bool) -> list[int]:
        self.source.clear_cache()  # cold: no cached frame, no open decoder
        tools = self.snap if snapping else self.exact
        start, end = max(0.0, t - 30.0), min(self.source.duration_seconds, t + 30.0)
        crop = tools.crop_video(start, end)
        frame = tools.get_frame(t)
        return [f.index for obs in (crop, frame) for f in obs.frames]  # type: ignore[union-attr]

    def run_decord(self, indices: list[int]) -> list[int]:
        batch = self.decord.get_batch(indices).asnumpy()
        return [read_frame_code(np.ascontiguousarray(image)) for image in batch]

    def run_opencv(self, indices: list[int]) -> list[int]:
        import cv2

        codes = []
        for index in indices:
            self.opencv.set(cv2.CAP_PROP_POS_FRAMES, index)
            ok, bgr = self.opencv.read()
            codes.append(read_frame_code(np.ascontiguousarray(bgr[:, :, ::-1])) if ok else -1)
        return codes

    def floor(self, indices: list[int]) -> None:
        """The least decoding that reaches these frames: one seek per GOP that holds any, then decode up to the last
        one wanted there (no colour conversion, no resizing)."""
        by_gop: dict[int, int] = {}
        for index in indices:
            key = self.source.keyframe_at_or_before(index)
            by_gop[key] = max(by_gop.get(key, key), index)
        with av.open(str(self.path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "SLICE"
            for key, last in sorted(by_gop.items()):
                container.seek(self.source.stamp(key), stream=stream, backward=True, any_frame=False)  # MP4: by PTS
                wanted = self.source.stamp(last)
                for frame in container.decode(stream):
                    if frame.pts is not None and frame.pts >= wanted:
                        break

    def naive(self, t: float) -> float:
        with av.open(str(self.path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "SLICE"
            started = time.perf_counter()
            for frame in container.decode(stream):
                if frame.time is not None and frame.time >= t:
                    break
            return time.perf_counter() - started

    def close(self) -> None:
        self.source.close()
        if self.opencv is not None:
            self.opencv.release()


def bench_video(path: Path, *, targets: int, seed: int) -> dict[str, Any]:
    variants = Variants(path)
    source = variants.source
    rng = random.Random(seed)
    duration = source.duration_seconds
    times = [rng.uniform(30.0, duration - 30.0) for _ in range(targets)]
    names = ["medscope", "medscope, no snapping", "floor"]
    names += ["decord"] if variants.decord is not None else []
    names += ["OpenCV"] if variants.opencv is not None else []
    seconds: dict[str, list[float]] = {name: [] for name in names}
    exact: dict[str, int] = {name: 0 for name in names}
    for k, t in enumerate(times):
        wanted = job_indices(source, t)
        order = names[k % len(names):] + names[: k % len(names)]  # rotate who goes first
        for name in order:
            if name == "medscope":
                elapsed, got = timed(lambda t=t: variants.medscope(t, snapping=True))
                exact[name] += 1  # snapped frames differ from `wanted` by design; their labels are their real times
            elif name == "medscope, no snapping":
                elapsed, got = timed(lambda t=t: variants.medscope(t, snapping=False))
                exact[name] += sorted(set(got)) == wanted
            elif name == "floor":
                elapsed, _ = timed(lambda w=wanted: variants.floor(w))
                exact[name] += 1
            elif name == "decord":
                elapsed, got = timed(lambda w=wanted: variants.run_decord(w))
                exact[name] += got == wanted
            else:
                elapsed, got = timed(lambda w=wanted: variants.run_opencv(w))
                exact[name] += got == wanted
            seconds[name].append(elapsed)
    job = statistics.median(seconds["medscope"])
    # Naive decoding: cheap near the start; where does it stop being cheaper than the tool job?
    early = [t for t in (5.0, 30.0, 60.0, 120.0, 300.0) if t < duration]
    naive = {f"{t:g}": variants.naive(t) for t in early}
    rate = naive[f"{early[-1]:g}"] / early[-1]  # seconds of sequential decoding per second of video
    break_even = job / rate if rate > 0 else None
    if break_even is not None and break_even < duration:
        naive[f"{break_even:.0f} (break-even)"] = variants.naive(break_even)
    variants.close()
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    return {
        "video": {"path": path.name, "duration_s": duration, "fps": source.fps, "frames": source.num_frames,
                  "size": f"{source.width}x{source.height}",
                  "gop_frames": int(np.median(np.diff(source.keyframe_indices)))},
        "targets": len(times), "open_s": variants.open_s, "job_median_s": medians,
        "frame_exact": {name: exact[name] / len(times) for name in names},
        "ratio_to_medscope": {name: medians[name] / job for name in names},
        "naive_decode_s": naive, "break_even_s": break_even,
        "index_bytes_per_frame": source.index_bytes() / source.num_frames,
    }


def print_table(results: dict[str, Any]) -> None:
    videos = results["videos"]
    names = list(videos)
    variants = list(next(iter(videos.values()))["job_median_s"])
    print(f"| tool job (get_frame + crop_video), median ms | {' | '.join(names)} |")
    print("|---|" + "---|" * len(names))
    for variant in variants:
        cells = []
        for n in names:
            v = videos[n]
            if variant in v["job_median_s"]:
                ms = v["job_median_s"][variant] * 1000
                cells.append(f"{ms:.1f} ({v['ratio_to_medscope'][variant]:.2f}×, "
                             f"{v['frame_exact'][variant]:.0%} exact)")
            else:
                cells.append("n/a")
        print(f"| {variant} | " + " | ".join(cells) + " |")
    for label, fn in [
        ("open + index, ms", lambda v: ", ".join(f"{k} {s * 1000:.0f}" for k, s in v["open_s"].items())),
        ("naive decode to t, ms",
         lambda v: ", ".join(f"{k} s: {s * 1000:.0f}" for k, s in v["naive_decode_s"].items())),
        ("index bytes per frame", lambda v: f"{v['index_bytes_per_frame']:.0f}"),
    ]:
        print(f"| {label} | " + " | ".join(fn(videos[n]) for n in names) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(HERE / "results"), help="folder for video_access.json")
    parser.add_argument("--cache", default=str(HERE / "cache"), help="folder for the generated videos")
    parser.add_argument("--minutes", type=float, default=60.0, help="length of the videos")
    parser.add_argument("--targets", type=int, default=20, help="target times per video")
    parser.add_argument("--quick", action="store_true", help="3-minute videos, 6 targets (a smoke run)")
    args = parser.parse_args()
    minutes, targets = (3.0, 6) if args.quick else (args.minutes, args.targets)
    cache = Path(args.cache)
    print(f"generating/reusing videos in {cache} ...", flush=True)
    videos = {
        f"720p B-frames, keyframe every {k:g} s": make_camera_video(
            cache / f"camera720_{minutes:g}m_25fps_gop{k:g}s.mp4", minutes=minutes, fps=25, keyframe_seconds=k)
        for k in (2.0, 10.0)
    }
    videos["SynthClin 320x240"] = generate(SynthClinConfig(duration_seconds=minutes * 60), cache,
                                           name=f"synthclin_{minutes:g}m").video_path
    results: dict[str, Any] = {
        "machine": {"cpu_count": __import__("os").cpu_count(), "platform": platform.platform(),
                    "pyav": av.__version__},
        "videos": {name: bench_video(path, targets=targets, seed=0) for name, path in videos.items()},
    }
    print_table(results)
    out = write_text_atomic(Path(args.out) / "video_access.json", json.dumps(results, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
