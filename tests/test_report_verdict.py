"""The evidence report's verdicts, answer windows and player: a wrong answer never looks like a right one, a
"when" question's reference is its truth windows, and the video plays at the evidence when it can be reached."""

from __future__ import annotations

import re
from pathlib import Path

from review_server import grounding_question

from medscope.agent.backends import make_backend
from medscope.agent.backends.scripted import synthclin_reference
from medscope.agent.loop import AgentConfig, run_episode
from medscope.agent.trace import Episode
from medscope.report.html import render_report
from medscope.report.timeline import verdict
from medscope.video.synthclin import SynthClinVideo


def _episode(video: SynthClinVideo, policy: str) -> Episode:
    question = grounding_question(video.annotation["events"][0]["label"])
    ref = synthclin_reference(video.annotation, question)
    return run_episode(make_backend(policy, reference=ref), video.video_path, question, AgentConfig(),
                       reference={"answer": ref.answer, "evidence": [list(w) for w in ref.windows]})


def test_verdicts_colour_the_answer_and_the_truth_is_the_reference(synth_video: SynthClinVideo,
                                                                   tmp_path: Path) -> None:
    right, other = _episode(synth_video, "oracle"), _episode(synth_video, "uniform")
    assert right.task is None and verdict(right) == "right" and verdict(other) in ("partly", "wrong")
    html = (render_report([right, other], tmp_path / "report.html")).read_text()
    cards = re.findall(r'class="card answer answer-(\w+)', html)
    assert cards == ["right", verdict(other)]
    caption = synth_video.annotation["captions"][0]["text"]
    assert caption not in html.split('class="reference"')[1][:300]  # the reference is not the event's caption
    start, end = synthclin_reference(synth_video.annotation, right.question).windows[0]
    assert f"{start:g} s – {end:g} s" in html
    assert html.count('rect class="answer"') >= 2  # each answer's window drawn on the timeline


def test_the_video_plays_at_the_evidence_window_when_reachable(synth_video: SynthClinVideo, tmp_path: Path) -> None:
    episode = _episode(synth_video, "oracle")
    html = render_report([episode], tmp_path / "sub" / "report.html").read_text()
    player = re.search(r'<video controls preload="metadata" src="([^"#]+)#t=([\d.]+),([\d.]+)"', html)
    assert player is not None
    assert (tmp_path / "sub" / player.group(1)).resolve() == synth_video.video_path.resolve()
    assert float(player.group(2)) == episode.evidence[0][0]
    episode.video = str(tmp_path / "gone.mp4")
    assert "<video" not in render_report([episode], tmp_path / "gone.html").read_text()
