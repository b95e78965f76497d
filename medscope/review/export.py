"""Reviews out of the database: ClinVideoSuite samples, WebVTT and CSV.

- ``samples.jsonl``: one ``medscope.sample/2`` record per usable review, written by the suite's own
  ``write_jsonl`` (video paths relative to the file), so ``medscope train`` and ``medscope eval`` read it as they
  read a built suite. The evidence is the reviewer's: the corrected windows, else (an accepted answer) the
  episode's evidence, or its answer's windows for a grounding question. A grounding answer becomes the
  evidence windows themselves; an accepted answer to any other question is kept word for word; a rejected one
  without corrected windows teaches nothing and is skipped, as is any review without a window, each counted
  by reason in ``export.json``.
- ``reviews.csv``: one row per reviewed window (or per review without one), for spreadsheets and annotation
  tools; cells that a spreadsheet would run as a formula are quoted with a leading apostrophe.
- ``case-<id>.vtt``: a WebVTT track per case, one cue per reviewed window.
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from medscope.agent.protocol import render_windows
from medscope.agent.trace import Episode
from medscope.io import write_text_atomic
from medscope.report.timeline import Window, answer_windows, parse_windows
from medscope.review import db
from medscope.suite.records import TASKS, Sample, Task, write_jsonl

SOURCE = "review"


def export_all(engine: Engine, out: Path) -> dict[str, Any]:
    """Write samples.jsonl, reviews.csv, one .vtt per reviewed case and export.json into ``out``; returns the
    summary that export.json holds."""
    rows = db.reviewed_episodes(engine)
    samples: list[Sample] = []
    skipped: Counter[str] = Counter()
    for row in rows:
        sample, why = to_sample(row)
        if sample is None:
            skipped[why] += 1
        else:
            samples.append(sample)
    out.mkdir(parents=True, exist_ok=True)
    write_jsonl(out / "samples.jsonl", samples)
    write_text_atomic(out / "reviews.csv", reviews_csv(rows))
    vtts = []
    for case_id in sorted({row["case_id"] for row in rows}):
        name = f"case-{case_id}.vtt"
        write_text_atomic(out / name, webvtt([r for r in rows if r["case_id"] == case_id]))
        vtts.append(name)
    summary = {"exported_at": time.time(), "reviews": len(rows), "samples": len(samples),
               "skipped": dict(skipped), "files": ["samples.jsonl", "reviews.csv", *vtts]}
    write_text_atomic(out / "export.json", json.dumps(summary, indent=2) + "\n")
    return summary


def reviewed_windows(row: dict[str, Any]) -> list[Window]:
    """The evidence a review stands for: the corrected windows, else (accepted) the episode's own."""
    corrected = [(float(s), float(e)) for s, e in json.loads(row["windows"])]
    if corrected or row["decision"] != "accept":
        return corrected
    episode = Episode.from_dict(json.loads(row["trace"]))
    return [(s, e) for s, e in parse_windows(episode.evidence) or answer_windows(episode) if e > s]


def to_sample(row: dict[str, Any]) -> tuple[Sample | None, str]:
    """The review as a suite sample, or None and why not."""
    windows = reviewed_windows(row)
    task: Task = row["task"] if row["task"] in TASKS else "grounded_vqa"  # a free question with its evidence
    if not windows:
        return None, "no evidence window"
    if task == "grounding":
        answer = render_windows(windows)
    elif row["decision"] == "accept" and (row["answer"] or "").strip():
        answer = row["answer"]
    else:
        return None, "rejected answer without a corrected one"
    episode = Episode.from_dict(json.loads(row["trace"]))
    if task == "mcq" and not episode.options:
        return None, "multiple-choice question without its options"
    sample = Sample(
        id=f"{SOURCE}/{row['case_id']}/{row['episode_id']}", video=row["video"], duration=float(row["duration"]),
        question=row["question"], answer=answer, task=task, evidence=[[s, e] for s, e in windows],
        source=SOURCE, options=episode.options if task == "mcq" else None,
        meta={"verified": "human", "reviewer": row["reviewer"], "decision": row["decision"],
              "comment": row["comment"], "reviewed_at": row["updated_at"], "episode_id": row["episode_id"],
              "model_answer": row["answer"]},
        source_id=str(row["episode_id"]))
    return sample, ""


CSV_FIELDS = ("case_id", "video", "episode_id", "task", "question", "answer", "decision", "start", "end",
              "reviewer", "comment", "reviewed_at")


def reviews_csv(rows: Sequence[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    for row in rows:
        spans: list[tuple[str, str]] = [(f"{s:.2f}", f"{e:.2f}") for s, e in reviewed_windows(row)] or [("", "")]
        for start, end in spans:
            writer.writerow([_cell(v) for v in (
                row["case_id"], row["video"], row["episode_id"], row["task"], row["question"], row["answer"] or "",
                row["decision"], start, end,
                row["reviewer"], row["comment"], time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(row["updated_at"])),
            )])
    return buffer.getvalue()


def _cell(value: object) -> object:
    """Text a spreadsheet would run as a formula (=, +, -, @) gets a leading apostrophe."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def webvtt(rows: Sequence[dict[str, Any]]) -> str:
    """A WebVTT track: one cue per reviewed window, in time order."""
    cues = []
    for row in rows:
        for start, end in reviewed_windows(row):
            text = f"{row['question']}\n{row['decision']} by {row['reviewer']}: {row['answer'] or 'no answer'}"
            if row["comment"]:
                text += f"\n{row['comment']}"
            cues.append((start, end, row["episode_id"], text))
    lines = ["WEBVTT", ""]
    for start, end, episode_id, text in sorted(cues):
        # a blank line would end the cue and "-->" would start a new one: neither may appear inside the text
        body = "\n".join(line for line in text.replace("-->", "->").splitlines() if line.strip())
        lines += [f"episode-{episode_id}", f"{_vtt_time(start)} --> {_vtt_time(end)}", body, ""]
    return "\n".join(lines)


def _vtt_time(seconds: float) -> str:
    millis = round(seconds * 1000)
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    return f"{hours:02d}:{minutes:02d}:{rest // 1000:02d}.{rest % 1000:03d}"
