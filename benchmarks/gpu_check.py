"""The real-size path on a GPU in a few minutes: a Qwen-VL model on the device in bf16, one agent episode, eight
episodes one at a time and then with their turns decoded together (``--workers 8``), one SFT step and one GA-GRPO
step, each timed, as a table (and JSON).

Nothing is downloaded: the model is randomly initialised, with the built-in model's tokenizer and processor, and
the data is a SynthClin video and its suite built on the spot. ``--size small`` (the default) is a Qwen3-VL of the
real architecture at ``--hidden`` / ``--layers`` (about 90 M parameters on a GPU) trained in full; ``--size 7b`` is
Qwen2.5-VL-7B, the paper's model, at its real widths, depths and head counts (8.29 B parameters with its
152k-token vocabulary, 7.20 B with the built-in 565-token one), built on the GPU and trained with LoRA. What it
checks is the code path and the memory of a real run (``device_map``, bf16 weights for inference and bf16
autocast in training, TRL's tool loop on the device), not quality. ``--device cpu`` runs the same steps on a CPU
(small sizes), which is how this script is tested.

Run: ``python benchmarks/gpu_check.py [--device cuda] [--size small|7b] [--out benchmarks/results]`` (2-3 minutes
on one GPU at the small size).
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
# Qwen2.5-VL-7B-Instruct's config.json, less what the tiny builder already sets the same way (bf16 aside).
QWEN25_VL_7B_TEXT = {"intermediate_size": 18944, "num_attention_heads": 28, "num_key_value_heads": 4,
                     "rope_parameters": {"rope_type": "default", "rope_theta": 1_000_000.0,
                                         "mrope_section": [16, 24, 24]}}
QWEN25_VL_7B_VISION = {"intermediate_size": 3420, "num_heads": 16, "fullatt_block_indexes": [7, 15, 23, 31]}


def qwen25_vl_7b(tokenizer: Any) -> Any:
    """A randomly initialised Qwen2.5-VL-7B over ``tokenizer``'s vocabulary, on torch's current device and dtype."""
    return tiny.build_tiny_model("qwen2_5_vl", tokenizer, hidden_size=3584, layers=28, vision_hidden=1280,
                                 vision_layers=32, text_overrides=QWEN25_VL_7B_TEXT,
                                 vision_overrides=QWEN25_VL_7B_VISION)


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
    parser.add_argument("--size", choices=["small", "7b"], default="small",
                        help="small: a Qwen3-VL at --hidden/--layers, trained in full; 7b: Qwen2.5-VL-7B, LoRA")
    parser.add_argument("--hidden", type=int, default=0, help="small: text width (0: 1024 on a GPU, 64 on a CPU)")
    parser.add_argument("--layers", type=int, default=0, help="small: text layers (0: 8 on a GPU, 2 on a CPU)")
    parser.add_argument("--out", default="benchmarks/results", help="where gpu_check.json (gpu_check_7b.json) goes")
    args = parser.parse_args()
    device = resolve_device(args.device)
    gpu = device.startswith("cuda")
    big = args.size == "7b"
    hidden, layers = args.hidden or (1024 if gpu else 64), args.layers or (8 if gpu else 2)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        video = generate(SynthClinConfig(duration_seconds=120.0, seed=3), work / "videos")
        build(BuildConfig(source="synthclin", annotations=str(video.annotation_path), out=str(work / "suite"),
                          workers=1, qa=QAConfig(max_per_task=1)))
        processor = load_processor(builtin_model_path())
        if big:  # built on the device in bf16: 29 GB of fp32 weights initialised on the CPU would take minutes
            processor = tiny.build_processor("qwen2_5_vl", processor.tokenizer)
            default_dtype = torch.get_default_dtype()
            torch.set_default_dtype(torch.bfloat16)
            try:
                with torch.device(device):
                    model = qwen25_vl_7b(processor.tokenizer)
            finally:
                torch.set_default_dtype(default_dtype)
        else:
            model = tiny.build_tiny_model("qwen3_vl", processor.tokenizer, hidden_size=hidden, layers=layers,
                                          vision_hidden=max(32, hidden // 4), vision_layers=max(1, layers // 2))
        parameters = sum(p.numel() for p in model.parameters())
        folder = tiny.save_tiny(model, processor, work / "model")
        del model
        if gpu:
            torch.cuda.empty_cache()
        dtype = "bfloat16" if gpu else "float32"
        backends: list[HFBackend] = []

        def load() -> str:
            backends.append(HFBackend.from_pretrained(folder, device=device, dtype=dtype))
            return (f"{parameters / 1e6:.1f} M parameters on {backends[0].model.device} in "
                    f"{backends[0].model.dtype}")

        def episode() -> str:
            result = run_episode(backends[0], str(video.video_path), "When does bleeding happen?", AGENT)
            return f"{len(result.turns)} turns, {result.frames_viewed} frames"

        samples = list(read_jsonl(work / "suite" / "samples.jsonl"))
        eight = [replace(samples[k % len(samples)], id=f"{samples[k % len(samples)].id}#{k}") for k in range(8)]
        turns: dict[int, dict[str, list[str]]] = {}

        def episodes(workers: int) -> Callable[[], str]:
            def run() -> str:
                model = BatchingBackend(backends[0], workers) if workers > 1 else backends[0]
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
                                          lora=big, gradient_checkpointing=big, agent=AGENT))
            state = json.loads((out / "checkpoint-1" / "trainer_state.json").read_text())
            loss = next(e["loss"] for e in state["log_history"] if "loss" in e)
            return (f"one update{' of LoRA adapters' if big else ''}, loss {loss:.3f}, bf16 autocast "
                    f"{'on' if gpu else 'off (CPU)'}")

        def grpo_step() -> str:
            out = grpo.main(GRPOStageConfig(data=str(work / "suite" / "samples.jsonl"), model=str(work / "sft"),
                                            out=str(work / "grpo"), max_steps=1, group_size=2, batch_size=2, lr=1e-6,
                                            # on a GPU, room for the tool rounds (their frames count too)
                                            max_completion_length=1024 if gpu else 256, lora=big,
                                            gradient_checkpointing=gpu,
                                            agent=replace(AGENT, max_turns=1)))
            state = json.loads((out / "trainer_state.json").read_text())
            step = next(e for e in state["log_history"] if "loss" in e)
            return (f"one update, reward {step.get('reward', float('nan')):.2f}, tool calls per rollout "
                    f"{step.get('tools/call_frequency', float('nan')):.2f}")

        _timed(rows, "load (hf backend)", device, load)
        _timed(rows, "episode", device, episode)
        _timed(rows, "8 episodes, one at a time", device, episodes(1))
        _timed(rows, "8 episodes, turns batched (--workers 8)", device, episodes(8))
        backends.clear()  # the training steps load their own copy
        if gpu:
            torch.cuda.empty_cache()
        _timed(rows, "SFT step (stage 2)", device, sft_step)
        _timed(rows, "GA-GRPO step", device, grpo_step)
    name = torch.cuda.get_device_name() if gpu else "CPU"
    result = {"device": name, "torch": torch.__version__, "size": args.size, "parameters": parameters, "rows": rows}
    write_text_atomic(Path(args.out) / f"gpu_check{'_7b' if big else ''}.json", json.dumps(result, indent=2) + "\n")
    print(f"\n{name}, {parameters / 1e6:.1f} M parameters\n")
    print("| step | seconds | peak GiB | detail |\n|---|---|---|---|")
    for row in rows:
        print(f"| {row['step']} | {row['seconds']} | {row['peak_gib'] if row['peak_gib'] is not None else '-'} | "
              f"{row['detail']} |")


if __name__ == "__main__":
    main()
