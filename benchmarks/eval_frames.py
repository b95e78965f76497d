"""An evaluation's episodes sharing each video's decoded frames (``run_samples(share_frames=True)``, the default)
against each episode decoding its own, in one run.

A benchmark asks several questions about each video; every episode opens the video and decodes its overview (the
agent's 16 frames) or, for a uniform baseline, all its frames (the tiny preset's 4× baseline: 144) again. With one
shared ``FrameCache`` the questions about a video decode them once. medscope-tiny (one torch thread, 8 concurrent
episodes, the tiny preset's 96 tokens a turn) answers every question of a suite built from four SynthClin videos
made as the tiny preset makes them, as the agent and as a 144-frame uniform policy; the process is pinned to
``--cores`` cores, as a pipeline stage shares the machine. Conditions alternate over the rounds. Per condition:
seconds per question and how many answers are the same as with each episode decoding its own. Prints a table and
writes ``benchmarks/results/eval_frames.json``. Run: ``python benchmarks/eval_frames.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from eval_batching import tiny_suite  # the same questions (a script's folder is on its import path)

from medscope.agent.backends import BackendOptions
from medscope.agent.loop import AgentConfig
from medscope.eval.runner import backend_factory, run_samples
from medscope.io import write_text_atomic
from medscope.train.card import cpu_description
from medscope.train.pipeline import uniform_agent

HERE = Path(__file__).parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1, help="alternating repetitions of the conditions")
    parser.add_argument("--videos", type=int, default=4, help="SynthClin videos, every question of each")
    parser.add_argument("--cores", type=int, default=1, help="CPU cores the process may use")
    parser.add_argument("--out", default=str(HERE / "results"), help="where eval_frames.json goes")
    args = parser.parse_args()
    os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[: args.cores])
    work = Path(tempfile.mkdtemp(prefix="eval_frames_"))
    samples = tiny_suite(work, args.videos)
    agents = {"agent": AgentConfig(max_new_tokens=96), "uniform 144 frames": uniform_agent(144, 96)}
    conditions = [(name, share) for name in agents for share in (False, True)]
    seconds = dict.fromkeys(conditions, 0.0)
    answers: dict[tuple[str, bool], dict[str, str]] = {}
    for round_ in range(args.rounds):
        for name, share in conditions:
            make = backend_factory("hf", model=None, base_url=None, options=BackendOptions(device="cpu"), batch=8)
            start = time.perf_counter()
            results = run_samples(samples, make, work / f"{round_}-{name}-{share}" / "results.jsonl", agents[name],
                                  run=name, workers=8, share_frames=share)
            seconds[name, share] += time.perf_counter() - start
            answers[name, share] = {r["id"]: r["episode"]["answer"] for r in results}
    shutil.rmtree(work, ignore_errors=True)
    rows = {}
    for name, share in conditions:
        alone = answers[name, False]
        rows[f"{name}{', shared' if share else ''}"] = {
            "policy": name, "share_frames": share,
            "s_per_question": seconds[name, share] / (args.rounds * len(samples)),
            "speedup": seconds[name, False] / seconds[name, share],
            "same_answers": sum(answers[name, share][k] == v for k, v in alone.items())}
    print(f"{len(samples)} questions on {args.videos} videos, {args.cores} core(s), {args.rounds} round(s)")
    print("| policy | frames | s / question | speed-up | answers the same as unshared |")
    print("|---|---|---|---|---|")
    for row in rows.values():
        print(f"| {row['policy']} | {'shared' if row['share_frames'] else 'per episode'} | "
              f"{row['s_per_question']:.2f} | {row['speedup']:.2f}x | {row['same_answers']} of {len(samples)} |")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "eval_frames.json", json.dumps({
        "machine": cpu_description(), "model": "medscope-tiny", "torch_threads": 1, "cores": args.cores,
        "rounds": args.rounds, "questions": len(samples), "videos": args.videos, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
