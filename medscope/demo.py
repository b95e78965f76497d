"""``make demo``: the agent on a generated clinical-like video, with the uniform-sampling baseline beside it.

Generates a SynthClin video, asks two questions about short events with the oracle policy (looks on
purpose: coarse crop, fine crop, get_frame) and with the uniform baseline (overview only), writes one HTML
evidence report per policy and the traces, then builds a small ClinVideoSuite from the video and evaluates
both policies on it, printing the table.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from medscope.agent.ask import print_turn
from medscope.agent.backends import make_backend
from medscope.agent.backends.scripted import synthclin_reference
from medscope.agent.loop import run_episode
from medscope.agent.trace import Episode, append_episode
from medscope.report.html import render_report
from medscope.report.sheet import contact_sheet, save_png
from medscope.video.source import VideoSource
from medscope.video.synthclin import SynthClinConfig, generate
from medscope.video.tools import VideoTools


@dataclass(frozen=True)
class DemoConfig:
    out: str = field(default="runs/demo", metadata={"help": "output folder"})
    minutes: float = field(default=10.0, metadata={"help": "length of the generated video"})
    seed: int = field(default=0, metadata={"help": "SynthClin seed"})


_WHEN = {"bleeding": "does bleeding start", "clip_applied": "is a clip applied", "smoke": "does smoke fill the field",
         "gauze": "is gauze placed"}
_NOUN = {"bleeding": "the bleeding", "clip_applied": "the clip placement", "smoke": "the smoke",
         "gauze": "the gauze placement"}


def demo_questions(annotation: dict) -> list[str]:
    """A grounding question and a perception question about two different short events."""
    events = annotation["events"]
    first = events[0]["label"]
    second = next((e["label"] for e in events if e["label"] != first), events[-1]["label"])
    return [f"When {_WHEN[first]}?", f"What is seen during {_NOUN[second]}, and where in the field?"]


def small_eval(annotation_path: Path, out: Path) -> dict[str, str]:
    """Suite build on the demo video, then the oracle against the uniform baseline at its frame budget."""
    from medscope.eval.runner import EvalConfig, evaluate
    from medscope.eval.tables import markdown, write_tables
    from medscope.suite.build import BuildConfig, build, funnel_markdown

    suite = out / "suite"
    table = build(BuildConfig(source="synthclin", annotations=str(annotation_path), out=str(suite), workers=1))
    print("\nClinVideoSuite from this video (generated → filtered → kept):\n" + funnel_markdown(table))
    run = out / "eval"
    for name in ("results.jsonl", "baseline.jsonl"):  # a demo starts afresh; `medscope eval` resumes
        (run / name).unlink(missing_ok=True)
    summaries = write_tables(evaluate(EvalConfig(samples=str(suite / "samples.jsonl"), out=str(run))), run)
    print("\nEvaluation: oracle (looks on purpose) vs uniform sampling at the same frame budget:\n"
          + markdown(summaries))
    return {"suite": str(suite / "samples.jsonl"), "eval_tables": str(run / "tables.md")}


def main(config: DemoConfig) -> dict[str, str]:
    out = Path(config.out)
    video = generate(SynthClinConfig(duration_seconds=config.minutes * 60, seed=config.seed), out)
    ann = video.annotation
    print(f"SynthClin video: {video.video_path} ({ann['duration']:.0f}s, {ann['num_frames']} frames)")
    print("  phases: " + " → ".join(p["label"] for p in ann["phases"]))
    print("  events: " + ", ".join(f"{e['label']} {e['start']:.1f}–{e['end']:.1f}s" for e in ann["events"]))
    with VideoSource(video.video_path) as source:
        overview = VideoTools(source).overview()
        paths = {"overview": str(save_png(contact_sheet(overview.frames, title="overview"), out / "overview.png"))}
        for policy in ("oracle", "uniform"):
            trace = out / f"{policy}.trace.jsonl"
            trace.unlink(missing_ok=True)
            episodes: list[Episode] = []
            for question in demo_questions(ann):
                ref = synthclin_reference(ann, question)
                print(f"\n[{policy}] {question}", file=sys.stderr)
                episode = run_episode(make_backend(policy, reference=ref), source, question, on_turn=print_turn,
                                      reference={"answer": ref.answer, "evidence": [list(w) for w in ref.windows]})
                print(f"  → {episode.answer}  evidence {episode.evidence}  (truth {list(ref.windows[0])})",
                      file=sys.stderr)
                append_episode(trace, episode)
                episodes.append(episode)
            paths[f"{policy}_report"] = str(render_report(episodes, out / f"{policy}_report.html"))
            paths[f"{policy}_trace"] = str(trace)
    paths |= small_eval(video.annotation_path, out)
    print("\nwrote:")
    for name, path in paths.items():
        print(f"  {name:15s} {path}")
    return paths
