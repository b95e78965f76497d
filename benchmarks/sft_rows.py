"""SFT rows into Arrow: ``medscope.train.sft.frames_dataset`` (frames as PNG at zlib level 1) vs
``datasets.Dataset.from_list`` on the same rows (``datasets`` encodes PIL frames as PNG at PIL's default level 6),
in one run. Both are lossless; the table shows seconds per row, the ratio, and the bytes per frame.

The rows are the tiny preset's stage-2 rows (teacher trajectories replayed on SynthClin videos, the tools at
their default sizes), so a row holds what an SFT row of ``train all --preset tiny`` holds. Writes
``benchmarks/results/sft_rows.json``. Run: ``python benchmarks/sft_rows.py [--videos 3] [--rounds 3] [--out DIR]``.
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

import datasets

from medscope.agent.loop import AgentConfig
from medscope.io import write_text_atomic
from medscope.suite.build import BuildConfig, build
from medscope.suite.qa import QAConfig
from medscope.suite.records import read_jsonl
from medscope.train.card import cpu_description
from medscope.train.data import sft_rows
from medscope.train.pipeline import PRESETS
from medscope.train.sft import frames_dataset
from medscope.video.synthclin import SynthClinConfig, generate

HERE = Path(__file__).parent


def rows(root: Path, videos: int) -> list[dict[str, Any]]:
    spec, suite = PRESETS["tiny"]["videos"], PRESETS["tiny"]["suite"]
    for seed in range(videos):
        seconds = round(random.Random(seed).uniform(*spec["seconds"]), 1)
        generate(SynthClinConfig(duration_seconds=seconds, fps=spec["fps"], keyframe_seconds=spec["keyframe_seconds"],
                                 seed=seed, events_per_10min=spec["events_per_10min"]), root / "videos")
    build(BuildConfig(source="synthclin", annotations=str(root / "videos"), out=str(root / "suite"),
                      qa=QAConfig(templates=tuple(suite["templates"])), workers=1))
    trajectories = list(read_jsonl(root / "suite" / "trajectories.jsonl", "trajectory"))
    return sft_rows(trajectories, AgentConfig(), stage=2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--videos", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=str(HERE / "results"), help="folder of the JSON result")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = rows(Path(tmp), args.videos)
    frames = sum(len(r["images"]) for r in data)
    conditions = {"datasets default (level 6)": datasets.Dataset.from_list, "frames_dataset (level 1)": frames_dataset}
    timings: dict[str, list[float]] = {name: [] for name in conditions}
    sizes: dict[str, float] = {}
    for _ in range(args.rounds):  # in turns, so drift in the machine's load hits both alike
        for name, make in conditions.items():
            started = time.perf_counter()
            table = make(data)
            timings[name].append((time.perf_counter() - started) / len(data))
            sizes[name] = table.data.nbytes / frames
    medians = {name: statistics.median(values) for name, values in timings.items()}
    default, ours = medians.values()
    result = {"rows": len(data), "frames": frames, "seconds_per_row": medians, "bytes_per_frame": sizes,
              "speedup": default / ours, "machine": cpu_description()}
    print(f"{len(data)} rows, {frames} frames ({frames / len(data):.0f} per row)")
    print("| encoding | s per row | bytes per frame |\n|---|---|---|")
    for name, median in medians.items():
        print(f"| {name} | {median:.3f} | {sizes[name]:.0f} |")
    print(f"frames_dataset is {default / ours:.1f}x faster")
    out = Path(args.out) / "sft_rows.json"
    write_text_atomic(out, json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
