"""VideoSource: frame-exact random access checked against full sequential decoding."""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from medscope.video import (
    CorruptVideoError,
    NotAVideoError,
    NoVideoStreamError,
    VideoError,
    VideoNotFoundError,
    VideoSource,
)
from medscope.video.framecode import read_frame_code
from medscope.video.source import FrameCache, fit_size


def _sequential_codes(path: Path) -> list[int]:
    with av.open(str(path)) as container:
        return [read_frame_code(frame.to_image()) for frame in container.decode(video=0)]


def test_metadata_and_index(synth_path: Path) -> None:
    with VideoSource(synth_path) as video:
        assert video.num_frames == 480
        assert video.fps == pytest.approx(4.0)
        assert video.duration_seconds == pytest.approx(120.0)
        assert (video.width, video.height, video.codec) == (320, 240, "h264")
        assert np.all(np.diff(video.frame_times) > 0)
        # keyframe every 5 s at 4 fps = every 20 frames, read from packet flags
        assert list(video.keyframe_indices[:4]) == [0, 20, 40, 60]


def test_random_access_is_frame_exact(synth_path: Path) -> None:
    expected = _sequential_codes(synth_path)
    assert expected == list(range(len(expected)))  # the reference decode itself is in order
    rng = random.Random(0)
    with VideoSource(synth_path) as video:
        for _ in range(60):
            t = rng.uniform(-1.0, video.duration_seconds + 1.0)
            frame = video.frames_at([t])[0]
            nearest = int(np.argmin(np.abs(video.frame_times - t)))
            assert frame.index == nearest
            assert read_frame_code(frame.image) == expected[nearest]
            assert frame.pts_seconds == pytest.approx(nearest / 4.0)


def test_batch_request_keeps_order_and_duplicates(synth_path: Path) -> None:
    with VideoSource(synth_path) as video:
        frames = video.frames_at_indices([300, 5, 301, 5, 119, 0])
        assert [f.index for f in frames] == [300, 5, 301, 5, 119, 0]
        assert [read_frame_code(f.image) for f in frames] == [300, 5, 301, 5, 119, 0]


class _CountingSource(VideoSource):
    seeks = 0

    def _seek(self, keyframe: int, by: str) -> None:
        self.seeks += 1
        super()._seek(keyframe, by)


def test_a_sequential_read_seeks_once_and_converts_like_pyav(synth_path: Path) -> None:
    """Reading on past a keyframe needs no seek (an all-intra stream is all keyframes: a seek per frame made
    whole-video reads slow); one scaler for the file gives the pixels ``VideoFrame.to_image`` gives."""
    size = fit_size(320, 240, 112 * 112)
    with av.open(str(synth_path)) as container:
        decoded = list(itertools.islice(container.decode(video=0), 45))
        expected = [np.asarray(frame.to_image(width=size[0], height=size[1])) for frame in decoded]
    with _CountingSource(synth_path) as video:
        frames = video.frames_at_indices(range(45), max_pixels=112 * 112)  # keyframes at 0, 20 and 40
        assert video.seeks == 1
        assert [read_frame_code(f.image) for f in frames] == list(range(45))
        assert all(np.array_equal(np.asarray(f.image), e) for f, e in zip(frames, expected, strict=True))


def test_resize_keeps_aspect_and_cache_serves_repeats(synth_path: Path) -> None:
    with VideoSource(synth_path) as video:
        first = video.frames_at_indices([250], max_pixels=112 * 112)[0]
        assert first.image.size == fit_size(320, 240, 112 * 112)
        assert first.image.width * first.image.height <= 112 * 112
        assert read_frame_code(first.image) == 250
        again = video.frames_at_indices([250], max_pixels=112 * 112)[0]
        assert again.image is first.image  # served by the LRU, not decoded again


class _DecodeCountingSource(VideoSource):
    decoded = 0

    def _decode(self, indices: list[int], size: tuple[int, int]) -> Iterator[tuple[int, Image.Image]]:
        self.decoded += len(indices)
        return super()._decode(indices, size)


