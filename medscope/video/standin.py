"""Stand-in videos: small placeholder files of a given duration, in the container the name asks for.

A suite build on a dataset's official annotation files needs a video per annotation (durations are checked
against it). Stand-ins let that build, its funnel and its notes be tried before hours of video are
downloaded, and let tests exercise real containers (``.mp4``, ``.mkv``, ``.webm``, ``.ts``) without data.
Each frame is a flat grey whose level follows the frame number, so neighbouring frames differ.
"""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from medscope.io import atomic_path

_FORMATS = {".mp4": ("mp4", "libx264"), ".m4v": ("mp4", "libx264"), ".mov": ("mov", "libx264"),
            ".mkv": ("matroska", "libx264"), ".webm": ("webm", "libvpx"), ".ts": ("mpegts", "libx264"),
            ".avi": ("avi", "mpeg4")}


def write_standin(path: str | Path, seconds: float, *, fps: float = 1.0, size: tuple[int, int] = (32, 32)) -> Path:
    """Encode ``ceil(seconds * fps)`` frames at ``fps`` into ``path`` (its suffix picks the container); the
    file's duration is ``seconds`` rounded up to whole frames. Written atomically."""
    path = Path(path)
    if path.suffix.lower() not in _FORMATS:
        raise ValueError(f"{path}: stand-in videos are written as {', '.join(sorted(_FORMATS))}")
    if not (math.isfinite(seconds) and seconds > 0 and fps > 0):
        raise ValueError(f"{path}: need seconds > 0 and fps > 0, got {seconds!r} s at {fps!r} fps")
    container_format, codec = _FORMATS[path.suffix.lower()]
    frames = max(1, math.ceil(seconds * fps - 1e-9))
    width, height = size
    with atomic_path(path) as tmp, av.open(str(tmp), mode="w", format=container_format) as container:
        stream: av.VideoStream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))  # type: ignore[assignment]
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            image = np.full((height, width, 3), 16 + (i * 37) % 224, dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i  # the stream's time base is 1 / fps
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path
