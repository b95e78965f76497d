"""The review workspace with 10,000 episodes: case-list and case-page times over real HTTP.

Generates one SynthClin video, runs the oracle and the uniform policy on its questions for real episodes, then
fills a fresh SQLite database with ``--episodes`` copies spread over ``--cases`` cases (every task and verdict
mixed, a tenth reviewed), starts ``medscope review --db`` and times, over ``--repeats`` requests each: the first
page of the case list, a filtered list, the last page (the deepest OFFSET), a case page with its timeline and
frames list, and a range request of the video. Prints a table; writes JSON to ``--out``.

    python benchmarks/review_workspace.py --out benchmarks/results
"""

from __future__ import annotations

import argparse
import http.client
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from review_server import grounding_question, start_server

from medscope.agent.backends import make_backend
from medscope.agent.backends.scripted import synthclin_reference
from medscope.agent.loop import AgentConfig, run_episode
from medscope.io import write_text_atomic
from medscope.review import db
from medscope.video.synthclin import SynthClinConfig, generate

TASKS = ("grounding", "grounded_vqa", "mcq", "caption", "")


def fill(database: Path, video: Path, episodes: list[dict], count: int, cases: int) -> None:
    engine = db.connect(str(database))
    with engine.begin() as conn:
        case_ids = [db.add_case(conn, video=f"{video}" if k == 0 else f"{video}#{k}", name=f"case{k:03d}.mp4",
                                duration=episodes[0]["duration"], source="benchmark") for k in range(cases)]
        for n in range(count):
            trace = episodes[n % len(episodes)]
            db.add_episode(conn, case_id=case_ids[n % cases], key=f"bench:{n}", task=TASKS[n % len(TASKS)],
                           question=f"{trace['question']} #{n}", answer=trace["answer"],
                           verdict=("right", "partly", "wrong", "unknown")[n % 4], run="benchmark",
                           source="benchmark", trace=trace)
    for n in range(0, count, 10):
        db.save_review(engine, db.Review(n + 1, "Dr Bench", "accept", ((1.0, 2.0),), ""))


def timed(port: int, path: str, repeats: int, headers: dict[str, str] | None = None) -> dict[str, float]:
    times = []
    size = 0
    for _ in range(repeats):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        started = time.perf_counter()
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        body = response.read()
        times.append((time.perf_counter() - started) * 1000)
        assert response.status in (200, 206), (path, response.status, body[:200])
        size = len(body)
        connection.close()
    return {"median_ms": round(statistics.median(times), 1), "p90_ms": round(sorted(times)[int(0.9 * len(times))], 1),
            "bytes": size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=10_000)
    parser.add_argument("--cases", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="medscope-review-bench-") as tmp:
        video = generate(SynthClinConfig(duration_seconds=180.0, seed=3, events_per_10min=10.0), tmp)
        traces = []
        for policy in ("oracle", "uniform"):
            for event in video.annotation["events"]:
                question = grounding_question(event["label"])
                ref = synthclin_reference(video.annotation, question)
                episode = run_episode(make_backend(policy, reference=ref), video.video_path, question, AgentConfig(),
                                      reference={"answer": ref.answer, "evidence": [list(w) for w in ref.windows]})
                traces.append(episode.to_dict())
        database = Path(tmp) / "review.sqlite"
        started = time.perf_counter()
        fill(database, video.video_path, traces, args.episodes, args.cases)
        fill_seconds = time.perf_counter() - started
        server = start_server([], database)
        try:
            per_page = 50
            last = -(-args.episodes // per_page)
            rows = {
                "case list, page 1": timed(server.port, "/", args.repeats),
                "case list, verdict=wrong & not reviewed": timed(server.port, "/?verdict=wrong&reviewed=no",
                                                                 args.repeats),
                f"case list, last page ({last})": timed(server.port, f"/?page={last}", args.repeats),
                f"case page ({args.episodes // args.cases} episodes, timeline, frames)":
                    timed(server.port, "/cases/1?episode=1", args.repeats),
                "video, 1 MB range request": timed(server.port, "/cases/1/video", args.repeats,
                                                   {"Range": "bytes=0-1048575"}),
            }
        finally:
            server.stop()
    print(f"review workspace, {args.episodes} episodes in {args.cases} cases (SQLite, filled in "
          f"{fill_seconds:.1f} s), median of {args.repeats} requests:\n")
    print("| request | median ms | p90 ms | bytes |\n|---|---|---|---|")
    for name, row in rows.items():
        print(f"| {name} | {row['median_ms']} | {row['p90_ms']} | {row['bytes']} |")
    result = {"episodes": args.episodes, "cases": args.cases, "repeats": args.repeats,
              "fill_seconds": round(fill_seconds, 1), "machine": platform.platform(), "rows": rows}
    out = Path(args.out) / "review_workspace.json"
    write_text_atomic(out, json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
