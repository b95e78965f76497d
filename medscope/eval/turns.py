"""Turn by turn against the reference trajectories: at which step a model loses the evidence.

An episode's grounding IoU says that a model failed, not where. Here the model writes every assistant turn of every
reference trajectory (``trajectories.jsonl`` of a built suite) from the reference conversation up to that turn: the
reference's earlier turns, the real observations of its tool calls, the agent's system prompt, grammar and budget.
Each turn is scored against the sample's evidence:

- ``action``: the model does what the reference does (answers, or calls the same tool);
- ``overlap``: the model's window overlaps the evidence (a crop's window, a frame's moment, a grounding answer's
  windows); ``ref_overlap``: the reference's does; ``iou``: the model's window's IoU with the evidence.

Turns are grouped by what the model was last shown: the overview (the first turn) or a tool's frames, with a frame
inside the evidence (``view``: ``seen``) or without one (``unseen``), and by the reference's action. A model that
matches the reference after ``unseen`` views but not after ``seen`` ones searches without seeing; one that fails only
at answers sees without pointing. ``overlaps evidence`` scores the window the model wrote, whatever its action.

``turns.jsonl`` holds one line per turn, written a trajectory at a time: a rerun skips the trajectories it finished.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from medscope.agent import protocol
from medscope.agent.backends import Backend, BackendOptions
from medscope.agent.backends.base import backend_prompt, message_text
from medscope.agent.backends.scripted import shows
from medscope.agent.grammar import TOOL_NAMES, TurnFormat
from medscope.agent.loop import AgentConfig
from medscope.agent.protocol import FinalAnswer, ToolCall, Window, parse_answer_windows, parse_turn
from medscope.eval.folder import read_lines, repair_tail
from medscope.eval.metrics import set_iou
from medscope.eval.runner import backend_factory
from medscope.eval.tables import clustered_se
from medscope.io import json_line, write_text_atomic
from medscope.suite.records import Trajectory, read_jsonl
from medscope.train.data import trajectory_messages
from medscope.video.source import VideoSource
from medscope.video.tools import VideoTools


@dataclass(frozen=True)
class TurnsConfig:
    trajectories: str = field(default="", metadata={"help": "trajectories.jsonl from `medscope suite build`"})
    out: str = field(default="", metadata={"help": "output folder (turns.jsonl, turns.md)"})
    backend: str = field(default="hf", metadata={"help": "hf | openai | oracle | teacher | uniform | random"})
    model: str | None = field(
        default=None, metadata={"help": "hf: model folder (default: the built-in medscope-tiny); openai: model name"}
    )
    base_url: str | None = field(default=None, metadata={"help": "openai: server URL"})
    options: BackendOptions = field(default_factory=BackendOptions)
    tasks: tuple[str, ...] = field(default=("grounding",), metadata={"help": "tasks whose trajectories are probed"})
    limit: int = field(default=0, metadata={"help": "probe only the first N trajectories of these tasks (0: all)"})
    agent: AgentConfig = field(default_factory=AgentConfig)


def turn_window(text: str, *, duration: float, grounding: bool) -> tuple[Window, ...] | None:
    """The window(s) a turn points at: a crop's, a frame's moment, a grounding answer's; None when it names none."""
    parsed = parse_turn(text, duration=duration)
    if isinstance(parsed, ToolCall) and isinstance(parsed.arguments, dict):
        args = parsed.arguments
        try:
            if parsed.name == "crop_video":
                return ((float(args["start_time"]), float(args["end_time"])),)
            if parsed.name == "get_frame":
                return ((float(args["timestamp"]), float(args["timestamp"])),)
        except (KeyError, TypeError, ValueError):
            return None
    if isinstance(parsed, FinalAnswer) and grounding:
        return parse_answer_windows(parsed.answer)
    return None


def action(text: str, *, duration: float) -> str:
    """``answer``, the tool's name, or ``format_error``."""
    parsed = parse_turn(text, duration=duration)
    if isinstance(parsed, FinalAnswer):
        return "answer"
    return parsed.name if isinstance(parsed, ToolCall) else "format_error"


def overlaps(windows: Sequence[Window], evidence: Sequence[Window]) -> bool:
    """Whether any window (a moment included) meets the evidence."""
    return any(s <= e_end and e_start <= e for s, e in windows for e_start, e_end in evidence)


def score_turn(model_text: str, reference_text: str, *, evidence: Sequence[Window], duration: float,
               grounding: bool) -> dict[str, float | None]:
    """One turn's scores (``overlap``, ``ref_overlap`` and ``iou`` are None where the reference points at nothing)."""
    mine = turn_window(model_text, duration=duration, grounding=grounding)
    ref = turn_window(reference_text, duration=duration, grounding=grounding)
    same = action(model_text, duration=duration) == action(reference_text, duration=duration)
    if ref is None or not evidence:
        return {"action": float(same), "overlap": None, "ref_overlap": None, "iou": None}
    return {"action": float(same), "overlap": float(bool(mine) and overlaps(mine or (), evidence)),
            "ref_overlap": float(overlaps(ref, evidence)), "iou": set_iou(list(mine), evidence) if mine else 0.0}


