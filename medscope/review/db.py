"""The review database: cases, episodes, reviews and the audit trail, on SQLAlchemy Core.

SQLite by default (one file; WAL journal, ``synchronous=FULL``: a review whose request returned is on disk,
and a ``kill -9`` of the server loses nothing committed), any SQLAlchemy URL otherwise (PostgreSQL through
``psycopg``: ``postgresql+psycopg://user@host/db``, the ``postgres`` extra).

- ``cases``: one video (its path on this machine, duration, where it was imported from).
- ``episodes``: one agent episode on a case (the trace as the agent wrote it, its task, answer, verdict).
- ``reviews``: a reviewer's current judgement of an episode (accept or reject, corrected windows, comment).
- ``audit``: append-only: who changed which review, when, from what to what. Nothing updates or deletes it.
- ``jobs``: questions asked from the workspace and how their agent runs went.

The schema is versioned: ``schema_version`` holds the migrations applied, ``MIGRATIONS`` the ordered list;
opening a database applies the missing ones in one transaction, and refuses a database from a newer medscope.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

metadata = sa.MetaData()

schema_version = sa.Table(
    "schema_version", metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("applied_at", sa.Float, nullable=False),
)
cases = sa.Table(
    "cases", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("video", sa.Text, nullable=False, unique=True),  # absolute path: served by id, never by path
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("duration", sa.Float, nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)
episodes = sa.Table(
    "episodes", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("case_id", sa.Integer, sa.ForeignKey("cases.id"), nullable=False, index=True),
    sa.Column("key", sa.Text, nullable=False, unique=True),  # what makes a re-import of the same line a no-op
    sa.Column("task", sa.Text, nullable=False),  # "" when the trace names none (medscope ask)
    sa.Column("question", sa.Text, nullable=False),
    sa.Column("answer", sa.Text),
    sa.Column("verdict", sa.Text, nullable=False),
    sa.Column("run", sa.Text, nullable=False),  # the policy or eval run that answered
    sa.Column("source", sa.Text, nullable=False),  # the file it came from, or "ask"
    sa.Column("trace", sa.Text, nullable=False),  # the episode record, JSON
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Index("ix_episodes_task_verdict", "task", "verdict"),
)
reviews = sa.Table(
    "reviews", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("episode_id", sa.Integer, sa.ForeignKey("episodes.id"), nullable=False, unique=True),
    sa.Column("reviewer", sa.Text, nullable=False),
    sa.Column("decision", sa.Text, nullable=False),  # accept | reject
    sa.Column("windows", sa.Text, nullable=False),  # the corrected evidence windows, JSON [[s, e], ...]
    sa.Column("comment", sa.Text, nullable=False),
    sa.Column("revision", sa.Integer, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)
audit = sa.Table(
    "audit", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("reviewer", sa.Text, nullable=False),
    sa.Column("action", sa.Text, nullable=False),
    sa.Column("episode_id", sa.Integer, sa.ForeignKey("episodes.id"), nullable=False, index=True),
    sa.Column("before", sa.Text),  # the review before the change, JSON (null for the first)
    sa.Column("after", sa.Text, nullable=False),
)
jobs = sa.Table(
    "jobs", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("case_id", sa.Integer, sa.ForeignKey("cases.id"), nullable=False),
    sa.Column("question", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),  # queued | running | done | failed | interrupted
    sa.Column("error", sa.Text),
    sa.Column("episode_id", sa.Integer, sa.ForeignKey("episodes.id")),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("finished_at", sa.Float),
)
_V1_TABLES = (cases, episodes, reviews, audit, jobs)


def _v1(conn: Connection) -> None:
    metadata.create_all(conn, tables=list(_V1_TABLES))


# Ordered; a database at version N gets migrations N+1... Append, never edit one that has shipped.
MIGRATIONS: tuple[tuple[int, Callable[[Connection], None]], ...] = ((1, _v1),)
DECISIONS = ("accept", "reject")


class DatabaseError(ValueError):
    """The database cannot be used as asked; the message says why and what to do."""


def database_url(value: str) -> str:
    """A SQLAlchemy URL; a plain path means a SQLite file there."""
    if "://" in value:
        return value
    return f"sqlite:///{Path(value).expanduser().resolve()}"


def connect(url: str) -> Engine:
    """An engine on ``url`` with the schema migrated to this medscope's version."""
    url = database_url(url)
    try:
        engine = sa.create_engine(url, future=True)
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ImportError) as exc:
        raise DatabaseError(f"--db {url}: {exc}. Use a file path (SQLite) or e.g. postgresql+psycopg://user@host/db "
                            "(pip install 'medscope[postgres]')") from exc
    if engine.dialect.name == "sqlite":
        Path(engine.url.database or "review.sqlite").parent.mkdir(parents=True, exist_ok=True)
        sa.event.listen(engine, "connect", _sqlite_pragmas)
    try:
        migrate(engine)
    except sa.exc.OperationalError as exc:
        raise DatabaseError(f"--db {engine.url.render_as_string(hide_password=True)}: cannot open it ({exc.orig})") \
            from exc
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the writer (the page loads during a review)
    cursor.execute("PRAGMA synchronous=FULL")  # a commit is on disk before the request returns
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def migrate(engine: Engine) -> int:
    """Apply the migrations the database lacks; return its version."""
    latest = MIGRATIONS[-1][0]
    with engine.begin() as conn:
        schema_version.create(conn, checkfirst=True)
        current = conn.execute(sa.select(sa.func.max(schema_version.c.version))).scalar() or 0
        if current > latest:
            raise DatabaseError(f"the review database is at schema version {current}, newer than this medscope's "
                                f"{latest}: upgrade medscope, or use another --db")
        for version, step in MIGRATIONS:
            if version > current:
                step(conn)
                conn.execute(schema_version.insert().values(version=version, applied_at=time.time()))
    return latest


