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
