"""Resumable benchmark runs: every sample through ``run_episode``, one result line each, as it finishes.

``results.jsonl`` (the agent) and ``baseline.jsonl`` (the uniform-sampling baseline) are append-only and keyed
by sample id: a rerun skips finished ids, and a line torn by a kill is cut off first, so a killed run resumes
with nothing lost or duplicated. The folder is held by one run at a time and a resume must match the
manifest of the run that started it (``medscope.eval.folder``). Samples are checked before any episode: ids
unique, declared durations no longer than the videos. With ``--on-error skip`` an episode that fails (an
unreadable video, a server that stays down) goes to ``failures.jsonl`` and the run goes on; a rerun retries it.
The baseline sees, in one turn, as many uniform frames as the agent viewed on average, through the same
backend (scripted policies get the scripted ``uniform`` policy).
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tqdm import tqdm

from medscope.agent.backends import Backend, BackendOptions, backend_from_spec, make_backend
from medscope.agent.backends.base import BackendError
from medscope.agent.backends.batching import BatchBackend, BatchingBackend
from medscope.agent.loop import AgentConfig, run_episode
from medscope.agent.trace import Episode
from medscope.eval.answers import read_windows
from medscope.eval.folder import claim, manifest, read_lines, repair_tail, suite_fingerprint
from medscope.eval.judge import DIMENSIONS, Judge, JudgeError
from medscope.eval.metrics import answer_iou, answer_score, set_iou
from medscope.io import json_line, write_text_atomic
from medscope.shards import concat_jsonl, parse_shard, read_shards, take
from medscope.suite.records import Sample, read_jsonl
from medscope.suite.trajectories import reference_for
from medscope.video.errors import VideoError
from medscope.video.source import FrameCache, VideoSource, probe_duration

log = logging.getLogger(__name__)
SCRIPTED = ("oracle", "teacher", "uniform", "random")


@dataclass(frozen=True)
class EvalConfig:
    samples: str = field(default="", metadata={"help": "samples.jsonl from `medscope suite build`"})
    out: str = field(default="", metadata={"help": "output folder (results.jsonl, baseline.jsonl, tables)"})
    backend: str = field(default="hf", metadata={"help": "hf | openai | oracle | teacher | uniform | random"})
    model: str | None = field(
        default=None, metadata={"help": "hf: model folder (default: the built-in medscope-tiny); openai: model name"}
    )
    base_url: str | None = field(default=None, metadata={"help": "openai: server URL"})
    options: BackendOptions = field(default_factory=BackendOptions)
    baseline: str | None = field(default="uniform", metadata={"help": "uniform (same frame budget) or none"})
    baseline_frames: tuple[float, ...] = field(
        default=(1.0,), metadata={"help": "uniform baselines at these multiples of the agent's mean frames, e.g. "
                                          "1 2 4: the frames/score curve of looking uniformly"})
    workers: int = field(default=1, metadata={
        "help": "concurrent episodes; hf: their turns decoded together in batches of up to this many (8: "
                "medscope-tiny's evaluation 1.1-1.25x as fast on a CPU; benchmarks/eval_batching.py)"})
    limit: int = field(default=0, metadata={"help": "evaluate only the first N samples (0: all)"})
    judge: str | None = field(
        default=None, metadata={"help": "LLM judge for caption answers (CI/DO/CU/TU): openai:MODEL@BASE_URL | hf:DIR"}
    )
    judge_optional: bool = field(
        default=False, metadata={"help": "a failing judge marks its scores missing instead of stopping the run"}
    )
    on_error: str = field(
        default="stop", metadata={"help": "stop | skip: an episode that fails (skip: noted in failures.jsonl)"})
    new: bool = field(default=False, metadata={"help": "start over in --out (earlier results are moved aside)"})
    rescore: bool = field(default=False, metadata={
        "help": "run no model: score the episodes already in --out again by the current rules (accuracy, IoU)"})
    shard: str | None = field(
        default=None, metadata={"help": "K/N: this machine's share of the samples (then `medscope merge eval`)"})
    agent: AgentConfig = field(default_factory=AgentConfig)


def sample_metrics(sample: Sample, episode: Episode) -> dict[str, float | None]:
    """Per-sample scores: accuracy (the shared rule), grounding IoU of the answered windows (set IoU with every
    truth window, the rule of ``medscope.eval.metrics``), evidence IoU."""
    metrics: dict[str, float | None] = {
        "evidence_iou": set_iou(episode.evidence, sample.evidence) if episode.evidence else 0.0,
        "tool_calls": float(episode.tool_calls),
        "frames_viewed": float(episode.frames_viewed),
        "seconds": episode.seconds,
    }
    return answer_metrics(sample, episode.answer) | metrics


def answer_metrics(sample: Sample, answer: str | None) -> dict[str, float | None]:
    """The scores of a final answer: accuracy (the shared rule) and, for grounding, the IoU of its windows."""
    metrics: dict[str, float | None] = {
        "accuracy": answer_score(answer, answer=sample.answer, task=sample.task, evidence=sample.evidence)}
    if sample.task == "grounding":
        metrics["iou"] = answer_iou(answer, sample.evidence)
    return metrics


def answer_parser(sample: Sample, episode: Episode) -> str | None:
    """Which parser read a grounding answer's windows (``medscope.eval.answers``), "none" if none could."""
    if sample.task != "grounding":
        return None
    reading = read_windows(episode.answer)
    return reading.parser if reading else "none"


