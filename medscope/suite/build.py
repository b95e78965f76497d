"""``medscope suite build``: adapt → fit to the videos → generate → filter → trajectories → files.

Writes into ``--out``: ``samples.jsonl`` (kept samples, video paths relative to the file), ``trajectories.jsonl``
(one per kept sample, replayed on the real video), ``drops.jsonl`` (every dropped sample with its filter and
reason), ``load_notes.jsonl`` (every annotation record skipped, window clamped and duration disagreement, with
file, line or JSON path, field and record id), ``funnel.json`` (records read/skipped/clamped by reason, then
samples per task and filter) and a dataset card ``README.md``. Every file is written atomically; videos are
processed in parallel.

The video file is the truth for durations: each annotation is fitted to its video (found by stem in any
container) before questions are generated, so a window that overruns the real video is clamped (noted)
and one that starts after its end is skipped (noted), instead of failing the build.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from medscope.agent.backends import backend_from_spec
from medscope.io import json_line, write_text_atomic
from medscope.shards import concat_jsonl, parse_shard, read_shards, take
from medscope.suite import filters
from medscope.suite.adapters import load_annotations
from medscope.suite.loading import DURATION_TOLERANCE_S, AdapterError, LoadContext, LoadOptions, VideoInfo, Where
from medscope.suite.qa import QAConfig, generate_samples, rewrite_questions
from medscope.suite.records import Sample, Trajectory, VideoAnnotation, read_jsonl, write_jsonl
from medscope.suite.trajectories import make_trajectory, with_search_order
from medscope.video.source import VideoSource

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BuildConfig:
    source: str = field(default="synthclin", metadata={"help": "annotation format (see medscope.suite.adapters)"})
    annotations: str = field(default="", metadata={"help": "annotation file or folder"})
    videos: str | None = field(default=None, metadata={"help": "folder of the videos (default: beside annotations)"})
    out: str = field(default="", metadata={"help": "output folder"})
    judge: str = field(
        default="rules", metadata={"help": "filter judge: rules | hf:MODEL_DIR | openai:MODEL@BASE_URL"}
    )
    filters: tuple[str, ...] = field(
        default=filters.LEVELS, metadata={"help": "filter levels to apply (consistency alone keeps an official "
                                          "split as published, for comparable numbers)"})
    rewrite: str | None = field(
        default=None, metadata={"help": "rephrase questions with a model: hf:MODEL_DIR | openai:MODEL@BASE_URL"}
    )
    workers: int = field(default=2, metadata={"help": "processes for trajectories (one video each)"})
    trajectories: bool = field(
        default=True, metadata={"help": "write reference trajectories (off: samples only, e.g. an eval-only suite)"})
    shard: str | None = field(
        default=None, metadata={"help": "K/N: build every N-th video only (then `medscope merge suite`)"})
    on_error: str = field(
        default="skip", metadata={"help": "skip | raise: a missing or unreadable video (skips are noted)"})
    qa: QAConfig = field(default_factory=QAConfig)
    load: LoadOptions = field(default_factory=LoadOptions)


def _judges(spec: str, samples: Sequence[Sample]) -> tuple[filters.Judge, filters.Judge]:
    if spec == "rules":
        return filters.BlindPriorJudge(samples), filters.SummaryRuleJudge()
    judge = filters.BackendJudge(backend_from_spec(spec))
    return judge, judge


def fit_to_video(annotation: VideoAnnotation, length: float, where: Where, ctx: LoadContext) -> VideoAnnotation:
    """Every window checked against the video's real ``length``: overruns clamped, windows past the end skipped
    (both noted); a declared duration further than the tolerance from the real one is reported."""
    declared = annotation.duration
    if declared is not None and abs(declared - length) > max(DURATION_TOLERANCE_S, 0.01 * length):
        ctx.disagrees(where, f"the annotation says {declared:g} s, the video lasts {length:g} s; using the video's",
                      "duration disagrees with the video", annotation.video_id)
    segments = []
    for seg in annotation.segments:
        with ctx.record(where, seg.source_id or annotation.video_id, new=False):
            windows = tuple(ctx.window(s, e, length, where, seg.source_id or annotation.video_id)
                            for s, e in (seg.windows or ((seg.start, seg.end),)))
            segments.append(dataclasses.replace(seg, start=windows[0][0], end=windows[0][1],
                                                windows=windows if seg.windows else ()))
    return dataclasses.replace(annotation, duration=length, segments=tuple(segments))


def _find_video(annotation: VideoAnnotation, ctx: LoadContext, on_error: str) -> VideoInfo | None:
    path = ctx.index.find(annotation.video_id, annotation.video)
    info = ctx.index.probe(path) if path is not None else None
    if info is None:
        where = Where(path or Path(annotation.video))
        problem = ("cannot be read as a video" if path is not None else
                   f"no video file for {annotation.video_id!r} under {ctx.index.folder} (looked for "
                   f"{annotation.video} and <id>.<any video suffix>); pass --videos FOLDER")
        error = where.error(problem, "video unreadable" if path is not None else "video not found")
        if on_error == "raise":
            raise error
        ctx.note("skipped", error, annotation.video_id)
    return info


def _generate(annotations: list[VideoAnnotation], ctx: LoadContext,
              config: BuildConfig) -> tuple[list[Sample], dict[str, str]]:
    """The samples of every annotation whose video is there, and each video's summary (for the global filter)."""
    samples: list[Sample] = []
    summaries: dict[str, str] = {}
    for annotation in annotations:
        info = _find_video(annotation, ctx, config.on_error)
        if info is None:
            continue
        fitted = fit_to_video(annotation, info.duration, Where(info.path), ctx)
        summaries[str(info.path)] = annotation.summary or ""
        for sample in generate_samples(fitted, info.duration, config.qa):
            samples.append(dataclasses.replace(sample, video=str(info.path)))
    return samples, summaries


