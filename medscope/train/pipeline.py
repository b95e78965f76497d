"""``medscope train all``: the whole recipe on SynthClin, end to end, resumable stage by stage.

data (SynthClin videos of varied lengths, split by video) → suite build → tokenizer + tiny model → the pointer
curriculum (``medscope.train.curriculum``) → SFT on the teacher's trajectories (VCoT cold start) → GA-GRPO and
its ablations; next to it the fair baseline: the same curriculum checkpoint trained on the same samples to
answer from uniform frames without tools → evaluation of every model on held-out videos, the baseline at 1× and
4× the agent's frames → the GA-GRPO checkpoint's inference files with a model card (``medscope-<preset>``, what
the package ships as its built-in model).

Stages form a small graph and run in ``--workers`` processes of one torch thread each as soon as what they
need is done (on a 2-core CPU one thread per process is much faster than two threads in one: see README,
"Benchmarks"). Each stage writes its folder and a ``DONE`` marker; a rerun skips finished stages and a killed
stage resumes from its own checkpoints. Work that does not need the curriculum's model runs beside it (the
reference evaluations, the SFT stages' rows), on the part of the second core its two threads leave idle.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import random
import sys
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medscope.eval.folder import read_lines
from medscope.io import write_text_atomic

if TYPE_CHECKING:
    from medscope.video.synthclin import SynthClinConfig

# name → the settings of every stage. The tiny preset takes 32 minutes on the 2-core AVX-512 CPU it was made on
# (docs/medscope-tiny.md, run39); an hour at 128x64 frames, two and a half on an AVX2-only CPU (run24).
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {
        # Lengths vary, so overview timestamps differ between videos; 2 fps and a keyframe every frame, so the
        # overview takes the bin centres (no snapping to keyframes that would hide short events).
        "videos": {"train": 300, "eval": 70, "seconds": [120.0, 240.0], "fps": 2.0, "keyframe_seconds": 0.5,
                   "events_per_10min": 10.0},
        # Questions that need a look: events to ground, where an event appears, the phase at a time.
        "suite": {"templates": ["ground_label", "event_where", "phase_at"]},
        # The short system prompt: behind the full one (850 tokens with the tool schemas) the curriculum's checkpoint
        # no longer told overviews that show the asked event from those that do not (AUC 0.33, 0.72 behind the
        # short one, 0.78 with none).
        # Frames at 64x32, two visual tokens each (the tools' 258x193 frames as the processor resizes them): the
        # same pointing stages from one copy checkpoint, against 128x64 (eight tokens), ended at exact match 0.48
        # against 0.23 over 8 frames and 0.33 against 0.12 over 16, in 0.64x the time; a red blot is still plain.
        "model": {"arch": "qwen3_vl", "hidden_size": 128, "layers": 4, "vision_hidden": 64, "vision_layers": 2,
                  "vocab_size": 1000, "max_pixels": 64 * 64, "rope_theta": 1e4, "prompt": "short"},
        # Measured (benchmarks/train_processes.py): a curriculum step on 2 cores is 1.48x (1.56x on an AVX2-only CPU)
        # faster with 2 torch threads in one process than with 1, and 1.16x (1.50x) with 2 data-parallel processes;
        # it mostly runs alone.
        "curriculum": {"stages": "tiny", "lr": 2e-3, "batch_size": 8, "processes": 1, "threads": 2},
        # Many videos, each seen once: 4 epochs over 100 videos' trajectories fit them (token accuracy 0.92) and
        # opened unseen videos with remembered numbers. After the curriculum's first-turn stage the loss starts at
        # 7.6, not 14.4, and token accuracy passes 0.9 within half an epoch: 0.5 keeps the run under the hour.
        # A third of the trajectories show a slip (a window that ends where it starts), its tool error and the
        # repair: after its first error the v3 model wrote nonsense to the end of the episode.
        "sft": {"epochs": 0.5, "lr": 2e-3, "batch_size": 2, "grad_accum": 1, "gradient_checkpointing": False,
                "repair": 0.3},
        # At temperature 1 four rollouts in five broke the format (R_fmt 0.2): a group had little to compare.
        # The paper's R_crop pays -1 for a last crop with 0 < IoU < 0.5 and 0 for a miss; this policy's crops never
        # reached 0.5 (R_crop > 0 in none of 240 rollouts), so it learnt to miss: run5's GA-GRPO fell below SFT
        # while R_crop rose from -0.46 to -0.25. With 0 for a coarse crop, validation grounding mIoU went from
        # 0.5 (SFT) to 2.3 (lr 5e-5; 0.6 at lr 2e-4). The ablations keep the same setting. 20 steps (a step is
        # 15-17 s): with 30, run7 took 66.6 minutes and GA-GRPO stayed level with SFT (-0.2 ± 0.8). 2,048 tokens
        # hold the agent's 6 tool rounds (a crop's 8 frames and labels are 100-210 tokens): at 1,024, 10 of 48
        # rollouts were cut before a call ran and scored R_fmt 0 (format 0.65; 0.81 at 2,048, steps 1.2x as long).
        # Rollouts decode under the protocol grammar, as the agent does (format 0.98-1.00, steps ~1.2x as long).
        # lr 3e-4 or 1e-3 did not help (docs/medscope-tiny.md, run28): at 1e-3 the policy stopped calling tools.
        "grpo": {"max_steps": 20, "lr": 5e-5, "group_size": 8, "batch_size": 8, "max_completion_length": 2048,
                 "temperature": 0.7, "coarse_penalty": 0.0,
                 "gradient_checkpointing": False},
        # 8 episodes at once, their turns decoded together: the same episodes 1.09-1.25x as fast on one thread
        # (benchmarks/eval_batching.py)
        "eval": {"limit": 0, "max_new_tokens": 96, "workers": 8},
    },
    # Every stage at the smallest size that runs it (a minute or two): checks an installation end to end.
    "smoke": {
        "videos": {"train": 2, "eval": 2, "seconds": [60.0, 60.0], "fps": 2.0, "keyframe_seconds": 0.5,
                   "events_per_10min": 10.0},
        "suite": {"templates": ["ground_label", "event_where", "phase_at"]},
        "model": {"arch": "qwen3_vl", "hidden_size": 32, "layers": 1, "vision_hidden": 16, "vision_layers": 1,
                  "vocab_size": 600, "max_pixels": 64 * 48, "rope_theta": 1e4, "prompt": "short"},
        "curriculum": {"stages": "smoke", "lr": 2e-3, "batch_size": 2, "check_rows": 2},
        "sft": {"max_steps": 2, "lr": 1e-3, "batch_size": 1, "grad_accum": 1, "gradient_checkpointing": False,
                "repair": 0.5},
        "grpo": {"max_steps": 1, "lr": 1e-5, "group_size": 2, "batch_size": 2, "max_completion_length": 128,
                 "gradient_checkpointing": False},
        "eval": {"limit": 2, "max_new_tokens": 24, "workers": 2},
    },
}
ABLATIONS = {"grpo_no_evidence": {"evidence_reward": False}, "grpo_no_crop_bonus": {"crop_bonus": False}}
BASELINE_MULTIPLES = (1, 4)  # the fair baseline's frames, as multiples of the agent's


@dataclass(frozen=True)
class PipelineConfig:
    preset: str = field(default="tiny", metadata={"help": f"recipe size: {', '.join(PRESETS)}"})
    out: str = field(default="runs/tiny", metadata={"help": "folder of every stage's output"})
    seed: int = field(default=0, metadata={"help": "seed of the data and the model"})
    ablations: bool = field(default=True, metadata={"help": "also train the GA-GRPO ablations"})
    workers: int = field(default=2, metadata={"help": "stages run at once, one process of one torch thread each"})


# ---- stages: module-level functions of picklable arguments, so that a worker process can run them ----------------
def run_stage(out: str, name: str, fn: Callable[..., Any], kwargs: dict[str, Any]) -> float:
    """Run one stage into ``out/name`` unless it finished before; returns its wall time (0 when skipped)."""
    folder = Path(out) / name
    if (folder / "DONE").exists():
        print(f"[{name}] done before, skipped", file=sys.stderr, flush=True)
        return 0.0
    started = time.monotonic()
    print(f"[{name}] ...", file=sys.stderr, flush=True)
    fn(folder, **kwargs)
    seconds = time.monotonic() - started
    write_text_atomic(folder / "DONE", f"{seconds:.1f}\n")
    print(f"[{name}] {seconds:.0f}s", file=sys.stderr, flush=True)
    return seconds


def _worker_init() -> None:
    """Each worker: one torch thread, and medscope's progress lines (a spawned process starts without logging)."""
    import logging

    import torch

    torch.set_num_threads(1)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("medscope")
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)


