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
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from medscope.video.tools import TOOL_ARGUMENTS

# Numbers as the protocol writes them (``protocol.TIME_FORMAT``: one decimal), so a model that learnt to copy a
# timestamp label writes it digit for digit.
_NUMBER = r"/[0-9]+\.[0-9]/"
TOOL_NAMES: tuple[str, ...] = tuple(TOOL_ARGUMENTS)


@dataclass(frozen=True)
class TurnFormat:
    """What the next assistant turn may be."""

    tools: tuple[str, ...] = ()  # tools the turn may call; none: it must answer (a forced last turn, no tools)
    windows: bool = False  # the answer is time windows, ``[s, e]`` or ``[[s, e], ...]`` (a "when" question)
    explicit_evidence: bool = False  # the answer is followed by ``<evidence>[[s, e], ...]</evidence>``


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
    rules = [
        # ``</think>`` may be left out, as the parser allows: a model that goes straight from its reasoning to
        # ``<tool_call>`` is not pushed into writing the call inside the reasoning instead.
        f'start: {tag("<think>")} THINK ({tag("</think>")} "\\n"?)? {then}',
        "THINK: /[^<]*/",  # free reasoning that does not open a tag
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
