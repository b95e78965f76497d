"""The workspace's video: what a browser can play, clips transcoded for it, and frames at full size.

Browsers play H.264, VP8/9 and AV1 in MP4 or WebM; an operating-room recorder's MPEG-TS, an MKV or HEVC video
they do not. For those, ``clip`` transcodes a window (at most ``MAX_CLIP_SECONDS``) to H.264 MP4 with PyAV,
once, into the cache folder; the page asks for the window it needs. Frames come from ``VideoSource`` (the
model's own frame-exact access), so a frame shown here is the frame the model was shown.

Paths come from the database only; nothing here takes a path from a request.
"""

from __future__ import annotations

import hashlib
import io
import threading
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av

from medscope.cache import LRU
from medscope.io import atomic_path
from medscope.video.source import VideoSource

BROWSER_CONTAINERS = (".mp4", ".m4v", ".mov", ".webm")
BROWSER_CODECS = ("h264", "vp8", "vp9", "av1")
MAX_CLIP_SECONDS = 600.0
_CLIP_WIDTH = 1280  # clips wider than this are scaled down (a browser tab, not an archive)


def playable(path: Path) -> bool:
    """Whether a browser's ``<video>`` plays the file as it is (its container and codec)."""
    if path.suffix.lower() not in BROWSER_CONTAINERS:
        return False
    try:
        with av.open(str(path)) as container:
            streams = container.streams.video
            return bool(streams) and streams[0].codec_context.name in BROWSER_CODECS
    except av.error.FFmpegError:
        return False


class Media:
    """Clips and frames of the registered videos, with the cache folder they go to."""

    def __init__(self, cache_dir: Path) -> None:
        self.cache_dir = cache_dir
        self._sources: LRU[Path, VideoSource] = LRU(4)
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def _lock(self, key: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def clip(self, video: Path, start: float, end: float) -> Path:
        """The window [start, end] of ``video`` as H.264 MP4 (transcoded once, then from the cache)."""
        if not end > start:
            raise ValueError(f"clip [{start:g}, {end:g}]: the end must come after the start")
        end = min(end, start + MAX_CLIP_SECONDS)
        stat = video.stat()
        key = hashlib.sha256(f"{video}|{stat.st_size}|{stat.st_mtime_ns}|{start:.3f}|{end:.3f}".encode()).hexdigest()
        out = self.cache_dir / "clips" / f"{key[:24]}.mp4"
        with self._lock(key):  # two requests for one clip transcode it once
            if not out.is_file():
                with atomic_path(out) as tmp:
                    _transcode(video, tmp, start, end)
        return out

    def frame_jpeg(self, video: Path, index: int, *, max_pixels: int | None = None) -> bytes:
        """Frame ``index`` as JPEG (full size unless ``max_pixels``); IndexError when the video has no such frame."""
        with self._lock(f"source:{video}"):  # a VideoSource decodes with one decoder: one request at a time
            source = self._sources.get(video)
            if source is None:
                source = VideoSource(video, cache_bytes=32 * 2**20)
                self._sources.put(video, source)
            if not 0 <= index < source.num_frames:
                raise IndexError(f"frame {index}: the video has frames 0-{source.num_frames - 1}")
            frame = source.frames_at_indices([index], max_pixels=max_pixels)[0]
        buffer = io.BytesIO()
        frame.image.convert("RGB").save(buffer, format="JPEG", quality=90)
        return buffer.getvalue()


def _transcode(video: Path, out: Path, start: float, end: float) -> None:
    with av.open(str(video)) as source, av.open(str(out), mode="w", format="mp4",
                                                  options={"movflags": "+faststart"}) as target:
        stream = source.streams.video[0]
        stream.thread_type = "AUTO"
        rate = Fraction(stream.average_rate or 25).limit_denominator(1001)
        width, height = stream.codec_context.width, stream.codec_context.height
        if width > _CLIP_WIDTH:
            width, height = _CLIP_WIDTH, round(height * _CLIP_WIDTH / width)
        encoder = target.add_stream("libx264", rate=rate, options={"crf": "23", "preset": "veryfast"})
        encoder.width, encoder.height, encoder.pix_fmt = width - width % 2, height - height % 2, "yuv420p"
        count = 0
        for frame in _frames_from(source, stream, start):
            if frame.time is None or frame.time < start - 1e-6:
                continue
            if frame.time >= end:
                break
            image = frame.reformat(width=encoder.width, height=encoder.height, format="yuv420p")
            image.pts, image.time_base = count, Fraction(1, 1) / rate
            target.mux(encoder.encode(image))
            count += 1
        if count == 0:
            raise ValueError(f"{video.name}: no frames in [{start:g}, {end:g}] s")
        target.mux(encoder.encode(None))


def _frames_from(source: av.container.InputContainer, stream: av.VideoStream, start: float) -> Iterator[av.VideoFrame]:
    """Decoded frames from a keyframe at or before ``start``. Some containers (MPEG-TS) land a seek after the
    time asked for, so a seek that lands late is retried from further back."""
    margin = 1.0
    while True:
        target = max(0.0, start - margin)
        if stream.time_base is not None:
            source.seek(int(target / stream.time_base), stream=stream, backward=True)
        frames = source.decode(stream)
        first = next(frames, None)
        if first is None:
            return
        if first.time is None or first.time <= start + 1e-6 or target == 0.0:
            yield first
            yield from frames
            return
        margin *= 4
