"""The review database: migrations, the audit trail, import, export (suite samples, CSV, WebVTT), a kill -9 of
the server during reviews, and the same queries on a real PostgreSQL server."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from review_server import EVIL, post_form, session, start_server, write_library

from medscope.agent.protocol import render_windows
from medscope.review import db
from medscope.review.cases import import_paths
from medscope.review.export import export_all
from medscope.suite.records import read_jsonl
from medscope.video.synthclin import SynthClinVideo


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory, synth_video: SynthClinVideo) -> dict[str, Path]:
    return write_library(tmp_path_factory.mktemp("library"), synth_video)


def test_migrations_run_once_and_a_newer_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite"
    engine = db.connect(str(path))
    assert db.migrate(engine) == db.MIGRATIONS[-1][0]  # again: nothing to do
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM schema_version").fetchone()[0] == len(db.MIGRATIONS)
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        conn.execute("INSERT INTO schema_version VALUES (99, 0)")
    with pytest.raises(db.DatabaseError, match="newer than this medscope"):
        db.connect(str(path))
    with pytest.raises(db.DatabaseError, match="postgresql"):
        db.connect("nosuchdialect://x")


def _exercise(engine: sa.engine.Engine, library: dict[str, Path], export_dir: Path) -> None:
    """Import, review twice, list, export: what every database backend must do alike."""
    report = import_paths(engine, [library["trace"], library["evil"]])
    assert report.added >= 3 and not report.skipped
    assert import_paths(engine, [library["trace"]]).added == 0  # importing again adds nothing
    rows, total = db.list_episodes(engine, db.Filters(verdict="right"))
    assert total == len(rows) >= 1 and all(r["verdict"] == "right" for r in rows)
    episode = rows[0]["id"]
    db.save_review(engine, db.Review(episode, "Dr A", "reject", ((1.0, 2.5),), "too early"))
    stored = db.save_review(engine, db.Review(episode, "Dr B", "accept", ((3.0, 7.25), (9.0, 11.0)),
                                              f"=HYPERLINK(\"x\") {EVIL}"))
    assert stored.revision == 2
    trail = db.audit_trail(engine, episode)
    assert [(a["reviewer"], a["action"]) for a in trail] == [("Dr A", "create"), ("Dr B", "update")]
    assert json.loads(trail[1]["before"])["decision"] == "reject"
    assert db.list_episodes(engine, db.Filters(reviewed="yes"))[1] == 1
    assert db.list_episodes(engine, db.Filters(reviewed="no"))[1] == db.counts(engine)["episodes"] - 1

    summary = export_all(engine, export_dir)
    assert summary["samples"] == 1
    [sample] = read_jsonl(export_dir / "samples.jsonl")
    assert sample.evidence == [[3.0, 7.25], [9.0, 11.0]]
    assert sample.answer == render_windows([(3.0, 7.25), (9.0, 11.0)])  # as the suite writes grounding answers
    assert sample.meta["verified"] == "human" and Path(sample.video).is_file()
    table = list(csv.DictReader(io.StringIO((export_dir / "reviews.csv").read_text())))
    assert [(r["start"], r["end"]) for r in table] == [("3.00", "7.25"), ("9.00", "11.00")]
    assert table[0]["comment"].startswith("'=HYPERLINK")  # a spreadsheet shows it, never runs it
    case_id = (db.get_episode(engine, episode) or {})["case_id"]
    text = (export_dir / f"case-{case_id}.vtt").read_text()
    assert text.startswith("WEBVTT\n") and "00:00:03.000 --> 00:00:07.250" in text
    assert "\n\n\n" not in text.split("-->", 1)[1]  # no empty line inside a cue


def test_sqlite_import_review_audit_and_export(library: dict[str, Path], tmp_path: Path) -> None:
    _exercise(db.connect(str(tmp_path / "r.sqlite")), library, tmp_path / "export")


def test_a_rejected_answer_without_windows_is_not_exported(library: dict[str, Path], tmp_path: Path) -> None:
    engine = db.connect(str(tmp_path / "r.sqlite"))
    import_paths(engine, [library["trace"]])
    db.save_review(engine, db.Review(1, "Dr A", "reject", (), "wrong event"))
    summary = export_all(engine, tmp_path / "export")
    assert summary["samples"] == 0 and summary["skipped"] == {"no evidence window": 1}


def test_a_missing_video_is_skipped_and_named(library: dict[str, Path], tmp_path: Path) -> None:
    trace = tmp_path / "moved.trace.jsonl"
    record = json.loads(library["trace"].read_text().splitlines()[0])
    trace.write_text(json.dumps(record | {"video": "/nowhere/gone.mp4"}) + "\n")
    report = import_paths(db.connect(str(tmp_path / "r.sqlite")), [trace])
    assert report.added == 0 and "gone.mp4" in report.skipped[0] and "--videos" in report.skipped[0]
    with pytest.raises(FileNotFoundError, match="no such file"):
        import_paths(db.connect(str(tmp_path / "r.sqlite")), [tmp_path / "absent"])


def test_kill_9_during_reviews_loses_no_committed_review(library: dict[str, Path], tmp_path: Path) -> None:
    database = tmp_path / "r.sqlite"
    server = start_server([library["trace"]], database)
    cookie, token = session(server)
    with sqlite3.connect(database) as conn:
        episodes = [e for (e,) in conn.execute("SELECT id FROM episodes")]
    committed: list[tuple[int, str]] = []
    stop = threading.Event()

    def review() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            episode = episodes[n % len(episodes)]
            try:
                status, _, _ = post_form(server, f"/episodes/{episode}/review",
                                         {"csrf": token, "reviewer": "Dr K", "decision": "accept",
                                          "windows": f"[[1, {1 + n}]]", "comment": f"review {n}"}, cookie=cookie)
            except OSError:
                return  # the server is gone
            if status == 303:  # the server answered after the commit
                committed.append((episode, f"review {n}"))

    writer = threading.Thread(target=review)
    writer.start()
    try:
        threading.Event().wait(1.5)  # a few dozen reviews in flight
    finally:
        os.kill(server.process.pid, signal.SIGKILL)
        server.process.wait()
        stop.set()
        writer.join()
    assert len(committed) >= 5
    with sqlite3.connect(database) as conn:
        comments = {c for (c,) in conn.execute("SELECT after FROM audit")}
        latest = dict(conn.execute("SELECT episode_id, comment FROM reviews").fetchall())
    stored = {json.loads(c)["comment"] for c in comments}
    assert {comment for _, comment in committed} <= stored  # every answered review is in the audit trail
    for episode in {e for e, _ in committed}:  # and the last answered one of each episode is current or newer
        last = [c for e, c in committed if e == episode][-1]
        assert int(latest[episode].split()[1]) >= int(last.split()[1])


# ---- PostgreSQL ---------------------------------------------------------------------------------------------
def _postgres_bin() -> Path | None:
    for folder in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file():
            return folder
    found = shutil.which("initdb")
    return Path(found).parent if found else None


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL cluster in a temporary folder on a free loopback port (run as an unprivileged
    user when the tests run as root, since PostgreSQL refuses root)."""
    pytest.importorskip("psycopg", reason="the postgres extra (psycopg) is not installed")
    binaries = _postgres_bin()
    if binaries is None:
        pytest.skip("no PostgreSQL server binaries (apt-get install postgresql; `make test` installs it as root)")
    # its own folder under the system temp, which the unprivileged user can reach (pytest's root-owned one not)
    folder = Path(tempfile.mkdtemp(prefix="medscope-postgres-"))
    run_as: list[str] = []
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            pytest.skip("running as root without runuser: PostgreSQL will not start as root")
        shutil.chown(folder, "nobody")
        folder.chmod(0o700)
        run_as = ["runuser", "-u", "nobody", "--"]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    data = folder / "data"
    made = subprocess.run([*run_as, str(binaries / "initdb"), "-D", str(data), "-U", "medscope", "--auth=trust",
                           "-E", "UTF8", "--no-locale"], capture_output=True, text=True, timeout=120)
    if made.returncode != 0:
        shutil.rmtree(folder, ignore_errors=True)
        pytest.fail(f"initdb failed: {made.stderr}")
    started = subprocess.run([*run_as, str(binaries / "pg_ctl"), "-D", str(data), "-w", "-l", str(folder / "log"),
                              "-o", f"-p {port} -k {folder} -c listen_addresses=127.0.0.1", "start"],
                             capture_output=True, text=True, timeout=120)
    if started.returncode != 0:
        pytest.fail(f"PostgreSQL did not start: {started.stderr}{(folder / 'log').read_text()}")
    try:
        yield f"postgresql+psycopg://medscope@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*run_as, str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True, timeout=120)
        shutil.rmtree(folder, ignore_errors=True)


def test_postgresql_import_review_audit_and_export(postgres_url: str, library: dict[str, Path],
                                                   tmp_path: Path) -> None:
    engine = db.connect(postgres_url)
    assert engine.dialect.name == "postgresql"
    _exercise(engine, library, tmp_path / "export")
    assert db.migrate(db.connect(postgres_url)) == db.MIGRATIONS[-1][0]
