"""What looking on purpose can gain at all: the teacher and the uniform policy with *perfect perception*, in one run.

A learned agent can beat a learned uniform baseline by more than these policies differ only if the baseline sees
worse than the agent does. So before asking medscope-tiny for "2x the uniform baseline at equal frames", measure
what the teacher it imitates reaches against uniform sampling when both see perfectly: the teacher (the search
that wrote the training trajectories) against ``UniformBackend`` (knows the answer iff a uniform frame shows it) at
the teacher's mean frames (1x) and four times them, for a few tool sizes (overview frames, ``crop_video`` frames).

Videos and questions are made as ``train all --preset tiny`` makes them (2-4-minute SynthClin, its question
templates), from seeds no run of the preset uses; then, for the same seeds, designs of the data where a coarse
view is informative: events that leave a faded trace to the end of the video (``trace_seconds``), each of a kind
the video has not shown yet (``distinct_events``: one window per "when" question), over longer videos. Grounding
mIoU, mean and standard error clustered by video, and the paired difference teacher - uniform. Writes
``benchmarks/results/policy_ceiling.json``.
Run: ``python benchmarks/policy_ceiling.py [--videos 100] [--out DIR]`` (about a minute per design and tool size).
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
from pathlib import Path
from typing import Any

from medscope.agent.loop import AgentConfig
from medscope.eval.runner import EvalConfig, evaluate
from medscope.eval.tables import clustered_se
from medscope.io import write_text_atomic
from medscope.train.pipeline import PRESETS, suite_stage, videos_stage
from medscope.video.tools import ToolConfig

HERE = Path(__file__).parent
SEED = 50_000  # the preset's runs use seeds 0-299 (training) and 10,000-10,069 (held out), plus the run's seed
SIZES = ((16, 8), (16, 16), (24, 8), (8, 8), (8, 16))  # (overview frames, crop_video frames); the first: default
TRACED = {"trace_seconds": 3600.0, "distinct_events": True}
# (name, changes to the preset's video spec, tool sizes): the preset's own data first, at every size.
DESIGNS: tuple[tuple[str, dict[str, Any], tuple[tuple[int, int], ...]], ...] = (
    ("preset (2-4 min)", {}, SIZES),
    ("traces, 2-4 min", TRACED, ((16, 8), (8, 8))),
    ("traces, 4-6 min", TRACED | {"seconds": [240.0, 360.0]}, ((16, 8), (8, 8))),
    ("traces, 6-8 min", TRACED | {"seconds": [360.0, 480.0]}, ((16, 8), (8, 8))),
)


def _stat(values: list[float], videos: list[str]) -> dict[str, float]:
    return {"mean": 100 * sum(values) / len(values), "se": 100 * clustered_se(values, videos)}


def measure(samples: Path, out: Path, overview: int, crop: int) -> dict[str, Any]:
    tools = ToolConfig(overview_frames=overview, crop_frames=crop)
    runs = evaluate(EvalConfig(samples=str(samples), out=str(out), backend="teacher", baseline="uniform",
                               baseline_frames=(1.0, 4.0), workers=2, new=True, agent=AgentConfig(tools=tools)))
    row: dict[str, Any] = {"overview_frames": overview, "crop_frames": crop}
    teacher = {r["id"]: r for r in runs["agent"] if r["task"] == "grounding"}
    videos = [teacher[k]["video"] for k in teacher]
    row["questions"], row["videos"] = len(teacher), len(set(videos))
    for name, results in runs.items():
        ground = {r["id"]: r for r in results if r["task"] == "grounding"}
        key = {"agent": "teacher", "baseline": "uniform_1x", "baseline x4": "uniform_4x"}[name]
        row[key] = {**_stat([ground[k]["metrics"]["iou"] for k in teacher], videos),
                    "frames": sum(r["metrics"]["frames_viewed"] for r in results) / len(results)}
        if key != "teacher":  # paired over the same questions: the gain of the teacher's search over these frames
            row[f"teacher_minus_{key}"] = _stat([teacher[k]["metrics"]["iou"] - ground[k]["metrics"]["iou"]
                                                 for k in teacher], videos)
    row["ratio_1x"] = row["teacher"]["mean"] / max(1e-9, row["uniform_1x"]["mean"])
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--videos", type=int, default=100)
    parser.add_argument("--out", default=str(HERE / "results"), help="folder of the JSON result")
    args = parser.parse_args()
    preset = PRESETS["tiny"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for k, (design, changes, sizes) in enumerate(DESIGNS):
            root = Path(tmp) / str(k)
            videos_stage(root / "videos", list(range(SEED, SEED + args.videos)), preset["videos"] | changes,
                         processes=2)
            suite_stage(root / "suite", str(root / "videos"), preset["suite"])
            rows += [{"design": design, "video_spec": changes} | measure(root / "suite" / "samples.jsonl",
                                                                         root / f"eval_{o}_{c}", o, c)
                     for o, c in sizes]
    print("\nGrounding mIoU with perfect perception (held-out-style SynthClin, mean ± SE clustered by video):\n")
    print("| data | overview / crop frames | questions | teacher | frames | uniform 1× | teacher − uniform 1× | ratio "
          "| uniform 4× |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        def cell(s: dict[str, float]) -> str:
            return f"{s['mean']:.1f} ± {s['se']:.1f}"
        print(f"| {r['design']} | {r['overview_frames']} / {r['crop_frames']} | {r['questions']} "
              f"| {cell(r['teacher'])} | {r['teacher']['frames']:.1f} | {cell(r['uniform_1x'])} "
              f"| {cell(r['teacher_minus_uniform_1x'])} | {r['ratio_1x']:.2f}× | {cell(r['uniform_4x'])} |")
    print(f"\n{args.videos} videos per design.")
    result = {"benchmark": "policy_ceiling", "python": platform.python_version(), "videos": args.videos,
              "seeds": [SEED, SEED + args.videos - 1], "preset": "tiny", "rows": rows}
    write_text_atomic(Path(args.out) / "policy_ceiling.json", json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
