"""An eval output folder that one run owns and that a resume can trust.

- **Manifest** (``manifest.json``, written when a run starts): what produced the results — backend, model,
  server (secrets redacted), agent and tool configs, the suite's fingerprint (a hash of every sample's id,
  question, answer and evidence, so a moved suite matches and an edited one does not), judge and baseline
  settings. A resume whose settings differ refuses and names the differences: results of two setups never
  merge into one row. ``--new`` moves the old files aside (``replaced-<time>/``) and starts over.
- **Lock**: an exclusive ``flock`` on ``.lock`` for the whole run; a second writer fails at once naming the
  first one's pid, instead of both running every sample into one file.
- **Result files**: a line torn by a kill is cut before appending; any other bad line is an error naming
  ``file:line``.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from medscope.agent.backends.base import redact_url
from medscope.config import differences
from medscope.io import write_text_atomic
from medscope.suite.records import Sample

log = logging.getLogger(__name__)

MANIFEST_SCHEMA = "medscope.eval-manifest/1"
RESULT_FILES = ("results.jsonl", "baseline.jsonl", "failures.jsonl", "tables.md", "tables.json", "tables.signature",
                "frames_vs_score.png", "manifest.json")  # and baseline_x*.jsonl


class EvalFolderError(ValueError):
    """The output folder cannot take this run: another run holds it, or it holds results of another setup."""


def suite_fingerprint(samples: Sequence[Sample]) -> str:
    """A hash of what is asked and what counts as right (not of paths: a moved suite keeps its fingerprint)."""
    digest = hashlib.sha256()
    for s in sorted(samples, key=lambda s: s.id):
        digest.update(json.dumps([s.id, s.task, s.question, s.answer, s.evidence, s.options]).encode("utf-8"))
    return digest.hexdigest()[:16]


def manifest(config: Any, samples: Sequence[Sample]) -> dict[str, Any]:
    """What a resume must match (``config`` is an ``EvalConfig``; ``--limit`` and ``--workers`` may change)."""
    return {
        "schema": MANIFEST_SCHEMA,
        "backend": config.backend,
        "model": config.model,
        "base_url": redact_url(config.base_url),
        "agent": dataclasses.asdict(config.agent),
        # how the model computes (not threads, timeouts or retries, which change speed, not answers)
        "compute": {"device": config.options.device, "dtype": config.options.dtype,
                    "attn_implementation": config.options.attn_implementation,
                    "tool_messages": config.options.tool_messages, "image_factor": config.options.image_factor},
        "suite": {"fingerprint": suite_fingerprint(samples), "samples": len(samples)},
        "judge": config.judge,
        "judge_optional": config.judge_optional,
        "baseline": config.baseline,
        "baseline_frames": list(config.baseline_frames),
        "shard": config.shard,
        # Recorded, not compared: a resume may run on a newer medscope.
        "recorded": {"medscope": _version(), "commit": _commit()},
    }


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("medscope")
    except PackageNotFoundError:
        return "unknown"


def _commit() -> str | None:
    """The git commit of the medscope checkout that runs, when it runs from one (with a + when edited)."""
    import subprocess

    root = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+" if dirty else "")


@contextmanager
def claim(out: Path, wanted: dict[str, Any], *, new: bool = False) -> Iterator[Path]:
    """Hold ``out`` for one run: the lock, then the manifest checked (or written). Yields ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    with (out / ".lock").open("a+", encoding="utf-8") as handle:
        _lock(handle, out)
        try:
            _check_manifest(out, wanted, new=new)
            yield out
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _lock(handle: IO[str], out: Path) -> None:
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        raise EvalFolderError(f"{out}: another medscope eval (pid {holder}) is writing here; wait for it to end "
                              "or choose another --out") from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()


def _check_manifest(out: Path, wanted: dict[str, Any], *, new: bool) -> None:
    path = out / "manifest.json"
    has_results = any((out / name).exists() for name in ("results.jsonl", "baseline.jsonl"))
    if new and (has_results or path.exists()):
        aside = out / time.strftime("replaced-%Y%m%d-%H%M%S", time.gmtime())
        aside.mkdir()
        for path in [*(out / name for name in RESULT_FILES), *out.glob("baseline_x*.jsonl")]:
            if path.exists():
                path.rename(aside / path.name)
        log.warning("%s: earlier results moved to %s (--new)", out, aside)
    elif path.exists():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, OSError) as exc:
            raise EvalFolderError(f"{path}: unreadable ({exc}); pass --new to start over (the old files are "
                                  "moved aside) or choose another --out") from exc
        diff = differences(old, wanted, ignore=frozenset({"recorded"}))
        if diff:
            raise EvalFolderError(f"{out} holds results of another setup, which would merge with this one: "
                                  f"{'; '.join(diff)}. Pass --new to start over here (the old files are moved "
                                  "aside) or choose another --out")
    elif has_results:
        raise EvalFolderError(f"{out} holds results without a manifest (an older medscope, or files copied in): "
                              "pass --new to start over here (the old files are moved aside) or choose another --out")
    write_text_atomic(path, json.dumps(wanted, indent=2) + "\n")


def repair_tail(path: Path) -> None:
    """Cut a last line that a kill left unfinished, so appending goes on from the last whole record."""
    if not path.exists():
        return
    data = path.read_bytes()
    keep = data.rfind(b"\n") + 1
    if keep < len(data):
        log.warning("%s: dropping an unfinished last line (%d bytes) from an interrupted run", path, len(data) - keep)
        with path.open("r+b") as handle:
            handle.truncate(keep)


def read_lines(path: str | Path) -> list[dict[str, Any]]:
    """Every record of a results file; a line that is not a JSON object with an ``id`` is an error naming it."""
    path = Path(path)
    if not path.exists():
        return []
    records = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as exc:
                raise EvalFolderError(f"{path}:{number}: not a JSON line ({exc}); remove the line or pass "
                                      "--new") from exc
            if not isinstance(record, dict) or not isinstance(record.get("id"), str):
                raise EvalFolderError(f"{path}:{number}: not a result record (no string 'id'); remove the line or "
                                      "pass --new")
            records.append(record)
    return records
