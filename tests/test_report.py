"""The HTML evidence report: content, thumbnails, escaping of model text, missing videos, and a real render."""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from PIL import Image

from medscope.agent.trace import Episode, ObservationRecord, TurnRecord
from medscope.report.html import interval_iou, render_html, render_report
from medscope.video.synthclin import SynthClinVideo

FPS = 4.0  # the synth_video fixture: frame i is at i / 4 s
EVIL = '<script>alert(1)</script>"><img src=x onerror=alert(1)>'


def _obs(tool: str, arguments: dict[str, float], indices: list[int], notes: tuple[str, ...] = ()) -> ObservationRecord:
    return ObservationRecord(tool, dict(arguments), [i / FPS for i in indices], list(indices), list(notes))


def _episode(video: str, truth: list[float], *, text: str = "") -> Episode:
    """Overview (16) → crop around the event (8) → a format error → get_frame (3) → a failed crop → answer."""
    text = f" {text}" if text else ""
    start, end = truth
    crop = [max(0.0, start - 4.0), end + 4.0]
    moment = (start + end) / 2
    centre = round(moment * FPS)
    crop_indices = [round((crop[0] + (j + 0.5) * (crop[1] - crop[0]) / 8) * FPS) for j in range(8)]
    turns = [
        TurnRecord(
            1,
            raw=f"<think>Red near the start.{text}</think><tool_call>...</tool_call>",
            kind="tool_call",
            think=f"The overview shows red near the start; look closer.{text}",
            tool="crop_video",
            arguments={"start_time": crop[0], "end_time": crop[1]},
            observation=_obs("crop_video", {"start_time": crop[0], "end_time": crop[1]}, crop_indices),
            generate_seconds=0.8,
            tool_seconds=0.05,
        ),
        TurnRecord(2, raw=f"I think it is bleeding{text}", kind="format_error", error=f"No <think> block.{text}"),
        TurnRecord(
            3,
            raw="<think>Inspect the middle.</think><tool_call>...</tool_call>",
            kind="tool_call",
            think="Inspect the middle of the red region at full detail.",
            tool="get_frame",
            arguments={"timestamp": moment},
            observation=_obs("get_frame", {"timestamp": moment}, [centre - 1, centre, centre + 1]),
        ),
        TurnRecord(
            4,
            raw="<think>Check later too.</think><tool_call>...</tool_call>",
            kind="tool_call",
            think="Compare with a later interval.",
            tool="crop_video",
            arguments={"start_time": 90.0, "end_time": 80.0},
            error="crop_video: end_time must be greater than start_time; got [90, 80].",
        ),
        TurnRecord(5, raw=f"<think>Done.</think><answer>bleeding{text}</answer>", kind="answer", think="Done."),
    ]
    return Episode(
        question=f"What happens in the lower-left of the field early in the video?{text}",
        video=video,
        duration=120.0,
        backend={"backend": "scripted", "model": f"oracle{text}"},
        id=f"synth-7-q1{text}",
        task="grounded_vqa",
        options=["bleeding", f"smoke{text}", "gauze", "clip applied"],
        overview=_obs("overview", {"duration": 120.0}, [round((j + 0.5) * 7.5 * FPS) for j in range(16)]),
        turns=turns,
        answer=f"bleeding{text}",
        evidence=[crop, [moment, moment]],
        evidence_source="tools",
        last_crop=crop,
        last_frame=moment,
        tool_calls=3,
        frames_viewed=27,
        seconds=3.2,
        reference={"answer": f"bleeding{text}", "evidence": [truth]},
    )


@pytest.fixture()
def event(synth_video: SynthClinVideo) -> list[float]:
    first = synth_video.annotation["events"][0]
    return [first["start"], first["end"]]


def test_report_shows_question_answer_turns_frames_and_windows(synth_path: Path, event: list[float]) -> None:
    episode = _episode(str(synth_path), event)
    html = render_html([episode], thumb_max_pixels=160 * 120)
    assert episode.question in html and "bleeding" in html and "oracle" in html
    for turn in episode.turns:
        if turn.think:
            assert turn.think in html
    assert "No &lt;think&gt; block." in html and "Format error" in html and "Tool error" in html
    assert "crop_video(start_time=5.75, end_time=17.5)" in html
    # 16 overview + 8 crop + 3 get_frame thumbnails, each an inline JPEG no larger than asked
    sources = re.findall(r'<img src="data:image/jpeg;base64,([A-Za-z0-9+/=]+)"', html)
    assert html.count("<img") == len(sources) == 27
    image = Image.open(io.BytesIO(base64.b64decode(sources[0])))
    assert image.format == "JPEG" and image.width * image.height <= 160 * 120
    assert "Frames unavailable" not in html
    # the timeline: evidence, ground truth, numbered calls and the IoU readout
    start, end = event
    assert f"ground truth: {start:g} s – {end:g} s" in html
    assert "evidence (tools): 5.75 s – 17.5 s" in html
    assert "turn 1: crop_video 5.75 s – 17.5 s" in html and "turn 3: get_frame" in html
    iou = interval_iou(episode.evidence, [event])
    assert iou is not None and f"IoU of evidence with ground truth: <b>{iou:.2f}</b>" in html
    assert "Raw trace" in html and "Episode record (JSON)" in html
    assert not re.search(r"(src|href)=\"(https?:)?//", html)  # self-contained
    assert str(synth_path.parent) not in html and synth_path.name in html  # the file, not where it lies


