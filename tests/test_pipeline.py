"""``medscope train all`` end to end at the smoke preset: every stage runs, the model folder ships with its
card, and a rerun resumes (skips) every finished stage."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import torch

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
    # Both SFT stages trained on the rows built while the curriculum ran.
    for name in ("sft", "sft_uniform"):
        assert (tmp_path / f"{name}_rows" / "rows" / "rows_key.json").is_file()
        assert f"{name}_rows/rows" in (tmp_path / name / "run_config.yaml").read_text()
    shipped = tmp_path / "medscope-smoke"
    card = (shipped / "README.md").read_text()
    assert "medscope train all --preset smoke" in card and results.strip() in card
    assert "`grpo`" in card and "optimizer steps" in card and "`curriculum`" in card
    assert f"{os.cpu_count()} cores, torch kernels {torch.backends.cpu.get_cpu_capability()}" in card  # what timed it
    assert not list(shipped.glob("checkpoint-*"))
    from PIL import Image

    with Image.open(shipped / "curves.png") as curves:  # the card's figure, from the stages' own logs
        assert curves.format == "PNG" and curves.width > 1000 and "![training curves](curves.png)" in card
    backend = HFBackend.from_pretrained(shipped)  # the shipped folder loads like any model
    assert backend.identity() == {"backend": "hf", "model": "medscope-smoke"}
    # The system prompt the preset trains with travels in the model's config from init to the shipped folder.
    assert json.loads((shipped / "config.json").read_text())["medscope_prompt"] == "short" == backend.prompt
    assert "--prompt short" in card  # a server is not told by the config: the card says how
    line = json.loads((tmp_path / "eval_grpo" / "results.jsonl").read_text().splitlines()[0])
    assert line["episode"]["prompt_version"].endswith("-short")
    capfd.readouterr()
    main(PipelineConfig(preset="smoke", out=str(tmp_path), ablations=False))
    log = capfd.readouterr().err  # the stages run in worker processes: their stderr is the fd
    assert log.count("done before, skipped") == 20 and "..." not in log  # nothing ran again


def test_standard_errors_are_clustered_by_video(tmp_path: Path) -> None:
    """Two videos, each with two grounding questions scored alike: the questions of a video are one draw, so the
    error is that of two draws (50 points), not of four independent ones (29 points)."""
    from medscope.train.pipeline import results_table, summarize

    rows = [{"id": f"q{k}", "task": "grounding", "video": video, "metrics": {"iou": iou, "frames_viewed": 8},
             "episode": {"turns": [{"raw": f"turn {video}"}]}}
            for k, (video, iou) in enumerate((("a.mp4", 1.0), ("a.mp4", 1.0), ("b.mp4", 0.0), ("b.mp4", 0.0)))]
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    row = summarize(tmp_path)
    assert row["grounding_miou"] == {"mean": 50.0, "se": 50.0, "n": 4}
    assert row["videos"] == 2 and row["distinct_first_turns"] == [2, 4] and row["gvqa_accuracy"] is None
    assert "4 held-out questions on 2 unseen videos" in results_table({"m": row})


def test_differences_are_paired_by_question_and_clustered_by_video(tmp_path: Path) -> None:
    """grpo minus another row, question by question: the two folders' means differ by 10 points; the error is of the
    per-question differences (two videos), and a question only one folder answered is left out."""
    from medscope.train.pipeline import paired, results_table, summarize

    def folder(name: str, ious: list[float], extra: bool = False) -> Path:
        rows = [{"id": f"q{k}", "task": "grounding", "video": "ab"[k // 2] + ".mp4", "metrics": {"iou": iou,
                 "frames_viewed": 8}, "episode": {"turns": [{"raw": "t"}]}} for k, iou in enumerate(ious)]
        if extra:
            rows.append({**rows[0], "id": "only-here", "metrics": {"iou": 1.0, "frames_viewed": 8}})
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        return tmp_path / name

    grpo, sft = folder("grpo", [1.0, 0.5, 0.2, 0.0], extra=True), folder("sft", [0.8, 0.3, 0.2, 0.0])
    difference = paired(grpo, sft)
    assert difference is not None and difference["n"] == 4
    assert difference["mean"] == pytest.approx(10.0) and difference["se"] == pytest.approx(10.0)
    table = {"grpo": summarize(grpo), "sft": {**summarize(sft), "grpo_minus": difference}}
    assert "grpo minus each row, per question over the 4 grounding questions" in results_table(table)
    assert "sft +10.0 ± 10.0" in results_table(table)
