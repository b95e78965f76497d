"""The paper's multi-level filtering: drop samples that do not need the video's local evidence.

1. ``commonsense``: a *blind* judge (question and options, no frames) answers correctly → drop.
2. ``global_summary``: a judge given only the global summary answers correctly → drop.
3. ``consistency``: windows outside the video or empty, the same question with contradictory answers,
   answers not supported by their evidence text, near-duplicate questions → drop. Near-duplicates are judged
   on the question itself (``meta["query"]``, without the instruction the template adds) and only when the
   earlier question's answer would also be correct for this one: "...using a cork?" and "...using fingers?"
   with different answer windows are both kept.

After the filters, ``cap_per_task`` keeps at most N samples per task and video when a cap is set (none by
default); what it drops is counted in the funnel as ``cap``.

Each level is a ``Judge`` (``answer(sample, context) -> str | None``) scored with the evaluator's own
``answer_score``; the defaults are rules, and ``BackendJudge`` plugs in any model backend (HF or
OpenAI-compatible) as the blind or summary-only judge. Every drop is logged with its reason, and the
funnel counts kept and dropped samples per filter and task.
"""

from __future__ import annotations

import logging
import random
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from medscope.agent.backends.base import Backend, text_part
from medscope.agent.protocol import parse_turn
from medscope.eval.metrics import answer_score, normalize_answer, option_letter
from medscope.suite.records import Sample

log = logging.getLogger(__name__)
LEVELS = ("commonsense", "global_summary", "consistency")


class Judge(Protocol):
    def answer(self, sample: Sample, context: str) -> str | None:
        """An answer to ``sample.question`` from ``context`` alone (no frames), or None to abstain."""
        ...


@dataclass(frozen=True)
class Drop:
    sample_id: str
    task: str
    filter: str
    reason: str


def _correct(sample: Sample, prediction: str | None) -> bool:
    return answer_score(prediction, answer=sample.answer, task=sample.task, evidence=sample.evidence) >= 1.0


class BlindPriorJudge:
    """Rule default for the commonsense level: what a model can guess from the question text alone.

    MCQ: the option whose text the question mentions, else the letter most often correct among the other
    samples of the same template (a leave-one-out prior). Grounding: the mean relative window of the same
    template, scaled to this video. Short answers: an answer that appears verbatim in the question."""

    def __init__(self, samples: Sequence[Sample]) -> None:
        self.letters: dict[str, Counter[str]] = defaultdict(Counter)
        self.windows: dict[str, list[tuple[float, float]]] = defaultdict(list)
        for s in samples:
            template = s.meta.get("template", "")
            if s.task == "mcq":
                self.letters[template][s.answer] += 1
            if s.task == "grounding" and s.evidence:
                self.windows[template].append((s.evidence[0][0] / s.duration, s.evidence[0][1] / s.duration))

    def answer(self, sample: Sample, context: str) -> str | None:
        template = sample.meta.get("template", "")
        if sample.task == "mcq" and sample.options:
            question = normalize_answer(sample.question)
            for i, option in enumerate(sample.options):
                if normalize_answer(option) and normalize_answer(option) in question:
                    return chr(65 + i)
            prior = self.letters[template].copy()
            prior[sample.answer] -= 1  # leave this sample out
            best = prior.most_common(1)
            return best[0][0] if best and best[0][1] > len(sample.options) else None
        if sample.task == "grounding":
            others = [w for w in self.windows[template]
                      if (w[0] * sample.duration, w[1] * sample.duration) != tuple(sample.evidence[0])]
            if len(others) < 3:
                return None
            start = sum(w[0] for w in others) / len(others) * sample.duration
            end = sum(w[1] for w in others) / len(others) * sample.duration
            return f"[{start:.2f}, {end:.2f}]"
        answer = normalize_answer(sample.answer)
        return sample.answer if answer and answer in normalize_answer(sample.question) else None


