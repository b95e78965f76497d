"""The LLM judge over real HTTP: OpenAIBackend against a small OpenAI-compatible server on loopback."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("openai")

from chat_server import ChatServer as JudgeServer

from medscope.agent.backends.openai import OpenAIBackend
from medscope.eval.judge import (
    DIMENSION_NAMES,
    JUDGE_PROMPT_VERSION,
    AnswerVerdict,
    Judge,
    JudgeError,
    JudgeScores,
    parse_score,
    parse_verdict,
)

MODEL = "judge-4o"
QUESTION = "What does the surgeon do between 12 s and 20 s?"
REFERENCE = "The surgeon clips the cystic duct with a clip applier."
PREDICTION = "A clip applier is used to clip the cystic duct."
CANNED = {"ci": 5, "do": 3, "cu": 4, "tu": 2}



def _dimension(body: dict[str, Any]) -> str:
    system = body["messages"][0]["content"]
    return next(d for d, name in DIMENSION_NAMES.items() if f"evaluating the {name}" in system)


def canned_scores(body: dict[str, Any]) -> str:
    if "verdict" in body["messages"][-1]["content"]:
        return '{"verdict": "partially"}'
    return json.dumps({"score": CANNED[_dimension(body)]})


@pytest.fixture
def server() -> Iterator[JudgeServer]:
    with JudgeServer(canned_scores) as srv:
        yield srv


def _backend(url: str, **kwargs: Any) -> OpenAIBackend:
    return OpenAIBackend(MODEL, base_url=url, api_key_env="MEDSCOPE_TEST_JUDGE_KEY", **kwargs)


@pytest.fixture
def down_url() -> str:
    """A loopback port that was bound and closed: connections to it are refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def test_four_scores_parse_and_prompts_carry_the_pair(server: JudgeServer) -> None:
    judge = Judge(_backend(server.url))
    scores = judge.score(QUESTION, REFERENCE, PREDICTION)
    assert isinstance(scores, JudgeScores)
    assert (scores.ci, scores.do, scores.cu, scores.tu) == (5, 3, 4, 2)
    assert scores.complete and scores.error is None
    assert scores.prompt_version == JUDGE_PROMPT_VERSION == "1"
    assert scores.as_dict()["prompt_version"] == "1"
    assert judge.identity() == {"backend": "openai", "model": MODEL, "base_url": server.url,
                                "judge_prompt_version": "1"}
    assert set(scores.raw) == {"ci", "do", "cu", "tu"}
    assert scores.raw["tu"] == ('{"score": 2}',)

    # One request per dimension, temperature 0, each with the question, reference and prediction.
    assert len(server.requests) == 4
    assert [_dimension(body) for body in server.requests] == ["ci", "do", "cu", "tu"]
    for body in server.requests:
        assert body["model"] == MODEL and body["temperature"] == 0
        assert [m["role"] for m in body["messages"]] == ["system", "user"]
        user = body["messages"][1]["content"]
        assert f"Question: {QUESTION}" in user
        assert f"Correct Answer: {REFERENCE}" in user
        assert f"Predicted Answer: {PREDICTION}" in user
        assert "between 1 and 5" in user


def test_garbage_then_valid_is_retried_once(server: JudgeServer) -> None:
    server.script = ["I think this answer is quite good!", "Score: 4"]  # CI: garbage, then text format
    scores = Judge(_backend(server.url)).score(QUESTION, REFERENCE, PREDICTION)
    assert (scores.ci, scores.do, scores.cu, scores.tu) == (4, 3, 4, 2)
    assert scores.raw["ci"] == ("I think this answer is quite good!", "Score: 4")
    assert len(server.requests) == 5
    retry = server.requests[1]["messages"]
    assert [m["role"] for m in retry] == ["system", "user", "assistant", "user"]
    assert retry[2]["content"] == "I think this answer is quite good!"
    assert "no score found" in retry[3]["content"] and '{"score": N}' in retry[3]["content"]


def test_out_of_range_twice_is_an_error_or_missing(server: JudgeServer) -> None:
    server.script = ['{"score": 9}', '{"score": 0}']
    with pytest.raises(JudgeError, match=r"CI: .*outside 1\.\.5.*--judge-optional"):
        Judge(_backend(server.url)).score(QUESTION, REFERENCE, PREDICTION)

    server.script = ['{"score": 9}', "no idea"]
    scores = Judge(_backend(server.url), optional=True).score(QUESTION, REFERENCE, PREDICTION)
    assert scores.ci is None and (scores.do, scores.cu, scores.tu) == (3, 4, 2)  # the others still scored
    assert scores.error is not None and scores.error.startswith("CI: ") and "no score found" in scores.error
    assert scores.raw["ci"] == ('{"score": 9}', "no idea")
    assert not scores.complete