def finished_ids(path: Path) -> set[str]:
    repair_tail(path)
    return {record["id"] for record in read_lines(path)}


BackendFactory = Callable[[Sample], Backend]


JUDGED_TASKS = ("caption", "fine_caption")


def judge_metrics(judge: Judge, sample: Sample, episode: Episode) -> dict[str, float | None]:
    """The judge's 1-5 scores for a caption answer; None where an optional judge could not score."""
    scores = judge.score(sample.question, sample.answer, episode.answer or "")
    return {name.upper(): getattr(scores, name) for name in DIMENSIONS}


def run_samples(
    samples: Sequence[Sample],
    make: BackendFactory,
    path: Path,
    agent: AgentConfig,
    *,
    run: str,
    workers: int = 1,
    judge: Judge | None = None,
    on_error: str = "stop",
    share_frames: bool = True,
) -> list[dict[str, Any]]:
    """Run the samples not yet in ``path``; append each result as it finishes; return all results.
    ``share_frames``: episodes about one video share its decoded frames (off: each episode decodes its own, as
    ``benchmarks/eval_frames.py`` compares)."""
    done = finished_ids(path)
    todo = [s for s in samples if s.id not in done]
    lock = threading.Lock()
    # The questions about one video share its decoded frames (overviews, uniform frames): a benchmark asks several
    # about each video, and decoding was 29% of the tiny preset's 4x-baseline evaluation.
    frames = FrameCache() if share_frames else None
    scores: list[float] = []

    def one(sample: Sample) -> None:
        try:
            backend = make(sample)
            # A batching backend waits for every episode it counts before it decodes: this one counts while it runs.
            with (backend.episode() if isinstance(backend, BatchingBackend) else nullcontext(),
                  VideoSource(sample.video, cache=frames) as source):
                episode = run_episode(backend, source, sample.question, agent, options=sample.options,
                                      task=sample.task, sample_id=sample.id,
                                      reference={"answer": sample.answer, "evidence": sample.evidence})
        except (VideoError, BackendError, JudgeError) as exc:
            if on_error != "skip":
                raise
            failure = {"id": sample.id, "task": sample.task, "source": sample.source, "run": run,
                       "error": f"{type(exc).__name__}: {exc}"}
            with lock, (path.parent / "failures.jsonl").open("a", encoding="utf-8") as handle:
                handle.write(json_line(failure))
            log.warning("%s failed (%s); noted in failures.jsonl, the run goes on", sample.id, exc)
            return
        metrics = sample_metrics(sample, episode)
        if judge is not None and sample.task in JUDGED_TASKS:
            metrics |= judge_metrics(judge, sample, episode)
        result: dict[str, Any] = {"id": sample.id, "task": sample.task, "source": sample.source,
                                  "video": sample.video, "run": run, "metrics": metrics,
                                  "answer_parser": answer_parser(sample, episode), "episode": episode.to_dict()}
        line = json_line(result)
        with lock:
            with path.open("a", encoding="utf-8") as handle:
                handle.write(line)
            scores.append(result["metrics"]["accuracy"])
            bar.set_postfix(acc=f"{100 * sum(scores) / len(scores):.1f}")
            bar.update()

    path.parent.mkdir(parents=True, exist_ok=True)
    with tqdm(total=len(todo), desc=run, unit="q") as bar:
        if workers <= 1:
            for sample in todo:
                one(sample)
        else:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                list(pool.map(one, todo))
    return read_lines(path)