def test_sources_sharing_a_cache_decode_each_frame_once(synth_path: Path, tmp_path: Path) -> None:
    """Episodes about one video, run at once by an evaluation, each open the file; with one shared cache a frame
    is decoded by one of them (the others wait for it rather than decode it too), and only for that file."""
    cache = FrameCache()
    wanted = [5, 119, 250, 301]
    sources = [_DecodeCountingSource(synth_path, cache=cache) for _ in range(4)]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda source: source.frames_at_indices(wanted, max_pixels=112 * 112), sources))
    assert sum(source.decoded for source in sources) == len(wanted)
    for frames in results:
        assert [read_frame_code(f.image) for f in frames] == wanted
        assert all(f.image is g.image for f, g in zip(frames, results[0], strict=True))
    other = tmp_path / "copy.mp4"  # the same pixels under another name: a file of its own
    other.write_bytes(synth_path.read_bytes())
    with _DecodeCountingSource(other, cache=cache) as copy:
        assert [read_frame_code(f.image) for f in copy.frames_at_indices(wanted, max_pixels=112 * 112)] == wanted
        assert copy.decoded == len(wanted)
    for source in sources:
        source.close()


def test_index_at_ties_and_bounds(synth_path: Path) -> None:
    with VideoSource(synth_path) as video:
        assert video.index_at(-5.0) == 0
        assert video.index_at(1e9) == video.num_frames - 1
        assert video.index_at(0.125) == 0  # exactly between frames 0 and 1: the earlier one
        assert video.index_at(0.126) == 1


def _fail_fast(path: Path, error: type[VideoError], match: str) -> None:
    start = time.monotonic()
    with pytest.raises(error, match=match):
        VideoSource(path)
    assert time.monotonic() - start < 5.0


def test_missing_file(tmp_path: Path) -> None:
    _fail_fast(tmp_path / "nope.mp4", VideoNotFoundError, "no such file")
    _fail_fast(tmp_path, VideoNotFoundError, "not a regular file")


def test_empty_and_text_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    _fail_fast(empty, NotAVideoError, "empty")
    text = tmp_path / "notes.mp4"
    text.write_text("this is a clinical note, not a video\n" * 50)
    _fail_fast(text, NotAVideoError, "cannot read")


def test_truncated_file(synth_path: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(synth_path.read_bytes()[: synth_path.stat().st_size // 2])
    # the mp4 index (moov) is written last by our muxer, so half a file is not a video any more
    _fail_fast(cut, NotAVideoError, "Invalid data")


def test_audio_only_file(tmp_path: Path) -> None:
    path = tmp_path / "voice.wav"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), dtype=np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    _fail_fast(path, NoVideoStreamError, "no video stream")


@pytest.mark.parametrize(("suffix", "error", "match"), [
    (".mp4", NoVideoStreamError, "no video stream"),  # the mp4 muxer drops a track without samples
    (".mkv", NotAVideoError, "End of file"),
])
def test_video_without_frames(tmp_path: Path, suffix: str, error: type[VideoError], match: str) -> None:
    path = tmp_path / f"zero{suffix}"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=4)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        container.start_encoding()  # header written, no frame ever encoded
    _fail_fast(path, error, match)


def test_garbage_in_the_middle_does_not_hang(synth_path: Path, tmp_path: Path) -> None:
    data = bytearray(synth_path.read_bytes())
    rng = np.random.default_rng(0)
    middle = len(data) // 2
    data[middle - 20000 : middle + 20000] = rng.integers(0, 256, 40000, dtype=np.uint8).tobytes()
    bad = tmp_path / "scrambled.mp4"
    bad.write_bytes(bytes(data))
    start = time.monotonic()
    try:
        with VideoSource(bad) as video:
            video.frames_at([video.duration_seconds / 2, 1.0, video.duration_seconds - 1])
    except CorruptVideoError:
        pass  # a clear error is as good as damaged pixels; hanging or another exception is not
    assert time.monotonic() - start < 10.0
