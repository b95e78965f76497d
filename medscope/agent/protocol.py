"""The agent's text protocol: the system prompt, rendering of turns, and parsing of what a model wrote.

An assistant turn is ``<think>…</think>`` followed by exactly one of
``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` or ``<answer>…</answer>`` (optionally followed by
``<evidence>[[s, e], …]</evidence>``). ``parse_turn`` is lenient on whitespace, a missing ``</think>`` and a
closing tag cut off by a stop string, strict on structure, and never raises: a malformed turn becomes a
``FormatError`` whose message tells the model the expected format.

This module depends on no model library; the loop, the suite's trajectories and the rewards share it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2

from medscope.agent.backends.base import Message, image_part, text_part
from medscope.video.tools import TOOL_SPECS, Observation, ToolError, finite_seconds

PROMPT_VERSION = "4"
Window = tuple[float, float]

FORMAT_HINT = (
    "Expected format: <think>your reasoning</think> then either "
    '<tool_call>{"name": "crop_video", "arguments": {"start_time": 10.0, "end_time": 20.0}}</tool_call> '
    "or <answer>your answer</answer>."
)


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: Any  # whatever the model wrote; the tools validate it
    think: str = ""


@dataclass(frozen=True)
class FinalAnswer:
    answer: str
    evidence: tuple[Window, ...] | None = None  # None: the model wrote no <evidence>
    think: str = ""


@dataclass(frozen=True)
class FormatError:
    message: str
    think: str = ""


Parsed = ToolCall | FinalAnswer | FormatError

_THINK = re.compile(r"<think>(.*?)(?:</think>|(?=<tool_call>|<answer>)|$)", re.S)
_TOOL = re.compile(r"<tool_call>(.*?)(?:</tool_call>|$)", re.S)
_ANSWER = re.compile(r"<answer>(.*?)(?:</answer>|(?=<evidence>)|$)", re.S)
_EVIDENCE = re.compile(r"<evidence>(.*?)(?:</evidence>|$)", re.S)


def stop_strings(*, explicit_evidence: bool) -> tuple[str, ...]:
    """Generation ends after a tool call, or after the answer block (its evidence when that is asked for)."""
    return ("</tool_call>", "</evidence>") if explicit_evidence else ("</tool_call>", "</answer>")


@cache
def _template(name: str) -> jinja2.Template:
    source = resources.files("medscope.agent").joinpath("prompts", name).read_text(encoding="utf-8")
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=False, autoescape=False)
    return env.from_string(source)


# The system prompts a model can be trained with. "full" (system.jinja, and the tools' JSON schemas through the chat
# template) explains the protocol to a model that reads instructions. "short" (system_short.jinja, no schemas) is
# one line: medscope-tiny learns the protocol from its training rows, and 850 tokens of instructions before the
# question hid from it what its curriculum taught it to see in the overview (README, "what limits the agent").
PROMPTS = ("full", "short")
# The key in a model's config.json that names the prompt it was trained with; absent: "full".
PROMPT_KEY = "medscope_prompt"


def system_prompt(*, overview_frames: int, max_turns: int, max_frames: int, explicit_evidence: bool,
                  prompt: str = "full") -> str:
    name = {"full": "system.jinja", "short": "system_short.jinja"}[check_prompt(prompt)]
    return _template(name).render(
        overview_frames=overview_frames, max_turns=max_turns,
        max_frames=max_frames, explicit_evidence=explicit_evidence,
    ).strip()


def tool_schemas(prompt: str) -> list[dict[str, Any]] | None:
    """What the chat template gets as ``tools``: the schemas with the full prompt, nothing with the short one
    (it names the tools itself)."""
    return list(TOOL_SPECS) if check_prompt(prompt) == "full" else None


def prompt_version(prompt: str) -> str:
    """What an episode records as its prompt: the version, and the prompt when it is not the full one."""
    return PROMPT_VERSION if check_prompt(prompt) == "full" else f"{PROMPT_VERSION}-{prompt}"


def check_prompt(prompt: str) -> str:
    if prompt not in PROMPTS:
        raise ValueError(f"unknown system prompt {prompt!r}; choose one of {', '.join(PROMPTS)}")
    return prompt


def model_prompt(config: Any) -> str:
    """The prompt a model was trained with, from its transformers config (``medscope_prompt``; default full)."""
    return check_prompt(getattr(config, PROMPT_KEY, None) or "full")


def folder_prompt(folder: str | Path) -> str:
    """``model_prompt`` of a model folder, read from its config.json without loading the model."""
    config = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    return check_prompt(config.get(PROMPT_KEY) or "full")


# One number format for every time a model reads or writes (frame labels, durations, windows, tool arguments in
# the teacher's turns): a model copies a time it saw instead of converting between precisions.
TIME_FORMAT = "{:.1f}"


def format_time(t: float) -> str:
    return TIME_FORMAT.format(t)


def format_seconds(t: float) -> str:
    return f"[{format_time(t)}s]"


def frame_parts(observation: Observation) -> list[dict[str, Any]]:
    """Each frame as a ``[t s]`` label right before its image."""
    parts: list[dict[str, Any]] = []
    for frame in observation.frames:
        parts.append(text_part(format_seconds(frame.pts_seconds)))
        parts.append(image_part(frame.image))
    return parts


def first_user_message(
    question: str, overview: Observation, *, duration: float, options: list[str] | None = None
) -> Message:
    """The question, the duration and the timestamped overview frames.

    The question comes first: a model that reads the frames knowing what it looks for can note the label of
    the frame that shows it as it passes; after the frames it would have to search back (a small model learns
    that copy much later)."""
    head = f"Video duration: {format_time(duration)}s. Overview ({len(overview.frames)} frames):"
    if overview.notes:  # frames a damaged file could not give
        head = head[:-1] + "; note: " + "; ".join(overview.notes) + ":"
    parts = [text_part(question_text(question, options) + "\n" + head), *frame_parts(overview)]
    return {"role": "user", "content": parts}


def question_text(question: str, options: list[str] | None = None) -> str:
    """The question (and lettered options)."""
    text = f"Question: {question.strip()}"
    if options:
        text += "\nOptions:\n" + "\n".join(f"{chr(65 + i)}. {option}" for i, option in enumerate(options))
    return text


def observation_message(
    result: Observation | ToolError | FormatError, question: str = "", options: list[str] | None = None
) -> Message:
    """A tool message: frames with timestamps, or the error the model must fix.

    Frames (or the error) come after ``question`` (and its options), as in the first user turn: every view is
    read knowing what it is looked at for. A model that learnt to note the label of the frame that shows the asked
    thing as it passes (the pointer curriculum) finds the question right before the frames, not several views
    back."""
    asked = question_text(question, options) + "\n" if question else ""
    if isinstance(result, ToolError):
        return {"role": "tool", "content": [text_part(f"{asked}Tool error ({result.tool}): {result.message}")]}
    if isinstance(result, FormatError):
        return {"role": "tool", "content": [text_part(f"{asked}Format error: {result.message}")]}
    args = ", ".join(f"{k}={v:g}" for k, v in result.arguments.items())
    head = f"{result.tool}({args}) returned {len(result.frames)} frames."
    if result.notes:
        head += " Note: " + "; ".join(result.notes) + "."
    return {"role": "tool", "content": [text_part(asked + head), *frame_parts(result)]}


FORCE_ANSWER = (
    "You have no tool calls left. Answer now from what you have seen: <think>…</think><answer>…</answer>"
)


def render_tool_call(name: str, arguments: dict[str, Any], think: str) -> str:
    return f"<think>{think}</think>\n<tool_call>{json.dumps({'name': name, 'arguments': arguments})}</tool_call>"


def render_answer(answer: str, think: str, evidence: list[Window] | None = None) -> str:
    text = f"<think>{think}</think>\n<answer>{answer}</answer>"
    if evidence is not None:
        text += "\n<evidence>" + json.dumps([[round(s, 1), round(e, 1)] for s, e in evidence]) + "</evidence>"
    return text


def render_window(window: Window) -> str:
    return f"[{format_time(window[0])}, {format_time(window[1])}]"


def render_windows(windows: Sequence[Window]) -> str:
    """A grounding answer: ``[s, e]`` for one window, ``[[s, e], [s, e]]`` for several (every truth window)."""
    if len(windows) == 1:
        return render_window(windows[0])
    return "[" + ", ".join(render_window(w) for w in windows) + "]"


def parse_turn(text: str, *, duration: float | None = None) -> Parsed:
    """Parse one assistant turn; never raises."""
    think_match = _THINK.search(text)
    think = think_match.group(1).strip() if think_match else ""
    n_calls, n_answers = text.count("<tool_call>"), text.count("<answer>")
    if n_calls > 1:
        return FormatError(f"Call one tool per turn; you wrote {n_calls} <tool_call> blocks. {FORMAT_HINT}", think)
    if n_calls and n_answers:
        return FormatError(f"Either call a tool or answer, not both in one turn. {FORMAT_HINT}", think)
    if n_answers > 1:
        return FormatError(f"Write exactly one <answer> block; you wrote {n_answers}. {FORMAT_HINT}", think)
    if n_calls:
        return _parse_call(_TOOL.search(text).group(1), think)  # type: ignore[union-attr]
    if n_answers:
        answer = _ANSWER.search(text).group(1).strip()  # type: ignore[union-attr]
        if not answer:
            return FormatError(f"The <answer> block is empty. {FORMAT_HINT}", think)
        evidence_match = _EVIDENCE.search(text)
        if evidence_match is None:
            return FinalAnswer(answer, None, think)
        windows = parse_windows(evidence_match.group(1), duration=duration)
        if isinstance(windows, str):
            return FormatError(f"Bad <evidence>: {windows} Write <evidence>[[start, end], ...]</evidence>.", think)
        return FinalAnswer(answer, windows, think)
    return FormatError(f"No <tool_call> or <answer> found. {FORMAT_HINT}", think)


def _parse_call(body: str, think: str) -> Parsed:
    try:
        payload = json.loads(body.strip())
    except json.JSONDecodeError as exc:
        return FormatError(f"The tool call is not valid JSON ({exc.msg} at char {exc.pos}). {FORMAT_HINT}", think)
    except (ValueError, RecursionError):  # a number too long to convert, or nesting too deep for the parser
        return FormatError(f"The tool call is not JSON this parser can read (a huge number or deep nesting). "
                           f"{FORMAT_HINT}", think)
    if not isinstance(payload, dict) or not isinstance(payload.get("name"), str):
        return FormatError(f'A tool call is a JSON object with a "name" and "arguments". {FORMAT_HINT}', think)
    arguments = payload.get("arguments", {})
    if isinstance(arguments, str):  # OpenAI-style: arguments as a JSON-encoded string
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except (ValueError, RecursionError) as exc:
            return FormatError(f"The tool arguments string is not valid JSON ({_clip(str(exc))}). {FORMAT_HINT}",
                               think)
    return ToolCall(payload["name"], arguments, think)


def parse_windows(text: str, *, duration: float | None = None) -> tuple[Window, ...] | str:
    """``[[s, e], ...]`` (or one ``[s, e]``) as windows, or a message saying what is wrong."""
    try:
        value = json.loads(text.strip())
    except (ValueError, RecursionError):  # bad JSON, a number too long to convert, nesting too deep
        return f"{_clip(text.strip())!r} is not a JSON list of [start, end] pairs."
    if isinstance(value, list) and len(value) == 2 and all(finite_seconds(v) is not None for v in value):
        value = [value]
    if not isinstance(value, list) or not value:
        return "expected a non-empty list of [start, end] pairs."
    windows = []
    for pair in value:
        if not (isinstance(pair, list) and len(pair) == 2 and all(finite_seconds(v) is not None for v in pair)):
            return f"{_clip(repr(pair))} is not a [start, end] pair of numbers."
        start, end = float(pair[0]), float(pair[1])
        if end < start:
            return f"window [{start:g}, {end:g}] ends before it starts."
        if duration is not None and (start < 0 or end > duration + 1e-6):
            return f"window [{start:g}, {end:g}] lies outside the video [0, {duration:g}]."
        windows.append((start, end))
    return tuple(windows)


def parse_answer_windows(answer: str) -> tuple[Window, ...] | None:
    """The windows a grounding answer states in the protocol's strict form (``[s, e]`` or ``[[s, e], ...]``),
    or None. The evaluator reads more forms (``medscope.eval.answers``); the format reward accepts only these."""
    windows = parse_windows(answer)
    return windows if isinstance(windows, tuple) else None


def _clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def tool_calls(turns: Sequence[str], duration: float) -> list[ToolCall]:
    """The well-formed tool calls among a rollout's assistant turns, in order."""
    return [p for p in (parse_turn(t, duration=duration) for t in turns) if isinstance(p, ToolCall)]


def last_crop(turns: Sequence[str], duration: float) -> tuple[float, float] | None:
    """The last valid ``crop_video`` window of a rollout (its assistant turns), clamped into the video as the tool
    clamps it. The rewards score it; the teacher policy reads what it watched last."""
    for call in reversed(tool_calls(turns, duration)):
        if call.name == "crop_video" and isinstance(call.arguments, dict):
            start = finite_seconds(call.arguments.get("start_time"))
            end = finite_seconds(call.arguments.get("end_time"))
            if start is not None and end is not None:
                start, end = min(max(start, 0.0), duration), min(max(end, 0.0), duration)
                if end > start:
                    return start, end
    return None


def last_frame(turns: Sequence[str], duration: float) -> float | None:
    """The last valid ``get_frame`` timestamp of a rollout, clamped into the video."""
    for call in reversed(tool_calls(turns, duration)):
        if call.name == "get_frame" and isinstance(call.arguments, dict):
            t = finite_seconds(call.arguments.get("timestamp"))
            if t is not None:
                return min(max(t, 0.0), duration)
    return None