class SummaryRuleJudge:
    """Rule default for the global level, a judge with perfect perception of the global view only: it knows
    the answer when the summary states it, when the evidence spans most of the video, or (for questions that
    are not about *when*) when one of the ``overview_frames`` uniform overview frames falls inside the
    evidence, since the overview alone then shows it."""

    def __init__(self, *, max_evidence_share: float = 0.5, overview_frames: int = 16) -> None:
        self.max_evidence_share = max_evidence_share
        self.overview_frames = overview_frames

    def answer(self, sample: Sample, context: str) -> str | None:
        covered = sum(e - s for s, e in sample.evidence) / sample.duration
        if sample.task == "grounding":
            # Overview frames tell where to look, not when it starts and ends: only whole-video spans are given.
            return f"[0.00, {sample.duration:.2f}]" if covered > self.max_evidence_share else None
        gap = sample.duration / self.overview_frames
        seen = any(s <= (j + 0.5) * gap <= e for j in range(self.overview_frames) for s, e in sample.evidence)
        if covered > self.max_evidence_share or seen:
            return sample.answer
        if sample.task == "mcq" and sample.options:
            summary = normalize_answer(context)
            named = [i for i, o in enumerate(sample.options) if normalize_answer(o) in summary]
            return chr(65 + named[0]) if len(named) == 1 else None
        answer = normalize_answer(sample.answer)
        return sample.answer if answer and answer in normalize_answer(context) else None


class BackendJudge:
    """Any model backend as a judge: it sees the question (and options), plus ``context`` text, no frames."""

    def __init__(self, backend: Backend, *, max_new_tokens: int = 64) -> None:
        self.backend = backend
        self.max_new_tokens = max_new_tokens

    def answer(self, sample: Sample, context: str) -> str | None:
        lines = [context, f"Question: {sample.question}"] if context else [f"Question: {sample.question}"]
        if sample.options:
            lines += [f"{chr(65 + i)}. {o}" for i, o in enumerate(sample.options)]
        lines.append("Answer without seeing the video, in the form <answer>...</answer>.")
        messages = [{"role": "user", "content": [text_part("\n".join(lines))]}]
        parsed = parse_turn(self.backend.generate(messages, stop=("</answer>",), max_new_tokens=self.max_new_tokens))
        return getattr(parsed, "answer", None)


def commonsense_filter(samples: Sequence[Sample], judge: Judge) -> tuple[list[Sample], list[Drop]]:
    kept, drops = [], []
    for s in samples:
        guess = judge.answer(s, "")
        if s.task != "caption" and _correct(s, guess):
            drops.append(Drop(s.id, s.task, "commonsense", f"answered without the video: {guess!r}"))
        else:
            kept.append(s)
    return kept, drops


def global_summary_filter(
    samples: Sequence[Sample], judge: Judge, summaries: dict[str, str]
) -> tuple[list[Sample], list[Drop]]:
    kept, drops = [], []
    for s in samples:
        # A whole-video description is meant to need the global view; it is exempt from this level.
        guess = None if s.task == "caption" else judge.answer(s, summaries.get(s.video, ""))
        if guess is not None and _correct(s, guess):
            drops.append(Drop(s.id, s.task, "global_summary", f"answered from the global summary: {guess!r}"))
        else:
            kept.append(s)
    return kept, drops


def _jaccard(a: str, b: str) -> float:
    x, y = set(normalize_answer(a).split()), set(normalize_answer(b).split())
    return len(x & y) / len(x | y) if x | y else 1.0


