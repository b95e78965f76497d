"""Frame-exact random access to a video file through PyAV.

``VideoSource`` opens a file once, indexes every packet's presentation timestamp and keyframe flag by
demuxing (no decoding), and then serves "the frame whose presentation time is nearest t" by seeking to the
keyframe at or before that frame and decoding forward. Requests are sorted so that several frames in one
GOP cost one decode, the open decoder is reused when the next request lies ahead in the same GOP (or is the
keyframe right after it), and an LRU cache keeps the resized images of recent frames.

Times are seconds from the first frame of the video stream. This module knows nothing of tools, budgets
or models; ``medscope.video.tools`` builds those on top.
"""

from __future__ import annotations

import math
import stat
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import VideoReformatter
from PIL import Image

from medscope.video.errors import CorruptVideoError, NotAVideoError, NoVideoStreamError, VideoNotFoundError


@dataclass(frozen=True)
class Frame:
    """One decoded frame: its position in presentation order, its real timestamp and its pixels."""

    index: int
    pts_seconds: float
    image: Image.Image


def fit_size(width: int, height: int, max_pixels: int | None) -> tuple[int, int]:
    """Largest size with the frame's aspect ratio and at most ``max_pixels`` pixels (never upscales)."""
    if max_pixels is None or width * height <= max_pixels:
        return width, height
    if max_pixels < 1:
        raise ValueError(f"max_pixels must be >= 1, got {max_pixels}")
    scale = math.sqrt(max_pixels / (width * height))
    return max(1, int(width * scale)), max(1, int(height * scale))


class FrameCache:
    """LRU of resized frame images keyed by (file, frame index, width, height), bounded in bytes.

    Each ``VideoSource`` keeps one of its own unless given one: an evaluation shares one among the episodes it runs
    (concurrently, hence the lock), so the questions about one video decode its overview or uniform frames once."""

    def __init__(self, max_bytes: int = 256 * 2**20) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple[str, int, int, int], Image.Image] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self._files: dict[str, threading.Lock] = {}

    def file_lock(self, file: str) -> threading.Lock:
        """Held while a source decodes what it missed from ``file``: episodes about one video start together,
        and without it each would decode the frames the other is decoding."""
        with self._lock:
            return self._files.setdefault(file, threading.Lock())

    def get(self, key: tuple[str, int, int, int]) -> Image.Image | None:
        with self._lock:
            image = self._items.get(key)
            if image is not None:
                self._items.move_to_end(key)
            return image

    def put(self, key: tuple[str, int, int, int], image: Image.Image) -> None:
        size = key[2] * key[3] * 3
        with self._lock:
            if size > self.max_bytes or key in self._items:
                return
            self._items[key] = image
            self._bytes += size
            while self._bytes > self.max_bytes:
                (_, _, w, h), _ = self._items.popitem(last=False)
                self._bytes -= w * h * 3