def _trajectories_for_video(samples: list[Sample]) -> list[Trajectory]:
    with VideoSource(samples[0].video) as source:
        return [make_trajectory(sample, source) for sample in samples]


def _filter(samples: list[Sample], summaries: dict[str, str],
            config: BuildConfig) -> tuple[list[Sample], list[filters.Drop]]:
    """The chosen filter levels in the paper's order, then the per-task cap; the kept samples and every drop."""
    unknown = set(config.filters) - set(filters.LEVELS)
    if unknown:
        raise ValueError(f"--filters {' '.join(sorted(unknown))}: the levels are {' '.join(filters.LEVELS)}")
    kept, drops = list(samples), []
    if {"commonsense", "global_summary"} & set(config.filters):
        blind, summary_judge = _judges(config.judge, samples)
        if "commonsense" in config.filters:
            kept, dropped = filters.commonsense_filter(kept, blind)
            drops += dropped
        if "global_summary" in config.filters:
            kept, dropped = filters.global_summary_filter(kept, summary_judge, summaries)
            drops += dropped
    if "consistency" in config.filters:
        kept, dropped = filters.ConsistencyFilter()(kept)
        drops += dropped
    kept, dropped = filters.cap_per_task(kept, config.qa.max_per_task, seed=config.qa.seed)
    return kept, drops + dropped


