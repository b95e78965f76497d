"""Reference trajectories in the agent's exact protocol, produced by running the teacher on the real video.

- VCoT (visual chain of thought, hard questions): the teacher policy's episode (``TeacherBackend``): where the
  overview shows the evidence, ``crop_video`` between the overview frames around it; where it does not, the
  phase the question implies (``with_search_order``: the phases where that label's evidence usually lies), then
  the next on a miss; closer crops between the frames around what a crop showed; the answer window between the
  frames around the evidence. A time the question names gets ``get_frame`` there. Every step follows from frames
  already seen and every time written is a label seen, so a model can learn it.
- CoT (easy questions, no tools): the evidence is already visible in the overview (or the question is about
  the whole video), so one turn reasons over the overview frames and answers.

Because the teacher runs through ``run_episode`` on the real tools, every observation a trajectory claims
is what the tool returns; ``replay`` checks that again.
"""

from __future__ import annotations

import dataclasses
from collections import Counter, defaultdict
from collections.abc import Sequence

from medscope.agent.backends.scripted import Reference, TeacherBackend, shows
from medscope.agent.loop import AgentConfig, run_episode
from medscope.agent.protocol import ToolCall, parse_turn, render_answer
from medscope.suite.records import Sample, Trajectory
from medscope.video.source import VideoSource
from medscope.video.tools import Observation, ToolConfig, VideoTools


def reference_for(sample: Sample) -> Reference:
    windows = tuple((float(s), float(e)) for s, e in sample.evidence)
    context = sample.meta.get("context") or {}
    window = context.get("window")
    search = tuple((str(label), (float(start), float(end))) for label, start, end in sample.meta.get("search", []))
    moment = sample.meta.get("moment")
    traces = tuple((float(s), float(e)) for s, e in sample.meta.get("traces", []))
    return Reference(answer=sample.answer, windows=windows, grounding=sample.task == "grounding",
                     context=(float(window[0]), float(window[1])) if window else None,
                     context_label=str(context.get("label", "")), search=search,
                     moment=float(moment) if isinstance(moment, int | float) else None, traces=traces)


def with_search_order(samples: Sequence[Sample]) -> list[Sample]:
    """Each sample with ``meta["search"]``: its video's phases in the order a search tries them when no frame seen
    shows the evidence, most likely first. Likely means how often evidence of the same label lies in that phase
    over ``samples`` (ties: the longer phase first): what a model trained on them can learn the question implies."""
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for sample in samples:
        context = sample.meta.get("context")
        if context and sample.meta.get("label"):
            counts[str(sample.meta["label"])][str(context["label"])] += 1
    out = []
    for sample in samples:
        context = sample.meta.get("context")
        if not context or not context.get("phases"):
            out.append(sample)
            continue
        prior = counts[str(sample.meta.get("label"))]
        phases = sorted(context["phases"], key=lambda p: (-prior[str(p[0])], -(p[2] - p[1])))
        out.append(dataclasses.replace(sample, meta=sample.meta | {"search": [list(p) for p in phases]}))
    return out


def is_easy(sample: Sample, overview: list[float]) -> bool:
    """Whole-video questions, and (not for grounding, whose window a closer look sharpens) evidence that two or
    more overview frames already show."""
    if sample.task == "caption":
        return True
    hits = sum(any(shows(t, (s, e)) for s, e in sample.evidence) for t in overview)
    return sample.task != "grounding" and sample.meta.get("moment") is None and hits >= 2


def vcot_trajectory(sample: Sample, source: VideoSource, tools: ToolConfig | None = None) -> Trajectory:
    episode = run_episode(TeacherBackend(reference_for(sample)), source, sample.question,
                          AgentConfig(tools=tools or ToolConfig()), options=sample.options, task=sample.task,
                          sample_id=sample.id)
    turns = []
    for turn in episode.turns:
        obs = turn.observation
        observation = None if obs is None else {"tool": obs.tool, "arguments": obs.arguments,
                                                "timestamps": obs.timestamps}
        turns.append({"text": turn.raw, "observation": observation})
    overview = episode.overview.timestamps if episode.overview else []
    return Trajectory(sample, turns, "vcot", overview)


def cot_trajectory(sample: Sample, overview: list[float]) -> Trajectory:
    """One turn that answers from the overview frames (timestamps ``overview``) it cites."""
    inside = [t for t in overview if any(shows(t, (s, e)) for s, e in sample.evidence)]
    if sample.task == "caption":
        think = f"The overview frames from {overview[0]:.1f}s to {overview[-1]:.1f}s show the whole procedure."
    else:
        think = f"The overview frames at {', '.join(f'{t:.1f}s' for t in inside)} already show it; no tool needed."
    return Trajectory(sample, [{"text": render_answer(sample.answer, think), "observation": None}], "cot", overview)


def make_trajectory(sample: Sample, source: VideoSource, tools: ToolConfig | None = None) -> Trajectory:
    overview = VideoTools(source, tools).overview().timestamps
    if is_easy(sample, overview):
        return cot_trajectory(sample, overview)
    return vcot_trajectory(sample, source, tools)


def replay(trajectory: Trajectory, source: VideoSource, tools: ToolConfig | None = None) -> list[str]:
    """Re-run every tool call on the video; returns the mismatches (empty when the trajectory replays)."""
    video_tools = VideoTools(source, tools)
    problems = []
    if trajectory.overview and video_tools.overview().timestamps != trajectory.overview:
        problems.append("overview timestamps differ")
    for number, turn in enumerate(trajectory.turns):
        parsed = parse_turn(turn["text"], duration=source.duration_seconds)
        claimed = turn.get("observation")
        if not isinstance(parsed, ToolCall):
            if claimed is not None:
                problems.append(f"turn {number}: claims an observation but makes no tool call")
            continue
        result = video_tools.call(parsed.name, parsed.arguments)
        if not isinstance(result, Observation):
            problems.append(f"turn {number}: the tool call fails on replay: {result.message}")
        elif claimed is None or claimed["timestamps"] != result.timestamps:
            problems.append(f"turn {number}: {parsed.name} returns {result.timestamps}, the trajectory claims "
                            f"{None if claimed is None else claimed['timestamps']}")
    return problems
