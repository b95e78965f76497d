"""Protocol: rendering and parsing of every turn kind; malformed turns become FormatErrors, never raise."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from medscope.agent.protocol import (
    FinalAnswer,
    FormatError,
    ToolCall,
    folder_prompt,
    model_prompt,
    parse_answer_windows,
    parse_turn,
    render_answer,
    render_tool_call,
    stop_strings,
    system_prompt,
    tool_schemas,
)
from medscope.video.tools import TOOL_SPECS


def test_round_trip_tool_call() -> None:
    text = render_tool_call("crop_video", {"start_time": 87.0, "end_time": 88.5}, "Look at the clip.")
    assert parse_turn(text) == ToolCall("crop_video", {"start_time": 87.0, "end_time": 88.5}, "Look at the clip.")


def test_round_trip_answer_with_and_without_evidence() -> None:
    assert parse_turn(render_answer("The nucleus is separated.", "Seen.")) == FinalAnswer(
        "The nucleus is separated.", None, "Seen.")
    text = render_answer("B", "Seen twice.", [(124.0, 132.0), (140.5, 141.0)])
    assert parse_turn(text, duration=600) == FinalAnswer("B", ((124.0, 132.0), (140.5, 141.0)), "Seen twice.")


def test_grounding_answer_is_a_window() -> None:
    parsed = parse_turn(render_answer("[124.00, 132.00]", "There."))
    assert isinstance(parsed, FinalAnswer)
    assert parse_answer_windows(parsed.answer) == ((124.0, 132.0),)
    assert parse_answer_windows("[[1, 2], [5.5, 7]]") == ((1.0, 2.0), (5.5, 7.0))
    assert parse_answer_windows("the bleeding") is None


@pytest.mark.parametrize(
    "text",
    [
        '  <think>\n hmm \n</think>\n\n<tool_call>\n {"name": "get_frame", "arguments": {"timestamp": 3}} \n'
        "</tool_call>",
        '<think>hmm</think><tool_call>{"name": "get_frame", "arguments": "{\\"timestamp\\": 3}"}</tool_call>',
        '<think>hmm<tool_call>{"name": "get_frame", "arguments": {"timestamp": 3}}</tool_call>',  # no </think>
        '<think>hmm</think><tool_call>{"name": "get_frame", "arguments": {"timestamp": 3}}',  # stop string cut
    ],
)
def test_lenient_on_whitespace_missing_close_and_string_arguments(text: str) -> None:
    assert parse_turn(text) == ToolCall("get_frame", {"timestamp": 3}, "hmm")


def test_answer_cut_by_stop_string_and_no_think() -> None:
    assert parse_turn("<answer>A") == FinalAnswer("A", None, "")


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('<think>x</think><tool_call>{"name": "crop_video", "arguments": {start: 1}}</tool_call>', "not valid JSON"),
        ("<think>x</think><tool_call>[1, 2]</tool_call>", '"name"'),
        ('<think>x</think><tool_call>{"name": "get_frame", "arguments": "{bad"}</tool_call>', "arguments string"),
        ('<tool_call>{"name": "get_frame", "arguments": {"timestamp": 1}}</tool_call>'
         '<tool_call>{"name": "get_frame", "arguments": {"timestamp": 2}}</tool_call>', "one tool per turn"),
        ('<tool_call>{"name": "get_frame", "arguments": {"timestamp": 1}}</tool_call><answer>A</answer>', "not both"),
        ("<think>I am not sure what to do.</think>", "No <tool_call> or <answer>"),
        ("", "No <tool_call> or <answer>"),
        ("<answer>  </answer>", "empty"),
        ("<answer>A</answer><answer>B</answer>", "exactly one"),
        ("<answer>A</answer><evidence>[[700, 710]]</evidence>", "outside the video"),
        ("<answer>A</answer><evidence>[[20, 10]]</evidence>", "ends before it starts"),
        ("<answer>A</answer><evidence>soon</evidence>", "not a JSON list"),
        ('<answer>A</answer><evidence>[["a", 1]]</evidence>', "pair of numbers"),
    ],
)
def test_malformed_turns_become_format_errors(text: str, needle: str) -> None:
    parsed = parse_turn(text, duration=600.0)
    assert isinstance(parsed, FormatError)
    assert needle in parsed.message
    assert "Expected format" in parsed.message or "<evidence>" in parsed.message


def test_system_prompt_lists_tools_and_contract() -> None:
    prompt = system_prompt(overview_frames=16, max_turns=6, max_frames=64, explicit_evidence=True)
    assert "crop_video(start_time, end_time)" in prompt and "get_frame(timestamp)" in prompt
    # The schemas come once, from the chat template that every backend gives them to, not again in the prompt.
    assert '"type": "function"' not in prompt
    assert "<evidence>" in prompt and "6 turns" in prompt and "64 frames" in prompt
    assert "<evidence>" not in system_prompt(overview_frames=16, max_turns=6, max_frames=64, explicit_evidence=False)


def test_short_prompt_names_the_tools_and_the_template_gets_no_schemas(tmp_path: Path) -> None:
    sizes = dict(overview_frames=16, max_turns=6, max_frames=64, explicit_evidence=False)
    short, full = system_prompt(**sizes, prompt="short"), system_prompt(**sizes)
    assert "crop_video(start_time, end_time)" in short and "get_frame(timestamp)" in short
    assert len(short) * 5 < len(full)
    assert tool_schemas("full") == list(TOOL_SPECS) and tool_schemas("short") is None
    with pytest.raises(ValueError, match="unknown system prompt 'tiny'; choose one of full, short"):
        system_prompt(**sizes, prompt="tiny")
    # A model's config names the prompt it was trained with; a config that names none is a full-prompt model.
    assert model_prompt(SimpleNamespace()) == "full"
    assert model_prompt(SimpleNamespace(medscope_prompt="short")) == "short"
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "qwen3_vl", "medscope_prompt": "short"}))
    assert folder_prompt(tmp_path) == "short"
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "qwen3_vl"}))
    assert folder_prompt(tmp_path) == "full"


def test_stop_strings() -> None:
    assert stop_strings(explicit_evidence=False) == ("</tool_call>", "</answer>")
    assert stop_strings(explicit_evidence=True) == ("</tool_call>", "</evidence>")