# ---- writing ------------------------------------------------------------------------------------------------
def add_case(conn: Connection, *, video: str, name: str, duration: float, source: str) -> int:
    """The case of ``video`` (created the first time it is seen)."""
    found = conn.execute(sa.select(cases.c.id).where(cases.c.video == video)).scalar()
    if found is not None:
        return int(found)
    return _inserted(conn.execute(cases.insert().values(video=video, name=name, duration=duration, source=source,
                                                        created_at=time.time())))


def add_episode(conn: Connection, *, case_id: int, key: str, task: str, question: str, answer: str | None,
                verdict: str, run: str, source: str, trace: dict[str, Any]) -> int | None:
    """Insert an episode; None when one with ``key`` is already there (a re-import)."""
    if conn.execute(sa.select(episodes.c.id).where(episodes.c.key == key)).scalar() is not None:
        return None
    return _inserted(conn.execute(episodes.insert().values(
        case_id=case_id, key=key, task=task, question=question, answer=answer, verdict=verdict, run=run,
        source=source, trace=json.dumps(trace, ensure_ascii=False), created_at=time.time(),
    )))


def _inserted(result: sa.CursorResult[Any]) -> int:
    key = result.inserted_primary_key
    assert key is not None  # an INSERT of one row always has one
    return int(key[0])


@dataclass(frozen=True)
class Review:
    episode_id: int
    reviewer: str
    decision: str
    windows: tuple[tuple[float, float], ...]
    comment: str
    revision: int = 0
    updated_at: float = 0.0

    def as_record(self) -> dict[str, Any]:
        return {"reviewer": self.reviewer, "decision": self.decision, "windows": [list(w) for w in self.windows],
                "comment": self.comment, "revision": self.revision}