def synthclin_config(spec: dict[str, Any], seconds: float, seed: int) -> SynthClinConfig:
    """The SynthClin video of ``seconds`` a preset's ``videos`` spec makes (``fps``, ``keyframe_seconds``,
    ``events_per_10min``, and ``trace_seconds`` and ``distinct_events`` where it sets them)."""
    from medscope.video.synthclin import SynthClinConfig

    extra = {key: spec[key] for key in ("trace_seconds", "distinct_events") if key in spec}
    return SynthClinConfig(duration_seconds=seconds, fps=spec["fps"], keyframe_seconds=spec["keyframe_seconds"],
                           seed=seed, events_per_10min=spec["events_per_10min"], **extra)


def videos_stage(folder: Path, seeds: list[int], spec: dict[str, Any], processes: int = 1) -> None:
    """SynthClin videos, one per seed, rendered in ``processes`` processes (the training videos take the two cores
    while the few held-out ones share one: the run's first minutes). ``spec`` holds ``seconds`` (a range: lengths
    vary), ``fps``, ``keyframe_seconds``, ``events_per_10min`` and optionally ``trace_seconds`` and
    ``distinct_events``."""
    from medscope.video.synthclin import generate

    low, high = spec["seconds"]
    configs = [synthclin_config(spec, round(random.Random(f"length/{seed}").uniform(low, high), 1), seed)
               for seed in seeds]
    if processes <= 1:
        for config in configs:
            generate(config, folder)
        return
    with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn")) as pool:
        list(pool.map(generate, configs, [folder] * len(configs), chunksize=8))


