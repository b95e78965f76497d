"""`medscope eval` against a served model: questions per second with concurrent workers, against the floor the
server's latency sets (workers / latency, every question one turn here).

A local OpenAI-compatible server (loopback only) answers every request after ``--latency`` seconds with a final
answer, so what is measured is medscope's side: decoding frames, encoding them, building requests, writing
results. Prints a table and writes ``benchmarks/results/eval_throughput.json``.
Run: ``python benchmarks/eval_throughput.py [--samples 48] [--latency 0.5]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from medscope.agent.backends import BackendOptions
from medscope.eval.runner import EvalConfig, evaluate
from medscope.io import write_text_atomic
from medscope.suite.records import Sample, write_jsonl
from medscope.video.synthclin import SynthClinConfig, generate

HERE = Path(__file__).parent


def serve(latency: float) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            time.sleep(latency)
            message = {"role": "assistant", "content": "<think>seen</think><answer>[10, 20]</answer>"}
            data = json.dumps({"id": "c", "object": "chat.completion", "created": 0, "model": "m",
                               "choices": [{"index": 0, "message": message, "finish_reason": "stop"}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=48)
    parser.add_argument("--latency", type=float, default=0.5, help="seconds the fake server takes per answer")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--out", default=str(HERE / "results"))
    args = parser.parse_args()
    server = serve(args.latency)
    url = f"http://127.0.0.1:{server.server_port}/v1"
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        videos = [generate(SynthClinConfig(duration_seconds=600.0, seed=s), work / "videos").video_path
                  for s in range(4)]
        samples = [Sample(id=f"q{k}", video=str(videos[k % len(videos)]), duration=600.0, question="When?",
                          answer="[10.00, 20.00]", task="grounding", evidence=[[10.0, 20.0]], source="bench")
                   for k in range(args.samples)]
        write_jsonl(work / "samples.jsonl", samples)
        for workers in args.workers:
            config = EvalConfig(samples=str(work / "samples.jsonl"), out=str(work / f"eval{workers}"),
                                backend="openai", model="m", base_url=url, baseline="none", workers=workers,
                                options=dataclasses.replace(BackendOptions(), image_factor=28))
            start = time.perf_counter()
            evaluate(config)
            seconds = time.perf_counter() - start
            rows.append({"workers": workers, "questions_per_s": round(args.samples / seconds, 2),
                         "floor_questions_per_s": round(workers / args.latency, 2)})
            print(rows[-1], flush=True)
    server.shutdown()
    write_text_atomic(Path(args.out) / "eval_throughput.json",
                      json.dumps({"latency_s": args.latency, "samples": args.samples, "rows": rows}, indent=2) + "\n")
    print("| workers | questions/s | server floor (workers / latency) | share of floor |\n|---|---|---|---|")
    for row in rows:
        share = row["questions_per_s"] / row["floor_questions_per_s"]
        print(f"| {row['workers']} | {row['questions_per_s']} | {row['floor_questions_per_s']} | {share:.0%} |")


if __name__ == "__main__":
    main()
