"""The episode loop on a real SynthClin video: tool calls, errors fed back, budgets, evidence, traces."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from medscope.agent.backends.base import message_images, message_text
from medscope.agent.backends.scripted import (
    OracleBackend,
    RandomBackend,
    Reference,
    ReplayBackend,
    TeacherBackend,
    UniformBackend,
)
from medscope.agent.loop import AgentConfig, run_episode
from medscope.agent.protocol import PROMPT_VERSION, parse_windows, render_answer, render_tool_call, system_prompt
from medscope.agent.trace import Episode, append_episode, read_episodes
from medscope.video.synthclin import SynthClinVideo
from medscope.video.tools import ToolConfig

CROP = render_tool_call("crop_video", {"start_time": 30.0, "end_time": 46.0}, "look")
FRAME = render_tool_call("get_frame", {"timestamp": 40.0}, "closer")
ANSWER = render_answer("bleeding", "seen it")


def _event(video: SynthClinVideo) -> tuple[float, float]:
    event = video.annotation["events"][0]
    return event["start"], event["end"]


def test_oracle_episode_finds_the_evidence(synth_video: SynthClinVideo) -> None:
    window = _event(synth_video)
    ref = Reference(answer=synth_video.annotation["events"][0]["label"], windows=(window,))
    episode = run_episode(OracleBackend(ref), synth_video.video_path, "What happens?", sample_id="q1",
                          reference={"answer": ref.answer, "evidence": [list(window)]})
    assert [t.kind for t in episode.turns] == ["tool_call", "tool_call", "tool_call", "answer"]
    assert [t.tool for t in episode.turns[:3]] == ["crop_video", "crop_video", "get_frame"]
    assert episode.answer == ref.answer and episode.tool_calls == 3 and not episode.forced_answer
    assert episode.evidence == [list(window)] and episode.evidence_source == "tools"
    assert episode.last_crop == list(window) and episode.last_frame == pytest.approx(sum(window) / 2, abs=0.01)
    fine = episode.turns[1].observation
    assert fine is not None and all(window[0] <= t <= window[1] for t in fine.timestamps)
    assert episode.frames_viewed == 16 + len(episode.turns[0].observation.timestamps) + len(fine.timestamps) + 3
    assert episode.backend == {"backend": "scripted", "model": "oracle"}


def _views(episode: Any) -> list[list[float]]:
    return [episode.overview.timestamps, *(t.observation.timestamps for t in episode.turns if t.observation)]


def test_teacher_steps_follow_from_what_was_seen(synth_video: SynthClinVideo) -> None:
    """Every time the teacher writes is a label of a frame it has seen (or an end of the video): a model that
    learns to copy labels can follow it. Found evidence is cropped ever closer and answered with the window from
    the first frame that shows it to the first frame after it."""
    from medscope.eval.metrics import iou

    duration = synth_video.annotation["duration"]
    for event in synth_video.annotation["events"]:
        window = (event["start"], event["end"])
        phases = [(f"{p['label']} phase", (p["start"], p["end"])) for p in synth_video.annotation["phases"]]
        holder = next(k for k, (_, (s, e)) in enumerate(phases) if s <= sum(window) / 2 < e)
        search = tuple(phases[holder:] + phases[:holder])  # the right phase first
        ref = Reference(answer="x", windows=(window,), grounding=True, search=search)
        episode = run_episode(TeacherBackend(ref), synth_video.video_path, "When?", sample_id="q1")
        views = _views(episode)
        for k, turn in enumerate(episode.turns[:-1]):
            assert turn.tool == "crop_video"
            args = turn.observation.arguments  # type: ignore[union-attr]
            labels = {round(t, 1) for view in views[: k + 1] for t in view} | {0.0, round(duration, 1)}
            assert {round(args["start_time"], 1), round(args["end_time"], 1)} <= labels
            assert args["start_time"] <= window[1] and window[0] <= args["end_time"]  # it holds (part of) it
        windows = parse_windows(episode.answer or "")
        assert isinstance(windows, tuple) and len(windows) == 1
        answer = windows[0]
        seen = {round(t, 1) for view in views for t in view} | {0.0, round(duration, 1)}
        assert {round(answer[0], 1), round(answer[1], 1)} <= seen  # the ends of a crop are labels seen before it
        assert window[0] <= answer[0] < window[1] <= answer[1]  # from a frame inside it to the first one after it
        assert iou(answer, window) >= 0.3 and len(episode.turns) <= 4
        assert episode.turns[-1].tool is None and episode.backend["model"] == "teacher"


def test_teacher_searches_the_implied_phases_in_order(synth_video: SynthClinVideo) -> None:
    """Evidence no overview frame shows: the teacher crops the phases the question implies, most likely first,
    each between the overview frames around it, and moves on after a miss."""
    annotation = synth_video.annotation
    coarse = AgentConfig(tools=ToolConfig(overview_frames=4))  # so that some event falls between overview frames
    overview = run_episode(ReplayBackend([ANSWER]), synth_video.video_path, "When?", coarse).overview
    assert overview is not None
    event = next(e for e in annotation["events"]
                 if not any(e["start"] <= t < e["end"] for t in overview.timestamps))
    window = (event["start"], event["end"])
    phases = [(f"{p['label']} phase", (p["start"], p["end"])) for p in annotation["phases"]]
    holder = next(k for k, (_, (s, e)) in enumerate(phases) if s <= sum(window) / 2 < e)
    wrong = phases[(holder + 3) % len(phases)]
    ref = Reference(answer="x", windows=(window,), grounding=True, search=(wrong, phases[holder]))
    episode = run_episode(TeacherBackend(ref), synth_video.video_path, "When?", coarse)
    first = episode.turns[0]
    assert wrong[0] in first.think and first.observation is not None
    s, e = first.observation.arguments["start_time"], first.observation.arguments["end_time"]
    assert s <= wrong[1][0] + 1e-6 and wrong[1][1] - 1e-6 <= e  # the phase, bracketed by overview frames
    assert phases[holder][0] in episode.turns[1].think  # the miss sends it to the next phase


def test_teacher_looks_at_a_named_moment(synth_video: SynthClinVideo) -> None:
    ref = Reference(answer="calot triangle dissection", windows=((10.0, 50.0),), moment=30.5)
    episode = run_episode(TeacherBackend(ref), synth_video.video_path, "Which phase is under way at 30.5s?")
    assert episode.turns[0].tool == "get_frame" and episode.turns[0].observation is not None
    assert episode.turns[0].observation.arguments == {"timestamp": 30.5}
    assert episode.answer == "calot triangle dissection"


def test_observations_reach_the_model_as_timestamped_images(synth_path: Path) -> None:
    backend = ReplayBackend([CROP, ANSWER])
    episode = run_episode(backend, synth_path, "What happens?")
    system, user = backend.prompts[0][:2]
    assert "crop_video" in message_text(system) and "Rules:" in message_text(system)
    assert episode.prompt_version == PROMPT_VERSION
    assert len(message_images(user)) == 16 and "Question: What happens?" in message_text(user)
    tool = backend.prompts[1][-1]
    assert tool["role"] == "tool" and len(message_images(tool)) == 8
    parts = tool["content"]
    labels = [parts[i - 1]["text"] for i, p in enumerate(parts) if p["type"] == "image"]  # right before each image
    assert labels == [f"[{31 + 2 * j:.1f}s]" for j in range(8)]


def test_a_backend_trained_with_the_short_prompt_gets_it(synth_path: Path) -> None:
    backend = ReplayBackend([ANSWER])
    backend.prompt = "short"  # what HFBackend reads from a model's config
    episode = run_episode(backend, synth_path, "What happens?")
    system = message_text(backend.prompts[0][0])
    assert system == system_prompt(overview_frames=16, max_turns=6, max_frames=64, explicit_evidence=False,
                                   prompt="short")
    assert episode.prompt_version == f"{PROMPT_VERSION}-short"


@pytest.mark.parametrize(
    ("bad", "needle"),
    [
        ('<think>x</think><tool_call>{"name": "crop_video", "arguments": {start: 1}}</tool_call>', "not valid JSON"),
        ('<think>x</think><tool_call>{"name": "zoom", "arguments": {}}</tool_call>', "Unknown tool"),
        (CROP + FRAME, "one tool per turn"),
        ("<think>I will answer later</think>", "No <tool_call> or <answer>"),
        (render_tool_call("crop_video", {"start_time": 50, "end_time": 40}, "x"), "greater than start_time"),
        ("<answer>A</answer><evidence>[[500, 510]]</evidence>", "outside the video"),
    ],
)
def test_malformed_turn_becomes_tool_error_and_episode_continues(synth_path: Path, bad: str, needle: str) -> None:
    backend = ReplayBackend([bad, FRAME, ANSWER])
    episode = run_episode(backend, synth_path, "What happens?")
    assert needle in (episode.turns[0].error or "")
    feedback = message_text(backend.prompts[1][-1])
    assert backend.prompts[1][-1]["role"] == "tool" and needle in feedback
    assert [t.kind for t in episode.turns][1:] == ["tool_call", "answer"] and episode.answer == "bleeding"
    assert episode.errors == [episode.turns[0].error]


def test_turn_budget_forces_an_answer(synth_path: Path) -> None:
    backend = ReplayBackend([FRAME, FRAME, ANSWER])
    episode = run_episode(backend, synth_path, "q", AgentConfig(max_turns=2))
    assert [t.forced for t in episode.turns] == [False, False, True]
    assert episode.answer == "bleeding" and episode.forced_answer
    assert "no tool calls left" in message_text(backend.prompts[2][-1])


def test_forced_turn_without_answer_ends_unanswered(synth_path: Path) -> None:
    episode = run_episode(ReplayBackend([FRAME]), synth_path, "q", AgentConfig(max_turns=1))
    assert len(episode.turns) == 2 and episode.answer is None and episode.forced_answer
    assert episode.evidence == [[40.0, 40.0]]  # a get_frame is still evidence of where it looked


def test_frame_budget_forces_an_answer(synth_path: Path) -> None:
    config = AgentConfig(max_turns=6, tools=ToolConfig(max_frames=19))
    episode = run_episode(ReplayBackend([FRAME, CROP, ANSWER]), synth_path, "q", config)
    assert episode.frames_viewed == 19 and episode.turns[1].forced
    assert episode.tool_calls == 1


def test_explicit_evidence_overrides_tools(synth_path: Path) -> None:
    answer = render_answer("bleeding", "seen", [(31.0, 35.0)])
    config = AgentConfig(explicit_evidence=True)
    episode = run_episode(ReplayBackend([CROP, answer]), synth_path, "q", config)
    assert episode.evidence == [[31.0, 35.0]] and episode.evidence_source == "explicit"
    assert episode.last_crop == [30.0, 46.0]


def test_uniform_and_random_baselines(synth_video: SynthClinVideo) -> None:
    window = _event(synth_video)
    ref = Reference(answer="[x]", windows=(window,), grounding=True)
    uniform = run_episode(UniformBackend(ref), synth_video.video_path, "When?")
    assert uniform.tool_calls == 0 and uniform.frames_viewed == 16 and uniform.answer
    rand = run_episode(RandomBackend(ref, seed=3), synth_video.video_path, "When?")
    assert rand.tool_calls == 2 and rand.answer and rand.answer.startswith("[")


def test_trace_round_trip(synth_video: SynthClinVideo, tmp_path: Path) -> None:
    ref = Reference(answer="smoke", windows=(_event(synth_video),))
    episodes = [run_episode(OracleBackend(ref), synth_video.video_path, f"q{i}", sample_id=f"s{i}") for i in range(2)]
    episodes.append(run_episode(ReplayBackend(["garbage", ANSWER]), synth_video.video_path, "q3"))
    trace = tmp_path / "trace.jsonl"
    for episode in episodes:
        append_episode(trace, episode)
    back = list(read_episodes(trace))
    assert [e.to_dict() for e in back] == [e.to_dict() for e in episodes]
    assert isinstance(back[0], Episode) and back[0].turns[0].observation is not None
    text = trace.read_text()
    assert len(text.splitlines()) == 3
    assert "PIL" not in text and len(text) < 12_000 * 3  # timestamps and indices only, never pixels


def test_trace_reader_names_the_bad_line(tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    trace.write_text('{"schema": "medscope.episode/1"}\n{not json\n')
    with pytest.raises(ValueError, match=r"t.jsonl:1"):
        list(read_episodes(trace))


def test_every_view_follows_the_question(synth_video: SynthClinVideo) -> None:
    """The question (and its options) comes right before the frames of every view: the overview and each tool
    result, so that what the model looks for is next to what it looks at; an error too, before what to fix."""
    from medscope.agent.backends.base import message_text

    backend = ReplayBackend(["<think>oops</think>", CROP, ANSWER])
    run_episode(backend, synth_video.video_path, "Which tool?", options=["grasper", "hook"])
    last = backend.prompts[-1]
    views = [m for m in last if m["role"] in ("user", "tool") and any(p["type"] == "image" for p in m["content"])]
    assert len(views) == 2  # the overview and the crop
    for view in views:
        head = view["content"][0]["text"]
        assert head.startswith("Question: Which tool?\nOptions:\nA. grasper\nB. hook\n")
    error = next(m for m in last if m["role"] == "tool" and "Format error" in message_text(m))
    assert message_text(error).startswith("Question: Which tool?\nOptions:\nA. grasper\nB. hook\nFormat error: ")


def test_a_trace_in_the_overview_sends_the_teacher_before_it(tmp_path: Path) -> None:
    """An event no overview frame shows, whose faded trace one does: the teacher crops between the overview frame
    before the trace and the first that shows it (that span holds the event), closes in, and answers tightly;
    the uniform policy, which cannot look closer, answers that span itself. The suite carries the traces to them."""
    from medscope.eval.metrics import iou
    from medscope.suite.build import BuildConfig, build
    from medscope.suite.records import read_jsonl
    from medscope.suite.trajectories import reference_for
    from medscope.video.synthclin import SynthClinConfig, generate

    video = generate(SynthClinConfig(duration_seconds=240.0, fps=2.0, keyframe_seconds=0.5, events_per_10min=10.0,
                                     seed=11, trace_seconds=3600.0, distinct_events=True), tmp_path)
    build(BuildConfig(source="synthclin", annotations=str(video.annotation_path), out=str(tmp_path / "suite"),
                      workers=1))
    samples = {s.meta["label"]: s for s in read_jsonl(tmp_path / "suite" / "samples.jsonl")
               if s.task == "grounding" and s.meta.get("segment_kind") == "event"}
    coarse = AgentConfig(tools=ToolConfig(overview_frames=8))
    checked = 0
    for event in video.annotation["events"]:
        sample = samples[event["label"]]
        assert sample.meta["traces"] == [[event["end"], event["trace_end"]]]
        window = (event["start"], event["end"])
        episode = run_episode(TeacherBackend(reference_for(sample)), video.video_path, sample.question, coarse)
        overview = _views(episode)[0]
        if any(window[0] <= t < window[1] for t in overview) or not any(t >= window[1] for t in overview):
            continue  # the overview shows the event itself, or no frame after it
        checked += 1
        mark = min(t for t in overview if t >= window[1])
        before = max((t for t in overview if t < mark), default=0.0)
        first = episode.turns[0]
        assert first.tool == "crop_video" and "trace" in first.think and first.observation is not None
        assert (first.observation.arguments["start_time"], first.observation.arguments["end_time"]) == (before, mark)
        answer = parse_windows(episode.answer or "")
        assert isinstance(answer, tuple) and iou(answer[0], window) >= 0.3, (episode.answer, window)
        uniform = run_episode(UniformBackend(reference_for(sample)), video.video_path, sample.question, coarse)
        assert parse_windows(uniform.answer or "") == ((before, mark),)
        assert uniform.tool_calls == 0 and "trace" in uniform.turns[0].think
    assert checked >= 2
