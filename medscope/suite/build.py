"""``medscope suite build``: adapt → generate → filter → trajectories → files.

Writes into ``--out``: ``samples.jsonl`` (kept samples), ``trajectories.jsonl`` (one per kept sample, replayed
on the real video), ``drops.jsonl`` (every dropped sample with its filter and reason), ``funnel.json`` and a
dataset card ``README.md``. Every file is written atomically; videos are processed in parallel.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from medscope.agent.backends import backend_from_spec
from medscope.io import write_text_atomic
from medscope.suite import filters
from medscope.suite.adapters import load_annotations
from medscope.suite.qa import QAConfig, generate_samples, rewrite_questions
from medscope.suite.records import Sample, Trajectory, VideoAnnotation, write_jsonl
from medscope.suite.trajectories import make_trajectory
from medscope.video.errors import VideoError
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
    rewrite: str | None = field(
        default=None, metadata={"help": "rephrase questions with a model: hf:MODEL_DIR | openai:MODEL@BASE_URL"}
    )
    workers: int = field(default=2, metadata={"help": "processes for trajectories (one video each)"})
    on_error: str = field(default="raise", metadata={"help": "raise | skip: what to do with an unreadable video"})
    qa: QAConfig = field(default_factory=QAConfig)


def _judges(spec: str, samples: Sequence[Sample]) -> tuple[filters.Judge, filters.Judge]:
    if spec == "rules":
        return filters.BlindPriorJudge(samples), filters.SummaryRuleJudge()
    judge = filters.BackendJudge(backend_from_spec(spec))
    return judge, judge


def _video_path(annotation: VideoAnnotation, videos: Path) -> Path:
    path = Path(annotation.video)
    return path if path.is_absolute() else videos / path


def _generate(annotations: list[VideoAnnotation], videos: Path, config: BuildConfig) -> list[Sample]:
    samples: list[Sample] = []
    for annotation in annotations:
        path = _video_path(annotation, videos)
        try:
            with VideoSource(path) as source:  # the video's own duration is the truth windows are checked against
                duration = source.duration_seconds
        except VideoError as exc:
            if config.on_error == "raise":
                raise
            log.warning("skipped video %s: %s", annotation.video_id, exc)
            continue
        for sample in generate_samples(annotation, duration, config.qa):
            samples.append(dataclasses.replace(sample, video=str(path)))
    return samples


def _trajectories_for_video(samples: list[Sample]) -> list[Trajectory]:
    with VideoSource(samples[0].video) as source:
        return [make_trajectory(sample, source) for sample in samples]


def build(config: BuildConfig) -> dict[str, dict[str, int]]:
    """Run the whole builder; returns the funnel table."""
    if not config.annotations or not config.out:
        raise ValueError("suite build needs --annotations PATH and --out DIR")
    annotations_path = Path(config.annotations)
    videos = Path(config.videos) if config.videos else (
        annotations_path if annotations_path.is_dir() else annotations_path.parent)
    out = Path(config.out)
    annotations = load_annotations(config.source, annotations_path)
    generated = _generate(annotations, videos, config)
    if config.rewrite:
        generated = rewrite_questions(generated, backend_from_spec(config.rewrite))
    blind, summary_judge = _judges(config.judge, generated)
    summaries = {str(_video_path(a, videos)): a.summary or "" for a in annotations}
    kept, drops_common = filters.commonsense_filter(generated, blind)
    kept, drops_global = filters.global_summary_filter(kept, summary_judge, summaries)
    kept, drops_consistency = filters.ConsistencyFilter()(kept)
    drops = drops_common + drops_global + drops_consistency
    filters.log_drops(drops)

    by_video: dict[str, list[Sample]] = {}
    for sample in kept:
        by_video.setdefault(sample.video, []).append(sample)
    trajectories: list[Trajectory] = []
    with ProcessPoolExecutor(max_workers=max(1, config.workers)) as pool:
        jobs = pool.map(_trajectories_for_video, by_video.values())
        for chunk in tqdm(jobs, total=len(by_video), desc="trajectories", unit="video"):
            trajectories.extend(chunk)

    stages = ["commonsense", "global_summary", "consistency"]
    table = filters.funnel(generated, drops, stages)
    write_jsonl(out / "samples.jsonl", kept)
    write_jsonl(out / "trajectories.jsonl", trajectories)
    write_text_atomic(out / "drops.jsonl", "".join(json.dumps(dataclasses.asdict(d)) + "\n" for d in drops))
    write_text_atomic(out / "funnel.json", json.dumps(table, indent=2))
    write_text_atomic(out / "README.md", dataset_card(config, kept, trajectories, table))
    return table


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
                 table: dict[str, dict[str, int]]) -> str:
    durations = sorted({s.video: s.duration for s in samples}.values())
    evidence = [e - s for sample in samples for s, e in sample.evidence]
    kinds = {k: sum(t.kind == k for t in trajectories) for k in ("vcot", "cot")}
    return "\n\n".join([
        f"# ClinVideoSuite build ({config.source})",
        f"Built by `medscope suite build --source {config.source} --annotations {config.annotations}` with judge "
        f"`{config.judge}`: {len(samples)} samples over {len(durations)} videos; trajectories: {kinds['vcot']} "
        f"VCoT (tool calls), {kinds['cot']} CoT (overview only).",
        "## Funnel (generated → dropped by each filter → kept)\n\n" + funnel_markdown(table),
        "## Video durations\n\n" + _histogram([d / 60 for d in durations], [0, 1, 5, 10, 30, 60], "min"),
        "## Evidence window lengths\n\n" + _histogram(evidence, [0, 1, 2, 5, 10, 30, 60, 300], "s"),
        "Files: `samples.jsonl` (schema medscope.sample/1), `trajectories.jsonl` (medscope.trajectory/1), "
        "`drops.jsonl` (filter and reason per dropped sample), `funnel.json`.",
    ]) + "\n"