def suite_stage(folder: Path, videos: str, spec: dict[str, Any]) -> None:
    from medscope.suite.build import BuildConfig, build
    from medscope.suite.qa import QAConfig

    build(BuildConfig(source="synthclin", annotations=videos, out=str(folder),
                      qa=QAConfig(templates=tuple(spec["templates"])), workers=1))


def corpus(suite: Path, prompt: str = "full") -> list[str]:
    """Every text a model will read or write: its system prompt, questions, answers, captions, teacher turns."""
    from medscope.agent.loop import AgentConfig
    from medscope.suite.records import read_jsonl
    from medscope.train.data import system_message

    texts = [system_message(AgentConfig(), prompt)["content"][0]["text"]]
    for traj in read_jsonl(suite / "trajectories.jsonl", "trajectory"):
        texts += [traj.sample.question, traj.sample.answer, *(t["text"] for t in traj.turns)]
        texts += [str(traj.sample.meta.get("evidence_text", "")), *(traj.sample.options or [])]
    return texts


def init_stage(folder: Path, suite: str, spec: dict[str, Any], seed: int) -> None:
    from medscope.agent.protocol import PROMPT_KEY, check_prompt
    from medscope.train import tiny

    arch, prompt = spec["arch"], check_prompt(spec.get("prompt", "full"))
    tokenizer = tiny.build_tokenizer(corpus(Path(suite), prompt), vocab_size=spec["vocab_size"],
                                     chat_template=tiny.load_chat_template(arch))
    model = tiny.build_tiny_model(arch, tokenizer, hidden_size=spec["hidden_size"], layers=spec["layers"],
                                  vision_hidden=spec["vision_hidden"], vision_layers=spec["vision_layers"],
                                  rope_theta=spec.get("rope_theta"), seed=seed)
    # The config carries the system prompt through every stage's save, to the backend that runs the model.
    setattr(model.config, PROMPT_KEY, prompt)
    processor = tiny.build_processor(arch, tokenizer, max_pixels=spec["max_pixels"])
    tiny.save_tiny(model, processor, folder)