def last_view(trajectory: Trajectory, index: int) -> list[float]:
    """The timestamps the model saw last before turn ``index``: the overview, or the previous call's frames."""
    if index == 0:
        return list(trajectory.overview)
    observation = trajectory.turns[index - 1].get("observation") or {}
    return list(observation.get("timestamps") or [])


def view_kind(trajectory: Trajectory, index: int) -> str:
    """``seen`` when a frame of the last view shows the evidence (as the teacher counts frames), else ``unseen``."""
    evidence = trajectory.sample.evidence or []
    seen = last_view(trajectory, index)
    return "seen" if any(shows(t, (s, e)) for t in seen for s, e in evidence) else "unseen"


def probe_trajectory(backend: Backend, trajectory: Trajectory, agent: AgentConfig) -> list[dict[str, Any]]:
    """Every assistant turn of ``trajectory``, written by ``backend`` from the reference conversation before it."""
    sample = trajectory.sample
    evidence = [(float(s), float(e)) for s, e in sample.evidence or []]
    grounding = sample.task == "grounding"
    with VideoSource(sample.video) as source:
        # Training may show fewer overview frames on purpose; a probe of the reference's turns may not.
        shown = VideoTools(source, agent.tools).overview().timestamps
        if trajectory.overview and list(shown) != list(trajectory.overview):
            raise ValueError(f"{sample.id}: the agent's overview ({len(shown)} frames) is not the one the trajectory "
                             f"was built with ({len(trajectory.overview)} frames); pass the tool flags it was built "
                             "with (e.g. --overview-frames)")
        messages = trajectory_messages(trajectory, source, agent, prompt=backend_prompt(backend))
        duration = source.duration_seconds
    stop = protocol.stop_strings(explicit_evidence=agent.explicit_evidence)
    assistant = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
    lines = []
    for index, at in enumerate(assistant):
        fmt = TurnFormat(tools=TOOL_NAMES, windows=grounding, explicit_evidence=agent.explicit_evidence,
                         duration=duration) if agent.grammar else None
        text = backend.generate(messages[:at], stop=stop, max_new_tokens=agent.max_new_tokens, turn=fmt)
        reference = message_text(messages[at])
        lines.append({"id": sample.id, "video": sample.video, "task": sample.task, "turn": index,
                      "view": view_kind(trajectory, index),
                      "ref_action": action(reference, duration=duration), "reference": reference, "model": text,
                      "scores": score_turn(text, reference, evidence=evidence, duration=duration,
                                           grounding=grounding)})
    return lines


def _mean_se(lines: Sequence[dict[str, Any]], score: str) -> str:
    """Mean ± standard error of one score over the lines that have it, clustered by video as the eval tables give it:
    turns of one video are not independent."""
    scored = [line for line in lines if line["scores"][score] is not None]
    if not scored:
        return "–"
    values = [line["scores"][score] for line in scored]
    return f"{sum(values) / len(values):.2f} ± {clustered_se(values, [line['video'] for line in scored]):.2f}"


def table(lines: Sequence[dict[str, Any]]) -> str:
    """Markdown: per (view, reference action), the turns and each score's mean ± standard error."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for line in lines:
        key = ("overview" if line["turn"] == 0 else "a tool's", line["view"], line["ref_action"])
        groups.setdefault(key, []).append(line)
    out = ["| last view | evidence in it | reference does | turns | same action | overlaps evidence | "
           "reference overlaps | IoU |", "|---|---|---|---|---|---|---|---|"]
    for key in sorted(groups, key=lambda k: (k[0] != "overview", k[1], k[2])):
        rows = groups[key]
        cells = [_mean_se(rows, score) for score in ("action", "overlap", "ref_overlap", "iou")]
        out.append(f"| {key[0]} | {'yes' if key[1] == 'seen' else 'no'} | {key[2]} | {len(rows)} | "
                   + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def run(config: TurnsConfig) -> list[dict[str, Any]]:
    """Probe the trajectories (resuming from ``turns.jsonl``), write ``turns.md``; returns every line."""
    if not config.trajectories or not config.out:
        raise ValueError("turns needs --trajectories trajectories.jsonl and --out DIR")
    picked = [t for t in read_jsonl(config.trajectories, "trajectory") if t.sample.task in config.tasks]
    picked = picked[: config.limit] if config.limit else picked
    if not picked:
        raise ValueError(f"{config.trajectories} holds no trajectories of tasks {', '.join(config.tasks)}; "
                         "give --tasks that it holds")
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "turns.jsonl"
    repair_tail(path)
    done = {line["id"] for line in read_lines(path)}
    backend = backend_factory(config.backend, model=config.model, base_url=config.base_url, options=config.options)
    with path.open("a", encoding="utf-8") as handle:
        for trajectory in tqdm([t for t in picked if t.sample.id not in done], desc="turns", unit="trajectory"):
            turns = probe_trajectory(backend(trajectory.sample), trajectory, config.agent)
            handle.write("".join(json_line(line) for line in turns))
            handle.flush()
    lines = read_lines(path)
    write_text_atomic(out / "turns.md", table(lines))
    return lines

