"""Concurrent episodes decoded together: ``BatchingBackend`` (real threads over a recording backend), the HF
backend's ``generate_batch`` against one-at-a-time decoding (the shipped model, real frames, the grammar), and
``medscope eval --workers`` on a local model."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from medscope.agent.backends.base import Request, backend_prompt, text_part
from medscope.agent.backends.batching import BatchBackend, BatchingBackend


class Recorder:
    """Answers each request with the text of its last message plus a mark; records every batch; fails on 'boom'."""

    prompt = "short"

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.active = 0
        self.overlap = False  # two batches decoding at once (the model must see one at a time)

    def identity(self) -> dict[str, str]:
        return {"backend": "recorder", "model": "none"}

    def generate_batch(self, requests: Sequence[Request]) -> list[str]:
        self.active += 1
        self.overlap |= self.active > 1
        texts = [r.messages[-1]["content"][0]["text"] for r in requests]
        self.batches.append(texts)
        threading.Event().wait(0.01)  # long enough for a second batch to start, were that allowed
        self.active -= 1
        if any("boom" in t for t in texts):
            raise RuntimeError("the model failed")
        return [f"{t}|{r.max_new_tokens}" for t, r in zip(texts, requests, strict=True)]


def _episodes(batcher: BatchingBackend, turns: dict[str, int]) -> tuple[dict[str, list[str]], dict[str, str]]:
    """One thread per episode, ``turns[name]`` turns each, a short pause between turns (a tool call)."""
    answers: dict[str, list[str]] = {name: [] for name in turns}
    errors: dict[str, str] = {}

    def run(name: str) -> None:
        with batcher.episode():
            try:
                for turn in range(turns[name]):
                    text = f"{name}-{turn}"
                    answers[name].append(batcher.generate([{"role": "user", "content": [text_part(text)]}],
                                                          stop=(), max_new_tokens=7))
                    threading.Event().wait(0.002 * (hash(name) % 5))
            except RuntimeError as exc:
                errors[name] = str(exc)

    threads = [threading.Thread(target=run, args=(name,), daemon=True) for name in turns]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads), "an episode never got its turn (deadlock)"
    return answers, errors


def test_episodes_get_their_own_turns_in_batches() -> None:
    recorder = Recorder()
    batcher = BatchingBackend(recorder, size=4)
    assert isinstance(recorder, BatchBackend) and backend_prompt(batcher) == "short"  # the model's prompt passes
    turns = {f"e{i}": 1 + i % 3 for i in range(7)}  # episodes of 1, 2 and 3 turns: some end while others go on
    answers, errors = _episodes(batcher, turns)
    assert not errors
    for name, n in turns.items():
        assert answers[name] == [f"{name}-{t}|7" for t in range(n)]
    assert sum(batcher.batches) == sum(turns.values())
    assert max(batcher.batches) == 4 and all(size <= 4 for size in batcher.batches)
    assert len(batcher.batches) < sum(turns.values()) / 2  # batched, not one by one
    assert not recorder.overlap


def test_a_failed_batch_reaches_its_episodes_and_the_others_go_on() -> None:
    batcher = BatchingBackend(Recorder(), size=2)
    answers, errors = _episodes(batcher, {"boom": 1, "a": 1, "b": 3, "c": 3})
    assert errors["boom"] == "the model failed"
    # whichever episode shared boom's batch failed with it; every other turn was answered
    assert all(answers[name] == [f"{name}-{t}|7" for t in range(len(answers[name]))] for name in "abc")
    assert sum(len(v) for v in answers.values()) + len(errors) >= 1 + 3 + 3


def test_without_episodes_a_call_runs_alone() -> None:
    batcher = BatchingBackend(Recorder(), size=8)
    text = batcher.generate([{"role": "user", "content": [text_part("x")]}], stop=(), max_new_tokens=3)
    assert text == "x|3" and batcher.batches == [1]
    with pytest.raises(ValueError, match="batch size"):
        BatchingBackend(Recorder(), size=0)


# -- the HF backend --------------------------------------------------------------------------------------------------


def _requests(video: Path, backend: Any) -> list[Request]:
    """First turns and later turns (after a crop) of grounding and other questions: prompts of different lengths."""
    from medscope.agent import protocol
    from medscope.agent.grammar import TOOL_NAMES, TurnFormat
    from medscope.video.source import VideoSource
    from medscope.video.tools import ToolConfig, VideoTools

    source = VideoSource(video)
    tools = VideoTools(source, ToolConfig(max_frames=10_000))
    overview = tools.overview()
    system = protocol.system_prompt(overview_frames=16, max_turns=6, max_frames=ToolConfig().max_frames,
                                    explicit_evidence=False, prompt=backend_prompt(backend))
    stop = tuple(protocol.stop_strings(explicit_evidence=False))
    out = []
    questions = [("When does bleeding happen? Answer with the time window(s) in seconds.", True),
                 ("Where in the field does the gauze appear?", False)]
    for k, (question, windows) in enumerate(questions * 2):
        messages = [{"role": "system", "content": [text_part(system)]},
                    protocol.first_user_message(question, overview, duration=source.duration_seconds)]
        if k >= 2:
            start, end = 20.0 * k, 20.0 * k + 15
            call = f'{{"name": "crop_video", "arguments": {{"start_time": {start}, "end_time": {end}}}}}'
            messages.append({"role": "assistant", "content": [text_part(f"<think>Look.</think>\n<tool_call>{call}"
                                                                        "</tool_call>")]})
            crop = tools.call("crop_video", {"start_time": start, "end_time": end})
            messages.append(protocol.observation_message(crop, question, None))
        turn = TurnFormat(tools=TOOL_NAMES, windows=windows, duration=source.duration_seconds)
        out.append(Request(messages, stop, 64, None if k == 1 else turn))  # one decoded freely
    source.close()
    return out


def test_hf_batch_writes_what_one_at_a_time_writes(synth_path: Path, one_torch_thread: None) -> None:
    from medscope.agent.backends.hf import HFBackend
    from medscope.models import builtin_model_path

    backend = HFBackend.from_pretrained(builtin_model_path(), threads=1)
    requests = _requests(synth_path, backend)
    alone, stats = [], []
    for request in requests:
        alone.append(backend.generate_batch([request])[0])
        stats.append(dict(backend.last_prompt_stats))
        assert stats[-1]["image_token_count"] == stats[-1]["expected_image_tokens"] > 0
    assert len({s["prompt_tokens"] for s in stats}) > 1  # prompts of different lengths: padding is exercised
    together = backend.generate_batch(requests)
    assert together == alone
    assert backend.last_prompt_stats == stats[-1]  # the stats describe the last request, as they did alone
    assert stats[-1]["images"] == 16 + 8
    assert any("<answer>" in t or "<tool_call>" in t for t in together)


def test_eval_workers_batch_a_local_model(synth_video: Any, tmp_path: Path, one_torch_thread: None) -> None:
    """``medscope eval --backend hf --workers 3`` decodes the episodes' turns in batches and writes the episodes
    ``--workers 1`` writes (greedy decoding)."""
    from medscope.agent.backends import BackendOptions
    from medscope.agent.loop import AgentConfig
    from medscope.eval.runner import EvalConfig, backend_factory, evaluate, run_samples
    from medscope.suite.build import BuildConfig, build
    from medscope.suite.records import read_jsonl

    build(BuildConfig(source="synthclin", annotations=str(synth_video.annotation_path), out=str(tmp_path / "suite"),
                      workers=1))
    samples = tmp_path / "suite" / "samples.jsonl"
    limit = 5
    alone = evaluate(EvalConfig(samples=str(samples), out=str(tmp_path / "w1"), backend="hf", baseline="none",
                                limit=limit))["agent"]
    make = backend_factory("hf", model=None, base_url=None, options=BackendOptions(threads=1), batch=3)
    batcher = make(next(iter(read_jsonl(samples))))
    assert isinstance(batcher, BatchingBackend)
    together = run_samples(list(read_jsonl(samples))[:limit], make, tmp_path / "w3" / "results.jsonl",
                           AgentConfig(), run="hf", workers=3)
    assert max(batcher.batches) == 3 and sum(batcher.batches) == sum(len(r["episode"]["turns"]) for r in together)
    episodes = {r["id"]: r["episode"] for r in together}
    assert len(alone) == limit and episodes.keys() == {r["id"] for r in alone}
    for record in alone:
        assert [t["raw"] for t in record["episode"]["turns"]] == [t["raw"] for t in episodes[record["id"]]["turns"]]
