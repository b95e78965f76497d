"""The benchmarks still run: each is a script nobody imports, so an API change elsewhere breaks it silently (the
curriculum's check settings once did). Slow: they render videos and train; run by ``make test-all``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_train_processes_benchmark_times_every_condition(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "train_processes.py"), "--steps", "2", "--rounds", "1",
                    "--out", str(tmp_path)], check=True, cwd=ROOT, timeout=900)
    result = json.loads((tmp_path / "train_processes.json").read_text())
    conditions = [row["condition"] for row in result["rows"]]
    assert len(conditions) == 3 and conditions[0] == "1 process x 1 thread"
    assert all(row["seconds"] > 0 for row in result["rows"]) and "torch kernels" in result["machine"]["cpu"]


@pytest.mark.slow
def test_episode_rows_benchmark_times_both_ways_alike(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "episode_rows.py"), "--steps", "1", "--rounds", "1",
                    "--out", str(tmp_path)], check=True, cwd=ROOT, timeout=900)
    result = json.loads((tmp_path / "episode_rows.json").read_text())
    assert set(result["stages"]) == {"first", "then"} and "torch kernels" in result["machine"]
    for stage in result["stages"].values():
        assert stage["batched_s_per_step"] > 0 and stage["one_at_a_time_s_per_step"] > 0
        assert stage["max_relative_loss_gap"] < 1e-4  # the same loss both ways


@pytest.mark.slow
def test_eval_batching_benchmark_compares_the_same_questions(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "eval_batching.py"), "--questions", "4",
                    "--workers", "1", "2", "--out", str(tmp_path)], check=True, cwd=ROOT, timeout=900)
    result = json.loads((tmp_path / "eval_batching.json").read_text())
    assert set(result["rows"]) == {"1", "1 cached", "2", "2 cached"} and result["questions"] == 4
    for row in ("1 cached", "2", "2 cached"):  # greedy turns, batched or cached, are the turns decoded alone
        assert result["rows"][row]["same_episodes"] == 4
    assert 1.0 < result["rows"]["2"]["mean_batch"] <= 2


@pytest.mark.slow
def test_eval_frames_benchmark_gives_the_same_answers_shared_or_not(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "eval_frames.py"), "--videos", "1", "--cores", "2",
                    "--out", str(tmp_path)], check=True, cwd=ROOT, timeout=900)
    result = json.loads((tmp_path / "eval_frames.json").read_text())
    assert set(result["rows"]) == {"agent", "agent, shared", "uniform 144 frames", "uniform 144 frames, shared"}
    assert all(row["same_answers"] == result["questions"] > 1 for row in result["rows"].values())
