"""Total functions: the parser, the answer reader, the metrics, the rewards and the tools return a value for any
model output (arbitrary text, protocol tags around junk, deep nesting, numbers of thousands of digits, lone
surrogates) and never raise. Property-based (hypothesis), sized for the fast test budget."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medscope.agent.protocol import FinalAnswer, FormatError, ToolCall, last_crop, last_frame, parse_turn
from medscope.eval.answers import read_windows
from medscope.eval.metrics import answer_iou, answer_score, normalize_answer, option_letter, token_f1
from medscope.io import json_line
from medscope.suite.records import TASKS, Sample
from medscope.train.rewards import total_reward
from medscope.video.source import VideoSource
from medscope.video.standin import write_standin
from medscope.video.tools import Observation, ToolError, VideoTools

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_TAGS = ["<think>", "</think>", "<tool_call>", "</tool_call>", "<answer>", "</answer>", "<evidence>", "</evidence>"]
_HOSTILE = ["9" * 5000, "1e999", "-1e999", "NaN", "Infinity", "[" * 1200, "]" * 1200, "{" * 1200, "\ud800",
            "\udfff", '"\\ud800"', "null", "true", '{"name": "crop_video", "arguments": ', '"start_time": ',
            "00:12-00:30", "from 12 to", "[[1, 2], [3", "\x00", "é", "\U0001F600"]
_JUNK = st.one_of(st.text(max_size=60), st.sampled_from(_HOSTILE),
                  st.integers(min_value=-(10**80), max_value=10**80).map(str),
                  st.floats(allow_nan=True, allow_infinity=True).map(repr))
TURNS = st.lists(st.one_of(st.sampled_from(_TAGS), _JUNK), max_size=14).map("".join)
WINDOWS = st.lists(st.lists(st.floats(min_value=0, max_value=600, allow_nan=False), min_size=2, max_size=2)
                   .map(sorted), min_size=1, max_size=3)


def _sample(task: str, evidence: list[list[float]]) -> Sample:
    return Sample(id="f/v/x/0", video="v.mp4", duration=600.0, question="q?", answer="A", task=task,  # type: ignore[arg-type]
                  evidence=evidence, source="fuzz", options=["a", "b"] if task == "mcq" else None)


@SETTINGS
@given(TURNS)
def test_parse_turn_never_raises(text: str) -> None:
    parsed = parse_turn(text, duration=600.0)
    assert isinstance(parsed, ToolCall | FinalAnswer | FormatError)
    json_line({"raw": text, "parsed": repr(parsed)}).encode("utf-8")  # what the trace writes can be written


@SETTINGS
@given(TURNS, WINDOWS, st.sampled_from(TASKS))
def test_metrics_and_rewards_are_total(text: str, evidence: list[list[float]], task: str) -> None:
    sample = _sample(task, evidence)
    assert answer_score(text, answer=sample.answer, task=task, evidence=evidence) in (0.0, 0.5, 1.0)
    assert 0.0 <= answer_iou(text, evidence) <= 1.0
    assert 0.0 <= token_f1(text, "the answer") <= 1.0
    normalize_answer(text)
    option_letter(text)
    reward = total_reward([text, text], sample)
    assert reward.total == reward.total  # a number, not NaN
    last_crop([text], 600.0)
    last_frame([text], 600.0)
    reading = read_windows(text)
    assert reading is None or all(0 <= s <= e for s, e in reading.windows)


@pytest.mark.parametrize("text", [
    '<tool_call>{"name": "get_frame", "arguments": {"timestamp": ' + "9" * 5000 + "}}</tool_call>",
    '<tool_call>{"name": "get_frame", "arguments": {"timestamp": ' + "9" * 400 + "}}</tool_call>",
    "<tool_call>" + "[" * 1000 + "</tool_call>",
    "<answer>A</answer><evidence>" + "[" * 1000 + "</evidence>",
    "<answer>[[" + "9" * 5000 + ", 2]]</answer>",
    '<tool_call>{"name": "crop_video", "arguments": "{\\"start_time\\": ' + "[" * 1000 + '"}</tool_call>',
])
def test_the_cases_that_escaped_before(text: str) -> None:
    sample = _sample("grounding", [[1.0, 2.0]])
    assert isinstance(parse_turn(text, duration=600.0), ToolCall | FinalAnswer | FormatError)
    assert answer_score(text, answer="[1, 2]", task="grounding", evidence=[[1.0, 2.0]]) == 0.0
    total_reward([text], sample)


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_standin(tmp_path_factory.mktemp("fuzz") / "v.mp4", 20.0, fps=2)


_ARGUMENT = st.one_of(st.none(), st.booleans(), st.text(max_size=8), st.integers(min_value=-(10**400),
                      max_value=10**400), st.floats(allow_nan=True, allow_infinity=True), st.lists(st.integers()))


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(["crop_video", "get_frame", "zoom", ""]),
       st.one_of(st.dictionaries(st.sampled_from(["start_time", "end_time", "timestamp", "x"]), _ARGUMENT,
                                 max_size=4), _ARGUMENT))
def test_tools_answer_any_arguments_with_an_observation_or_a_tool_error(
        video: Path, name: str, arguments: object) -> None:
    with VideoSource(video) as source:
        result = VideoTools(source).call(name, arguments)
    assert isinstance(result, Observation | ToolError)
    if isinstance(result, ToolError):
        assert result.message and len(result.message) < 2000


def test_lone_surrogates_from_a_server_are_repaired_and_the_episode_is_written(video: Path, tmp_path: Path) -> None:
    from medscope.agent.backends.scripted import ReplayBackend
    from medscope.agent.loop import AgentConfig, run_episode
    from medscope.agent.trace import append_episode, read_episodes

    backend = ReplayBackend(["<think>bad \ud800 byte</think><answer>A \udfff</answer>"])
    episode = run_episode(backend, str(video), "Which?", AgentConfig())
    append_episode(tmp_path / "trace.jsonl", episode)  # raised UnicodeEncodeError before, losing the episode
    [back] = read_episodes(tmp_path / "trace.jsonl")
    assert back.answer == "A \ufffd" and "\ufffd" in back.turns[0].raw
