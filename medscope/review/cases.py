"""Importing episodes into the review database: ``medscope eval`` output folders and ``medscope ask --trace`` files.

A path may be a trace (JSONL of ``medscope.episode/1`` lines), an eval results file (``results.jsonl``,
``baseline*.jsonl``: one result a line, the episode inside) or a folder, searched recursively for both; other
JSONL files (samples, trajectories, notes) are passed over. Each episode joins the case of its video (created
the first time the video is seen). Importing the same line again adds nothing, so a folder can be imported
again after more results were written.

A video path in a trace is as the agent was given it, often relative to the folder it ran in; it is looked for
as written, from the working folder, beside the file and in the file's parent folders, then by its stem under
``--videos``. An episode whose video cannot be found is skipped and reported, never served from a guess.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from medscope.agent.trace import SCHEMA as EPISODE_SCHEMA
from medscope.agent.trace import Episode
from medscope.report.timeline import is_grounding, verdict
from medscope.review import db
from medscope.suite.loading import VideoIndex


@dataclass
class ImportReport:
    files: int = 0
    added: int = 0
    known: int = 0  # already in the database
    skipped: list[str] = field(default_factory=list)  # "file:line: why"

    def summary(self) -> str:
        text = f"{self.added} episodes added, {self.known} already there, from {self.files} files"
        if self.skipped:
            text += f"; {len(self.skipped)} skipped, e.g. {self.skipped[0]}"
        return text


def import_paths(engine: Engine, paths: Iterable[str | Path], *, videos: str | Path | None = None) -> ImportReport:
    """Import every trace and eval result under ``paths``; a path that does not exist is an error naming it."""
    report = ImportReport()
    index = VideoIndex(Path(videos)) if videos else None
    for path in map(Path, paths):
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such file or folder; give `medscope eval` output folders, "
                                    "`medscope ask --trace` files, or folders holding them")
        files = sorted(path.rglob("*.jsonl")) if path.is_dir() else [path]
        for file in files:
            kind = _kind(file)
            if kind is None:
                if not path.is_dir():
                    raise ValueError(f"{file}: neither a trace (medscope ask --trace) nor eval results "
                                     "(results.jsonl); nothing to import")
                continue
            report.files += 1
            _import_file(engine, file, kind, index, report)
    return report


def _kind(file: Path) -> str | None:
    """"trace", "results" or None, from the first record of the file."""
    try:
        with file.open(encoding="utf-8") as handle:
            first = next((line for line in handle if line.strip()), "")
        record = json.loads(first) if first else None
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict):
        return None
    if record.get("schema") == EPISODE_SCHEMA:
        return "trace"
    if isinstance(record.get("episode"), dict) and "metrics" in record:
        return "results"
    return None


def _records(file: Path) -> Iterator[tuple[int, str, dict[str, Any]]]:
    with file.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a line torn by a kill (eval folders cut it on resume); nothing to show
            if isinstance(record, dict):
                yield number, line, record


def _import_file(engine: Engine, file: Path, kind: str, index: VideoIndex | None, report: ImportReport) -> None:
    source = str(file.resolve())
    with engine.begin() as conn:
        for number, line, record in _records(file):
            where = f"{file}:{number}"
            try:
                episode = Episode.from_dict(record if kind == "trace" else record["episode"])
            except (TypeError, ValueError, KeyError) as exc:
                report.skipped.append(f"{where}: not an episode ({exc})")
                continue
            video = find_video(episode.video, file, index)
            if video is None:
                report.skipped.append(f"{where}: video {episode.video!r} not found; pass --videos DIR")
                continue
            accuracy = (record.get("metrics") or {}).get("accuracy") if kind == "results" else None
            run = str(record.get("run", "")) if kind == "results" else ""
            case_id = db.add_case(conn, video=str(video), name=video.name, duration=float(episode.duration),
                                  source=source)
            added = db.add_episode(
                conn, case_id=case_id, key=hashlib.sha256(f"{source}\n{line}".encode()).hexdigest(),
                task=episode.task or ("grounding" if is_grounding(episode) else ""), question=episode.question,
                answer=episode.answer, verdict=verdict(episode, accuracy), run=_run_name(episode, file, run),
                source=source, trace=episode.to_dict())
            if added is None:
                report.known += 1
            else:
                report.added += 1


def _run_name(episode: Episode, file: Path, run: str) -> str:
    """Who answered: the eval folder and its run (``medscope-tiny/uniform@26``), or the trace's model."""
    if run:
        return f"{file.parent.name}/{run}"
    return episode.backend.get("model") or episode.backend.get("backend") or file.stem


def find_video(video: str, file: Path, index: VideoIndex | None) -> Path | None:
    """The video file an episode names, resolved (see the module docstring)."""
    if not video:
        return None
    path = Path(video)
    if path.is_absolute():
        candidates = [path]
    else:
        candidates = [Path.cwd() / path, *(folder / path for folder in file.resolve().parents)]
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    found = index.find(path.stem, path.name) if index is not None else None
    return found.resolve() if found is not None else None