def _inconsistency(s: Sample) -> str | None:
    for start, end in s.evidence:
        if end <= start:
            return f"empty evidence window [{start}, {end}]"
        if start < 0 or end > s.duration + 1e-6:
            return f"evidence [{start}, {end}] outside the video [0, {s.duration}]"
    if not s.evidence:
        return "no evidence window"
    if s.task == "mcq":
        letter = option_letter(s.answer)
        if not s.options or letter is None or not 0 <= ord(letter) - 65 < len(s.options):
            return f"answer {s.answer!r} names no option"
        if len({normalize_answer(o) for o in s.options}) < len(s.options):
            return "duplicate options"
    elif s.task in ("grounded_vqa", "fine_caption", "caption"):
        support = normalize_answer(str(s.meta.get("evidence_text", "")))
        if not set(normalize_answer(s.answer).split()) <= set(support.split()):
            return f"answer {s.answer!r} is not supported by its evidence text"
    return None


def _query(s: Sample) -> str:
    return str(s.meta.get("query") or s.question)


@dataclass
class ConsistencyFilter:
    duplicate_jaccard: float = 0.9
    seen: dict[str, list[Sample]] = field(default_factory=lambda: defaultdict(list))

    def __call__(self, samples: Sequence[Sample]) -> tuple[list[Sample], list[Drop]]:
        answers: dict[tuple[str, str], set[str]] = defaultdict(set)
        for s in samples:
            answers[(s.video, normalize_answer(s.question))].add(normalize_answer(s.answer))
        kept, drops = [], []
        for s in samples:
            reason = _inconsistency(s)
            if reason is None and len(answers[(s.video, normalize_answer(s.question))]) > 1:
                reason = "the same question has contradictory answers in this video"
            if reason is None:
                twin = next((e for e in self.seen[s.video] if self._duplicate(e, s)), None)
                if twin is not None:
                    reason = f"near-duplicate of {twin.id} (same question, same answer)"
            if reason is None:
                self.seen[s.video].append(s)
                kept.append(s)
            else:
                drops.append(Drop(s.id, s.task, "consistency", reason))
        return kept, drops

    def _duplicate(self, earlier: Sample, s: Sample) -> bool:
        """Near-duplicate: the questions nearly the same and the earlier answer correct for this one too."""
        if earlier.task != s.task or _jaccard(_query(earlier), _query(s)) < self.duplicate_jaccard:
            return False
        return answer_score(earlier.answer, answer=s.answer, task=s.task, evidence=s.evidence) >= 1.0


def cap_per_task(samples: Sequence[Sample], cap: int, *, seed: int = 0) -> tuple[list[Sample], list[Drop]]:
    """At most ``cap`` samples per task and video (a seeded draw); 0 keeps all. The rest are ``cap`` drops."""
    if cap <= 0:
        return list(samples), []
    groups: dict[tuple[str, str], list[Sample]] = defaultdict(list)
    for s in samples:
        groups[(s.video, s.task)].append(s)
    chosen: set[str] = set()
    for (video, task), group in groups.items():
        rng = random.Random(f"{seed}/{group[0].meta.get('video_id', video)}/{task}")  # not the path: portable
        chosen |= {s.id for s in (rng.sample(group, cap) if len(group) > cap else group)}
    drops = [Drop(s.id, s.task, "cap", f"over --max-per-task {cap} for this task and video")
             for s in samples if s.id not in chosen]
    return [s for s in samples if s.id in chosen], drops


def funnel(generated: Sequence[Sample], drops: Sequence[Drop], stages: Sequence[str]) -> dict[str, dict[str, int]]:
    """``{task: {"generated": n, <stage>: dropped, ..., "kept": n}}`` plus a ``total`` row."""
    table: dict[str, dict[str, int]] = {}
    for task in sorted({s.task for s in generated}):
        row = {"generated": sum(s.task == task for s in generated)}
        for stage in stages:
            row[stage] = sum(d.task == task and d.filter == stage for d in drops)
        row["kept"] = row["generated"] - sum(row[stage] for stage in stages)
        table[task] = row
    table["total"] = {key: sum(row[key] for row in table.values()) for key in ["generated", *stages, "kept"]}
    return table


def log_drops(drops: Sequence[Drop]) -> None:
    for d in drops:
        log.info("drop %s [%s] %s", d.sample_id, d.filter, d.reason)
