"""``medscope train all``: the whole recipe on SynthClin, end to end, resumable stage by stage.

data (SynthClin videos, split by video) → suite build → tokenizer + tiny model → stage 1 SFT (warm-up) →
stage 2 SFT (VCoT cold start) → GA-GRPO, and its ablations → evaluation of every checkpoint on held-out
videos next to the uniform baseline → the GA-GRPO checkpoint's inference files with a model card
(``medscope-<preset>``, what the package ships as its built-in model). Each stage writes its folder and a
``DONE`` marker; a rerun skips finished stages and a killed stage resumes from its trainer checkpoint.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medscope.io import write_text_atomic

# name → (overrides of the stage configs). The tiny preset fits a 2-core CPU in under an hour.
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {
        # 3-minute videos with 10 events per 10 minutes: many short procedures teach more than a few long ones.
        "videos": {"train": 40, "eval": 12, "minutes": 3.0, "events_per_10min": 10.0},
        "model": {"arch": "qwen3_vl", "hidden_size": 128, "layers": 4, "vision_hidden": 64, "vision_layers": 2,
                  "vocab_size": 3000, "max_pixels": 128 * 96},
        "sft1": {"epochs": 2.0, "lr": 1e-3, "batch_size": 4, "grad_accum": 1, "gradient_checkpointing": False},
        # 3 epochs at 5e-4 over 108 trajectories left the 1.2 M-parameter model emitting broken JSON (loss 1.65) and
        # GA-GRPO without a single rewarded rollout. 5 epochs at 2e-3 (630 updates) give protocol-valid turns but the
        # same search for every question, even on training samples (5 distinct first turns over 74 questions); at
        # 10 epochs the model starts to read the question (18 distinct, as many as the teacher writes).
        "sft2": {"epochs": 10.0, "lr": 2e-3, "batch_size": 2, "grad_accum": 1, "gradient_checkpointing": False},
        "grpo": {"max_steps": 40, "lr": 1e-5, "group_size": 4, "batch_size": 4, "max_completion_length": 1024,
                 "gradient_checkpointing": False},
        "eval": {"limit": 0, "max_new_tokens": 160},
    },
    # Every stage at the smallest size that runs it (a minute or two): checks an installation end to end.
    "smoke": {
        "videos": {"train": 2, "eval": 1, "minutes": 1.0, "events_per_10min": 10.0},
        "model": {"arch": "qwen3_vl", "hidden_size": 32, "layers": 1, "vision_hidden": 16, "vision_layers": 1,
                  "vocab_size": 600, "max_pixels": 64 * 48},
        "sft1": {"max_steps": 2, "lr": 1e-3, "batch_size": 2, "grad_accum": 1, "gradient_checkpointing": False},
        "sft2": {"max_steps": 2, "lr": 1e-3, "batch_size": 1, "grad_accum": 1, "gradient_checkpointing": False},
        "grpo": {"max_steps": 1, "lr": 1e-5, "group_size": 2, "batch_size": 2, "max_completion_length": 128,
                 "max_tool_calls": 1, "gradient_checkpointing": False},
        "eval": {"limit": 2, "max_new_tokens": 24},
    },
}
ABLATIONS = {"grpo_no_evidence": {"evidence_reward": False}, "grpo_no_crop_bonus": {"crop_bonus": False}}


@dataclass(frozen=True)
class PipelineConfig:
    preset: str = field(default="tiny", metadata={"help": f"recipe size: {', '.join(PRESETS)}"})
    out: str = field(default="runs/tiny", metadata={"help": "folder of every stage's output"})
    seed: int = field(default=0, metadata={"help": "seed of the data and the model"})
    ablations: bool = field(default=True, metadata={"help": "also train the GA-GRPO ablations"})


def _stage(out: Path, name: str, run: Callable[[Path], Any]) -> Path:
    """Run one stage into ``out/name`` unless it finished before; prints its wall time."""
    folder = out / name
    if (folder / "DONE").exists():
        print(f"[{name}] done before, skipped", file=sys.stderr)
        return folder
    started = time.monotonic()
    print(f"[{name}] ...", file=sys.stderr, flush=True)
    run(folder)
    write_text_atomic(folder / "DONE", f"{time.monotonic() - started:.1f}\n")
    print(f"[{name}] {time.monotonic() - started:.0f}s", file=sys.stderr, flush=True)
    return folder


def _videos(folder: Path, seeds: Iterable[int], minutes: float, events_per_10min: float) -> None:
    from medscope.video.synthclin import SynthClinConfig, generate

    for seed in seeds:
        generate(SynthClinConfig(duration_seconds=minutes * 60, seed=seed, events_per_10min=events_per_10min), folder)


def _suite(videos: Path, folder: Path) -> None:
    from medscope.suite.build import BuildConfig, build
    from medscope.suite.qa import QAConfig

    # Six questions per task and video, as the shipped model was trained with; real sources keep all (no cap).
    build(BuildConfig(source="synthclin", annotations=str(videos), out=str(folder), qa=QAConfig(max_per_task=6)))


def corpus(suite: Path) -> list[str]:
    """Every text a model will read or write: prompts, questions, answers, captions, teacher turns."""
    from medscope.agent.loop import AgentConfig
    from medscope.suite.records import read_jsonl
    from medscope.train.data import system_message

    texts = [system_message(AgentConfig())["content"][0]["text"]]
    for traj in read_jsonl(suite / "trajectories.jsonl", "trajectory"):
        texts += [traj.sample.question, traj.sample.answer, *(t["text"] for t in traj.turns)]
        texts += [str(traj.sample.meta.get("evidence_text", "")), *(traj.sample.options or [])]
    return texts


def _init_model(suite: Path, folder: Path, spec: dict[str, Any], seed: int) -> None:
    from medscope.train import tiny

    arch = spec["arch"]
    tokenizer = tiny.build_tokenizer(corpus(suite), vocab_size=spec["vocab_size"],
                                     chat_template=tiny.load_chat_template(arch))
    model = tiny.build_tiny_model(arch, tokenizer, hidden_size=spec["hidden_size"], layers=spec["layers"],
                                  vision_hidden=spec["vision_hidden"], vision_layers=spec["vision_layers"], seed=seed)
    processor = tiny.build_processor(arch, tokenizer, max_pixels=spec["max_pixels"])
    tiny.save_tiny(model, processor, folder)


def _evaluate(model: Path | str, samples: Path, folder: Path, spec: dict[str, Any], baseline: bool) -> dict[str, Any]:
    """Evaluate a model folder (hf backend), or a scripted policy named by ``model``."""
    from medscope.agent.loop import AgentConfig
    from medscope.eval.runner import SCRIPTED, EvalConfig, evaluate
    from medscope.eval.tables import write_tables

    scripted = isinstance(model, str) and model in SCRIPTED
    config = EvalConfig(samples=str(samples), out=str(folder), backend=str(model) if scripted else "hf",
                        model=None if scripted else str(model),
                        baseline="uniform" if baseline else "none", limit=spec["limit"],
                        agent=AgentConfig(max_new_tokens=spec["max_new_tokens"]))
    return write_tables(evaluate(config), folder)


def main(config: PipelineConfig) -> dict[str, Any]:
    from medscope.train import grpo, sft
    from medscope.train.card import write_model
    from medscope.train.configs import GRPOStageConfig, SFTStageConfig

    if config.preset not in PRESETS:
        raise ValueError(f"unknown preset {config.preset!r}; choose one of {', '.join(PRESETS)}")
    preset, out = PRESETS[config.preset], Path(config.out)
    v = preset["videos"]
    train_seeds = range(config.seed, config.seed + v["train"])
    eval_seeds = range(config.seed + 10_000, config.seed + 10_000 + v["eval"])  # held-out videos, never trained on
    videos_train = _stage(out, "videos_train", lambda f: _videos(f, train_seeds, v["minutes"], v["events_per_10min"]))
    videos_eval = _stage(out, "videos_eval", lambda f: _videos(f, eval_seeds, v["minutes"], v["events_per_10min"]))
    suite_train = _stage(out, "suite_train", lambda f: _suite(videos_train, f))
    suite_eval = _stage(out, "suite_eval", lambda f: _suite(videos_eval, f))
    init = _stage(out, "init", lambda f: _init_model(suite_train, f, preset["model"], config.seed))

    def sft_stage(stage: int, data: Path, model: Path) -> Callable[[Path], Any]:
        overrides = preset[f"sft{stage}"]
        return lambda f: sft.main(SFTStageConfig(stage=stage, data=str(data), model=str(model), out=str(f),
                                                     seed=config.seed, **overrides))

    sft1 = _stage(out, "sft1", sft_stage(1, suite_train / "samples.jsonl", init))
    sft2 = _stage(out, "sft2", sft_stage(2, suite_train / "trajectories.jsonl", sft1))
    def grpo_stage(settings: dict[str, Any]) -> Callable[[Path], Any]:
        return lambda f: grpo.main(GRPOStageConfig(data=str(suite_train / "samples.jsonl"), model=str(sft2),
                                                        out=str(f), seed=config.seed, **settings))

    def eval_stage(model: Path | str, baseline: bool) -> Callable[[Path], Any]:
        return lambda f: _evaluate(model, suite_eval / "samples.jsonl", f, preset["eval"], baseline)

    runs: dict[str, dict[str, Any]] = {"grpo": {}} | (ABLATIONS if config.ablations else {})
    checkpoints = {"sft": sft2}
    for name, flags in runs.items():
        checkpoints[name] = _stage(out, name, grpo_stage(preset["grpo"] | flags))
    tables = {}
    # Reference rows: the teacher that wrote the trajectories (it uses the truth where frames cannot tell) and the
    # oracle; what imitation could reach, not models.
    evaluated: dict[str, Path | str] = {**checkpoints, "teacher": "teacher", "oracle": "oracle"}
    variety = {}
    for name, model in evaluated.items():
        folder = _stage(out, f"eval_{name}", eval_stage(model, baseline=name == "sft"))
        tables[name] = json.loads((folder / "tables.json").read_text())
        variety[name] = first_turn_variety(folder / "results.jsonl")
    summary = summarize_runs(tables, variety)
    write_text_atomic(out / "results.md", summary + "\n")
    write_text_atomic(out / "results.json", json.dumps(tables, indent=2))
    # The GA-GRPO checkpoint with its model card: what medscope/models/medscope-tiny ships.
    name = f"medscope-{config.preset}"
    _stage(out, name, lambda f: write_model(out, checkpoints["grpo"], f, name=name, preset=config.preset,
                                            settings=preset, results_md=summary))
    print(summary)
    return tables


def first_turn_variety(results: Path) -> str:
    """How many different first turns a policy wrote over the questions, as ``k/n``: a model that writes the same
    search for every question and video has not learnt to read them, whatever its scores."""
    firsts = [json.loads(line)["episode"]["turns"][0]["raw"] for line in results.open() if line.strip()]
    return f"{len(set(firsts))}/{len(firsts)}"


def summarize_runs(tables: dict[str, dict[str, dict[str, Any]]], variety: dict[str, str] | None = None) -> str:
    """SFT vs GA-GRPO vs ablations vs uniform: grounding mIoU, grounded-VQA accuracy and mIoU, frames viewed, and
    (``variety``) the distinct first turns of each policy."""
    variety = variety or {}
    rows = ["| model | grounding mIoU | R@0.5 | GVQA Acc | GVQA mIoU | frames viewed | distinct first turns |",
            "|---|---|---|---|---|---|---|"]

    def value(entry: dict[str, Any] | None, key: str) -> str:
        if not entry or key not in entry or entry[key] is None:
            return "–"
        v = entry[key]
        return f"{v['value']:.1f}" if isinstance(v, dict) else f"{v:.1f}"

    for name, runs in tables.items():
        for run, table in runs.items():
            label = name if run == "agent" else f"uniform baseline ({name} model)"
            label += " (reference, knows the truth)" if name in ("teacher", "oracle") else ""
            ground = next((e for k, e in table.items() if k.startswith("grounding/")), None)
            vqa = next((e for k, e in table.items() if k.startswith("grounded_vqa/")), None)
            frames = [e["frames_viewed"] for e in table.values()]
            mean_frames = f"{sum(frames) / len(frames):.1f}" if frames else "–"
            turns = variety.get(name, "–") if run == "agent" else "–"
            rows.append(f"| {label} | {value(ground, 'mIoU')} | {value(ground, 'R@0.5')} | {value(vqa, 'Acc')} | "
                        f"{value(vqa, 'mIoU')} | {mean_frames} | {turns} |")
    return "\n".join(rows)