class VideoSource:
    """A video file opened for frame-exact random access.

    Raises ``VideoNotFoundError``, ``NotAVideoError``, ``NoVideoStreamError`` or ``CorruptVideoError``
    (all ``VideoError``) when the file cannot serve; the message names the file and what to do.
    """

    def __init__(self, path: str | Path, *, cache_bytes: int = 256 * 2**20, threads: int = 0,
                 cache: FrameCache | None = None) -> None:
        """``cache``: a ``FrameCache`` shared with other sources (then ``cache_bytes`` is unused)."""
        self.path = Path(path)
        _check_regular_file(self.path)
        try:
            self._container = av.open(str(self.path), mode="r")
        except av.error.FFmpegError as exc:  # InvalidDataError for text, truncated or unknown files
            raise NotAVideoError(f"{self.path}: FFmpeg cannot read this file as a video ({exc}).") from exc
        if not self._container.streams.video:
            self._container.close()
            raise NoVideoStreamError(f"{self.path}: the file has no video stream (audio or data only).")
        self._stream = self._container.streams.video[0]
        self._stream.thread_count = threads
        # Frame threading delays the first decoded frame after every seek by one frame per thread; random
        # access decodes short runs, so slice threading is faster here (benchmarks/video_access.py).
        self._stream.thread_type = "SLICE"
        self._time_base = self._stream.time_base or Fraction(1, 1)
        try:
            self._build_index()
        except BaseException:
            self._container.close()
            raise
        self._cache = cache if cache is not None else FrameCache(cache_bytes)
        self._key = str(self.path.resolve())  # the file, in a cache other sources share
        self._decoder: Iterator[av.VideoFrame] | None = None
        self._pending: av.VideoFrame | None = None  # a frame decoded but not yet walked past
        self._seek_by = ("pts", "dts")  # which timestamp this container's seeks land with, first
        self._position = -1  # index of the last frame the open decoder produced; -1: must seek
        # One reformatter for the file keeps its scaler: ``VideoFrame.to_image`` builds one per frame, three quarters
        # of a decoded 320x240 frame's time, for the same pixels (tests/test_video_source.py).
        self._reformatter = VideoReformatter()

    # ---- metadata -------------------------------------------------------------------------------------------
    def _build_index(self) -> None:
        pts: list[int] = []
        key_pts: list[int] = []
        key_dts: dict[int, int] = {}  # keyframe pts -> its decode timestamp, what demuxers such as MPEG-TS seek by
        try:
            for packet in self._container.demux(self._stream):
                if packet.size == 0:  # the demuxer's end-of-stream marker
                    continue
                stamp = packet.pts if packet.pts is not None else packet.dts
                if stamp is None:
                    raise CorruptVideoError(
                        f"{self.path}: video packets carry no timestamps; remux it first "
                        "(e.g. `ffmpeg -i in -c copy out.mp4`)."
                    )
                pts.append(stamp)
                if packet.is_keyframe:
                    key_pts.append(stamp)
                    key_dts[stamp] = packet.dts if packet.dts is not None else stamp
        except av.error.FFmpegError as exc:
            raise CorruptVideoError(f"{self.path}: unreadable packets while indexing ({exc}).") from exc
        if not pts:
            raise CorruptVideoError(f"{self.path}: the video stream holds no frames.")
        if not key_pts:
            raise CorruptVideoError(f"{self.path}: no keyframe found; the stream cannot be decoded from any point.")
        # The index is numpy arrays, not Python objects: 16 bytes a frame, its pts and time (a dict took ~200).
        self._pts = np.unique(np.asarray(pts, dtype=np.int64))  # presentation order; a frame's index is its position
        unique_keys = np.unique(np.asarray(key_pts, dtype=np.int64))
        self._key_indices = np.searchsorted(self._pts, unique_keys)
        self._key_seek = np.asarray([key_dts[int(p)] for p in unique_keys], dtype=np.int64)
        self.frame_times = (self._pts - self._pts[0]).astype(np.float64) * float(self._time_base)
        rate = self._stream.average_rate or self._stream.guessed_rate
        if rate:
            self.fps = float(rate)
        elif len(self.frame_times) > 1:
            self.fps = (len(self.frame_times) - 1) / float(self.frame_times[-1])
        else:
            self.fps = 1.0
        self.duration_seconds = float(self.frame_times[-1]) + 1.0 / self.fps
        self._check_complete(len(pts))
        self.width = int(self._stream.codec_context.width)
        self.height = int(self._stream.codec_context.height)
        self.codec = str(self._stream.codec_context.name)

    def _check_complete(self, packets: int) -> None:
        """A file cut short (an interrupted copy) whose header still declares the whole video would open at half
        length and fail mid-episode; the header's duration and frame count against the packets present say so."""
        declared = float(self._stream.duration * self._time_base) if self._stream.duration else None
        frames = self._stream.frames or None
        short_time = declared is not None and self.duration_seconds < 0.9 * declared - 1.0
        short_frames = frames is not None and packets < 0.9 * frames - 1
        if short_time or short_frames:
            said = f"{declared:.1f} s" if declared is not None else f"{frames} frames"
            raise NotAVideoError(
                f"{self.path}: the file is truncated: its header declares {said} but only "
                f"{self.duration_seconds:.1f} s ({packets} frames) are in it (an interrupted copy or download?). "
                "Copy it again, or keep the readable part with `ffmpeg -i in -c copy out.mp4`.")

    @property
    def num_frames(self) -> int:
        return len(self._pts)

    @property
    def keyframe_indices(self) -> np.ndarray:
        return self._key_indices

    def index_at(self, seconds: float) -> int:
        """Index of the frame whose presentation time is nearest ``seconds`` (ties go to the earlier frame)."""
        right = int(np.searchsorted(self.frame_times, seconds))
        if right == 0:
            return 0
        if right >= self.num_frames:
            return self.num_frames - 1
        left = right - 1
        return left if seconds - self.frame_times[left] <= self.frame_times[right] - seconds else right

    def keyframe_at_or_before(self, index: int) -> int:
        """Index of the keyframe a decoder must start from to reach frame ``index``."""
        pos = int(np.searchsorted(self._key_indices, index, side="right")) - 1
        return int(self._key_indices[max(pos, 0)])

    def nearest_keyframe(self, seconds: float) -> int:
        """Index of the keyframe whose time is nearest ``seconds`` (cheap to decode: no frames before it)."""
        times = self.frame_times[self._key_indices]
        return int(self._key_indices[int(np.argmin(np.abs(times - seconds)))])

    # ---- frames ---------------------------------------------------------------------------------------------
    def frames_at(self, times: Sequence[float], *, max_pixels: int | None = None) -> list[Frame]:
        """The nearest frame to each time, in the order asked (duplicates allowed)."""
        return self.frames_at_indices([self.index_at(t) for t in times], max_pixels=max_pixels)

    def frames_at_indices(self, indices: Sequence[int], *, max_pixels: int | None = None) -> list[Frame]:
        """Frames by presentation index, resized to fit ``max_pixels``, in the order asked."""
        for index in indices:
            if not 0 <= index < self.num_frames:
                raise IndexError(f"frame index {index} out of range [0, {self.num_frames - 1}]")
        size = fit_size(self.width, self.height, max_pixels)
        images: dict[int, Image.Image] = {}
        with self._cache.file_lock(self._key):
            missing = []
            for index in sorted(set(indices)):
                cached = self._cache.get((self._key, index, *size))
                if cached is None:
                    missing.append(index)
                else:
                    images[index] = cached
            for index, image in self._decode(missing, size):
                self._cache.put((self._key, index, *size), image)
                images[index] = image
        return [Frame(i, float(self.frame_times[i]), images[i]) for i in indices]

    def _decode(self, indices: list[int], size: tuple[int, int]) -> Iterator[tuple[int, Image.Image]]:
        """Decode the sorted ``indices``, seeking only when the open decoder cannot reach a target sooner."""
        for target in indices:
            keyframe = self.keyframe_at_or_before(target)
            # The open decoder reaches the target without a seek when it stands at or after the frame before the
            # target's keyframe: in an all-intra stream (every frame a keyframe) a sequential read seeks never.
            if not (keyframe - 1 <= self._position < target and self._decoder is not None):
                keyframe = self._seek_before(target, keyframe)
            assert self._decoder is not None
            budget = target - keyframe + 64  # bound the walk so a broken stream can never spin forever
            while self._position < target:
                frame = self._next_frame()
                budget -= 1
                if budget < 0:
                    raise CorruptVideoError(f"{self.path}: frame {target} not reached after its keyframe.")
                if self._position == target:
                    width, height = size
                    rgb = self._reformatter.reformat(frame, width=width, height=height, format="rgb24")
                    yield target, _upright(rgb.to_image(), frame.rotation)
            if self._position != target:  # the decoder jumped past it: the frame cannot be decoded
                self._decoder = None
                raise CorruptVideoError(f"{self.path}: frame {target} ({self.frame_times[target]:.3f}s) is missing.")

    def _seek_before(self, target: int, keyframe: int) -> int:
        """Seek so that decoding starts at or before ``target``; returns the frame decoding starts from.

        Demuxers disagree on what a seek timestamp means: MP4 and Matroska find the keyframe by presentation time
        (and, with B-frames, land a GOP early when given its decode time); MPEG-TS finds it by decode time (and
        lands a GOP late when given its presentation time). The keyframe is sought by one, then the other; the
        one that lands is tried first from then on. Should neither land at or before the target, the keyframes
        before it are tried, then the start of the stream."""
        candidates = [int(k) for k in self._key_indices if k <= keyframe][::-1][:3]
        attempts = [(start, by) for start in candidates for by in self._seek_by] + [(-1, "pts")]
        for start, by in attempts:
            self._seek(start, by)
            frame = self._next_frame()
            if self._position <= target:
                landed = self._position
                self._pending, self._position = frame, -1  # the walk to the target starts with this frame
                if start == keyframe and by != self._seek_by[0]:
                    self._seek_by = (by, self._seek_by[0])
                return landed
        raise CorruptVideoError(f"{self.path}: no seek reaches frame {target} ({self.frame_times[target]:.3f}s).")

    def _seek(self, keyframe: int, by: str) -> None:
        """Position the demuxer at ``keyframe`` (-1: the start of the stream), sought by its ``pts`` or ``dts``,
        and open a decoder there."""
        if keyframe < 0:
            stamp = int(self._pts[0])
        else:
            stamp = self.stamp(keyframe) if by == "pts" else self.seek_stamp(keyframe)
        try:
            self._container.seek(stamp, stream=self._stream, backward=True, any_frame=False)
        except av.error.FFmpegError as exc:
            raise CorruptVideoError(f"{self.path}: seek to {self.frame_times[max(keyframe, 0)]:.3f}s failed "
                                    f"({exc}).") from exc
        self._decoder = self._container.decode(self._stream)
        self._pending = None
        self._position = -1

    def _next_frame(self) -> av.VideoFrame:
        assert self._decoder is not None
        if self._pending is not None:  # decoded by _seek_before to check where the seek landed
            frame, self._pending = self._pending, None
        else:
            try:
                frame = next(self._decoder)
            except StopIteration:
                self._decoder = None
                raise CorruptVideoError(f"{self.path}: the stream ended before the requested frame.") from None
            except av.error.FFmpegError as exc:
                self._decoder = None
                raise CorruptVideoError(f"{self.path}: decoding failed ({exc}).") from exc
        stamp = frame.pts if frame.pts is not None else frame.dts
        index = self._index_of(int(stamp)) if stamp is not None else None
        if index is None:
            self._decoder = None
            raise CorruptVideoError(f"{self.path}: decoded a frame with an unknown timestamp {stamp}.")
        self._position = index
        return frame

    def clear_cache(self) -> None:
        """Forget cached frames and close the open decoder: the next request starts cold, as an episode's first
        does (benchmarks use it). A shared cache stays as it is for the other sources; this one takes a new one."""
        self._cache = FrameCache(self._cache.max_bytes)
        self._decoder, self._pending, self._position = None, None, -1

    def seek_stamp(self, keyframe: int) -> int:
        """The decode timestamp of the keyframe at index ``keyframe`` (what MPEG-TS seeks by)."""
        return int(self._key_seek[int(np.searchsorted(self._key_indices, keyframe))])

    def stamp(self, index: int) -> int:
        """The presentation timestamp (in the stream's time base) of the frame at ``index``."""
        return int(self._pts[index])

    def index_bytes(self) -> int:
        """Memory the packet index holds."""
        return int(self._pts.nbytes + self._key_indices.nbytes + self._key_seek.nbytes + self.frame_times.nbytes)

    def _index_of(self, stamp: int) -> int | None:
        i = int(np.searchsorted(self._pts, stamp))
        return i if i < len(self._pts) and int(self._pts[i]) == stamp else None

    # ---- lifetime -------------------------------------------------------------------------------------------
    def close(self) -> None:
        self._decoder = None
        self._container.close()

    def __enter__(self) -> VideoSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"VideoSource({str(self.path)!r}, {self.duration_seconds:.1f}s, {self.num_frames} frames @ "
            f"{self.fps:g} fps, {self.width}x{self.height} {self.codec})"
        )


