"""Torch threads for the built-in model on the CPU: the new default (one thread under 100M parameters) against
torch's own default, on an idle machine and with every core busy with another process, in one run.

Each condition runs the same medscope-tiny episodes on a SynthClin video (the questions `make demo` asks),
in turns (condition A, B, A, B, ...), so drift in the machine's load hits both alike. "Busy" starts one
spinning process per core, as a shared CI box or a laptop compiling would. Prints a table and writes
``benchmarks/results/threads.json``. Run: ``python benchmarks/threads.py [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from medscope.agent.backends import BackendOptions, make_backend
from medscope.agent.loop import AgentConfig, run_episode
from medscope.io import write_text_atomic
from medscope.train.card import cpu_description
from medscope.video.synthclin import SynthClinConfig, generate

HERE = Path(__file__).parent
QUESTIONS = ("When does bleeding happen? Answer with the time window(s) in seconds.",
             "Where in the field does the gauze appear?")


def _spin(stop: Any) -> None:
    while not stop.is_set():
        sum(i * i for i in range(10_000))


def _episodes(backend: Any, video: Path, agent: AgentConfig) -> float:
    """Seconds per question over the questions."""
    start = time.perf_counter()
    for question in QUESTIONS:
        run_episode(backend, str(video), question, agent)
    return (time.perf_counter() - start) / len(QUESTIONS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved repetitions of each condition")
    parser.add_argument("--out", default=str(HERE / "results"), help="where threads.json goes")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    video = generate(SynthClinConfig(duration_seconds=180.0, seed=20_016), HERE / "cache").video_path
    agent = AgentConfig(max_new_tokens=160)
    default_threads = torch.get_num_threads()
    backend = make_backend("hf", options=BackendOptions(device="cpu"))  # sets the new default: one thread
    settings = {"new default (1 thread)": 1, f"torch default ({default_threads} threads)": default_threads}
    times: dict[str, list[float]] = {}
    for load in ("idle", "busy"):
        stop = multiprocessing.Event()
        spinners = [multiprocessing.Process(target=_spin, args=(stop,)) for _ in range(cores if load == "busy" else 0)]
        for process in spinners:
            process.start()
        try:
            for threads in settings.values():  # warm-up: first calls pay for lazy initialisation
                torch.set_num_threads(threads)
                _episodes(backend, video, agent)
            for _ in range(args.rounds):
                for name, threads in settings.items():
                    torch.set_num_threads(threads)
                    times.setdefault(f"{name}|{load}", []).append(_episodes(backend, video, agent))
        finally:
            stop.set()
            for process in spinners:
                process.join()
    rows = []
    for name in settings:
        idle, busy = (statistics.median(times[f"{name}|{load}"]) for load in ("idle", "busy"))
        rows.append({"setting": name, "idle_s_per_question": round(idle, 3), "busy_s_per_question": round(busy, 3)})
    new, old = rows
    result = {"machine": {"cores": cores, "platform": platform.platform(), "torch": torch.__version__,
                          "cpu": cpu_description()},
              "rounds": args.rounds, "questions": len(QUESTIONS), "rows": rows,
              "speedup_idle": round(old["idle_s_per_question"] / new["idle_s_per_question"], 2),
              "speedup_busy": round(old["busy_s_per_question"] / new["busy_s_per_question"], 2)}
    write_text_atomic(Path(args.out) / "threads.json", json.dumps(result, indent=2) + "\n")
    print("| setting | idle: s/question | all cores busy: s/question |\n|---|---|---|")
    for row in rows:
        print(f"| {row['setting']} | {row['idle_s_per_question']} | {row['busy_s_per_question']} |")
    print(f"new default vs torch default: {result['speedup_idle']}x idle, {result['speedup_busy']}x busy")


if __name__ == "__main__":
    main()
