"""One episode of thinking with a video: overview → (think → tool call → observation)* → answer.

``run_episode`` is the whole agent. Each model turn is parsed by the protocol; a tool call runs against the
video tools; anything the model got wrong (bad JSON, unknown tool, bad times, two calls, no answer) goes
back to it as a tool message and the episode goes on. When the turn or frame budget is spent, one last
turn asks for an answer. Errors we cause (an unreadable video, a server that is down) are raised.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medscope.agent import protocol
from medscope.agent.backends.base import Backend, Message, backend_prompt, text_part
from medscope.agent.grammar import TOOL_NAMES, TurnFormat
from medscope.agent.protocol import FinalAnswer, FormatError, ToolCall
from medscope.agent.trace import Episode, ObservationRecord, TurnRecord
from medscope.io import repair_text
from medscope.video.source import VideoSource
from medscope.video.tools import Observation, ToolConfig, VideoTools


@dataclass(frozen=True)
class AgentConfig:
    max_turns: int = field(default=6, metadata={"help": "model turns before a final answer is forced"})
    max_new_tokens: int = field(default=512, metadata={"help": "generated tokens per turn"})
    explicit_evidence: bool = field(
        default=False, metadata={"help": "ask the model for <evidence> windows (else: its last crop/get_frame)"}
    )
    grammar: bool = field(default=True, metadata={
        "help": "constrain each turn to the protocol's grammar where the backend can (hf): the model still chooses "
                "every word, tool and number, but cannot break the format"})
    tools: ToolConfig = field(default_factory=ToolConfig)

    def __post_init__(self) -> None:
        if self.max_turns < 1 or self.max_new_tokens < 1:
            raise ValueError(f"max_turns and max_new_tokens must be >= 1, got {self.max_turns}, {self.max_new_tokens}")


def _record(obs: Observation) -> ObservationRecord:
    return ObservationRecord(obs.tool, dict(obs.arguments), obs.timestamps, [f.index for f in obs.frames],
                             list(obs.notes))


def run_episode(
    backend: Backend,
    video: str | Path | VideoSource,
    question: str,
    config: AgentConfig | None = None,
    *,
    options: list[str] | None = None,
    task: str | None = None,
    sample_id: str = "",
    reference: dict[str, Any] | None = None,
    on_turn: Callable[[TurnRecord], None] | None = None,
) -> Episode:
    """Run the agent on one question about one video and return the full episode record."""
    config = config or AgentConfig()
    source = video if isinstance(video, VideoSource) else VideoSource(video)
    try:
        return _run(backend, source, question, config, options, task, sample_id, reference, on_turn)
    finally:
        if source is not video:
            source.close()


def _run(
    backend: Backend,
    source: VideoSource,
    question: str,
    config: AgentConfig,
    options: list[str] | None,
    task: str | None,
    sample_id: str,
    reference: dict[str, Any] | None,
    on_turn: Callable[[TurnRecord], None] | None,
) -> Episode:
    started = time.perf_counter()
    duration = source.duration_seconds
    tools = VideoTools(source, config.tools)
    overview = tools.overview()
    prompt = backend_prompt(backend)
    episode = Episode(
        question=question, video=str(source.path), duration=duration, backend=backend.identity(), id=sample_id,
        task=task, options=options, config=dataclasses.asdict(config), prompt_version=protocol.prompt_version(prompt),
        overview=_record(overview), reference=reference,
    )
    system = protocol.system_prompt(
        overview_frames=config.tools.overview_frames, max_turns=config.max_turns,
        max_frames=config.tools.max_frames, explicit_evidence=config.explicit_evidence, prompt=prompt,
    )
    messages: list[Message] = [
        {"role": "system", "content": [text_part(system)]},
        protocol.first_user_message(question, overview, duration=duration, options=options),
    ]
    stop = protocol.stop_strings(explicit_evidence=config.explicit_evidence)
    answer: FinalAnswer | None = None
    for index in range(config.max_turns + 1):
        forced = index == config.max_turns or tools.frames_left <= 0
        if forced:
            messages.append({"role": "user", "content": [text_part(protocol.FORCE_ANSWER)]})
        turn, answer = _turn(backend, messages, stop, config, tools, index, forced, episode)
        episode.turns.append(turn)
        if on_turn is not None:
            on_turn(turn)
        if answer is not None or forced:
            break
    _finish(episode, answer, tools)
    episode.seconds = time.perf_counter() - started
    return episode


def _turn(
    backend: Backend,
    messages: list[Message],
    stop: tuple[str, ...],
    config: AgentConfig,
    tools: VideoTools,
    index: int,
    forced: bool,
    episode: Episode,
) -> tuple[TurnRecord, FinalAnswer | None]:
    t0 = time.perf_counter()
    # a lone surrogate from a server would break every write of the episode: repaired here, once
    # A forced turn (budget spent) may only answer; a "when" question is answered with windows.
    fmt = TurnFormat(tools=() if forced else TOOL_NAMES, windows=episode.task == "grounding",
                     explicit_evidence=config.explicit_evidence,
                     duration=tools.source.duration_seconds) if config.grammar else None
    raw = repair_text(backend.generate(messages, stop=stop, max_new_tokens=config.max_new_tokens, turn=fmt))
    generate_seconds = time.perf_counter() - t0
    parsed = protocol.parse_turn(raw, duration=tools.source.duration_seconds)
    messages.append({"role": "assistant", "content": [text_part(raw)]})
    turn = TurnRecord(index=index, raw=raw, kind="answer", think=parsed.think, forced=forced,
                      generate_seconds=generate_seconds)
    if isinstance(parsed, FinalAnswer):
        return turn, parsed
    if forced:  # no more tools: a call or a malformed turn here ends the episode without an answer
        turn.kind = "format_error"
        turn.error = "The budget was spent and the last turn gave no answer."
        return turn, None
    if isinstance(parsed, FormatError):
        turn.kind, turn.error = "format_error", parsed.message
        messages.append(protocol.observation_message(parsed, episode.question, episode.options))
        return turn, None
    assert isinstance(parsed, ToolCall)
    turn.kind, turn.tool, turn.arguments = "tool_call", parsed.name, parsed.arguments
    t1 = time.perf_counter()
    result = tools.call(parsed.name, parsed.arguments)
    turn.tool_seconds = time.perf_counter() - t1
    episode.tool_calls += 1
    if isinstance(result, Observation):
        turn.observation = _record(result)
        if result.tool == "crop_video":
            episode.last_crop = [result.arguments["start_time"], result.arguments["end_time"]]
        else:
            episode.last_frame = result.arguments["timestamp"]
    else:
        turn.error = result.message
    messages.append(protocol.observation_message(result, episode.question, episode.options))
    return turn, None


def _finish(episode: Episode, answer: FinalAnswer | None, tools: VideoTools) -> None:
    episode.frames_viewed = tools.frames_used
    episode.forced_answer = bool(episode.turns and episode.turns[-1].forced)
    if answer is not None:
        episode.answer = answer.answer
    if answer is not None and answer.evidence is not None:
        episode.evidence = [[s, e] for s, e in answer.evidence]
        episode.evidence_source = "explicit"
    elif episode.last_crop is not None:  # as in the paper: the last crop_video window is the evidence
        episode.evidence = [list(episode.last_crop)]
        episode.evidence_source = "tools"
    elif episode.last_frame is not None:
        episode.evidence = [[episode.last_frame, episode.last_frame]]
        episode.evidence_source = "tools"
