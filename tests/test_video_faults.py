"""Real recordings and their faults, on files the test makes: an MPEG-TS remux, a faststart MP4 cut in half, a
packet with flipped bytes, a phone video stored sideways."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from medscope.agent.backends.scripted import ReplayBackend
from medscope.agent.loop import AgentConfig, run_episode
from medscope.agent.protocol import render_answer, render_tool_call
from medscope.video.errors import NotAVideoError
from medscope.video.source import VideoSource
from medscope.video.synthclin import SynthClinVideo
from medscope.video.tools import Observation, ToolError, VideoTools


def _remux(source: Path, target: Path, container: str, **options: str) -> Path:
    with av.open(str(source)) as src, av.open(str(target), "w", format=container, options=options) as out:
        stream = out.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(src.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)
    return target


def test_mpeg_ts_serves_the_same_frames_as_the_mp4(synth_video: SynthClinVideo, tmp_path: Path) -> None:
    ts = _remux(synth_video.video_path, tmp_path / "or.ts", "mpegts")  # what operating-room recorders write
    times = [0.0, 1.75, 30.0, 10.0, 45.2, 12.3, 12.4, 119.9]
    with VideoSource(ts) as a, VideoSource(synth_video.video_path) as b:
        assert VideoTools(a).overview().timestamps == VideoTools(b).overview().timestamps
        for x, y in zip(a.frames_at(times), b.frames_at(times), strict=True):
            assert x.pts_seconds == y.pts_seconds and np.array_equal(np.asarray(x.image), np.asarray(y.image))


def test_a_file_cut_short_is_refused_at_open(synth_video: SynthClinVideo, tmp_path: Path) -> None:
    whole = _remux(synth_video.video_path, tmp_path / "fast.mp4", "mp4", movflags="faststart")  # index first
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(NotAVideoError, match=r"truncated: its header declares 120.0 s but only \d+\.\d s"):
        VideoSource(cut)


def _damaged(synth_video: SynthClinVideo, tmp_path: Path) -> tuple[Path, float]:
    """A copy with one packet's bytes flipped; returns it and that packet's time."""
    with av.open(str(synth_video.video_path)) as container:
        stream = container.streams.video[0]
        packets = [(p.pos, p.size, float(p.pts * stream.time_base)) for p in container.demux(stream)
                   if p.size and not p.is_keyframe and p.pts is not None]
    pos, size, at = packets[len(packets) // 2]
    data = bytearray(synth_video.video_path.read_bytes())
    for i in range(pos + 4, pos + size):
        data[i] ^= 0xFF
    path = tmp_path / "damaged.mp4"
    path.write_bytes(bytes(data))
    return path, at


def test_an_undecodable_stretch_is_a_note_or_a_tool_error_and_the_episode_goes_on(
        synth_video: SynthClinVideo, tmp_path: Path) -> None:
    path, at = _damaged(synth_video, tmp_path)
    with VideoSource(path) as source:
        tools = VideoTools(source)
        result = tools.crop_video(at - 5, at + 2)
        assert isinstance(result, Observation) and result.frames
        assert any("could not be decoded" in note for note in result.notes)
        frame = tools.get_frame(at + 0.5)
        assert isinstance(frame, ToolError | Observation)
        if isinstance(frame, ToolError):
            assert "cannot be decoded" in frame.message and f"{at + 0.5:g}s" in frame.message
    turns = [render_tool_call("crop_video", {"start_time": at - 5, "end_time": at + 2}, "look"),
             render_tool_call("get_frame", {"timestamp": at + 0.5}, "closer"), render_answer("gauze", "seen")]
    episode = run_episode(ReplayBackend(turns), str(path), "What is placed?", AgentConfig())
    assert episode.answer == "gauze" and episode.tool_calls == 2


def test_a_phone_video_stored_sideways_comes_back_upright(tmp_path: Path) -> None:
    path = tmp_path / "phone.mp4"
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=2)
        stream.width, stream.height, stream.pix_fmt = 64, 32, "yuv420p"
        stream.set_display_rotation(90)  # what a phone held upright writes
        for i in range(4):
            image = np.zeros((32, 64, 3), np.uint8)
            image[:, :32] = 255  # stored: left half white; shown: bottom half white
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    with VideoSource(path) as source:
        shown = np.asarray(source.frames_at([0.5])[0].image).astype(float)
    assert shown.shape[:2] == (64, 32)
    assert shown[:28].mean() < 30 and shown[36:].mean() > 225


def _bframes(path: Path, seconds: float = 12.0, fps: int = 25, gop_seconds: float = 4.0) -> Path:
    """A camera-like H.264 stream: 3 B-frames between references (pts and dts differ), each frame coded."""
    from medscope.video.framecode import draw_frame_code

    gop = str(int(fps * gop_seconds))
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        stream.options = {"preset": "veryfast", "bf": "3", "g": gop, "keyint_min": gop, "sc_threshold": "0"}
        rng = np.random.default_rng(0)
        for i in range(int(seconds * fps)):
            image = np.ascontiguousarray(np.roll(rng.integers(0, 255, (240, 320, 3), dtype=np.uint8), i, axis=1))
            draw_frame_code(image, i)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode(None))
    return path


@pytest.mark.parametrize("container", ["mp4", "mpegts"])
def test_b_frame_video_is_frame_exact_in_mp4_and_ts(tmp_path: Path, container: str) -> None:
    """MP4 finds keyframes by presentation time and TS by decode time; with B-frames the two differ, and a seek
    by the wrong one lands a GOP early or late. Every frame read must be the frame asked for."""
    import random

    from medscope.video.framecode import read_frame_code

    path = _bframes(tmp_path / "camera.mp4")
    if container == "mpegts":
        path = _remux(path, tmp_path / "camera.ts", "mpegts")
    rng = random.Random(0)
    with VideoSource(path) as source:
        for _ in range(25):
            source.clear_cache()  # every request starts cold, with a seek
            indices = sorted(rng.sample(range(source.num_frames), 4))
            for frame in source.frames_at_indices(indices):
                assert read_frame_code(np.asarray(frame.image)) == frame.index