def backend_factory(policy: str, *, model: str | None, base_url: str | None,
                    options: BackendOptions, batch: int = 1) -> BackendFactory:
    """Each sample's backend: a scripted policy given that sample's ground truth, or one model shared by all; a
    local model (one that has ``generate_batch``) with ``batch`` > 1 decodes concurrent episodes' turns together."""
    if policy in SCRIPTED:
        return lambda sample: make_backend(policy, reference=reference_for(sample))
    backend: Backend = make_backend(policy, model=model, base_url=base_url, options=options)
    if batch > 1 and isinstance(backend, BatchBackend):
        backend = BatchingBackend(backend, batch)
    return lambda sample: backend


def _factory(config: EvalConfig, policy: str) -> BackendFactory:
    return backend_factory(policy, model=config.model, base_url=config.base_url, options=config.options,
                           batch=config.workers)


def baseline_budget(results: Iterable[dict[str, Any]]) -> int:
    frames = [r["metrics"]["frames_viewed"] for r in results]
    return max(1, math.ceil(sum(frames) / len(frames))) if frames else 16


def evaluate(config: EvalConfig) -> dict[str, list[dict[str, Any]]]:
    """Run the agent, then the baseline at the agent's mean frame budget; returns both result lists."""
    if not config.samples or not config.out:
        raise ValueError("eval needs --samples samples.jsonl and --out DIR")
    if config.on_error not in ("stop", "skip"):
        raise ValueError(f"--on-error {config.on_error!r}: use stop or skip")
    if not config.baseline_frames or any(m <= 0 for m in config.baseline_frames):
        raise ValueError(f"--baseline-frames {config.baseline_frames}: give multiples > 0 of the agent's frames")
    everything = list(read_jsonl(config.samples))
    check_samples(everything, config.samples, on_error=config.on_error)
    samples = take(everything[: config.limit] if config.limit else everything, parse_shard(config.shard))
    if not samples:
        raise ValueError(f"{config.samples} holds no samples")
    with claim(Path(config.out), manifest(config, everything), new=config.new) as out:
        return _evaluate(config, samples, out)


def check_samples(samples: Sequence[Sample], path: str, *, on_error: str = "stop") -> None:
    """Ids must be unique (a duplicate would count twice); no sample may claim more video than there is (a
    window past the real end would score). An unreadable video stops here, or (``skip``) fails its episodes."""
    seen: dict[str, int] = {}
    for number, sample in enumerate(samples, start=1):
        if sample.id in seen:
            raise ValueError(f"{path}: sample id {sample.id!r} appears twice (records {seen[sample.id]} and "
                             f"{number}); ids must be unique")
        seen[sample.id] = number
    lengths: dict[str, float | None] = {}
    for sample in samples:
        if sample.video not in lengths:
            try:
                lengths[sample.video] = probe_duration(sample.video)
            except VideoError:
                if on_error != "skip":
                    raise
                lengths[sample.video] = None
        real = lengths[sample.video]
        if real is not None and sample.duration > real + max(1.0, 0.01 * real):
            raise ValueError(f"{path}: sample {sample.id!r} declares a {sample.duration:g} s video but "
                             f"{sample.video} lasts {real:g} s; rebuild the suite against these videos")


