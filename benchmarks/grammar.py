"""What constrained decoding costs and buys: medscope-tiny's episodes with the protocol grammar (``--grammar``, the
default) against free decoding, in one run.

The same episodes (four questions on each of four SynthClin videos of 2-4 minutes, as the tiny preset makes them,
none of them trained on) run under each condition in turns (A, B, A, B, ...) so drift in the machine's load hits both
alike. Per condition: seconds per generated token (the mask llguidance computes at every step, and the logits it
blanks), tokens per turn, and the share of turns the protocol's parser rejects.
Prints a table and writes ``benchmarks/results/grammar.json``. Run: ``python benchmarks/grammar.py``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medscope.agent.backends import BackendOptions, make_backend
from medscope.agent.backends.base import backend_prompt
from medscope.agent.grammar import TurnFormat
from medscope.agent.loop import AgentConfig, run_episode
from medscope.io import write_text_atomic
from medscope.train.card import cpu_description
from medscope.video.synthclin import SynthClinConfig, generate

HERE = Path(__file__).parent
QUESTIONS = (("When does bleeding happen? Answer with the time window(s) in seconds.", "grounding"),
             ("When does smoke happen? Answer with the time window(s) in seconds.", "grounding"),
             ("When does gauze happen? Answer with the time window(s) in seconds.", "grounding"),
             ("Where in the field does the gauze appear?", "grounded_vqa"))


class Timed:
    """The backend, with the seconds and new tokens of every turn it writes."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.prompt = backend_prompt(backend)  # the loop asks its backend which system prompt the model knows
        self.turns: list[tuple[float, int]] = []

    def identity(self) -> dict[str, str]:
        return dict(self.backend.identity())

    def generate(self, messages: Sequence[Any], *, stop: Sequence[str], max_new_tokens: int,
                 turn: TurnFormat | None = None) -> str:
        start = time.perf_counter()
        text = str(self.backend.generate(messages, stop=stop, max_new_tokens=max_new_tokens, turn=turn))
        self.turns.append((time.perf_counter() - start, self.backend.last_prompt_stats["new_tokens"]))
        return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="interleaved repetitions of each condition")
    parser.add_argument("--out", default=str(HERE / "results"), help="where grammar.json goes")
    args = parser.parse_args()
    lengths = {20_016: 180.0, 20_017: 120.0, 20_018: 240.0, 20_019: 150.0}  # seconds, by SynthClin seed
    videos = [generate(SynthClinConfig(duration_seconds=seconds, fps=2.0, keyframe_seconds=0.5, events_per_10min=10.0,
                                       seed=seed), HERE / "cache").video_path for seed, seconds in lengths.items()]
    backend = make_backend("hf", options=BackendOptions(device="cpu"))  # one thread, the CPU default
    conditions = {"grammar (default)": True, "free decoding": False}
    timed = {name: Timed(backend) for name in conditions}
    rejected = {name: 0 for name in conditions}
    for _ in range(args.rounds):
        for name, grammar in conditions.items():
            for video in videos:
                for question, task in QUESTIONS:
                    episode = run_episode(timed[name], str(video), question,
                                          AgentConfig(max_new_tokens=96, grammar=grammar), task=task)
                    rejected[name] += sum(turn.kind == "format_error" for turn in episode.turns)
    rows = {}
    for name, record in timed.items():
        seconds, tokens = sum(s for s, _ in record.turns), sum(n for _, n in record.turns)
        rows[name] = {"turns": len(record.turns), "tokens": tokens, "ms_per_token": 1000 * seconds / max(1, tokens),
                      "tokens_per_turn": tokens / max(1, len(record.turns)),
                      "rejected_turns": rejected[name], "rejected_share": rejected[name] / max(1, len(record.turns))}
    print("| decoding | turns | ms / token | tokens / turn | turns the parser rejects |\n|---|---|---|---|---|")
    for name, row in rows.items():
        print(f"| {name} | {row['turns']} | {row['ms_per_token']:.2f} | {row['tokens_per_turn']:.1f} | "
              f"{row['rejected_turns']} ({100 * row['rejected_share']:.0f}%) |")
    ratio = rows["grammar (default)"]["ms_per_token"] / rows["free decoding"]["ms_per_token"]
    print(f"\ngrammar / free, time per token: {ratio:.2f}x")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "grammar.json", json.dumps({
        "machine": cpu_description(), "rounds": args.rounds, "model": "medscope-tiny",
        "questions": [q for q, _ in QUESTIONS], "videos": [v.name for v in videos], "rows": rows,
        "time_per_token_ratio": ratio}, indent=1) + "\n")


if __name__ == "__main__":
    main()