def curriculum_stage(folder: Path, videos: str, model: str, trajectories: tuple[str, ...], spec: dict[str, Any],
                     seed: int) -> None:
    from medscope.train import curriculum

    stages = curriculum.STAGES[spec["stages"]]
    low, high = spec.get("spacing", curriculum.CurriculumConfig.spacing)
    config = curriculum.CurriculumConfig(videos=videos, model=model, trajectories=trajectories, out=str(folder),
                                         lr=spec["lr"], batch_size=spec["batch_size"],
                                         check_rows=spec.get("check_rows", 48),
                                         processes=spec.get("processes", 1), threads=spec.get("threads", 1),
                                         spacing=(float(low), float(high)), seed=seed)
    curriculum.main(config, stages)


def uniform_frames(suite: Path) -> int:
    """The frames the teacher's episodes view on average (overview and tool results): the budget at which the
    fair baseline sees uniform frames."""
    from medscope.suite.records import read_jsonl

    counts = [len(t.overview) + sum(len(turn["observation"]["timestamps"]) for turn in t.turns
                                    if turn.get("observation")) for t in read_jsonl(suite / "trajectories.jsonl",
                                                                                     "trajectory")]
    return max(1, math.ceil(sum(counts) / max(1, len(counts))))


def uniform_agent(frames: int, max_new_tokens: int = 512) -> Any:
    """An agent whose overview is ``frames`` uniform frames and who has no frame left for a tool."""
    from medscope.agent.loop import AgentConfig
    from medscope.video.tools import ToolConfig

    return AgentConfig(max_new_tokens=max_new_tokens, tools=ToolConfig(overview_frames=frames, max_frames=frames))


def uniform_trajectories_stage(folder: Path, suite: str) -> None:
    """The baseline's training episodes: each training sample answered by ``UniformBackend`` from as many
    uniform frames as the teacher's episodes view (the labels around the frames that show it, else the phase the
    question implies)."""
    from medscope.agent.backends.scripted import UniformBackend
    from medscope.agent.loop import run_episode
    from medscope.suite.records import Trajectory, read_jsonl, write_jsonl
    from medscope.suite.trajectories import reference_for

    agent, out = uniform_agent(uniform_frames(Path(suite))), []
    for sample in read_jsonl(Path(suite) / "samples.jsonl", "sample"):
        episode = run_episode(UniformBackend(reference_for(sample)), sample.video, sample.question, agent,
                              options=sample.options, task=sample.task, sample_id=sample.id)
        turns = [{"text": turn.raw, "observation": None} for turn in episode.turns]
        out.append(Trajectory(sample, turns, "cot", episode.overview.timestamps if episode.overview else []))
    folder.mkdir(parents=True, exist_ok=True)
    write_jsonl(folder / "trajectories.jsonl", out)


def _sft_config(folder: Path, data: str, model: str, settings: dict[str, Any], seed: int,
                uniform_suite: str | None, rows: str = "") -> Any:
    from medscope.train.configs import SFTStageConfig

    agent = {} if uniform_suite is None else {"agent": uniform_agent(uniform_frames(Path(uniform_suite)))}
    return SFTStageConfig(stage=2, data=data, model=model, out=str(folder), seed=seed, rows=rows, **settings, **agent)


def sft_rows_stage(folder: Path, data: str, model: str, settings: dict[str, Any], seed: int,
                   uniform_suite: str | None) -> None:
    """The SFT stage's rows, built for ``model``'s processor and prompt (the initial model's, which the curriculum
    keeps) while the curriculum trains: its two threads leave part of the second core idle."""
    from medscope.train import sft

    sft.save_rows(_sft_config(folder, data, model, settings, seed, uniform_suite), model, folder / "rows")


def sft_stage(folder: Path, data: str, model: str, settings: dict[str, Any], seed: int,
              uniform_suite: str | None, rows: str = "") -> None:
    """SFT on trajectories; ``uniform_suite``: the fair baseline's, whose prompt shows uniform frames; ``rows``:
    its rows built beforehand (``sft_rows_stage``)."""
    from medscope.train import sft

    sft.main(_sft_config(folder, data, model, settings, seed, uniform_suite, rows))


