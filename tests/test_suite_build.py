"""Question generation, each filter keeping and dropping, trajectories that replay, and a full build."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from medscope.agent.protocol import ToolCall, parse_turn
from medscope.suite import filters
from medscope.suite.build import BuildConfig, build
from medscope.suite.qa import generate_samples
from medscope.suite.records import Sample, Segment, VideoAnnotation, read_jsonl
from medscope.suite.trajectories import cot_trajectory, replay, vcot_trajectory
from medscope.video.source import VideoSource
from medscope.video.synthclin import SynthClinVideo


def _annotation() -> VideoAnnotation:
    segments = (
        Segment(0, 60, "The preparation phase begins.", "phase", "preparation"),
        Segment(60, 120, "The dissection phase begins.", "phase", "dissection"),
        Segment(10, 14, "Bleeding appears in the upper-left of the field.", "event", "bleeding",
                meta={"position": "upper-left"}),
        Segment(30, 33, "Smoke fills the field.", "event", "smoke"),
        Segment(70, 74, "A clip is applied in the centre of the field.", "event", "clip_applied",
                meta={"position": "centre"}),
        Segment(90, 93, "Gauze is placed in the lower-right of the field.", "event", "gauze",
                meta={"position": "lower-right"}),
        Segment(20, 50, "A grasper enters from the left.", "instrument", "grasper", meta={"side": "left"}),
    )
    return VideoAnnotation("v1", "v1.mp4", 120.0, segments, "test", summary="Preparation, then dissection.")


def _sample(**changes: object) -> Sample:
    base = Sample(id="t/v/grounded_vqa/0", video="v.mp4", duration=120.0, question="Where does the smoke appear?",
                  answer="upper left", task="grounded_vqa", evidence=[[30.0, 33.0]], source="test",
                  meta={"template": "event_where", "evidence_text": "Smoke in the upper-left of the field."})
    return dataclasses.replace(base, **changes)


def test_generation_covers_every_task_with_evidence() -> None:
    samples = generate_samples(_annotation(), 120.0)
    tasks = {s.task for s in samples}
    assert tasks == {"grounding", "grounded_vqa", "mcq", "caption", "fine_caption"}
    where = next(s for s in samples if s.meta["template"] == "event_where" and "bleeding" in s.question)
    assert where.answer == "upper-left" and where.evidence == [[10.0, 14.0]]
    ground = next(s for s in samples if s.task == "grounding" and "clip" in s.question)
    assert ground.answer == "[70.0, 74.0]" and ground.evidence == [[70.0, 74.0]]
    mcq = next(s for s in samples if s.task == "mcq")
    assert mcq.options and len(mcq.options) == 4 and mcq.options[ord(mcq.answer) - 65] in (
        "bleeding", "smoke", "clip applied", "gauze")
    after = next(s for s in samples if s.meta["template"] == "after")
    assert after.evidence[0][0] >= 14.0  # the answer segment comes after the one the question names
    assert all(0 <= s <= e <= 120 for x in samples for s, e in x.evidence)
    assert len({s.id for s in samples}) == len(samples)


def test_commonsense_keeps_and_drops() -> None:
    leaked = _sample(question="Where does the smoke appear, upper left or lower right?", answer="upper left")
    needs_video = _sample()
    judge = filters.BlindPriorJudge([leaked, needs_video])
    kept, drops = filters.commonsense_filter([leaked, needs_video], judge)
    assert kept == [needs_video] and drops[0].sample_id == leaked.id and drops[0].filter == "commonsense"


def test_commonsense_drops_a_biased_mcq_prior() -> None:
    def mcq(i: int, answer: str) -> Sample:
        return _sample(id=f"m{i}", task="mcq", options=["bleeding", "smoke", "gauze", "clip"], answer=answer,
                       question=f"Which happens between {i}s and {i + 3}s?", meta={"template": "mcq_window"})
    samples = [mcq(i, "A") for i in range(8)] + [mcq(9, "C")]
    kept, drops = filters.commonsense_filter(samples, filters.BlindPriorJudge(samples))
    assert {d.sample_id for d in drops} == {f"m{i}" for i in range(8)} and [s.id for s in kept] == ["m9"]


def test_global_summary_keeps_and_drops() -> None:
    stated = _sample(answer="dissection", question="Which phase follows preparation?")
    long = _sample(id="long", task="grounding", answer="[0.00, 110.00]", evidence=[[0.0, 110.0]])
    local = _sample(id="local")
    kept, drops = filters.global_summary_filter([stated, long, local], filters.SummaryRuleJudge(),
                                                {"v.mp4": "Preparation, then dissection."})
    assert [s.id for s in kept] == ["local"] and {d.filter for d in drops} == {"global_summary"}
    assert len(drops) == 2


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ({"evidence": [[30.0, 30.0]]}, "empty evidence"),
        ({"answer": "lower right"}, "not supported by its evidence text"),
        ({"task": "mcq", "options": ["a", "a", "b"], "answer": "A"}, "duplicate options"),
        ({"task": "mcq", "options": ["a", "b"], "answer": "D"}, "names no option"),
    ],
)
def test_consistency_drops(bad: dict, reason: str) -> None:
    kept, drops = filters.ConsistencyFilter()([_sample(), _sample(id="bad", question="Where is the gauze?", **bad)])
    assert [s.id for s in kept] == [_sample().id]
    assert drops[0].sample_id == "bad" and reason in drops[0].reason


def test_consistency_drops_contradictions_and_duplicates() -> None:
    twin = _sample(id="twin", answer="upper", meta={**_sample().meta})
    near = _sample(id="near", question="Where does the smoke appear ?")
    other = _sample(id="other", question="Which instrument enters from the left?", answer="grasper",
                    meta={"evidence_text": "A grasper enters from the left."})
    kept, drops = filters.ConsistencyFilter()([_sample(), twin, near, other])
    assert [s.id for s in kept] == ["other"]
    reasons = {d.sample_id: d.reason for d in drops}
    assert "contradictory" in reasons["twin"] and "contradictory" in reasons[_sample().id]


def test_trajectories_replay_on_the_video(synth_video: SynthClinVideo) -> None:
    event = synth_video.annotation["events"][0]
    phases = synth_video.annotation["phases"]
    holder = next(p for p in phases if p["start"] <= event["start"] < p["end"])
    search = [[f"{p['label']} phase", p["start"], p["end"]] for p in [holder, *(p for p in phases if p is not holder)]]
    sample = _sample(video=str(synth_video.video_path), evidence=[[event["start"], event["end"]]],
                     answer=f"[{event['start']}, {event['end']}]", task="grounding", question="When?",
                     meta={**_sample().meta, "search": search})
    with VideoSource(synth_video.video_path) as source:
        traj = vcot_trajectory(sample, source)
        parsed = [parse_turn(t["text"]) for t in traj.turns]
        assert len(parsed) >= 2 and all(isinstance(p, ToolCall) and p.name == "crop_video" for p in parsed[:-1])
        assert all(isinstance(parse_turn(t["text"]), ToolCall) == (t["observation"] is not None) for t in traj.turns)
        assert replay(traj, source) == []
        seen = [f"{t:.1f}" for t in traj.turns[0]["observation"]["timestamps"]]
        cited = [t for t in seen if t in traj.turns[1]["text"].split("</think>")[1]]
        assert cited  # the next turn's call or answer names frames the crop really showed
        forged = dataclasses.replace(traj, turns=[{**traj.turns[0], "observation": {
            **traj.turns[0]["observation"], "timestamps": [1.0]}}, *traj.turns[1:]])
        assert "turn 0" in replay(forged, source)[0]
        cot = cot_trajectory(dataclasses.replace(sample, task="caption", evidence=[[0.0, 120.0]]), traj.overview)
        assert len(cot.turns) == 1 and replay(cot, source) == []


def test_build_end_to_end(synth_video: SynthClinVideo, tmp_path: Path) -> None:
    out = tmp_path / "suite"
    table = build(BuildConfig(source="synthclin", annotations=str(synth_video.annotation_path), out=str(out),
                              workers=1))
    assert table["total"]["generated"] > table["total"]["kept"] > 0
    samples = list(read_jsonl(out / "samples.jsonl"))
    trajectories = list(read_jsonl(out / "trajectories.jsonl", "trajectory"))
    assert len(samples) == len(trajectories) == table["total"]["kept"]
    funnel = json.loads((out / "funnel.json").read_text())
    assert funnel["samples"] == table and funnel["records"]["read"] > 0 and funnel["records"]["skipped"] == {}
    drops = [json.loads(line) for line in (out / "drops.jsonl").read_text().splitlines()]
    assert len(drops) == table["total"]["generated"] - table["total"]["kept"] and all(d["reason"] for d in drops)
    card = (out / "README.md").read_text()
    assert "Funnel" in card and "Evidence window lengths" in card
    with VideoSource(synth_video.video_path) as source:
        assert all(replay(t, source) == [] for t in trajectories)


def test_model_rewrites_questions_but_never_loses_times() -> None:
    from medscope.agent.backends.scripted import ReplayBackend
    from medscope.suite.qa import rewrite_questions

    samples = [s for s in generate_samples(_annotation(), 120.0) if s.task == "fine_caption"][:2]
    backend = ReplayBackend([
        f"<answer>Please describe the events from {samples[0].evidence[0][0]:.1f} s to "
        f"{samples[0].evidence[0][1]:.1f} s.</answer>",
        "<answer>Describe this part.</answer>",
    ])
    good, bad = rewrite_questions(samples, backend)
    assert good.question.startswith("Please describe") and good.meta["rewrite"] == "accepted"
    assert good.meta["template_question"] == samples[0].question
    assert bad.question == samples[1].question and bad.meta["rewrite"].startswith("rejected: lost")
    assert "Rewrite this question" in backend.prompts[0][0]["content"][0]["text"]


def test_global_level_drops_what_the_overview_shows() -> None:
    # 16 overview frames over 120 s sit at 3.75 s, 11.25 s, ...: a window around 11.25 s is seen, 5-7 s is not.
    seen = _sample(id="seen", evidence=[[10.0, 12.0]])
    hidden = _sample(id="hidden", evidence=[[5.0, 7.0]], question="Where is the gauze?")
    kept, drops = filters.global_summary_filter([seen, hidden], filters.SummaryRuleJudge(), {})
    assert [s.id for s in kept] == ["hidden"] and drops[0].sample_id == "seen"
