"""Training throughput of the tiny model on this CPU: one process of one torch thread, one process of every core's
threads (torch's default), and one data-parallel process of one thread per core (gloo), in one run.

Each condition trains the same curriculum stage (pointing over 8 frames, the tiny preset's model) for a fixed
number of steps of the same global batch from the same initial weights, in turns (A, B, C, A, B, C, ...), so
drift in the machine's load hits all alike; the time excludes loading (the stage's own wall time, as
``curriculum.json`` records it). Prints a table and writes ``benchmarks/results/train_processes.json``.
Run: ``python benchmarks/train_processes.py [--steps 60] [--rounds 2]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import tempfile
from pathlib import Path
from typing import Any

from medscope.io import write_text_atomic
from medscope.train import tiny
from medscope.train.card import cpu_description
from medscope.train.curriculum import CurriculumConfig, Stage
from medscope.train.curriculum import main as curriculum
from medscope.train.pipeline import PRESETS
from medscope.video.synthclin import SynthClinConfig, generate

HERE = Path(__file__).parent


def _setup(root: Path) -> tuple[Path, Path]:
    spec, model = PRESETS["tiny"]["videos"], PRESETS["tiny"]["model"]
    videos = root / "videos"
    for seed in range(4):
        seconds = round(random.Random(seed).uniform(*spec["seconds"]), 1)
        generate(SynthClinConfig(duration_seconds=seconds, fps=spec["fps"], keyframe_seconds=spec["keyframe_seconds"],
                                 seed=seed, events_per_10min=spec["events_per_10min"]), videos)
    tok = tiny.build_tokenizer(["When does bleeding happen? [12.5s] nothing <answer>[1.0, 2.0]</answer>"] * 50,
                               vocab_size=model["vocab_size"], chat_template=tiny.load_chat_template(model["arch"]))
    net = tiny.build_tiny_model(model["arch"], tok, hidden_size=model["hidden_size"], layers=model["layers"],
                                vision_hidden=model["vision_hidden"], vision_layers=model["vision_layers"],
                                rope_theta=model["rope_theta"])
    tiny.save_tiny(net, tiny.build_processor(model["arch"], tok, max_pixels=model["max_pixels"]), root / "init")
    return videos, root / "init"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60, help="optimizer steps per measurement")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved repetitions of each condition")
    parser.add_argument("--out", default=str(HERE / "results"), help="where train_processes.json goes")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    conditions = {"1 process x 1 thread": (1, 1), f"1 process x {cores} threads": (1, cores),
                  f"{cores} processes x 1 thread (data-parallel)": (cores, 1)}
    stage = Stage("point", 8, args.steps)
    seconds: dict[str, list[float]] = {name: [] for name in conditions}
    with tempfile.TemporaryDirectory() as tmp:
        videos, init = _setup(Path(tmp))
        for _ in range(args.rounds):
            for name, (processes, threads) in conditions.items():
                out = Path(tmp) / "run"
                shutil.rmtree(out, ignore_errors=True)
                config = CurriculumConfig(videos=str(videos), model=str(init), out=str(out), batch_size=8,
                                          processes=processes, threads=threads, check_every=10**9,
                                          listed_every=10**9, check_rows=8)  # no checks: step time only
                report = curriculum(config, (stage,))
                seconds[name].append(report["stages"][0]["seconds"])
    rows: list[dict[str, Any]] = []
    base = statistics.median(seconds["1 process x 1 thread"])
    for name, values in seconds.items():
        median = statistics.median(values)
        rows.append({"condition": name, "seconds": median, "steps_per_second": args.steps / median,
                     "speed_vs_one_thread": base / median, "runs": values})
    print(f"{args.steps} steps of 8 rows (pointing over 8 frames), median of {args.rounds}, {cores} cores:")
    print("| condition | s | steps/s | vs 1 thread |\n|---|---|---|---|")
    for row in rows:
        print(f"| {row['condition']} | {row['seconds']:.1f} | {row['steps_per_second']:.2f} | "
              f"{row['speed_vs_one_thread']:.2f}x |")
    machine = {"cpus": cores, "platform": platform.platform(), "cpu": cpu_description()}
    result = {"machine": machine, "steps": args.steps, "rows": rows}
    write_text_atomic(Path(args.out) / "train_processes.json", json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
