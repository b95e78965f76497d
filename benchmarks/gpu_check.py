"""The real-size path on a GPU in a few minutes: a Qwen3-VL model on the device in bf16, one agent episode, eight
episodes one at a time and then with their turns decoded together (``--workers 8``), one SFT step and one GA-GRPO
step, each timed, as a table (and JSON).

Nothing is downloaded: the model is a randomly initialised Qwen3-VL of the real architecture at ``--hidden`` /
``--layers`` (about 150 M parameters by default on a GPU), with the built-in model's tokenizer and processor, and
the data is a SynthClin video and its suite built on the spot. What it checks is the code path a 7B run takes
(``device_map``, bf16 weights for inference and bf16 autocast in training, TRL's tool loop on the device), not
quality. ``--device cpu`` runs the same steps on a CPU (small sizes), which is how this script is tested.

Run: ``python benchmarks/gpu_check.py [--device cuda] [--out benchmarks/results]`` (about 2-3 minutes on one GPU).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from medscope.agent.backends.batching import BatchingBackend
from medscope.agent.backends.hf import HFBackend, resolve_device
from medscope.agent.backends.processors import load_processor
from medscope.agent.loop import AgentConfig, run_episode
from medscope.eval.runner import run_samples
from medscope.io import write_text_atomic
from medscope.models import builtin_model_path
from medscope.suite.build import BuildConfig, build
from medscope.suite.qa import QAConfig
from medscope.suite.records import read_jsonl
from medscope.train import grpo, sft, tiny
from medscope.train.configs import GRPOStageConfig, SFTStageConfig
from medscope.video.synthclin import SynthClinConfig, generate
from medscope.video.tools import ToolConfig

AGENT = AgentConfig(max_new_tokens=64, tools=ToolConfig(overview_frames=8, crop_frames=4, get_frame_count=1))


def _timed(rows: list[dict[str, Any]], name: str, device: str, run: Callable[[], str]) -> None:
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        torch.cuda.synchronize()
    start = time.perf_counter()
    detail = run()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None
    rows.append({"step": name, "seconds": round(time.perf_counter() - start, 2), "detail": detail,
                 "peak_gib": None if peak is None else round(peak, 2)})
    print(f"{name}: {rows[-1]['seconds']} s  {detail}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto | cuda | cpu")
    parser.add_argument("--hidden", type=int, default=0, help="text hidden size (0: 1024 on a GPU, 64 on a CPU)")
    parser.add_argument("--layers", type=int, default=0, help="text layers (0: 8 on a GPU, 2 on a CPU)")
    parser.add_argument("--out", default="benchmarks/results", help="where gpu_check.json goes")
    args = parser.parse_args()
    device = resolve_device(args.device)
    gpu = device.startswith("cuda")
    hidden, layers = args.hidden or (1024 if gpu else 64), args.layers or (8 if gpu else 2)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        video = generate(SynthClinConfig(duration_seconds=120.0, seed=3), work / "videos")
        build(BuildConfig(source="synthclin", annotations=str(video.annotation_path), out=str(work / "suite"),
                          workers=1, qa=QAConfig(max_per_task=1)))
        processor = load_processor(builtin_model_path())
        model = tiny.build_tiny_model("qwen3_vl", processor.tokenizer, hidden_size=hidden, layers=layers,
                                      vision_hidden=max(32, hidden // 4), vision_layers=max(1, layers // 2))
        parameters = sum(p.numel() for p in model.parameters())
        folder = tiny.save_tiny(model, processor, work / "model")
        del model

        def episode() -> str:
            backend = HFBackend.from_pretrained(folder, device=device, dtype="bfloat16" if gpu else "float32")
            result = run_episode(backend, str(video.video_path), "When does bleeding happen?", AGENT)
            return (f"{parameters / 1e6:.1f} M parameters on {backend.model.device} in {backend.model.dtype}; "
                    f"{len(result.turns)} turns, {result.frames_viewed} frames")

        samples = list(read_jsonl(work / "suite" / "samples.jsonl"))
        eight = [replace(samples[k % len(samples)], id=f"{samples[k % len(samples)].id}#{k}") for k in range(8)]
        backend = HFBackend.from_pretrained(folder, device=device, dtype="bfloat16" if gpu else "float32")
        turns: dict[int, dict[str, list[str]]] = {}

        def episodes(workers: int) -> Callable[[], str]:
            def run() -> str:
                model = BatchingBackend(backend, workers) if workers > 1 else backend
                records = run_samples(eight, lambda sample: model, work / f"eval{workers}" / "results.jsonl", AGENT,
                                      run=f"workers {workers}", workers=workers)
                turns[workers] = {r["id"]: [t["raw"] for t in r["episode"]["turns"]] for r in records}
                count = sum(len(t) for t in turns[workers].values())
                if workers == 1:
                    return f"{count} turns"
                same = sum(turns[workers][k] == v for k, v in turns[1].items())
                sizes = model.batches if isinstance(model, BatchingBackend) else []
                return (f"{count} turns in {len(sizes)} batches; {same} of 8 episodes the same as one at a time "
                        "(bf16 padding can move a near tie)")
            return run

        def sft_step() -> str:
            out = sft.main(SFTStageConfig(stage=2, data=str(work / "suite" / "trajectories.jsonl"), model=str(folder),
                                          out=str(work / "sft"), max_steps=1, batch_size=1, grad_accum=1, lr=1e-5,
                                          agent=AGENT))
            state = json.loads((out / "checkpoint-1" / "trainer_state.json").read_text())
            loss = next(e["loss"] for e in state["log_history"] if "loss" in e)
            return f"one update, loss {loss:.3f}, bf16 autocast {'on' if gpu else 'off (CPU)'}"

        def grpo_step() -> str:
            out = grpo.main(GRPOStageConfig(data=str(work / "suite" / "samples.jsonl"), model=str(work / "sft"),
                                            out=str(work / "grpo"), max_steps=1, group_size=2, batch_size=2, lr=1e-6,
                                            max_completion_length=256, gradient_checkpointing=gpu,
                                            agent=replace(AGENT, max_turns=1)))
            state = json.loads((out / "trainer_state.json").read_text())
            step = next(e for e in state["log_history"] if "loss" in e)
            return (f"one update, reward {step.get('reward', float('nan')):.2f}, tool calls per rollout "
                    f"{step.get('tools/call_frequency', float('nan')):.2f}")

        _timed(rows, "episode (hf backend)", device, episode)
        _timed(rows, "8 episodes, one at a time", device, episodes(1))
        _timed(rows, "8 episodes, turns batched (--workers 8)", device, episodes(8))
        _timed(rows, "SFT step (stage 2)", device, sft_step)
        _timed(rows, "GA-GRPO step", device, grpo_step)
    name = torch.cuda.get_device_name() if gpu else "CPU"
    result = {"device": name, "torch": torch.__version__, "parameters": parameters, "rows": rows}
    write_text_atomic(Path(args.out) / "gpu_check.json", json.dumps(result, indent=2) + "\n")
    print(f"\n{name}, {parameters / 1e6:.1f} M parameters\n")
    print("| step | seconds | peak GiB | detail |\n|---|---|---|---|")
    for row in rows:
        print(f"| {row['step']} | {row['seconds']} | {row['peak_gib'] if row['peak_gib'] is not None else '-'} | "
              f"{row['detail']} |")


if __name__ == "__main__":
    main()