def end_with_parent(parent: int) -> None:
    """Run in each worker: exit when the parent is gone. A parent killed with SIGKILL cannot stop its pool, and
    its workers would otherwise run on, orphaned, holding CPU and files."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="end-with-parent", daemon=True).start()


def _all_trajectories(samples: Sequence[Sample], workers: int) -> list[Trajectory]:
    by_video: dict[str, list[Sample]] = {}
    for sample in samples:
        by_video.setdefault(sample.video, []).append(sample)
    trajectories: list[Trajectory] = []
    pool = ProcessPoolExecutor(max_workers=max(1, workers), initializer=end_with_parent, initargs=(os.getpid(),))
    with pool:
        jobs = pool.map(_trajectories_for_video, by_video.values())
        for chunk in tqdm(jobs, total=len(by_video), desc="trajectories", unit="video"):
            trajectories.extend(chunk)
    return trajectories


def build(config: BuildConfig) -> dict[str, dict[str, int]]:
    """Run the whole builder; returns the funnel table."""
    if not config.annotations or not config.out:
        raise ValueError("suite build needs --annotations PATH and --out DIR")
    annotations_path = Path(config.annotations)
    videos = Path(config.videos) if config.videos else (
        annotations_path if annotations_path.is_dir() else annotations_path.parent)
    if config.on_error not in ("skip", "raise"):
        raise ValueError(f"--on-error {config.on_error!r}: use skip or raise")
    out = Path(config.out)
    ctx = LoadContext(config.load, videos)
    annotations = load_annotations(config.source, annotations_path, ctx)
    shard = parse_shard(config.shard)
    if shard is not None:
        annotations = take(annotations, shard)
        if shard[0] != 1:  # every shard reads the whole file; the first one alone reports it, so merged counts add up
            ctx.notes.clear()
            ctx.records = 0
    generated, summaries = _generate(annotations, ctx, config)
    generated = with_search_order(generated)
    if not generated:
        first = next((f" (the first: {n.detail})" for n in ctx.notes if n.action == "skipped"), "")
        why = _describe(ctx.counts()["skipped"]) or "no question could be generated from them"
        raise AdapterError(f"no samples from {annotations_path}: {ctx.records} records read; {why}{first}")
    if config.rewrite:
        generated = rewrite_questions(generated, backend_from_spec(config.rewrite))
    kept, drops = _filter(generated, summaries, config)
    filters.log_drops(drops)

    trajectories = _all_trajectories(kept, config.workers) if config.trajectories else []

    stages = [*config.filters, *(["cap"] if config.qa.max_per_task else [])]
    table = filters.funnel(generated, drops, stages)
    records = {"read": ctx.records, **ctx.counts()}
    write_jsonl(out / "samples.jsonl", kept)
    if config.trajectories:
        write_jsonl(out / "trajectories.jsonl", trajectories)
    write_text_atomic(out / "drops.jsonl", "".join(json.dumps(dataclasses.asdict(d)) + "\n" for d in drops))
    write_text_atomic(out / "load_notes.jsonl",
                      "".join(json_line(dataclasses.asdict(n)) for n in ctx.notes))
    write_text_atomic(out / "funnel.json", json.dumps({"records": records, "samples": table}, indent=2))
    write_text_atomic(out / "build.json", json.dumps(dataclasses.asdict(config), indent=2))
    write_text_atomic(out / "README.md", dataset_card(config, kept, trajectories, table, records))
    return table


def merge(out: str | Path, shards: Sequence[str | Path]) -> dict[str, dict[str, int]]:
    """The folders of ``--shard K/N`` builds as one suite: samples and trajectories (video paths re-anchored),
    drops and load notes, the funnel summed, the dataset card written again. Returns the funnel table."""
    folders, builds = read_shards(shards, "build.json", "medscope suite build", may_differ=frozenset({"out"}))
    out = Path(out)
    samples = [s for f in folders for s in read_jsonl(f / "samples.jsonl")]
    trajectories = [t for f in folders if (f / "trajectories.jsonl").exists()
                    for t in read_jsonl(f / "trajectories.jsonl", "trajectory")]
    ids = [s.id for s in samples]
    if len(ids) != len(set(ids)):
        raise ValueError("two shards hold the same sample ids: were they built from different --shard splits?")
    write_jsonl(out / "samples.jsonl", samples)
    if trajectories:
        write_jsonl(out / "trajectories.jsonl", trajectories)
    for name in ("drops.jsonl", "load_notes.jsonl"):
        concat_jsonl([f / name for f in folders], out / name, key=None)
    funnels = [json.loads((f / "funnel.json").read_text(encoding="utf-8")) for f in folders]
    table: dict[str, dict[str, int]] = {}
    for funnel in funnels:
        for task, row in funnel["samples"].items():
            merged_row = table.setdefault(task, {})
            for column, value in row.items():
                merged_row[column] = merged_row.get(column, 0) + value
    records: dict[str, Any] = {"read": sum(f["records"]["read"] for f in funnels)}
    for action in ("skipped", "clamped", "disagrees"):
        counts: dict[str, int] = {}
        for funnel in funnels:
            for reason, n in funnel["records"][action].items():
                counts[reason] = counts.get(reason, 0) + n
        records[action] = dict(sorted(counts.items()))
    build = builds[0] | {"out": str(out), "shard": None}
    card = BuildConfig(source=build["source"], annotations=build["annotations"], judge=build["judge"], out=str(out))
    write_text_atomic(out / "funnel.json", json.dumps({"records": records, "samples": table}, indent=2))
    write_text_atomic(out / "build.json", json.dumps(build, indent=2))
    write_text_atomic(out / "README.md", dataset_card(card, samples, trajectories, table, records))
    return table


def _describe(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {reason}" for reason, n in sorted(counts.items(), key=lambda kv: -kv[1]))


def records_markdown(records: dict[str, Any]) -> str:
    """The loading funnel: records read, then skipped / clamped / disagreeing by reason."""
    lines = ["| records | reason | count |", "|---|---|---|", f"| read | | {records['read']} |"]
    for action in ("skipped", "clamped", "disagrees"):
        for reason, n in records[action].items():
            lines.append(f"| {action} | {reason} | {n} |")
        if not records[action]:
            lines.append(f"| {action} | | 0 |")
    return "\n".join(lines)


def funnel_markdown(table: dict[str, dict[str, int]]) -> str:
    columns = list(next(iter(table.values())))
    lines = ["| task | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    lines += [f"| {task} | " + " | ".join(str(row[c]) for c in columns) + " |" for task, row in table.items()]
    return "\n".join(lines)


def _histogram(values: Sequence[float], edges: Sequence[float], unit: str) -> str:
    rows = ["| range | count |", "|---|---|"]
    bounds = [*edges, float("inf")]
    for lo, hi in itertools.pairwise(bounds):
        label = f"{lo:g}–{hi:g} {unit}" if hi != float("inf") else f"≥ {lo:g} {unit}"
        rows.append(f"| {label} | {sum(lo <= v < hi for v in values)} |")
    return "\n".join(rows)


def dataset_card(config: BuildConfig, samples: Sequence[Sample], trajectories: Sequence[Trajectory],
                 table: dict[str, dict[str, int]], records: dict[str, Any]) -> str:
    durations = sorted({s.video: s.duration for s in samples}.values())
    evidence = [e - s for sample in samples for s, e in sample.evidence]
    kinds = {k: sum(t.kind == k for t in trajectories) for k in ("vcot", "cot")}
    return "\n\n".join([
        f"# ClinVideoSuite build ({config.source})",
        f"Built by `medscope suite build --source {config.source} --annotations {config.annotations}` with judge "
        f"`{config.judge}`: {len(samples)} samples over {len(durations)} videos; trajectories: {kinds['vcot']} "
        f"VCoT (tool calls), {kinds['cot']} CoT (overview only).",
        "## Annotation records (read → skipped, clamped, disagreeing; each one in `load_notes.jsonl`)\n\n"
        + records_markdown(records),
        "## Funnel (generated → dropped by each filter → kept)\n\n" + funnel_markdown(table),
        "## Video durations\n\n" + _histogram([d / 60 for d in durations], [0, 1, 5, 10, 30, 60], "min"),
        "## Evidence window lengths\n\n" + _histogram(evidence, [0, 1, 2, 5, 10, 30, 60, 300], "s"),
        "Files: `samples.jsonl` (schema medscope.sample/2; video paths relative to this folder), "
        "`trajectories.jsonl` (medscope.trajectory/2), `drops.jsonl` (filter and reason per dropped sample), "
        "`load_notes.jsonl` (records skipped or repaired while loading), `funnel.json`.",
    ]) + "\n"