def _check_regular_file(path: Path) -> None:
    # Checked before FFmpeg sees the path: opening a FIFO or a directory can block or mislead it.
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise VideoNotFoundError(f"{path}: no such file; check the path.") from None
    if not stat.S_ISREG(mode):
        raise VideoNotFoundError(f"{path}: not a regular file (a directory, pipe or device); give a video file.")
    if path.stat().st_size == 0:
        raise NotAVideoError(f"{path}: the file is empty (0 bytes); it was probably not written completely.")


def probe_duration(path: str | Path) -> float:
    """The video's duration from its container header (cheap: nothing is decoded or indexed), else from an
    index of its packets. Raises ``VideoError`` like ``VideoSource``."""
    path = Path(path)
    _check_regular_file(path)
    try:
        with av.open(str(path), mode="r") as container:
            streams = container.streams.video
            if not streams:
                raise NoVideoStreamError(f"{path}: the file has no video stream (audio or data only).")
            stream = streams[0]
            if stream.duration and stream.time_base:
                return float(stream.duration * stream.time_base)
            if container.duration:
                return container.duration / av.time_base
    except av.error.FFmpegError as exc:
        raise NotAVideoError(f"{path}: FFmpeg cannot read this file as a video ({exc}).") from exc
    with VideoSource(path) as source:
        return source.duration_seconds


_TURNS = {90: Image.Transpose.ROTATE_90, 180: Image.Transpose.ROTATE_180, 270: Image.Transpose.ROTATE_270}


def _upright(image: Image.Image, rotation: float) -> Image.Image:
    """The frame as a player shows it: phones store portrait video sideways with a display-matrix rotation
    (counter-clockwise degrees, as PyAV reports it); a model shown the stored pixels would see it sideways."""
    turn = _TURNS.get(round(rotation) % 360)
    return image.transpose(turn) if turn is not None else image
