"""The review workspace over real HTTP to a real `medscope review` process: range requests, clips for video a
browser cannot play, frames, path traversal, escaping, CSRF, the Host check, the token, filters and paging."""

from __future__ import annotations

import io
import re
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import av
import pytest
from PIL import Image
from review_server import EVIL, Server, post_form, session, start_server, write_library

from medscope.video.synthclin import SynthClinVideo


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory, synth_video: SynthClinVideo) -> dict[str, Path]:
    return write_library(tmp_path_factory.mktemp("library"), synth_video)


@pytest.fixture(scope="module")
def server(library: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    database = tmp_path_factory.mktemp("db") / "review.sqlite"
    running = start_server([library["trace"], library["evil"], library["ts_trace"]], database,
                           "--backend", "oracle")
    yield running
    running.stop()


def _case_of(server: Server, name: str) -> int:
    with sqlite3.connect(server.database) as conn:
        return int(conn.execute("SELECT id FROM cases WHERE name = ?", (name,)).fetchone()[0])


def test_video_is_served_with_range_requests(server: Server, synth_video: SynthClinVideo) -> None:
    data = synth_video.video_path.read_bytes()
    case = _case_of(server, synth_video.video_path.name)
    status, headers, body = server.request("GET", f"/cases/{case}/video")
    assert status == 200 and body == data and headers["accept-ranges"] == "bytes"
    assert headers["content-type"] == "video/mp4"

    status, headers, body = server.request("GET", f"/cases/{case}/video", headers={"Range": "bytes=100-1099"})
    assert status == 206
    assert headers["content-range"] == f"bytes 100-1099/{len(data)}"
    assert body == data[100:1100]

    status, headers, body = server.request("GET", f"/cases/{case}/video", headers={"Range": "bytes=-500"})
    assert status == 206 and body == data[-500:]

    status, headers, _ = server.request("GET", f"/cases/{case}/video",
                                        headers={"Range": f"bytes={len(data) + 10}-{len(data) + 20}"})
    assert status == 416
    assert headers["content-range"] == f"bytes */{len(data)}"


def test_a_ts_case_plays_as_transcoded_clips(server: Server, library: dict[str, Path]) -> None:
    case = _case_of(server, "case.ts")
    status, _, page = server.request("GET", f"/cases/{case}")
    assert status == 200
    assert b'id="clip-note"' in page and b'src="/cases/' not in page.split(b'id="player"')[1][:200]

    status, headers, body = server.request("GET", f"/cases/{case}/clip.mp4?start=10&end=20")
    assert status == 200 and headers["content-type"] == "video/mp4"
    clip = library["ts"].parent / "clip.mp4"
    clip.write_bytes(body)
    with av.open(str(clip)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        frames = [f.time for f in container.decode(stream)]
    assert len(frames) == 40  # 10 s at 4 fps
    assert frames[-1] == pytest.approx(9.75, abs=0.01)
    status, headers, part = server.request("GET", f"/cases/{case}/clip.mp4?start=10&end=20",
                                           headers={"Range": "bytes=0-99"})
    assert status == 206 and part == body[:100]  # the second request comes from the cache, byte for byte
    assert server.request("GET", f"/cases/{case}/clip.mp4?start=nan&end=20")[0] == 400
    assert server.request("GET", f"/cases/{case}/clip.mp4?start=30&end=20")[0] == 400


def test_frames_at_full_size_and_only_real_ones(server: Server, synth_video: SynthClinVideo) -> None:
    case = _case_of(server, synth_video.video_path.name)
    status, headers, body = server.request("GET", f"/cases/{case}/frames/37.jpg")
    assert status == 200 and headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(body)).size == (synth_video.annotation["width"], synth_video.annotation["height"])
    frames = synth_video.annotation["num_frames"]
    assert server.request("GET", f"/cases/{case}/frames/{frames}.jpg")[0] == 404
    assert server.request("GET", f"/cases/{case}/frames/-1.jpg")[0] == 404


@pytest.mark.parametrize("path", [
    "/cases/1/video/../../../../etc/passwd",
    "/cases/..%2f..%2fetc%2fpasswd/video",
    "/cases/999/video",
    "/static/../db.py",
    "/static/..%2fdb.py",
    "/static/%2e%2e/%2e%2e/review/db.py",
    "/export/..%2f..%2freview.sqlite",
    "/export/../review.sqlite",
    "/export/samples.jsonl",  # a fixed name, but nothing exported yet
    "/cases/1/frames/..%2f..%2fetc%2fpasswd.jpg",
])
def test_nothing_but_registered_videos_and_own_files_is_served(server: Server, path: str) -> None:
    status, _, body = server.request("GET", path)
    assert status in (400, 404), (status, body[:200])
    assert b"root:" not in body and b"sqlalchemy" not in body.lower() and b"SQLite format" not in body


def test_model_text_is_escaped_on_every_page(server: Server) -> None:
    with sqlite3.connect(server.database) as conn:
        episode, case = conn.execute("SELECT id, case_id FROM episodes WHERE answer = ?", (EVIL,)).fetchone()
    pages = [server.request("GET", f"/cases/{case}?episode={episode}")[2], server.request("GET", "/")[2]]
    for page in pages:
        assert EVIL.encode() not in page
        assert b"<script>alert" not in page and b"<img src=x" not in page
        assert b"&lt;script&gt;alert(" in page
    scripts = re.findall(rb"<script[^>]*>", pages[0])
    assert all(b'src="/static/' in s or b'type="application/json"' in s for s in scripts), scripts


def test_every_response_carries_the_browser_guards(server: Server) -> None:
    status, headers, _ = server.request("GET", "/")
    assert status == 200
    assert "script-src 'self'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY" and headers["x-content-type-options"] == "nosniff"
    assert "research use only" in server.request("GET", "/")[2].decode().lower()


def test_review_posts_need_the_csrf_token_of_the_session(server: Server) -> None:
    cookie, token = session(server)
    fields = {"reviewer": "Dr A", "decision": "accept", "windows": "[[10, 20]]", "comment": "ok"}
    with sqlite3.connect(server.database) as conn:
        episode = conn.execute("SELECT min(id) FROM episodes").fetchone()[0]
    path = f"/episodes/{episode}/review"
    assert post_form(server, path, fields, cookie=cookie)[0] == 403  # no token
    assert post_form(server, path, fields | {"csrf": "0" * 64}, cookie=cookie)[0] == 403  # a made-up one
    other_cookie, _ = session(server)
    assert post_form(server, path, fields | {"csrf": token}, cookie=other_cookie)[0] == 403  # another session's
    assert post_form(server, path, fields | {"csrf": token}, cookie=cookie,
                     extra_headers={"Origin": "http://evil.example"})[0] == 403
    with sqlite3.connect(server.database) as conn:
        assert conn.execute("SELECT count(*) FROM reviews").fetchone()[0] == 0

    status, headers, _ = post_form(server, path, fields | {"csrf": token}, cookie=cookie)
    assert status == 303 and "saved=1" in headers["location"]
    with sqlite3.connect(server.database) as conn:
        assert conn.execute("SELECT reviewer, decision, windows FROM reviews WHERE episode_id = ?",
                            (episode,)).fetchone() == ("Dr A", "accept", "[[10.0, 20.0]]")
        assert conn.execute("SELECT action FROM audit WHERE episode_id = ?", (episode,)).fetchall() == [("create",)]

    bad = post_form(server, path, fields | {"csrf": token, "windows": "[[20, 10]]"}, cookie=cookie)
    assert bad[0] == 400 and b"end after it starts" in bad[2]
    assert post_form(server, path, fields | {"csrf": token, "windows": "[[0, 1e9]]"}, cookie=cookie)[0] == 400
    assert post_form(server, path, fields | {"csrf": token, "decision": "maybe"}, cookie=cookie)[0] == 400
    assert post_form(server, path, fields | {"csrf": token, "reviewer": " "}, cookie=cookie)[0] == 400
    assert post_form(server, "/export", {}, cookie=cookie)[0] == 403
    assert post_form(server, "/cases/1/ask", {"question": "When?"}, cookie=cookie)[0] == 403


def test_a_request_for_another_host_is_refused(server: Server) -> None:
    # DNS rebinding: a page of evil.example whose name now resolves to 127.0.0.1
    status, _, body = server.request("GET", "/", headers={"Host": f"evil.example:{server.port}"})
    assert status == 400 and b"unknown Host" in body


def test_filters_and_paging(server: Server) -> None:
    def ids(query: str) -> list[str]:
        status, _, page = server.request("GET", "/?" + query)
        assert status == 200
        return re.findall(r'<td><a href="/cases/\d+\?episode=(\d+)">\1</a>', page.decode())

    with sqlite3.connect(server.database) as conn:
        by_verdict = dict(conn.execute("SELECT verdict, count(*) FROM episodes GROUP BY verdict").fetchall())
        grounding = conn.execute("SELECT count(*) FROM episodes WHERE task = 'grounding'").fetchone()[0]
        total = conn.execute("SELECT count(*) FROM episodes").fetchone()[0]
    assert by_verdict.get("right", 0) >= 2 and total >= 4  # the oracle's answers, and the others
    assert len(ids("verdict=right")) == by_verdict["right"]
    assert len(ids("verdict=wrong")) == by_verdict.get("wrong", 0)
    assert 0 < len(ids("task=grounding")) == grounding < total
    pages = [ids(f"per_page=3&page={page}") for page in range(1, -(-total // 3) + 1)]
    shown = [i for page in pages for i in page]
    assert sorted(shown, key=int, reverse=True) == shown and len(set(shown)) == total  # newest first, each once
    assert ids(f"per_page=3&page={len(pages) + 5}") == []
    reviewed = set(ids("reviewed=yes"))
    assert reviewed.isdisjoint(ids("reviewed=no"))


def test_the_token_guards_every_request(library: dict[str, Path], tmp_path: Path) -> None:
    refused = subprocess.run([sys.executable, "-m", "medscope.cli", "review", str(library["trace"]), "--db",
                              str(tmp_path / "r.sqlite"), "--host", "0.0.0.0"], capture_output=True, text=True,
                             timeout=60, env={"PATH": "/usr/bin:/bin"})
    assert refused.returncode == 2 and "--token" in refused.stderr, refused.stderr

    token = "s3cret-token-for-the-test"
    running = start_server([library["trace"]], tmp_path / "t.sqlite", "--token", token)
    try:
        assert running.url.endswith(f"?token={token}")
        assert running.request("GET", "/")[0] == 401
        assert running.request("GET", "/cases/1/video")[0] == 401
        assert running.request("GET", "/?token=wrong")[0] == 401
        status, headers, _ = running.request("GET", f"/?token={token}")
        assert status == 303 and "token" not in headers["location"]
        cookie = re.search(r"medscope_token=[^;]+", headers["set-cookie"])
        assert cookie and "httponly" in headers["set-cookie"].lower()
        assert running.request("GET", "/", headers={"Cookie": cookie.group(0)})[0] == 200
        assert running.request("GET", "/", headers={"Authorization": f"Bearer {token}"})[0] == 200
        assert running.request("GET", "/", headers={"Authorization": "Bearer nope"})[0] == 401
    finally:
        running.stop()