def _evaluate(config: EvalConfig, samples: list[Sample], out: Path) -> dict[str, list[dict[str, Any]]]:
    judge = None
    if config.judge:
        judge = Judge(backend_from_spec(config.judge), optional=config.judge_optional)
        # Fail before any episode runs: a judge that is down would otherwise stop the run at the first caption.
        judge.score("Probe: what is shown?", "A test.", "A test.")
    workers = config.workers  # hf: one model, the episodes' turns decoded in batches (BatchingBackend)
    agent = run_samples(samples, _factory(config, config.backend), out / "results.jsonl", config.agent,
                        run=config.backend, workers=workers, judge=judge, on_error=config.on_error)
    results = {"agent": agent}
    if config.baseline == "uniform":
        policy = "uniform" if config.backend in SCRIPTED else config.backend
        for multiple in config.baseline_frames:
            budget = max(1, math.ceil(baseline_budget(agent) * multiple))
            # N uniform frames and nothing else: the overview spends the budget, so the first turn must answer.
            tools = replace(config.agent.tools, overview_frames=budget, max_frames=budget)
            file = baseline_file(multiple)
            results[baseline_run(file)] = run_samples(samples, _factory(config, policy), out / file,
                                        replace(config.agent, tools=tools), run=f"uniform@{budget}", workers=workers,
                                        judge=judge, on_error=config.on_error)
    elif config.baseline not in (None, "none"):
        raise ValueError(f"--baseline {config.baseline!r}: use uniform or none")
    return results


def rescore(config: EvalConfig) -> dict[str, list[dict[str, Any]]]:
    """The episodes already in ``config.out`` (agent and baselines), their accuracy and grounding IoU computed again
    by the current rules and written back; no model runs. For folders written before a rule changed (the short-answer
    rule once gave "upper left" full marks for "lower left"). ``config.samples`` must be the samples of the run."""
    out = Path(config.out)
    if not (out / "manifest.json").is_file():
        raise ValueError(f"{out}: no manifest.json; --rescore scores the results of a `medscope eval` run there")
    recorded = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    everything = list(read_jsonl(config.samples))
    if recorded["suite"]["fingerprint"] != suite_fingerprint(everything):
        raise ValueError(f"{config.samples} are not the samples {out} was evaluated on (the suite fingerprints "
                         "differ): give the run's own --samples")
    samples = {sample.id: sample for sample in everything}
    names = ["results.jsonl", *sorted(path.name for path in out.glob("baseline*.jsonl"))]
    runs: dict[str, list[dict[str, Any]]] = {}
    with claim(out, recorded):
        for name in names:
            records = read_lines(out / name)
            for record in records:
                record["metrics"] |= answer_metrics(samples[record["id"]], record["episode"].get("answer"))
            if records:
                write_text_atomic(out / name, "".join(json_line(record) for record in records))
            runs["agent" if name == "results.jsonl" else baseline_run(name)] = records
    return runs


def baseline_file(multiple: float) -> str:
    """``baseline.jsonl`` for the agent's own frame budget, ``baseline_x2.jsonl`` for twice it, ..."""
    return "baseline.jsonl" if multiple == 1 else f"baseline_x{multiple:g}.jsonl"


def baseline_run(file: str) -> str:
    """The run a baseline file holds, as tables name it: ``baseline``, ``baseline x2``, ..."""
    multiple = file.removeprefix("baseline").removeprefix("_x").removesuffix(".jsonl")
    return f"baseline x{multiple}" if multiple else "baseline"


def merge(out: str | Path, shards: Sequence[str | Path]) -> dict[str, list[dict[str, Any]]]:
    """The results of ``--shard K/N`` runs as one eval folder (results, baselines, failures; then tables)."""
    folders, manifests = read_shards(shards, "manifest.json", "medscope eval")
    merged = {k: v for k, v in manifests[0].items() if k != "shard"} | {"shard": None}
    names = sorted({p.name for f in folders for p in f.glob("baseline*.jsonl")} | {"results.jsonl"})
    with claim(Path(out), merged) as target:
        for name in names:
            concat_jsonl([f / name for f in folders], target / name)
        concat_jsonl([f / "failures.jsonl" for f in folders], target / "failures.jsonl", key=None)
        runs = {"agent": read_lines(target / "results.jsonl")}
        runs |= {baseline_run(name): read_lines(target / name) for name in names if name.startswith("baseline")}
        return runs
