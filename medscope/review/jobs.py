"""Questions asked from the workspace: the agent runs in a background worker, one episode at a time.

``Jobs.submit`` records the question (table ``jobs``) and queues it; one worker thread runs ``run_episode`` with
the configured backend (loaded once, on the first question: a local model answers one forward at a time) and
records each turn as a progress event the page polls for. The finished episode joins the case like an imported
one. A job that fails says why (``error``); jobs a stopped server left unfinished are marked ``interrupted``
when the next one starts.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from medscope.agent.ask import load_reference
from medscope.agent.backends import Backend, BackendOptions, make_backend
from medscope.agent.backends.base import BackendError
from medscope.agent.loop import AgentConfig, run_episode
from medscope.agent.trace import TurnRecord
from medscope.report.timeline import is_grounding, verdict
from medscope.review import db
from medscope.video.errors import VideoError

log = logging.getLogger(__name__)
SCRIPTED = ("oracle", "teacher", "uniform", "random")
_MAX_EVENTS = 200


@dataclass(frozen=True)
class AskSettings:
    """The backend the workspace's questions run on (the review command's flags)."""

    backend: str
    model: str | None
    base_url: str | None
    options: BackendOptions
    agent: AgentConfig


@dataclass(frozen=True)
class _Task:
    job_id: int
    case_id: int
    video: Path
    question: str


class Jobs:
    """The queue and its one worker thread (started on the first question)."""

    def __init__(self, engine: Engine, settings: AskSettings) -> None:
        self.engine = engine
        self.settings = settings
        self._queue: queue.Queue[_Task | None] = queue.Queue()
        self._events: dict[int, list[str]] = {}
        self._lock = threading.Lock()
        self._worker: threading.Thread | None = None
        self._backend: Backend | None = None
        db.interrupt_unfinished_jobs(engine)

    def submit(self, case_id: int, video: Path, question: str) -> int:
        question = question.strip()
        if not question:
            raise ValueError("the question is empty")
        job_id = db.add_job(self.engine, case_id, question)
        self._event(job_id, f"queued: {question}")
        with self._lock:
            if self._worker is None:
                self._worker = threading.Thread(target=self._work, name="medscope-review-jobs", daemon=True)
                self._worker.start()
        self._queue.put(_Task(job_id, case_id, video, question))
        return job_id

    def progress(self, job_id: int) -> dict[str, Any] | None:
        """The job's row and its progress events, or None for an unknown job."""
        row = db.get_job(self.engine, job_id)
        if row is None:
            return None
        with self._lock:
            events = list(self._events.get(job_id, []))
        return {"id": job_id, "status": row["status"], "error": row["error"], "episode_id": row["episode_id"],
                "case_id": row["case_id"], "question": row["question"], "events": events}

    def close(self) -> None:
        if self._worker is not None:
            self._queue.put(None)
            self._worker.join(timeout=30)

    def _event(self, job_id: int, text: str) -> None:
        with self._lock:
            self._events.setdefault(job_id, []).append(text)
            del self._events[job_id][:-_MAX_EVENTS]

    def _work(self) -> None:
        while (task := self._queue.get()) is not None:
            db.update_job(self.engine, task.job_id, status="running")
            try:
                episode_id = self._run(task)
            except (VideoError, BackendError, ValueError, OSError) as exc:
                log.warning("job %d failed: %s", task.job_id, exc)
                self._event(task.job_id, f"failed: {exc}")
                db.update_job(self.engine, task.job_id, status="failed", error=str(exc), finished_at=time.time())
            else:
                self._event(task.job_id, "done")
                db.update_job(self.engine, task.job_id, status="done", episode_id=episode_id,
                              finished_at=time.time())

    def _run(self, task: _Task) -> int:
        settings = self.settings
        reference: dict[str, Any] | None = None
        if settings.backend in SCRIPTED:  # they answer from ground truth: the SynthClin annotation beside the video
            ref, reference = load_reference(task.video, task.question, None)
            backend = make_backend(settings.backend, reference=ref)
        else:
            if self._backend is None:
                self._event(task.job_id, f"loading {settings.model or settings.backend} …")
                self._backend = make_backend(settings.backend, model=settings.model, base_url=settings.base_url,
                                             options=settings.options)
            backend = self._backend
        self._event(task.job_id, "running the agent")

        def on_turn(turn: TurnRecord) -> None:
            self._event(task.job_id, _turn_text(turn))

        episode = run_episode(backend, task.video, task.question, settings.agent, reference=reference,
                              on_turn=on_turn)
        with self.engine.begin() as conn:
            episode_id = db.add_episode(
                conn, case_id=task.case_id, key=f"ask:{uuid.uuid4().hex}",
                task=episode.task or ("grounding" if is_grounding(episode) else ""), question=episode.question,
                answer=episode.answer, verdict=verdict(episode),
                run=episode.backend.get("model") or settings.backend, source="ask", trace=episode.to_dict())
        assert episode_id is not None  # a fresh key is never already there
        return episode_id


def _turn_text(turn: TurnRecord) -> str:
    """One line per turn, as ``medscope ask`` prints them."""
    seconds = turn.generate_seconds + turn.tool_seconds
    if turn.kind == "tool_call":
        seen = f"{len(turn.observation.timestamps)} frames" if turn.observation else f"error: {turn.error}"
        return f"turn {turn.index + 1}: {turn.tool} → {seen} ({seconds:.1f} s)"
    if turn.kind == "answer":
        return f"turn {turn.index + 1}: answer{' (forced)' if turn.forced else ''} ({seconds:.1f} s)"
    return f"turn {turn.index + 1}: format error: {turn.error} ({seconds:.1f} s)"