def grpo_stage(folder: Path, data: str, model: str, settings: dict[str, Any], seed: int) -> None:
    from medscope.train import grpo
    from medscope.train.configs import GRPOStageConfig

    grpo.main(GRPOStageConfig(data=data, model=model, out=str(folder), seed=seed, **settings))


def eval_stage(folder: Path, model: str, samples: str, spec: dict[str, Any], uniform: tuple[str, int] | None) -> None:
    """Evaluate a model folder (hf backend) or a scripted policy named by ``model``; ``uniform`` = (training
    suite, multiple): as a uniform baseline that sees ``multiple`` times the teacher's frames and no tools."""
    from medscope.agent.loop import AgentConfig
    from medscope.eval.runner import SCRIPTED, EvalConfig, evaluate
    from medscope.eval.tables import write_tables

    scripted = model in SCRIPTED
    if uniform is None:
        agent = AgentConfig(max_new_tokens=spec["max_new_tokens"])
    else:
        agent = uniform_agent(uniform_frames(Path(uniform[0])) * uniform[1], spec["max_new_tokens"])
    config = EvalConfig(samples=samples, out=str(folder), backend=model if scripted else "hf",
                        model=None if scripted else model, baseline="none", limit=spec["limit"], agent=agent,
                        workers=spec.get("workers", 1))
    write_tables(evaluate(config), folder)


@dataclass(frozen=True)
class Job:
    """A stage, what it runs, and the stages it needs finished first."""

    name: str
    fn: Callable[..., Any]
    kwargs: dict[str, Any]
    needs: tuple[str, ...] = ()


def run_jobs(out: Path, jobs: list[Job], workers: int) -> None:
    """Run ``jobs`` in dependency order, up to ``workers`` at once, each in a process of one torch thread (spawned:
    a forked torch is not safe). A failed stage stops the run; the finished ones stay done."""
    names = {job.name for job in jobs}
    missing = sorted({need for job in jobs for need in job.needs} - names)
    if missing:
        raise ValueError(f"stages need stages that are not in the run: {', '.join(missing)}")
    pending = {job.name: job for job in jobs}
    done: set[str] = set()
    running: dict[Future[float], str] = {}
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=max(1, workers), mp_context=context, initializer=_worker_init) as pool:
        while pending or running:
            ready = [job for job in pending.values() if set(job.needs) <= done]
            for job in ready[: max(1, workers) - len(running)]:
                running[pool.submit(run_stage, str(out), job.name, job.fn, job.kwargs)] = job.name
                del pending[job.name]
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                name = running.pop(future)
                future.result()
                done.add(name)


