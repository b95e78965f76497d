"""``medscope train all`` end to end at the smoke preset: every stage runs, the model folder ships with its
card, and a rerun resumes (skips) every finished stage."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from medscope.train.pipeline import PipelineConfig, main


@pytest.mark.usefixtures("one_torch_thread")
def test_train_all_smoke_runs_every_stage_then_resumes(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    from medscope.agent.backends.hf import HFBackend

    tables = main(PipelineConfig(preset="smoke", out=str(tmp_path), ablations=False, workers=2))
    assert set(tables) == {"sft", "grpo", "uniform baseline 1×", "uniform baseline 4×", "teacher", "oracle",
                           "uniform (perfect perception) 1×"}
    results = (tmp_path / "results.md").read_text()
    assert "| sft |" in results and "| grpo |" in results and "| uniform baseline 4× |" in results
    teacher = next(row for row in results.splitlines() if row.startswith("| teacher |"))
    assert re.search(r" [12]/2 \|$", teacher)  # distinct first turns over the 2 questions
    # The fair baseline sees uniform frames only: 4x its budget is 4x the frames, and it calls no tool.
    frames = {row: tables[row]["frames_viewed"] for row in ("uniform baseline 1×", "uniform baseline 4×")}
    assert frames["uniform baseline 4×"] == 4 * frames["uniform baseline 1×"]
    assert (tmp_path / "curriculum" / "curriculum.json").is_file() and (tmp_path / "sft_uniform" / "DONE").is_file()
    shipped = tmp_path / "medscope-smoke"
    card = (shipped / "README.md").read_text()
    assert "medscope train all --preset smoke" in card and results.strip() in card
    assert "`grpo`" in card and "optimizer steps" in card and "`curriculum`" in card
    assert not list(shipped.glob("checkpoint-*"))
    backend = HFBackend.from_pretrained(shipped)  # the shipped folder loads like any model
    assert backend.identity() == {"backend": "hf", "model": "medscope-smoke"}
    capfd.readouterr()
    main(PipelineConfig(preset="smoke", out=str(tmp_path), ablations=False))
    log = capfd.readouterr().err  # the stages run in worker processes: their stderr is the fd
    assert log.count("done before, skipped") == 18 and "..." not in log  # nothing ran again