def save_review(engine: Engine, review: Review) -> Review:
    """Store ``review`` as the episode's current review and append the change to the audit trail, in one
    transaction; returns it as stored (its revision counts the changes)."""
    if review.decision not in DECISIONS:
        raise DatabaseError(f"decision {review.decision!r}: use one of {', '.join(DECISIONS)}")
    if not review.reviewer.strip():
        raise DatabaseError("a review needs the reviewer's name")
    with engine.begin() as conn:
        if conn.execute(sa.select(episodes.c.id).where(episodes.c.id == review.episode_id)).scalar() is None:
            raise DatabaseError(f"no episode {review.episode_id}")
        before = _review_row(conn, review.episode_id)
        stored = Review(review.episode_id, review.reviewer.strip(), review.decision, review.windows, review.comment,
                        (before.revision if before else 0) + 1, time.time())
        values = {"reviewer": stored.reviewer, "decision": stored.decision, "comment": stored.comment,
                  "windows": json.dumps([list(w) for w in stored.windows]), "revision": stored.revision,
                  "updated_at": stored.updated_at}
        if before is None:
            conn.execute(reviews.insert().values(episode_id=review.episode_id, **values))
        else:
            conn.execute(reviews.update().where(reviews.c.episode_id == review.episode_id).values(**values))
        conn.execute(audit.insert().values(
            at=stored.updated_at, reviewer=stored.reviewer, action="create" if before is None else "update",
            episode_id=review.episode_id, before=json.dumps(before.as_record()) if before else None,
            after=json.dumps(stored.as_record())))
    return stored


def _review_row(conn: Connection, episode_id: int) -> Review | None:
    row = conn.execute(sa.select(reviews).where(reviews.c.episode_id == episode_id)).mappings().first()
    if row is None:
        return None
    return Review(row["episode_id"], row["reviewer"], row["decision"],
                  tuple((float(s), float(e)) for s, e in json.loads(row["windows"])), row["comment"],
                  row["revision"], row["updated_at"])


# ---- reading ------------------------------------------------------------------------------------------------
@contextmanager
def reading(engine: Engine) -> Iterator[Connection]:
    with engine.connect() as conn:
        yield conn


def get_review(engine: Engine, episode_id: int) -> Review | None:
    with reading(engine) as conn:
        return _review_row(conn, episode_id)


def get_case(engine: Engine, case_id: int) -> dict[str, Any] | None:
    with reading(engine) as conn:
        row = conn.execute(sa.select(cases).where(cases.c.id == case_id)).mappings().first()
        return dict(row) if row else None


def case_episodes(engine: Engine, case_id: int) -> list[dict[str, Any]]:
    """The case's episodes, oldest first, each with its review's decision (or None)."""
    query = (sa.select(episodes.c.id, episodes.c.task, episodes.c.question, episodes.c.answer, episodes.c.verdict,
                       episodes.c.run, reviews.c.decision)
             .select_from(episodes.outerjoin(reviews, reviews.c.episode_id == episodes.c.id))
             .where(episodes.c.case_id == case_id).order_by(episodes.c.id))
    with reading(engine) as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


def get_episode(engine: Engine, episode_id: int) -> dict[str, Any] | None:
    with reading(engine) as conn:
        row = conn.execute(sa.select(episodes).where(episodes.c.id == episode_id)).mappings().first()
        return dict(row) if row else None


def audit_trail(engine: Engine, episode_id: int) -> list[dict[str, Any]]:
    with reading(engine) as conn:
        rows = conn.execute(sa.select(audit).where(audit.c.episode_id == episode_id).order_by(audit.c.id))
        return [dict(r) for r in rows.mappings()]


@dataclass(frozen=True)
class Filters:
    """What the case list shows: "" means any."""

    task: str = ""
    verdict: str = ""
    reviewed: str = ""  # "" | "yes" | "no"
    page: int = 1
    per_page: int = 50


def list_episodes(engine: Engine, filters: Filters) -> tuple[list[dict[str, Any]], int]:
    """One page of episodes (newest first) with their case and review, and how many match in all.

    Indexed on task and verdict, paged by LIMIT/OFFSET over the primary key: a page costs the same with 10,000
    episodes as with 10 (``benchmarks/review_workspace.py``).
    """
    joined = (episodes.join(cases, cases.c.id == episodes.c.case_id)
              .outerjoin(reviews, reviews.c.episode_id == episodes.c.id))
    where: list[Any] = []
    if filters.task:
        where.append(episodes.c.task == filters.task)
    if filters.verdict:
        where.append(episodes.c.verdict == filters.verdict)
    if filters.reviewed == "yes":
        where.append(reviews.c.id.is_not(None))
    elif filters.reviewed == "no":
        where.append(reviews.c.id.is_(None))
    page = max(1, filters.page)
    query = (sa.select(episodes.c.id, episodes.c.case_id, episodes.c.task, episodes.c.question, episodes.c.answer,
                       episodes.c.verdict, episodes.c.run, cases.c.name.label("video_name"),
                       reviews.c.decision, reviews.c.reviewer)
             .select_from(joined).where(*where).order_by(episodes.c.id.desc())
             .limit(filters.per_page).offset((page - 1) * filters.per_page))
    count = sa.select(sa.func.count()).select_from(joined).where(*where)
    with reading(engine) as conn:
        rows = [dict(r) for r in conn.execute(query).mappings()]
        return rows, int(conn.execute(count).scalar() or 0)