def plan(config: PipelineConfig) -> tuple[list[Job], dict[str, str]]:
    """Every stage of the run and, for the results table, the eval stage of each row."""
    preset, out = PRESETS[config.preset], Path(config.out)
    v, seed = preset["videos"], config.seed
    train_seeds = list(range(seed, seed + v["train"]))
    eval_seeds = list(range(seed + 10_000, seed + 10_000 + v["eval"]))  # held-out videos, never trained on
    path = {name: str(out / name) for name in ("videos_train", "videos_eval", "suite_train", "suite_eval", "init",
                                                 "curriculum", "uniform_trajectories")}
    train_samples = str(out / "suite_train" / "samples.jsonl")
    eval_samples = str(out / "suite_eval" / "samples.jsonl")
    jobs = [
        Job("videos_train", videos_stage, {"seeds": train_seeds, "spec": v, "processes": 2}),
        Job("videos_eval", videos_stage, {"seeds": eval_seeds, "spec": v}),
        Job("suite_train", suite_stage, {"videos": path["videos_train"], "spec": preset["suite"]}, ("videos_train",)),
        Job("suite_eval", suite_stage, {"videos": path["videos_eval"], "spec": preset["suite"]}, ("videos_eval",)),
        Job("init", init_stage, {"suite": path["suite_train"], "spec": preset["model"], "seed": seed},
            ("suite_train",)),
        # Its last stage learns the first turns of both policies' training episodes, the teacher's and the uniform
        # one's, as often: the agent and the fair baseline start from one checkpoint.
        Job("curriculum", curriculum_stage, {"videos": path["videos_train"], "model": path["init"],
                                             "trajectories": tuple(str(out / folder / "trajectories.jsonl") for folder
                                                                   in ("suite_train", "uniform_trajectories")),
                                             "spec": preset["curriculum"], "seed": seed},
            ("init", "uniform_trajectories")),
        Job("uniform_trajectories", uniform_trajectories_stage, {"suite": path["suite_train"]}, ("suite_train",)),
    ]
    # The agent learns from the teacher's episodes; the fair baseline, from the same curriculum checkpoint and
    # the same samples for as many epochs, to answer from uniform frames. Their rows are built while the
    # curriculum trains (for the initial model's processor and prompt, which the curriculum keeps: SFT checks).
    for name, data, uniform_suite, after in (
            ("sft", str(out / "suite_train" / "trajectories.jsonl"), None, "suite_train"),
            ("sft_uniform", str(out / "uniform_trajectories" / "trajectories.jsonl"), path["suite_train"],
             "uniform_trajectories")):
        common = {"data": data, "settings": preset["sft"], "seed": seed, "uniform_suite": uniform_suite}
        jobs.append(Job(f"{name}_rows", sft_rows_stage, {**common, "model": path["init"]}, ("init", after)))
        jobs.append(Job(name, sft_stage, {**common, "model": path["curriculum"],
                                          "rows": str(out / f"{name}_rows" / "rows")}, ("curriculum", f"{name}_rows")))
    runs: dict[str, dict[str, Any]] = {"grpo": {}} | (ABLATIONS if config.ablations else {})
    for name, flags in runs.items():
        jobs.append(Job(name, grpo_stage, {"data": train_samples, "model": str(out / "sft"),
                                           "settings": preset["grpo"] | flags, "seed": seed}, ("sft",)))
    rows: dict[str, str] = {}

    def evaluate(row: str, model: str, needs: tuple[str, ...], multiple: int | None = None) -> None:
        name = f"eval_{row.replace(' ', '_').replace('×', 'x')}"
        uniform = None if multiple is None else (path["suite_train"], multiple)
        jobs.append(Job(name, eval_stage, {"model": model, "samples": eval_samples, "spec": preset["eval"],
                                           "uniform": uniform}, ("suite_eval", *needs)))
        rows[row] = name

    for name in ("sft", *runs):
        evaluate(name, str(out / name), (name,))
    for multiple in BASELINE_MULTIPLES:
        evaluate(f"uniform baseline {multiple}×", str(out / "sft_uniform"), ("sft_uniform",), multiple)
    # Reference rows, not models: the teacher that wrote the trajectories and the oracle know the truth; the
    # scripted uniform policy sees perfectly what uniform frames show. What imitation and uniform sampling could reach.
    for policy in ("teacher", "oracle"):
        evaluate(policy, policy, ())
    evaluate("uniform (perfect perception) 1×", "uniform", ("suite_train",), 1)
    return jobs, rows


def main(config: PipelineConfig) -> dict[str, Any]:
    from medscope.train.card import write_model

    if config.preset not in PRESETS:
        raise ValueError(f"unknown preset {config.preset!r}; choose one of {', '.join(PRESETS)}")
    out = Path(config.out)
    jobs, rows = plan(config)
    run_jobs(out, jobs, config.workers)
    table = {row: summarize(out / stage) for row, stage in rows.items()}
    for row, stage in rows.items():  # GA-GRPO vs SFT, its ablations and the fair baseline: on the same questions
        if row != "grpo":
            table[row]["grpo_minus"] = paired(out / rows["grpo"], out / stage)
    summary = results_table(table)
    write_text_atomic(out / "results.md", summary + "\n")
    write_text_atomic(out / "results.json", json.dumps(table, indent=2) + "\n")
    name = f"medscope-{config.preset}"
    run_stage(str(out), name, lambda f: write_model(out, out / "grpo", f, name=name, preset=config.preset,
                                                    settings=PRESETS[config.preset], results_md=summary), {})
    print(summary)
    return table


