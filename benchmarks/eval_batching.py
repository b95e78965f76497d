"""Evaluating a local model with concurrent episodes (``medscope eval --backend hf --workers N``): their turns are
decoded together (``BatchingBackend`` over ``HFBackend.generate_batch``) against one episode at a time, each with
and without the prefix cache (``--no-prefix-cache``: every turn encodes its whole conversation again), in one run.

medscope-tiny (the built-in model, one torch thread, the tiny preset's 96 tokens a turn) answers the questions of
a suite built from SynthClin videos made as the tiny preset makes them, none of them trained on. Each condition
runs the same questions; conditions alternate over the rounds, so drift in the machine's load hits all alike. Per
condition: seconds per question, the mean batch size, and how many episodes are the same, turn for turn, as one at
a time without the cache (greedy decoding: they should all be). Prints a table and writes
``benchmarks/results/eval_batching.json``. Run: ``python benchmarks/eval_batching.py``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from medscope.agent.backends import BackendOptions
from medscope.agent.backends.batching import BatchingBackend
from medscope.agent.loop import AgentConfig
from medscope.eval.runner import backend_factory, run_samples
from medscope.io import write_text_atomic
from medscope.suite.build import BuildConfig, build
from medscope.suite.records import Sample, read_jsonl
from medscope.train.card import cpu_description
from medscope.video.synthclin import SynthClinConfig, generate

HERE = Path(__file__).parent
VIDEOS = {20_016: 180.0, 20_017: 120.0, 20_018: 240.0, 20_019: 150.0}  # seconds, by SynthClin seed


def tiny_suite(work: Path, videos: int = len(VIDEOS)) -> list[Sample]:
    """Every question of a suite built in ``work`` from the first ``videos`` SynthClin videos, made as the tiny
    preset makes them (none of them trained on); ``benchmarks/eval_frames.py`` asks the same."""
    samples = []
    for seed, seconds in list(VIDEOS.items())[:videos]:
        video = generate(SynthClinConfig(duration_seconds=seconds, fps=2.0, keyframe_seconds=0.5,
                                         events_per_10min=10.0, seed=seed), HERE / "cache")
        build(BuildConfig(source="synthclin", annotations=str(video.annotation_path), out=str(work / str(seed)),
                          workers=1))
        samples += list(read_jsonl(work / str(seed) / "samples.jsonl"))
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 4, 8], help="conditions: concurrent episodes")
    parser.add_argument("--questions", type=int, default=40, help="questions per condition and round")
    parser.add_argument("--rounds", type=int, default=1, help="alternating repetitions of the conditions")
    parser.add_argument("--out", default=str(HERE / "results"), help="where eval_batching.json goes")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="eval_batching_"))
    samples = tiny_suite(work)
    samples = samples[:: max(1, len(samples) // args.questions)][: args.questions]  # every kind of question
    agent = AgentConfig(max_new_tokens=96)
    conditions = [(workers, cache) for workers in args.workers for cache in (False, True)]
    seconds = dict.fromkeys(conditions, 0.0)
    batches: dict[tuple[int, bool], list[int]] = {c: [] for c in conditions}
    turns: dict[tuple[int, bool], dict[str, list[str]]] = {}
    for round_ in range(args.rounds):
        for workers, cache in conditions:
            make = backend_factory("hf", model=None, base_url=None,
                                   options=BackendOptions(device="cpu", prefix_cache=cache), batch=workers)
            backend = make(samples[0])
            start = time.perf_counter()
            results = run_samples(samples, make, work / f"{round_}-{workers}-{cache}" / "results.jsonl", agent,
                                  run=f"workers {workers}", workers=workers)
            seconds[workers, cache] += time.perf_counter() - start
            batches[workers, cache] += backend.batches if isinstance(backend, BatchingBackend) else [1] * sum(
                len(r["episode"]["turns"]) for r in results)
            turns[workers, cache] = {r["id"]: [t["raw"] for t in r["episode"]["turns"]] for r in results}
    shutil.rmtree(work, ignore_errors=True)
    first = conditions[0]
    alone = turns[first]
    rows = {}
    for workers, cache in conditions:
        per_question = seconds[workers, cache] / (args.rounds * len(samples))
        rows[f"{workers}{' cached' if cache else ''}"] = {
            "workers": workers, "prefix_cache": cache, "s_per_question": per_question,
            "mean_batch": sum(batches[workers, cache]) / max(1, len(batches[workers, cache])),
            "speedup": seconds[first] / seconds[workers, cache],
            "same_episodes": sum(turns[workers, cache][k] == v for k, v in alone.items())}
    print("| workers | prefix cache | s / question | mean batch | speed-up | episodes the same as one at a time |")
    print("|---|---|---|---|---|---|")
    for row in rows.values():
        print(f"| {row['workers']} | {'on' if row['prefix_cache'] else 'off'} | {row['s_per_question']:.2f} | "
              f"{row['mean_batch']:.1f} | {row['speedup']:.2f}x | {row['same_episodes']} of {len(alone)} |")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "eval_batching.json", json.dumps({
        "machine": cpu_description(), "model": "medscope-tiny", "torch_threads": 1, "rounds": args.rounds,
        "questions": len(samples), "max_new_tokens": agent.max_new_tokens, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
