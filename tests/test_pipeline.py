"""``medscope train all`` end to end at the smoke preset: every stage runs, the model folder ships with its
card, and a rerun resumes (skips) every finished stage."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from medscope.train.pipeline import PipelineConfig, main


@pytest.mark.usefixtures("one_torch_thread")
def test_train_all_smoke_runs_every_stage_then_resumes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from medscope.agent.backends.hf import HFBackend

    tables = main(PipelineConfig(preset="smoke", out=str(tmp_path), ablations=False))
    assert set(tables) == {"sft", "grpo", "teacher", "oracle"} and set(tables["sft"]) == {"agent", "baseline"}
    results = (tmp_path / "results.md").read_text()
    assert "| sft |" in results and "| grpo |" in results and "uniform baseline (sft model)" in results
    teacher = next(row for row in results.splitlines() if row.startswith("| teacher (reference, knows the truth) |"))
    assert re.search(r" [12]/2 \|$", teacher)  # distinct first turns over the 2 questions
    shipped = tmp_path / "medscope-smoke"
    card = (shipped / "README.md").read_text()
    assert "medscope train all --preset smoke" in card and results.strip() in card
    assert "`grpo`" in card and "optimizer steps" in card and not list(shipped.glob("checkpoint-*"))
    backend = HFBackend.from_pretrained(shipped)  # the shipped folder loads like any model
    assert backend.identity() == {"backend": "hf", "model": "medscope-smoke"}
    capsys.readouterr()
    main(PipelineConfig(preset="smoke", out=str(tmp_path), ablations=False))
    log = capsys.readouterr().err
    assert log.count("done before, skipped") == 13 and "..." not in log  # nothing ran again