def _mean_se(values: list[float], videos: list[str]) -> dict[str, float] | None:
    """Mean and standard error of per-question scores, in percent. The error is clustered by video: the
    questions about one video share its frames and its difficulty, so they are not independent draws."""
    from medscope.eval.tables import clustered_se

    if not values:
        return None
    return {"mean": 100 * sum(values) / len(values), "se": 100 * clustered_se(values, videos), "n": len(values)}


def summarize(folder: Path) -> dict[str, Any]:
    """One row of the results table from an eval folder's ``results.jsonl``."""
    results = read_lines(folder / "results.jsonl")
    ground = [r for r in results if r["task"] == "grounding"]
    vqa = [r for r in results if r["task"] == "grounded_vqa"]
    firsts = [r["episode"]["turns"][0]["raw"] for r in results if r["episode"]["turns"]]

    def stat(rows: list[dict[str, Any]], score: Callable[[dict[str, Any]], float]) -> dict[str, float] | None:
        return _mean_se([score(r["metrics"]) for r in rows], [r["video"] for r in rows])

    return {
        "grounding_miou": stat(ground, lambda m: m["iou"]),
        "grounding_r05": stat(ground, lambda m: float(m["iou"] >= 0.5)),
        "gvqa_accuracy": stat(vqa, lambda m: m["accuracy"]),
        "gvqa_miou": stat(vqa, lambda m: m["evidence_iou"]),
        "frames_viewed": sum(r["metrics"]["frames_viewed"] for r in results) / max(1, len(results)),
        "distinct_first_turns": [len(set(firsts)), len(firsts)],
        "questions": len(results),
        "videos": len({r["video"] for r in results}),
    }


def _grounding_ious(folder: Path) -> dict[str, tuple[float, str]]:
    return {r["id"]: (r["metrics"]["iou"], r["video"]) for r in read_lines(folder / "results.jsonl")
            if r["task"] == "grounding"}


def paired(base: Path, other: Path) -> dict[str, float] | None:
    """Grounding IoU of ``base`` minus ``other`` per question, over the questions both eval folders answered, in
    points: mean and standard error clustered by video. Two models on the same questions differ far more precisely
    than their two means' errors suggest (the hard questions are hard for both)."""
    mine, theirs = _grounding_ious(base), _grounding_ious(other)
    shared = [k for k in mine if k in theirs]
    return _mean_se([mine[k][0] - theirs[k][0] for k in shared], [mine[k][1] for k in shared])


def results_table(table: dict[str, dict[str, Any]]) -> str:
    """Markdown: each row's grounding mIoU and R@0.5, grounded-VQA accuracy and evidence mIoU (mean ± standard
    error over the held-out questions), frames viewed and distinct first turns; then, where rows carry it
    (``grpo_minus``, from ``paired``), GA-GRPO minus each row question by question."""
    def cell(entry: dict[str, float] | None) -> str:
        return "–" if not entry else f"{entry['mean']:.1f} ± {entry['se']:.1f}"

    lines = ["| model | grounding mIoU | grounding R@0.5 | GVQA Acc | GVQA mIoU | frames viewed "
             "| distinct first turns |",
             "|---|---|---|---|---|---|---|"]
    for row, r in table.items():
        distinct, total = r["distinct_first_turns"]
        lines.append(f"| {row} | {cell(r['grounding_miou'])} | {cell(r['grounding_r05'])} | "
                     f"{cell(r['gvqa_accuracy'])} | {cell(r['gvqa_miou'])} | {r['frames_viewed']:.1f} | "
                     f"{distinct}/{total} |")
    n = max((r["questions"] for r in table.values()), default=0)
    videos = max((r["videos"] for r in table.values()), default=0)
    text = "\n".join(lines) + (f"\n\n{n} held-out questions on {videos} unseen videos; mean ± standard error "
                             "(clustered by video), in percent.")
    differences = {row: r["grpo_minus"] for row, r in table.items() if r.get("grpo_minus")}
    if differences:
        questions = max(d["n"] for d in differences.values())
        text += (f"\n\nGrounding IoU of grpo minus each row, per question over the {questions} grounding questions "
                 "(points; standard error clustered by video): "
                 + "; ".join(f"{row} {d['mean']:+.1f} ± {d['se']:.1f}" for row, d in differences.items()) + ".")
    return text