def tasks(engine: Engine) -> list[str]:
    with reading(engine) as conn:
        return [t for (t,) in conn.execute(sa.select(episodes.c.task).distinct().order_by(episodes.c.task))]


def reviewed_episodes(engine: Engine, case_id: int | None = None) -> list[dict[str, Any]]:
    """Every reviewed episode with its case and review (for export), oldest first."""
    query = (sa.select(episodes.c.id.label("episode_id"), episodes.c.task, episodes.c.question, episodes.c.answer,
                       episodes.c.trace, cases.c.id.label("case_id"), cases.c.video, cases.c.duration,
                       reviews.c.reviewer, reviews.c.decision, reviews.c.windows, reviews.c.comment,
                       reviews.c.updated_at)
             .select_from(reviews.join(episodes, episodes.c.id == reviews.c.episode_id)
                          .join(cases, cases.c.id == episodes.c.case_id))
             .order_by(cases.c.id, episodes.c.id))
    if case_id is not None:
        query = query.where(cases.c.id == case_id)
    with reading(engine) as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


# ---- jobs ---------------------------------------------------------------------------------------------------
def add_job(engine: Engine, case_id: int, question: str) -> int:
    with engine.begin() as conn:
        return _inserted(conn.execute(jobs.insert().values(case_id=case_id, question=question, status="queued",
                                                           created_at=time.time())))


def update_job(engine: Engine, job_id: int, **values: Any) -> None:
    with engine.begin() as conn:
        conn.execute(jobs.update().where(jobs.c.id == job_id).values(**values))


def get_job(engine: Engine, job_id: int) -> dict[str, Any] | None:
    with reading(engine) as conn:
        row = conn.execute(sa.select(jobs).where(jobs.c.id == job_id)).mappings().first()
        return dict(row) if row else None


def interrupt_unfinished_jobs(engine: Engine) -> int:
    """Jobs a stopped server left queued or running can never finish: mark them interrupted."""
    with engine.begin() as conn:
        return int(conn.execute(jobs.update().where(jobs.c.status.in_(("queued", "running")))
                                .values(status="interrupted", finished_at=time.time())).rowcount or 0)


def counts(engine: Engine) -> dict[str, int]:
    with reading(engine) as conn:
        return {name: int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar() or 0)
                for name, table in (("cases", cases), ("episodes", episodes), ("reviews", reviews))}


def parse_windows_text(text: str, duration: float) -> tuple[tuple[float, float], ...]:
    """Windows typed or sent by the page: JSON ``[[s, e], ...]``; each must lie in [0, duration] with s < e."""
    try:
        value = json.loads(text or "[]")
    except ValueError as exc:
        raise DatabaseError(f"windows {text[:80]!r}: not JSON; send [[start, end], ...] in seconds") from exc
    if not isinstance(value, list):
        raise DatabaseError("windows: send a list [[start, end], ...] in seconds")
    out: list[tuple[float, float]] = []
    for item in value:
        if not (isinstance(item, list) and len(item) == 2 and all(isinstance(v, int | float) and not
                                                                    isinstance(v, bool) for v in item)):
            raise DatabaseError(f"window {item!r}: send [start, end] in seconds")
        start, end = round(float(item[0]), 2), round(float(item[1]), 2)
        if not 0 <= start < end <= duration + 1e-6:
            raise DatabaseError(f"window [{start:g}, {end:g}]: it must lie inside the video [0, {duration:g}] s "
                                "and end after it starts")
        out.append((start, end))
    return tuple(sorted(out))

