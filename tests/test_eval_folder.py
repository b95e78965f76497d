"""An eval folder one run owns: a second writer fails at once, a resume must match the manifest, samples are
checked before any episode, bad lines are named, and failed episodes are noted and retried."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from chat_server import ChatServer

from medscope.agent.backends.base import redact_url
from medscope.eval.folder import EvalFolderError
from medscope.eval.runner import EvalConfig, evaluate
from medscope.eval.tables import markdown, summarize, write_tables
from medscope.suite.records import Sample, write_jsonl
from medscope.video.standin import write_standin


def _samples(video: Path, n: int = 3, **changes: object) -> list[Sample]:
    return [dataclasses.replace(Sample(
        id=f"t/v/grounding/{k}", video=str(video), duration=40.0, question=f"When does event {k} happen?",
        answer=f"[{5 * k + 1:.2f}, {5 * k + 4:.2f}]", task="grounding", evidence=[[5.0 * k + 1, 5.0 * k + 4]],
        source="test"), **changes) for k in range(n)]


@pytest.fixture
def suite(tmp_path: Path) -> Path:
    video = write_standin(tmp_path / "videos" / "v.mp4", 40.0, fps=2)
    write_jsonl(tmp_path / "suite" / "samples.jsonl", _samples(video))
    return tmp_path / "suite" / "samples.jsonl"


def _config(samples: Path, out: Path, **changes: object) -> EvalConfig:
    return dataclasses.replace(EvalConfig(samples=str(samples), out=str(out), backend="oracle", baseline="none"),
                               **changes)


def test_two_concurrent_evals_into_one_folder_the_second_fails_at_once(suite: Path, tmp_path: Path) -> None:
    def slowly(body: object) -> str:  # the first eval is still answering when the second one starts
        time.sleep(1.0)
        return "<think>seen</think><answer>[1, 4]</answer>"

    out = tmp_path / "eval"
    env = {**os.environ, "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}
    with ChatServer(slowly) as server:
        command = [sys.executable, "-m", "medscope.cli", "eval", "--samples", str(suite), "--out", str(out),
                   "--backend", "openai", "--model", "m", "--base-url", server.url, "--baseline", "none"]
        first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        try:
            deadline = time.monotonic() + 60
            while not (out / "manifest.json").exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            start = time.monotonic()
            second = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
            assert second.returncode == 2 and f"another medscope eval (pid {first.pid})" in second.stderr
            assert time.monotonic() - start < 20 and "Traceback" not in second.stderr
            assert first.wait(timeout=120) == 0, first.stderr.read() if first.stderr else ""
        finally:
            first.kill()
    lines = (out / "results.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["id"] for line in lines) == [f"t/v/grounding/{k}" for k in range(3)]


def test_a_resume_with_another_setup_refuses_and_new_starts_over(suite: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval"
    evaluate(_config(suite, out, limit=2))
    assert len(evaluate(_config(suite, out))["agent"]) == 3  # a larger --limit resumes
    with pytest.raises(EvalFolderError, match=r"another setup.*backend: 'oracle' then, 'teacher' now.*--new"):
        evaluate(_config(suite, out, backend="teacher"))
    teacher = evaluate(_config(suite, out, backend="teacher", new=True))
    assert {r["run"] for r in teacher["agent"]} == {"teacher"}
    [aside] = out.glob("replaced-*")
    assert len((aside / "results.jsonl").read_text().splitlines()) == 3  # nothing lost
    edited = _samples(tmp_path / "videos" / "v.mp4")
    write_jsonl(suite, [dataclasses.replace(edited[0], answer="[1.00, 2.00]", evidence=[[1.0, 2.0]]), *edited[1:]])
    with pytest.raises(EvalFolderError, match=r"suite\.fingerprint"):
        evaluate(_config(suite, out, backend="teacher"))


def test_samples_are_checked_before_any_episode(tmp_path: Path) -> None:
    video = write_standin(tmp_path / "v.mp4", 40.0, fps=2)
    twice = _samples(video, 2)
    write_jsonl(tmp_path / "dup.jsonl", [*twice, twice[0]])
    with pytest.raises(ValueError, match=r"'t/v/grounding/0' appears twice \(records 1 and 3\)"):
        evaluate(_config(tmp_path / "dup.jsonl", tmp_path / "e1"))
    write_jsonl(tmp_path / "long.jsonl", _samples(video, 1, duration=90.0, evidence=[[60.0, 80.0]],
                                                   answer="[60.00, 80.00]"))
    with pytest.raises(ValueError, match=r"declares a 90 s video but .*v.mp4 lasts 40 s"):
        evaluate(_config(tmp_path / "long.jsonl", tmp_path / "e2"))
    assert not (tmp_path / "e1" / "results.jsonl").exists() and not (tmp_path / "e2" / "results.jsonl").exists()


def test_a_bad_results_line_is_named(suite: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval"
    evaluate(_config(suite, out, limit=2))
    lines = (out / "results.jsonl").read_text().splitlines()
    (out / "results.jsonl").write_text("\n".join([lines[0], "{oops", lines[1]]) + "\n")
    with pytest.raises(EvalFolderError, match=r"results.jsonl:2: not a JSON line"):
        evaluate(_config(suite, out))


def test_failed_episodes_are_noted_counted_and_retried(tmp_path: Path) -> None:
    good = write_standin(tmp_path / "videos" / "good.mp4", 40.0, fps=2)
    missing = tmp_path / "videos" / "gone.mp4"
    samples = [*_samples(good, 2), *_samples(missing, 1, id="t/gone/grounding/0")]
    write_jsonl(tmp_path / "s.jsonl", samples)
    out = tmp_path / "eval"
    with pytest.raises(Exception, match="no such file"):
        evaluate(_config(tmp_path / "s.jsonl", out))
    runs = evaluate(_config(tmp_path / "s.jsonl", out, on_error="skip"))
    assert [r["id"] for r in runs["agent"]] == ["t/v/grounding/0", "t/v/grounding/1"]
    [failure] = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    assert failure["id"] == "t/gone/grounding/0" and "no such file" in failure["error"]
    tables = write_tables(runs, out)
    assert tables["agent"]["grounding/test"]["failed"] == 1 and "failed" in markdown(tables)
    write_standin(missing, 40.0, fps=2)
    again = evaluate(_config(tmp_path / "s.jsonl", out, on_error="skip"))
    assert len(again["agent"]) == 3 and "failed" not in write_tables(again, out)["agent"]["grounding/test"]


def test_judge_columns_say_how_many_they_cover() -> None:
    rows = [{"id": str(k), "task": "caption", "source": "s", "video": "v", "run": "r",
             "metrics": {"accuracy": 1.0, "tool_calls": 0.0, "frames_viewed": 1.0, "seconds": 0.1,
                         **({"CI": 4.0} if k == 0 else {})},
             "episode": {"answer": "a", "reference": {"answer": "a"}}} for k in range(4)]
    entry = summarize(rows)["caption/s"]
    assert entry["CI"] == {"mean": 4.0, "n": 1, "of": 4}
    assert "4.00 (n=1/4)" in markdown({"r": {"caption/s": entry}})


def test_secrets_never_reach_the_manifest() -> None:
    assert redact_url("https://user:sk-123@api.example.com/v1?api_key=sk-9&x=1") == (
        "https://user:***@api.example.com/v1?api_key=***&x=1")
    assert redact_url("http://localhost:8000/v1") == "http://localhost:8000/v1"


def test_tables_of_unchanged_results_are_read_back_and_the_manifest_records_the_code(
        suite: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import medscope.eval.tables as tables

    out = tmp_path / "eval"
    runs = evaluate(_config(suite, out))
    first = write_tables(runs, out)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["recorded"]["medscope"] and "commit" in manifest["recorded"]

    def boom(results: object) -> object:
        raise AssertionError("recomputed although nothing changed")

    monkeypatch.setattr(tables, "summarize", boom)
    assert write_tables(evaluate(_config(suite, out)), out) == json.loads(json.dumps(first))
    monkeypatch.undo()
    grown = evaluate(_config(suite, out, limit=0))
    grown["agent"][0]["metrics"]["iou"] = 0.0  # a changed result is summarised again
    assert write_tables(grown, out)["agent"]["grounding/test"]["mIoU"]["value"] < 100


def test_baselines_at_several_frame_budgets_draw_the_frames_score_curve(suite: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval"
    runs = evaluate(_config(suite, out, baseline="uniform", baseline_frames=(0.5, 1.0, 2.0)))
    assert set(runs) == {"agent", "baseline x0.5", "baseline", "baseline x2"}
    frames = {name: sum(r["metrics"]["frames_viewed"] for r in results) / len(results)
              for name, results in runs.items() if name != "agent"}
    assert frames["baseline x0.5"] < frames["baseline"] < frames["baseline x2"]
    assert (out / "baseline_x0.5.jsonl").exists() and (out / "baseline_x2.jsonl").exists()
    tables = write_tables(runs, out)
    assert set(tables) == set(runs) and "baseline x2" in markdown(tables)
