"""A curriculum step on episode rows (the ``first`` and ``then`` stages), batched against one row at a time.

A batch of episode rows (700-950 tokens each for the tiny recipe) is padded and carries an attention mask, so
attention, most of the step for a model of head size 16, takes its masked path; one row at a time it needs no
mask and takes the causal one. Both give the same gradient (``curriculum.backward``; a test checks it). Each
condition trains the same rows of the tiny preset's model on SynthClin videos with the teacher's trajectories
and the fair baseline's, in turns (A, B, A, B, ...), at the curriculum's two torch threads. Prints a table and
writes ``benchmarks/results/episode_rows.json``. Run: ``python benchmarks/episode_rows.py [--steps 10] [--rounds 2]``.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForImageTextToText

from medscope.agent.backends.processors import load_processor
from medscope.agent.loop import AgentConfig
from medscope.agent.protocol import folder_prompt, tool_schemas
from medscope.io import write_text_atomic
from medscope.train.card import cpu_description
from medscope.train.curriculum import backward, load_videos, turn_rows
from medscope.train.data import system_message, to_row
from medscope.train.pipeline import PRESETS, init_stage, suite_stage, uniform_trajectories_stage
from medscope.train.sft import AgentSFTCollator
from medscope.video.synthclin import SynthClinConfig, generate

HERE = Path(__file__).parent


def _setup(root: Path) -> tuple[Path, Path, tuple[str, str]]:
    """Six SynthClin videos as the tiny preset renders them, their suite (the teacher's trajectories), the fair
    baseline's trajectories, and the preset's model (its tokenizer learnt on the suite, the short prompt)."""
    spec = PRESETS["tiny"]["videos"]
    videos = root / "videos"
    for seed in range(6):
        seconds = round(random.Random(seed).uniform(*spec["seconds"]), 1)
        generate(SynthClinConfig(duration_seconds=seconds, fps=spec["fps"], keyframe_seconds=spec["keyframe_seconds"],
                                 seed=seed, events_per_10min=spec["events_per_10min"]), videos)
    suite_stage(root / "suite", str(videos), PRESETS["tiny"]["suite"])
    uniform_trajectories_stage(root / "uniform", str(root / "suite"))
    init_stage(root / "init", str(root / "suite"), PRESETS["tiny"]["model"], seed=0)
    return videos, root / "init", (str(root / "suite" / "trajectories.jsonl"),
                                   str(root / "uniform" / "trajectories.jsonl"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10, help="steps of 8 rows per measurement")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved repetitions of each condition")
    parser.add_argument("--threads", type=int, default=PRESETS["tiny"]["curriculum"]["threads"],
                        help="torch threads (the tiny preset's curriculum threads)")
    parser.add_argument("--out", default=str(HERE / "results"), help="where episode_rows.json goes")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows_of: dict[str, list[list[Any]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        videos, init, trajectories = _setup(Path(tmp))
        processor = load_processor(init)
        loaded = load_videos(videos, processor)
        prompt = folder_prompt(init)
        system = system_message(AgentConfig(), prompt)
        for kind in ("first", "then"):
            rows_of[kind] = turn_rows(trajectories, loaded, system, later=kind == "then")
        collate = AgentSFTCollator(processor, tools=tool_schemas(prompt) or ())
        model = AutoModelForImageTextToText.from_pretrained(init, local_files_only=True)
        model.train()
        results: dict[str, dict[str, Any]] = {}
        for kind, episodes in rows_of.items():
            rng = random.Random(0)
            steps = [[to_row(rng.choice(rng.choice(episodes))) for _ in range(8)] for _ in range(args.steps)]
            tokens = statistics.mean(collate([row])["input_ids"].shape[1] for batch in steps for row in batch)
            seconds: dict[str, list[float]] = {"batched": [], "one at a time": []}
            losses: dict[str, list[float]] = {"batched": [], "one at a time": []}
            for _ in range(args.rounds):
                for name in seconds:
                    started, values = time.perf_counter(), []
                    for batch in steps:
                        values.append(backward(model, collate, batch, one_at_a_time=name == "one at a time").item())
                        model.zero_grad()  # no optimizer step: every condition sees the same weights
                    seconds[name].append(time.perf_counter() - started)
                    losses[name] = values
            batched, single = (statistics.median(v) / args.steps for v in seconds.values())
            gap = max(abs(a - b) / a for a, b in zip(losses["batched"], losses["one at a time"], strict=True))
            results[kind] = {"tokens_per_row": round(tokens), "batched_s_per_step": round(batched, 3),
                             "one_at_a_time_s_per_step": round(single, 3), "speedup": round(batched / single, 2),
                             "max_relative_loss_gap": gap, "runs": seconds}
    print(f"{args.steps} steps of 8 episode rows (forward and backward), median of {args.rounds}, "
          f"{args.threads} torch threads, {cpu_description()}:")
    print("| stage | tokens per row | batched s/step | one at a time s/step | speedup | loss gap |")
    print("|---|---|---|---|---|---|")
    for kind, row in results.items():
        print(f"| {kind} | {row['tokens_per_row']} | {row['batched_s_per_step']} | {row['one_at_a_time_s_per_step']} "
              f"| {row['speedup']}x | {row['max_relative_loss_gap']:.1e} |")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "episode_rows.json", json.dumps(
        {"machine": cpu_description(), "threads": args.threads, "steps": args.steps, "rounds": args.rounds,
         "stages": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
