"""The protocol as a grammar: what one assistant turn may be, for decoders that constrain generation to it.

A small model that has learnt what to look at can still lose an episode to its spelling: before this grammar the
tiny model's held-out episodes ended without an answer in 123 of 202 (a ``</think>`` skipped, ``</answer>`` written
inside the reasoning, a tool call's JSON cut in half), and its uniform-frame baseline in all 202. Constrained
decoding, as vLLM, SGLang and llama.cpp offer it, makes the *form* of a turn certain and leaves every choice to the
model: the reasoning text, tool or answer, and every number.

``turn_grammar`` writes the grammar in the Lark dialect of llguidance (the engine the HF backend uses): the
reasoning, then one call of a tool offered this turn with its arguments in the canonical JSON the protocol renders
(``render_tool_call``), or the answer; a grounding answer is time windows in the protocol's number format. This
module depends on no model library; a backend supplies which tags its tokenizer holds as single tokens.

A turn must also end inside its token budget: ``longest_ending`` is what a turn needs after its reasoning, so that a
decoder can close a reasoning that would otherwise run on to the budget (a small model's loop) while the call or
answer still fits. What a context-free grammar cannot say, ``time_slot`` and ``number_fits`` add: every time lies
in the video and a range ends after it starts. A backend that masks tokens asks, while a time is being written,
which next pieces can still finish it in bounds. Without this, 21 of the shipped model's 65 validation "when"
answers were windows that end where they start or before (a digit dropped while copying ``144.5`` gives ``14.5``),
each worth nothing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass

from medscope.agent.protocol import render_answer, render_tool_call, render_window
from medscope.video.tools import TOOL_ARGUMENTS

# Numbers as the protocol writes them (``protocol.TIME_FORMAT``: one decimal), so a model that learnt to copy a
# timestamp label writes it digit for digit; no leading zero, which JSON and the window parser reject ("03.8").
_NUMBER = r"/(0|[1-9][0-9]*)\.[0-9]/"
TOOL_NAMES: tuple[str, ...] = tuple(TOOL_ARGUMENTS)


@dataclass(frozen=True)
class TurnFormat:
    """What the next assistant turn may be."""

    tools: tuple[str, ...] = ()  # tools the turn may call; none: it must answer (a forced last turn, no tools)
    windows: bool = False  # the answer is time windows, ``[s, e]`` or ``[[s, e], ...]`` (a "when" question)
    explicit_evidence: bool = False  # the answer is followed by ``<evidence>[[s, e], ...]</evidence>``
    duration: float | None = None  # the video's length: every time the turn writes lies in [0, duration]
    # The reasoning is written and closed: TRL's response parser (GA-GRPO's rollouts) reads a turn whose
    # ``</think>`` is missing as reasoning to its end, the call in it unrun, and drops an empty ``<think></think>``.
    closed_reasoning: bool = False


def turn_grammar(turn: TurnFormat, single_token: Callable[[str], bool] = lambda tag: False) -> str:
    """The Lark grammar (llguidance dialect) of one assistant turn in ``turn``'s format.

    ``single_token(tag)`` says whether the tokenizer holds a tag such as ``<think>`` as one added token: llguidance
    matches those as tokens (``<think>`` unquoted), other tags as text."""

    def tag(name: str) -> str:
        return name if single_token(name) else json.dumps(name)

    unknown = [name for name in turn.tools if name not in TOOL_ARGUMENTS]
    if unknown:
        raise ValueError(f"no tool named {', '.join(unknown)}; the tools are {', '.join(TOOL_ARGUMENTS)}")
    then = "(call | answer)" if turn.tools else "answer"
    # Unless the reasoning must close, ``</think>`` may be left out, as the parser allows: a model that goes
    # straight from its reasoning to ``<tool_call>`` is not pushed into writing the call inside the reasoning.
    close = f'{tag("</think>")} "\\n"?' if turn.closed_reasoning else f'({tag("</think>")} "\\n"?)?'
    rules = [
        f'start: {tag("<think>")} THINK {close} {then}',
        # free reasoning that does not open a tag
        "THINK: /[^<]*[^<\\s][^<]*/" if turn.closed_reasoning else "THINK: /[^<]*/",
        f"NUMBER: {_NUMBER}",
        'window: "[" NUMBER ", " NUMBER "]"',
        'windows: "[" window (", " window)* "]"',
    ]
    if turn.tools:
        calls = []
        for name in turn.tools:
            # The JSON ``json.dumps`` writes for this call (``render_tool_call``): the form the trajectories show.
            pieces = [json.dumps(f'{{"name": "{name}", "arguments": {{')]
            for k, key in enumerate(TOOL_ARGUMENTS[name]):
                pieces += [json.dumps(("" if k == 0 else ", ") + f'"{key}": '), "NUMBER"]
            calls.append(" ".join([*pieces, json.dumps("}}")]))
        rules.append(f'call: {tag("<tool_call>")} ({" | ".join(calls)}) {tag("</tool_call>")}')
    body = "window | windows" if turn.windows else "TEXT"
    answer = f'answer: {tag("<answer>")} ({body}) {tag("</answer>")}'
    if turn.explicit_evidence:
        answer += f' "\\n"? {tag("<evidence>")} windows {tag("</evidence>")}'
    rules += [answer, "TEXT: /[^<]+/"]
    return "\n".join(rules) + "\n"


# Where a time is being written, by what precedes it: a window's start or end (in an answer or the evidence), a
# crop's start or end, a frame's timestamp. The last group is what the turn has of the number so far.
_WINDOW_END = re.compile(r"\[([0-9]+\.[0-9]), ([0-9.]*)$")
_WINDOW_START = re.compile(r"\[([0-9.]*)$")
_CROP_END = re.compile(r'"start_time": ([0-9]+\.[0-9]), "end_time": ([0-9.]*)$')
_CROP_START = re.compile(r'"start_time": ([0-9.]*)$')
_TIMESTAMP = re.compile(r'"timestamp": ([0-9.]*)$')
_NO_LIMIT = 10**15  # tenths of a second: a duration nobody has


def time_slot(turn: TurnFormat, text: str) -> tuple[str, int, int] | None:
    """When ``text`` (the turn so far) stops inside a time: what it has of that number, and the bounds the number
    must keep, in tenths of a second (above ``low``, at most ``high``); None elsewhere.

    A range's start leaves room for its end (below the duration) and its end lies after its start; every time lies
    in the video. Reasoning is free text, so only what follows the last ``<tool_call>``, ``<evidence>`` or (for a
    windows answer) ``<answer>`` is read."""
    tags = ("<tool_call>", "<evidence>", "<answer>") if turn.windows else ("<tool_call>", "<evidence>")
    cut = max(text.rfind(tag) + len(tag) if tag in text else -1 for tag in tags)
    if cut < 0:
        return None
    body = text[cut:]
    high = _NO_LIMIT if turn.duration is None else int(turn.duration * 10 + 1e-6)
    for pattern in (_WINDOW_END, _CROP_END):
        if m := pattern.search(body):
            return m.group(2), _tenths(m.group(1)), high
    for pattern in (_WINDOW_START, _CROP_START):
        if m := pattern.search(body):
            return m.group(1), -1, high - 1
    if m := _TIMESTAMP.search(body):
        return m.group(1), -1, high
    return None


def number_fits(written: str, low: int, high: int) -> bool:
    """Whether a time written so far (``written``: digits, maybe a point and its decimal, maybe followed by the text
    after the number) can still be a number above ``low`` and at most ``high`` tenths of a second."""
    m = re.match(r"[0-9]*(\.[0-9]?)?", written)
    number = m.group(0) if m else ""
    whole, point, decimal = number.partition(".")
    if decimal or len(number) < len(written):  # the number is complete
        return not point or not decimal or low < _tenths(number) <= high
    if point:  # the decimal is still to come: whole.0 to whole.9
        return _overlaps(int(whole or 0) * 10, int(whole or 0) * 10 + 9, low, high)
    if not whole:
        return low < high
    if whole[0] == "0":  # no leading zeros (``_NUMBER``): a 0 is followed by its point
        return _overlaps(0, 9, low, high)
    # More digits may follow: ``whole`` then k digits spans [whole * 10^k, (whole + 1) * 10^k) seconds.
    value = int(whole)
    for k in range(len(str(high)) + 1):
        start, stop = value * 10 ** (k + 1), (value + 1) * 10 ** (k + 1) - 1
        if start > high:
            break
        if _overlaps(start, stop, low, high):
            return True
    return False


def _tenths(number: str) -> int:
    whole, _, decimal = number.partition(".")
    return int(whole) * 10 + int(decimal or 0)


def _overlaps(start: int, stop: int, low: int, high: int) -> bool:
    return max(start, low + 1) <= min(stop, high)


def longest_ending(turn: TurnFormat) -> str:
    """The longest text a turn in ``turn``'s format needs after its reasoning (times of five digits; a text answer
    counted as long as a window), as the protocol renders it: the room a decoder leaves when it closes a reasoning
    near the token budget."""
    longest = (9999.9, 9999.9)
    endings = [render_tool_call(name, dict.fromkeys(TOOL_ARGUMENTS[name], longest[0]), "") for name in turn.tools]
    endings.append(render_answer(render_window(longest), "", [longest] if turn.explicit_evidence else None))
    return max(endings, key=len).removeprefix("<think>")
