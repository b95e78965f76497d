"""``medscope ask``: one question about one video, with a live line per turn, a trace and a report."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from medscope.agent.backends import Backend, BackendOptions, make_backend
from medscope.agent.backends.scripted import Reference, synthclin_reference
from medscope.agent.loop import AgentConfig, run_episode
from medscope.agent.trace import Episode, TurnRecord, append_episode
from medscope.video.source import VideoSource


@dataclass(frozen=True)
class AskConfig:
    backend: str = field(default="hf", metadata={"help": "hf | openai | oracle | teacher | uniform | random"})
    model: str | None = field(
        default=None, metadata={"help": "hf: local model folder (default: built-in medscope-tiny); openai: model name"}
    )
    base_url: str | None = field(default=None, metadata={"help": "openai: server URL, e.g. http://localhost:8000/v1"})
    options: BackendOptions = field(default_factory=BackendOptions)
    annotations: str | None = field(
        default=None, metadata={"help": "scripted backends: SynthClin annotation JSON (default: VIDEO with .json)"}
    )
    report: str | None = field(default=None, metadata={"help": "write the HTML evidence report here"})
    trace: str | None = field(default=None, metadata={"help": "append the episode to this JSONL trace"})


def load_reference(video: Path, question: str, annotations: str | None) -> tuple[Reference, dict]:
    path = Path(annotations) if annotations else video.with_suffix(".json")
    if not path.is_file():
        raise ValueError(
            f"scripted backends answer from ground truth, and {path} does not exist. Give --annotations "
            "SYNTHCLIN.json, or use a model: --backend hf --model PATH or --backend openai --model NAME --base-url URL"
        )
    annotation = json.loads(path.read_text())
    reference = synthclin_reference(annotation, question)
    return reference, {"answer": reference.answer, "evidence": [list(w) for w in reference.windows]}


def print_turn(turn: TurnRecord) -> None:
    if turn.kind == "tool_call":
        args = turn.arguments if not isinstance(turn.arguments, dict) else ", ".join(
            f"{k}={v}" for k, v in turn.arguments.items())
        seen = f"{len(turn.observation.timestamps)} frames" if turn.observation else f"error: {turn.error}"
        line = f"{turn.tool}({args}) -> {seen}"
    elif turn.kind == "answer":
        line = "answer" + (" (forced)" if turn.forced else "")
    else:
        line = f"format error: {turn.error}"
    print(f"  turn {turn.index + 1}: {line}  [{turn.generate_seconds + turn.tool_seconds:.2f}s]", file=sys.stderr,
          flush=True)


def ask(video: str, question: str, config: AskConfig, agent: AgentConfig) -> Episode:
    video_path = Path(video)
    with VideoSource(video_path) as source:  # a bad video is reported before anything else is loaded
        return _ask(source, question, config, agent)


def _ask(source: VideoSource, question: str, config: AskConfig, agent: AgentConfig) -> Episode:
    video_path = source.path
    reference: dict | None = None
    backend: Backend
    if config.backend in ("oracle", "teacher", "uniform", "random"):
        ref, reference = load_reference(video_path, question, config.annotations)
        backend = make_backend(config.backend, reference=ref)
    else:
        backend = make_backend(config.backend, model=config.model, base_url=config.base_url, options=config.options)
    print(f"{config.backend}: {question}", file=sys.stderr)
    episode = run_episode(backend, source, question, agent, reference=reference, on_turn=print_turn)
    if config.trace:
        append_episode(config.trace, episode)
    if config.report:
        from medscope.report.html import render_report

        render_report([episode], config.report)
    return episode