def test_model_text_is_escaped_everywhere(synth_path: Path, event: list[float]) -> None:
    episode = _episode(str(synth_path), event, text=EVIL)
    episode.turns[3].arguments = {"start_time": EVIL, "end_time": 80.0}
    html = render_html([episode, _episode(str(synth_path), event, text=EVIL)])
    assert "<script>alert" not in html and "<script" not in html
    assert "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in html


def test_missing_video_still_renders(tmp_path: Path, event: list[float]) -> None:
    episode = _episode("gone/missing.mp4", event)
    out = render_report([episode], tmp_path / "report.html", video_dir=tmp_path)
    html = out.read_text(encoding="utf-8")
    assert "Frames unavailable" in html and "missing.mp4" in html and "<img" not in html
    assert str(tmp_path) not in html
    assert episode.question in html and "turn 1: crop_video" in html and "ground truth:" in html
    assert html.count('class="no-frame"') == 27


def test_relative_video_and_several_episodes(tmp_path: Path, synth_path: Path, event: list[float]) -> None:
    one = _episode(synth_path.name, event)
    two = _episode(synth_path.name, [60.0, 70.0])
    two.answer, two.forced_answer, two.reference = None, True, None
    out = render_report([one, two], tmp_path / "run" / "report.html", video_dir=synth_path.parent)
    html = out.read_text(encoding="utf-8")
    assert html.count("<img") == 54 and 'href="#episode-2"' in html and 'id="episode-2"' in html
    assert "no answer" in html and "forced answer" in html
    assert sorted(p.name for p in out.parent.iterdir()) == ["report.html"]  # no temporary file left


def test_trace_that_does_not_match_the_video_warns(synth_path: Path, event: list[float]) -> None:
    episode = _episode(str(synth_path), event)
    assert episode.overview is not None
    episode.overview.frame_indices[-1] = 10_000
    episode.overview.timestamps[0] += 1.0
    html = render_html([episode])
    assert "lie outside this video" in html and "re-encoded" in html
    assert html.count("<img") == 26


def test_long_video_gets_a_close_up_and_moments_have_no_iou(tmp_path: Path, event: list[float]) -> None:
    episode = _episode("missing.mp4", event)
    html = render_html([episode], video_dir=tmp_path)
    assert "whole video" in html and "close-up 0:03 – 0:20" in html  # the action spans ~13% of 2 minutes
    episode.reference = {"answer": "bleeding", "evidence": [[11.0, 11.0]]}
    html = render_html([episode], video_dir=tmp_path)
    assert "IoU not defined: a moment has no length" in html and "ground truth: 11 s" in html


def test_template_marks_nothing_safe() -> None:
    template = Path(__file__).parents[1] / "medscope" / "report" / "templates" / "episode.html.jinja"
    assert not re.search(r"\|\s*safe|Markup|autoescape\s+false", template.read_text(encoding="utf-8"))


def test_interval_iou() -> None:
    assert interval_iou([[0, 10]], [[0, 10]]) == 1.0
    assert interval_iou([[0, 10]], [[5, 15]]) == pytest.approx(5 / 15)
    assert interval_iou([[0, 10]], [[20, 30]]) == 0.0
    assert interval_iou([[0, 4], [6, 10]], [[0, 10]]) == pytest.approx(0.8)
    assert interval_iou([[0, 10], [5, 10]], [[0, 10]]) == 1.0  # overlapping windows count once
    assert interval_iou([[0, 10], [5, 5]], [[0, 10]]) == 1.0  # a moment adds no length
    assert interval_iou([[3, 3]], [[4, 4]]) is None
    assert interval_iou([[0, 10]], [[4, 4]]) is None and interval_iou([], [[0, 1]]) is None


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if found := shutil.which(name):
            return found
    return None


def test_report_renders_in_headless_chromium(tmp_path: Path, synth_path: Path, event: list[float]) -> None:
    browser = _chromium()
    if browser is None:
        pytest.skip("no Chromium found (chromium, chromium-browser, google-chrome); `apt-get install -y chromium`")
    report = render_report([_episode(str(synth_path), event)], tmp_path / "report.html")
    shot = tmp_path / "report.png"
    command = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
        f"--screenshot={shot}",
        "--window-size=1200,1600",
        report.resolve().as_uri(),
    ]
    started = time.monotonic()
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=90, env={**os.environ, "HOME": str(tmp_path)}
    )
    assert shot.exists(), f"no screenshot after {time.monotonic() - started:.1f}s: {done.stderr[-2000:]}"
    image = Image.open(shot).convert("RGB")
    assert image.size == (1200, 1600) and shot.stat().st_size > 50_000
    colours = image.getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 1000  # text, cards, thumbnails: far from a flat page

    def near(rgb: tuple[int, int, int]) -> int:
        return sum(n for n, c in colours if all(abs(a - b) <= 30 for a, b in zip(c, rgb, strict=True)))

    assert near((232, 89, 12)) > 200  # the ground-truth window (orange)
    assert near((22, 144, 91)) > 200  # the evidence windows (green)
    assert near((47, 111, 222)) > 100  # the crop_video windows (blue)