def test_answer_verdict(server: JudgeServer) -> None:
    judge = Judge(_backend(server.url))
    verdict = judge.answer(QUESTION, REFERENCE, PREDICTION)
    assert verdict == AnswerVerdict(0.5, "partially", raw=('{"verdict": "partially"}',))
    user = server.requests[-1]["messages"][1]["content"]
    assert QUESTION in user and REFERENCE in user and PREDICTION in user
    server.script = ["Verdict: fully consistent", "dunno", '{"verdict": "not"}']
    assert judge.judge_answer(QUESTION, REFERENCE, PREDICTION) == 1.0
    assert judge.judge_answer(QUESTION, REFERENCE, "") == 0.0  # retried after "dunno"


def test_down_server_raises_quickly_with_the_url(down_url: str) -> None:
    judge = Judge(_backend(down_url, max_retries=0, timeout=2.0))
    start = time.monotonic()
    with pytest.raises(JudgeError) as info:
        judge.score(QUESTION, REFERENCE, PREDICTION)
    assert time.monotonic() - start < 5
    message = str(info.value)
    assert down_url in message and MODEL in message and "--judge-optional" in message
    with pytest.raises(JudgeError, match="--judge-optional"):
        judge.judge_answer(QUESTION, REFERENCE, PREDICTION)


def test_down_server_optional_gives_missing_scores_with_the_reason(down_url: str) -> None:
    judge = Judge(_backend(down_url, max_retries=1, timeout=2.0), optional=True)
    start = time.monotonic()
    scores = judge.score(QUESTION, REFERENCE, PREDICTION)
    assert (scores.ci, scores.do, scores.cu, scores.tu) == (None, None, None, None)  # missing, never 0
    assert scores.error is not None and down_url in scores.error and "cannot reach" in scores.error
    assert scores.as_dict()["ci"] is None
    # Later calls do not hammer the dead server again: same reason, immediately.
    again = judge.score(QUESTION, REFERENCE, PREDICTION)
    verdict = judge.answer(QUESTION, REFERENCE, PREDICTION)
    assert again.error == scores.error and verdict.score is None and verdict.error == scores.error
    assert judge.judge_answer(QUESTION, REFERENCE, PREDICTION) is None
    assert time.monotonic() - start < 8


def test_parsers() -> None:
    assert parse_score('{"score": 4}') == 4
    assert parse_score("{'score': 3}") == 3  # Video-ChatGPT's Python-dict replies
    assert parse_score('Sure. ```json\n{"score": 5.0}\n```') == 5
    assert parse_score("Score: 2") == parse_score("2") == 2
    assert parse_score('{"temporal understanding": 3}', "tu") == 3
    for bad in ("", "great", '{"score": 6}', '{"score": 3.5}', '{"score": "high"}'):
        with pytest.raises(ValueError):
            parse_score(bad)
    assert parse_verdict('{"verdict": "fully"}') == "fully"
    assert parse_verdict("Partially consistent.") == "partially"
    assert parse_verdict('{"verdict": "inconsistent"}') == "not"
    with pytest.raises(ValueError):
        parse_verdict("maybe")


@pytest.fixture(scope="module")
def caption_samples(synth_video: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from medscope.suite.build import BuildConfig, build
    from medscope.suite.records import read_jsonl, write_jsonl

    out = tmp_path_factory.mktemp("suite")
    build(BuildConfig(source="synthclin", annotations=str(synth_video.annotation_path), out=str(out), workers=1))
    captions = [s for s in read_jsonl(out / "samples.jsonl") if s.task in ("caption", "fine_caption")]
    assert captions
    write_jsonl(out / "captions.jsonl", captions)
    return out / "captions.jsonl"


def test_eval_run_records_judge_scores(server: JudgeServer, caption_samples: Path, tmp_path: Path) -> None:
    from medscope.eval.runner import EvalConfig, evaluate
    from medscope.eval.tables import summarize

    runs = evaluate(EvalConfig(samples=str(caption_samples), out=str(tmp_path), baseline="none",
                               judge=f"openai:{MODEL}@{server.url}"))
    for row in runs["agent"]:
        assert {row["metrics"][d] for d in ("CI", "DO", "CU", "TU")} == set(CANNED.values())
    table = next(iter(summarize(runs["agent"]).values()))
    n = len(runs["agent"])
    assert table["CI"] == {"mean": CANNED["ci"], "n": n, "of": n} and table["TU"]["mean"] == CANNED["tu"]
    # a resume must judge as the run did: without --judge it refuses instead of mixing judged and unjudged rows
    with pytest.raises(ValueError, match=r"another setup.*judge"):
        evaluate(EvalConfig(samples=str(caption_samples), out=str(tmp_path), baseline="none"))


def test_unreachable_judge_stops_the_run_with_a_clear_message(
    down_url: str, caption_samples: Path, tmp_path: Path
) -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "medscope.cli", "eval", "--samples", str(caption_samples), "--out", str(tmp_path),
         "--judge", f"openai:{MODEL}@{down_url}"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert down_url in result.stderr and "--judge-optional" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "results.jsonl").exists()  # stopped before any episode ran
