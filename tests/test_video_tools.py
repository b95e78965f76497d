"""VideoTools: timestamps, bounds, budgets, and every bad argument coming back as a ToolError."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from medscope.video import Observation, ToolConfig, ToolError, VideoSource, VideoTools
from medscope.video.framecode import read_frame_code


@pytest.fixture()
def tools(synth_path: Path) -> VideoTools:
    return VideoTools(VideoSource(synth_path))


def test_overview_spans_video_in_order(tools: VideoTools) -> None:
    obs = tools.overview()
    assert len(obs.frames) == 16
    times = obs.timestamps
    assert times == sorted(times) and len(set(times)) == 16
    assert times[0] >= 0.0 and times[-1] <= tools.source.duration_seconds
    gap = tools.source.duration_seconds / 16
    for j, t in enumerate(times):  # each frame stays near its bin centre, even when snapped to a keyframe
        assert abs(t - (j + 0.5) * gap) <= gap / 4 + 0.25
    for frame in obs.frames:
        assert frame.image.width * frame.image.height <= 224 * 224
        assert read_frame_code(frame.image) == frame.index
    assert tools.frames_used == 16


def test_overview_exact_mode_uses_bin_centres(synth_path: Path) -> None:
    tools = VideoTools(VideoSource(synth_path), ToolConfig(snap_to_keyframes=False, overview_frames=8))
    gap = 120.0 / 8
    assert tools.overview().timestamps == [pytest.approx(round(((j + 0.5) * gap) * 4) / 4) for j in range(8)]


def test_crop_video_frames_inside_interval(tools: VideoTools) -> None:
    obs = tools.crop_video(30.0, 46.0)
    assert isinstance(obs, Observation)
    assert len(obs.frames) == 8
    assert all(30.0 <= t <= 46.0 for t in obs.timestamps)
    assert obs.timestamps == sorted(obs.timestamps)
    assert [read_frame_code(f.image) for f in obs.frames] == [f.index for f in obs.frames]
    assert obs.notes == ()


def test_short_crop_returns_distinct_frames(tools: VideoTools) -> None:
    obs = tools.crop_video(10.0, 10.6)  # 3 frames exist in [10.0, 10.6] at 4 fps
    assert isinstance(obs, Observation)
    assert obs.timestamps == [10.0, 10.25, 10.5]
    between = tools.crop_video(10.01, 10.2)  # no frame inside: the nearest to the middle
    assert isinstance(between, Observation) and between.timestamps == [10.0] and between.notes


def test_get_frame_neighbours_at_high_resolution(tools: VideoTools) -> None:
    obs = tools.get_frame(60.1)
    assert isinstance(obs, Observation)
    assert obs.timestamps == [59.75, 60.0, 60.25]
    assert obs.frames[1].image.size == (320, 240)  # 320x240 is under the 448x448 cap: native size
    edge = tools.get_frame(0)
    assert isinstance(edge, Observation) and edge.timestamps == [0.0, 0.25, 0.5]


def test_clamping_is_reported(tools: VideoTools) -> None:
    obs = tools.crop_video(-10, 5)
    assert isinstance(obs, Observation)
    assert obs.arguments == {"start_time": 0.0, "end_time": 5.0}
    assert any("clamped" in note for note in obs.notes)
    late = tools.get_frame(500)
    assert isinstance(late, Observation) and late.timestamps[-1] == pytest.approx(119.75)
    assert any("clamped" in note for note in late.notes)


@pytest.mark.parametrize(
    ("name", "arguments", "needle"),
    [
        ("crop_video", {"start_time": 50, "end_time": 40}, "greater than start_time"),
        ("crop_video", {"start_time": 40, "end_time": 40}, "greater than start_time"),
        ("crop_video", {"start_time": 200, "end_time": 300}, "after clamping"),
        ("crop_video", {"start_time": "10", "end_time": 20}, "must be a number"),
        ("crop_video", {"start_time": math.nan, "end_time": 20}, "finite"),
        ("crop_video", {"start_time": 1, "end_time": math.inf}, "finite"),
        ("crop_video", {"start_time": True, "end_time": 20}, "must be a number"),
        ("crop_video", {"start_time": 10}, "missing: end_time"),
        ("crop_video", [10, 20], "JSON object"),
        ("get_frame", {}, "missing: timestamp"),
        ("get_frame", {"timestamp": None}, "must be a number"),
        ("zoom", {"factor": 2}, "Unknown tool"),
        (None, {}, "Unknown tool"),
    ],
)
def test_bad_arguments_become_tool_errors(tools: VideoTools, name: object, arguments: object, needle: str) -> None:
    result = tools.call(name, arguments)
    assert isinstance(result, ToolError)
    assert needle in result.message
    assert tools.frames_used == 0


def test_unknown_extra_argument_is_noted_not_fatal(tools: VideoTools) -> None:
    obs = tools.call("get_frame", {"timestamp": 3, "zoom": 2})
    assert isinstance(obs, Observation) and any("zoom" in n for n in obs.notes)


def test_frame_budget(synth_path: Path) -> None:
    tools = VideoTools(VideoSource(synth_path), ToolConfig(max_frames=20))
    tools.overview()  # 16 frames
    assert isinstance(tools.get_frame(5), Observation)  # 3 more: 19
    refused = tools.crop_video(0, 60)
    assert isinstance(refused, ToolError) and "budget" in refused.message
    assert tools.frames_used == 19


def test_the_overview_of_a_video_is_decoded_once_per_process(synth_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            tmp_path: Path) -> None:
    """Every question of an eval opens the video again; its overview comes from the cache, the same images."""
    import shutil

    copy = Path(shutil.copy(synth_path, tmp_path / "copy.mp4"))
    with VideoSource(copy) as first:
        before = VideoTools(first).overview()
    with VideoSource(copy) as second:
        def no_decoding(*args: object, **kwargs: object) -> object:
            raise AssertionError("decoded again")

        monkeypatch.setattr(second, "frames_at_indices", no_decoding)
        again = VideoTools(second).overview()
    assert again.timestamps == before.timestamps
    assert all(a.image is b.image for a, b in zip(again.frames, before.frames, strict=True))
    copy.write_bytes(copy.read_bytes())  # a rewritten file (new mtime) is decoded afresh
    with VideoSource(copy) as third:
        monkeypatch.setattr(third, "frames_at_indices", no_decoding)
        with pytest.raises(AssertionError, match="decoded again"):
            VideoTools(third).overview()
