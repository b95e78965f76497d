"""What the review workspace's tests share: a case library made from a real SynthClin video and real agent
episodes, and a real `medscope review` server process on a free loopback port."""

from __future__ import annotations

import http.client
import json
import os
import re
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import av

from medscope.agent.backends import make_backend
from medscope.agent.backends.scripted import synthclin_reference
from medscope.agent.loop import AgentConfig, run_episode
from medscope.agent.trace import append_episode, read_episodes
from medscope.video.synthclin import SynthClinVideo

EVIL = '<script>alert("x")</script>"><img src=x onerror=alert(1)>'


def grounding_question(label: str) -> str:
    return f"When does {label.replace('_', ' ')} happen? Answer with the time window(s) in seconds."


def write_library(folder: Path, video: SynthClinVideo) -> dict[str, Path]:
    """A trace of the oracle (right answers) and of uniform sampling on two events of ``video``, one episode
    whose text is an attack on the page, and a .ts remux of the video (a file browsers cannot play)."""
    folder.mkdir(parents=True, exist_ok=True)
    events = video.annotation["events"][:2]
    trace = folder / "ask.trace.jsonl"
    for policy in ("oracle", "uniform"):
        for event in events:
            question = grounding_question(event["label"])
            ref = synthclin_reference(video.annotation, question)
            episode = run_episode(make_backend(policy, reference=ref), video.video_path, question, AgentConfig(),
                                  reference={"answer": ref.answer, "evidence": [list(w) for w in ref.windows]})
            append_episode(trace, episode)
    evil = folder / "evil.trace.jsonl"
    first = next(read_episodes(trace))
    append_episode(evil, replace(first, question=f"What is {EVIL}?", answer=EVIL, id=EVIL,
                                 turns=[replace(t, think=EVIL, raw=EVIL) for t in first.turns]))
    ts = folder / "remux" / "case.ts"
    remux(video.video_path, ts)
    ts_trace = folder / "remux" / "ts.trace.jsonl"
    append_episode(ts_trace, replace(first, video=str(ts)))
    return {"trace": trace, "evil": evil, "ts": ts, "ts_trace": ts_trace}


def remux(source: Path, target: Path) -> None:
    """The same H.264 packets in MPEG-TS, as an operating-room recorder writes them."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(source)) as src, av.open(str(target), mode="w", format="mpegts") as dst:
        stream = src.streams.video[0]
        out = dst.add_stream_from_template(stream)
        for packet in src.demux(stream):
            if packet.dts is None:
                continue
            packet.stream = out
            dst.mux(packet)


@dataclass
class Server:
    process: subprocess.Popen[str]
    url: str  # http://127.0.0.1:PORT/ (and ?token=... when started with one)
    database: Path

    @property
    def port(self) -> int:
        return int(urllib.parse.urlsplit(self.url).port or 0)

    def request(self, method: str, path: str, *, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            data = response.read()
            headers_out: dict[str, str] = {}
            for name, value in response.getheaders():  # several Set-Cookie: keep them all, joined
                key = name.lower()
                headers_out[key] = f"{headers_out[key]}\n{value}" if key in headers_out else value
            return response.status, headers_out, data
        finally:
            connection.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_server(cases: Sequence[str | Path], database: Path, *extra: str, env: dict[str, str] | None = None,
                 timeout: float = 60.0) -> Server:
    """``medscope review CASES --db DATABASE --port 0 EXTRA...``; returns once it answers."""
    command = [sys.executable, "-m", "medscope.cli", "review", *map(str, cases), "--db", str(database),
               "--port", "0", *extra]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, **(env or {})})
    deadline = time.monotonic() + timeout
    lines = []
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        found = re.search(r"(http://127\.0\.0\.1:\d+/\S*)", line)
        if found:
            server = Server(process, found.group(1), database)
            _drain(process)
            return server
    process.kill()
    raise RuntimeError("medscope review did not start:\n" + "".join(lines) + (process.stdout.read() or ""))


def _drain(process: subprocess.Popen[str]) -> None:
    """Keep reading the server's output so a full pipe never blocks it."""
    import threading

    def read() -> None:
        assert process.stdout is not None
        for _ in process.stdout:
            pass

    threading.Thread(target=read, daemon=True).start()


def session(server: Server, path: str = "/") -> tuple[str, str]:
    """A browser's session: the cookie the server set and the CSRF token of the page at ``path``."""
    status, headers, body = server.request("GET", path)
    assert status == 200, (status, body[:300])
    cookie = re.search(r"medscope_session=([^;]+)", headers.get("set-cookie", ""))
    assert cookie, headers
    token = re.search(rb'name="csrf-token" content="([0-9a-f]+)"', body)
    assert token, body[:500]
    return f"medscope_session={cookie.group(1)}", token.group(1).decode()


def post_form(server: Server, path: str, fields: dict[str, str], *, cookie: str = "",
              extra_headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    headers = {"Content-Type": "application/x-www-form-urlencoded", **({"Cookie": cookie} if cookie else {}),
               **(extra_headers or {})}
    return server.request("POST", path, body=urllib.parse.urlencode(fields).encode(), headers=headers)


def json_of(body: bytes) -> dict:
    return dict(json.loads(body))
