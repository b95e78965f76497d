"""``make demo``: the built-in model on a generated clinical-like video, beside the oracle and uniform sampling.

Generates a 3-minute SynthClin video (the length medscope-tiny was trained on) and asks two questions in the
suite's phrasing with three policies: the built-in model ``medscope-tiny`` (looks on purpose through the
tools), the oracle (knows the truth: the upper bound of looking) and the uniform baseline (overview only).
Writes one HTML evidence report and one trace per policy, then builds a small ClinVideoSuite from the video
and evaluates medscope-tiny (with the same model on uniform frames at its frame budget) and the oracle on it,
printing one table.
"""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from medscope.agent.ask import print_turn
from medscope.agent.backends import make_backend
from medscope.agent.backends.scripted import synthclin_reference
from medscope.agent.loop import AgentConfig, run_episode
from medscope.agent.trace import Episode, append_episode
from medscope.models import BUILTIN_MODEL
from medscope.report.html import render_report
from medscope.report.sheet import contact_sheet, save_png
from medscope.suite.qa import TEMPLATES
from medscope.train.pipeline import PRESETS, synthclin_config
from medscope.video.source import VideoSource
from medscope.video.synthclin import generate
from medscope.video.tools import VideoTools


@dataclass(frozen=True)
class DemoConfig:
    out: str = field(default="runs/demo", metadata={"help": "output folder"})
    minutes: float = field(default=3.0, metadata={"help": "length of the generated video"})
    seed: int = field(default=20_016, metadata={"help": "SynthClin seed (medscope-tiny never saw this video)"})


POLICIES = (BUILTIN_MODEL, "oracle", "uniform")
TINY = PRESETS["tiny"]
# medscope-tiny's turns are under 100 tokens (its trajectories' longest); a turn that runs on has gone wrong.
AGENT = AgentConfig(max_new_tokens=160)


def demo_questions(annotation: dict) -> list[str]:
    """A grounding question and a where-in-the-field question about two short events, phrased as the suite
    phrases them (the only phrasing medscope-tiny has learnt); events whose kind occurs once come first, so a
    question names one event."""
    events = annotation["events"]
    counts = Counter(e["label"] for e in events)
    unique = [e for e in events if counts[e["label"]] == 1] or events
    first = unique[0]
    placed = [e for e in unique if e.get("position") and e is not first] or [e for e in unique if e.get("position")]
    questions = [TEMPLATES["ground_label"].format(label=first["label"].replace("_", " "))]
    if placed:
        questions.append(TEMPLATES["event_where"].format(label=placed[0]["label"].replace("_", " ")))
    return questions


def small_eval(annotation_path: Path, out: Path) -> dict[str, str]:
    """Suite build on the demo video, then medscope-tiny (and uniform frames at its budget) and the oracle."""
    from medscope.eval.runner import EvalConfig, evaluate
    from medscope.eval.tables import markdown, write_tables
    from medscope.suite.build import BuildConfig, build, funnel_markdown
    from medscope.suite.qa import QAConfig

    suite = out / "suite"
    # The question templates medscope-tiny was trained on, a few per task to keep the demo short.
    qa = QAConfig(templates=tuple(TINY["suite"]["templates"]), max_per_task=6)
    table = build(BuildConfig(source="synthclin", annotations=str(annotation_path), out=str(suite), workers=1, qa=qa))
    print("\nClinVideoSuite from this video (generated → filtered → kept):\n" + funnel_markdown(table))
    run = out / "eval"
    samples = str(suite / "samples.jsonl")
    # A demo starts afresh (`new`: an earlier demo's results move aside, whatever model or suite made them);
    # `medscope eval` resumes instead.
    tiny = evaluate(EvalConfig(samples=samples, out=str(run / BUILTIN_MODEL), backend="hf", agent=AGENT, new=True))
    oracle = evaluate(EvalConfig(samples=samples, out=str(run / "oracle"), backend="oracle", baseline="none",
                                 new=True))
    budget = round(tiny["baseline"][0]["metrics"]["frames_viewed"]) if tiny["baseline"] else 0
    summaries = write_tables({BUILTIN_MODEL: tiny["agent"], f"{BUILTIN_MODEL}, uniform@{budget}": tiny["baseline"],
                              "oracle (knows the truth)": oracle["agent"]}, run)
    print(f"\nEvaluation on this video: {BUILTIN_MODEL} vs the same model on uniform frames vs the oracle:\n"
          + markdown(summaries))
    return {"suite": samples, "eval_tables": str(run / "tables.md")}


def main(config: DemoConfig) -> dict[str, str]:
    out = Path(config.out)
    # Made like the videos medscope-tiny was trained on (the tiny preset's frame rate, keyframes, events).
    video = generate(synthclin_config(TINY["videos"], config.minutes * 60, config.seed), out)
    ann = video.annotation
    print(f"SynthClin video: {video.video_path} ({ann['duration']:.0f}s, {ann['num_frames']} frames)")
    print("  phases: " + " → ".join(p["label"] for p in ann["phases"]))
    print("  events: " + ", ".join(f"{e['label']} {e['start']:.1f}–{e['end']:.1f}s" for e in ann["events"]))
    model = make_backend("hf")  # the built-in medscope-tiny, loaded once
    with VideoSource(video.video_path) as source:
        overview = VideoTools(source).overview()
        paths = {"overview": str(save_png(contact_sheet(overview.frames, title="overview"), out / "overview.png"))}
        for policy in POLICIES:
            trace = out / f"{policy}.trace.jsonl"
            trace.unlink(missing_ok=True)
            episodes: list[Episode] = []
            for question in demo_questions(ann):
                ref = synthclin_reference(ann, question)
                print(f"\n[{policy}] {question}", file=sys.stderr)
                backend = model if policy == BUILTIN_MODEL else make_backend(policy, reference=ref)
                episode = run_episode(backend, source, question, AGENT, on_turn=print_turn,
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
        print(f"  {name:22s} {path}")
    command = ".venv/bin/medscope" if Path(".venv/bin/medscope").is_file() else "medscope"
    print(f"\nReview these episodes in the browser (play the evidence, judge, correct, export):\n"
          f"  {command} review {out}")
    return paths
