"""Tables from result lines: the paper's columns per task and source, agent and baseline side by side.

Columns: grounding R@0.3/0.5/0.7 and mIoU (and ``lenient``: how many answers were read from prose rather than
the protocol's ``[s, e]``); grounded VQA mIoU (of the evidence) and Acc; MCQ Acc; captions
BLEU-4/CIDEr/METEOR/ROUGE-L (when ``medscope.eval.captions`` is available) ; cost: tool calls, frames viewed
and seconds per question. Percentages carry a standard error clustered by video (many questions share one
long video, so they are not independent). Output: Markdown, JSON and a PNG of score against frames viewed.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medscope.eval.metrics import mean_iou, recall_at
from medscope.io import atomic_path, write_text_atomic


def clustered_se(values: Sequence[float], clusters: Sequence[str]) -> float:
    """Standard error of the mean of ``values`` with observations clustered (here: by video), in the same unit."""
    n = len(values)
    if n < 2:
        return 0.0
    mean = sum(values) / n
    sums: dict[str, float] = defaultdict(float)
    for value, cluster in zip(values, clusters, strict=True):
        sums[cluster] += value - mean
    g = len(sums)
    correction = g / (g - 1) if g > 1 else 1.0
    return math.sqrt(correction * sum(s * s for s in sums.values())) / n


def _pct(values: list[float], clusters: list[str]) -> dict[str, float]:
    return {"value": 100 * sum(values) / len(values), "se": 100 * clustered_se(values, clusters)}


def summarize(results: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``{"task/source": {column: value | {"value", "se"}, "n": count}}`` for one run."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in results:
        groups[f"{r['task']}/{r['source']}"].append(r)
    table: dict[str, dict[str, Any]] = {}
    for key in sorted(groups):
        rows = groups[key]
        task = rows[0]["task"]
        videos = [r["video"] for r in rows]
        names = {name for r in rows for name in r["metrics"]}  # rows of a resumed run may differ (a judge added)
        metric = {name: [r["metrics"].get(name) for r in rows] for name in names}
        entry: dict[str, Any] = {"n": len(rows)}
        if task == "grounding":
            ious = metric["iou"]
            entry |= {f"R@{t}": recall_at(ious, t) for t in (0.3, 0.5, 0.7)}
            entry["mIoU"] = {"value": mean_iou(ious), "se": 100 * clustered_se(ious, videos)}
            # answers whose windows only the lenient parsers could read (prose, brackets in text): not the protocol
            entry["lenient"] = sum(r.get("answer_parser") in ("brackets", "range") for r in rows)
        else:
            entry["Acc"] = _pct(metric["accuracy"], videos)
            if task in ("grounded_vqa", "mcq", "fine_caption"):
                entry["mIoU"] = _pct(metric["evidence_iou"], videos)
        if task in ("caption", "fine_caption"):
            entry |= _caption_columns(rows)
            for name in ("CI", "DO", "CU", "TU"):  # judge scores, 1-5; the mean says how many it covers
                scored = [v for v in metric.get(name, []) if v is not None]
                if name in metric:
                    entry[name] = {"mean": sum(scored) / len(scored) if scored else None, "n": len(scored),
                                   "of": len(rows)}
        for name in ("tool_calls", "frames_viewed", "seconds"):
            entry[name] = sum(metric[name]) / len(rows)
        table[key] = entry
    return table


def _caption_columns(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    try:
        from medscope.eval.captions import caption_scores
    except ImportError:  # caption metrics need pycocoevalcap (the eval extra)
        return {}
    predictions = {r["id"]: r["episode"]["answer"] or "" for r in rows}
    references = {r["id"]: [r["episode"]["reference"]["answer"]] for r in rows}
    scores = caption_scores(predictions, references)
    return {"BLEU-4": scores.get("bleu4"), "CIDEr": scores.get("cider"), "METEOR": scores.get("meteor"),
            "ROUGE-L": scores.get("rouge_l")}


COLUMNS = ["n", "failed", "R@0.3", "R@0.5", "R@0.7", "mIoU", "lenient", "Acc", "BLEU-4", "CIDEr", "METEOR", "ROUGE-L",
           "CI", "DO", "CU", "TU", "tool_calls", "frames_viewed", "seconds"]


def _cell(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, dict) and "mean" in value:  # a judge score: its mean and how many it covers
        mean = "n/a" if value["mean"] is None else f"{value['mean']:.2f}"
        return mean if value["n"] == value["of"] else f"{mean} (n={value['n']}/{value['of']})"
    if isinstance(value, dict):
        return f"{value['value']:.1f} ± {value['se']:.1f}"
    if isinstance(value, float):
        return f"{value:.2f}" if value < 10 else f"{value:.1f}"
    return str(value)


def markdown(runs: dict[str, dict[str, dict[str, Any]]]) -> str:
    """One row per task/source and run; only columns that some row has."""
    used = [c for c in COLUMNS if any(c in entry for table in runs.values() for entry in table.values())]
    lines = ["| task/source | run | " + " | ".join(used) + " |", "|---|---|" + "---|" * len(used)]
    keys = sorted({k for table in runs.values() for k in table})
    for key in keys:
        for run, table in runs.items():
            if key in table:
                entry = table[key]
                lines.append(f"| {key} | {run} | " + " | ".join(_cell(entry.get(c, "")) for c in used) + " |")
    return "\n".join(lines)


def _count_failures(summaries: dict[str, dict[str, dict[str, Any]]], runs: dict[str, list[dict[str, Any]]],
                    path: Path) -> None:
    from medscope.eval.folder import read_lines

    failures = read_lines(path)
    for name, results in runs.items():
        done = {r["id"] for r in results}
        run_names = {r["run"] for r in results}
        for failure in failures:
            if failure.get("run") in run_names and failure["id"] not in done:
                key = f"{failure.get('task')}/{failure.get('source')}"
                entry = summaries.setdefault(name, {}).setdefault(key, {"n": 0})
                entry["failed"] = entry.get("failed", 0) + 1
                done.add(failure["id"])  # a sample that failed twice is one failure


def plot(runs: dict[str, dict[str, dict[str, Any]]], path: Path) -> Path:
    """Score (mIoU for grounding, else accuracy) against frames viewed, one marker per task and run."""
    import matplotlib

    matplotlib.use("Agg")  # headless; set here, not at import, so importing this module changes nothing
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for run, table in runs.items():
        xs, ys, labels = [], [], []
        for key, entry in table.items():
            score = entry.get("mIoU") if key.startswith("grounding/") else entry.get("Acc")
            if score is None:
                continue
            xs.append(entry["frames_viewed"])
            ys.append(score["value"] if isinstance(score, dict) else score)
            labels.append(key.split("/")[0])
        ax.scatter(xs, ys, label=run)
        for x, y, label in zip(xs, ys, labels, strict=True):
            ax.annotate(label, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("frames viewed per question")
    ax.set_ylabel("mIoU (grounding) / accuracy (%)")
    ax.set_ylim(0, 105)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
    return path


def write_tables(runs: dict[str, list[dict[str, Any]]], out: str | Path) -> dict[str, dict[str, dict[str, Any]]]:
    """Summaries of every run as tables.md, tables.json and frames_vs_score.png in ``out``; samples whose
    episode failed (``failures.jsonl``, not since finished) are counted in a ``failed`` column."""
    out = Path(out)
    # Caption metrics take a minute on a large run: tables of the same results are read back, not recomputed.
    failures = (out / "failures.jsonl").read_text() if (out / "failures.jsonl").exists() else ""
    signature = hashlib.sha256(json.dumps(
        [[[run, [(r["id"], r["metrics"], r.get("episode", {}).get("answer")) for r in results]]
          for run, results in runs.items()], failures], sort_keys=True, default=str).encode()).hexdigest()
    if (out / "tables.signature").exists() and (out / "tables.signature").read_text().strip() == signature and (
            out / "tables.json").exists():
        return dict(json.loads((out / "tables.json").read_text()))
    summaries = {run: summarize(results) for run, results in runs.items() if results}
    _count_failures(summaries, runs, out / "failures.jsonl")
    write_text_atomic(out / "tables.md", markdown(summaries) + "\n")
    write_text_atomic(out / "tables.json", json.dumps(summaries, indent=2))
    plot(summaries, out / "frames_vs_score.png")
    write_text_atomic(out / "tables.signature", signature + "\n")
    return summaries
