"""Question generation: timestamped segments → evidence-aligned samples of each task type.

Templates (``TEMPLATES``) are plain format strings so a reader sees every question the suite can ask. The
evidence window of a sample is the segment (or segments) that hold its answer:

- ``grounding``: a caption, query, event or question → its window (the answer is ``[start, end]``);
- ``grounded_vqa``: a question about one segment (what happens after X; where an event appears; which
  instrument enters) → the segment's text or label, evidence = that segment;
- ``mcq``: which of four options happens in a window → a letter; distractors are other segments or labels
  of the same video;
- ``caption``: describe the whole video → the summary (evidence = the whole video);
- ``fine_caption``: describe a window → the segment's text.

Each sample's ``meta`` keeps the template name and the text the answer comes from (``evidence_text``) so
the consistency filter can check the answer against it.
"""

from __future__ import annotations

import dataclasses
import itertools
import random
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from medscope.agent.backends.base import Backend, text_part
from medscope.agent.protocol import FinalAnswer, parse_turn, render_window
from medscope.suite.records import Sample, Segment, VideoAnnotation

TEMPLATES = {
    "ground_text": 'When does the following happen: "{text}"? Answer with the time window in seconds.',
    "ground_question": "{text} Answer with the time window, in seconds, of the part of the video that shows it.",
    "ground_label": "When does {label} happen? Answer with the time window in seconds.",
    "after": 'What happens right after "{text}"?',
    "event_where": "Where in the field does the {label} appear?",
    "instrument_side": "Which instrument enters from the {side} during the {phase}?",
    "mcq_window": "Which of the following happens between {start:.1f}s and {end:.1f}s?",
    "caption": "Describe the procedure shown in this video, step by step.",
    "fine_caption": "Describe what happens between {start:.1f}s and {end:.1f}s.",
}


@dataclass(frozen=True)
class QAConfig:
    tasks: tuple[str, ...] = field(
        default=("grounding", "grounded_vqa", "mcq", "caption", "fine_caption"),
        metadata={"help": "task types to generate"},
    )
    mcq_options: int = field(default=4, metadata={"help": "options per multiple-choice question"})
    max_per_task: int = field(default=6, metadata={"help": "samples per task and video (0: no limit)"})
    seed: int = field(default=0, metadata={"help": "seed for distractors and sub-sampling"})


def _human(label: str) -> str:
    return label.replace("_", " ")


def _phase_at(annotation: VideoAnnotation, t: float) -> str | None:
    for seg in annotation.segments:
        if seg.kind == "phase" and seg.start <= t < seg.end:
            return f"{_human(seg.label or seg.text)} phase"
    return None


def _context(annotation: VideoAnnotation, seg: Segment) -> dict[str, object] | None:
    """The phase that holds the segment's middle: the coarse place to look, which an overview shows."""
    middle = (seg.start + seg.end) / 2
    for phase in annotation.segments:
        if phase.kind == "phase" and phase is not seg and phase.start <= middle < phase.end:
            return {"label": f"{_human(phase.label or phase.text)} phase",
                    "window": [round(phase.start, 3), round(phase.end, 3)]}
    return None


def _window(seg: Segment) -> list[list[float]]:
    windows = seg.windows or ((seg.start, seg.end),)
    return [[round(s, 3), round(e, 3)] for s, e in windows]


def _localisable(annotation: VideoAnnotation) -> list[Segment]:
    # Phases are long and predictable from the procedure's order; they are context, not local evidence.
    return [s for s in annotation.segments if s.kind in ("caption", "event", "query", "question", "instrument")]


def _grounding(annotation: VideoAnnotation) -> Iterator[tuple[str, str, Segment, str]]:
    for seg in _localisable(annotation):
        if seg.kind == "question":
            yield "ground_question", TEMPLATES["ground_question"].format(text=seg.text.strip()), seg, seg.text
        elif seg.kind == "event" and seg.label and sum(s.label == seg.label for s in annotation.segments) == 1:
            yield "ground_label", TEMPLATES["ground_label"].format(label=_human(seg.label)), seg, seg.text
        elif seg.kind != "instrument":
            yield "ground_text", TEMPLATES["ground_text"].format(text=seg.text.strip().rstrip(".")), seg, seg.text


def _grounded_vqa(annotation: VideoAnnotation) -> Iterator[tuple[str, str, str, Segment]]:
    captions = sorted((s for s in annotation.segments if s.kind in ("caption", "event")), key=lambda s: s.start)
    for prev, nxt in itertools.pairwise(captions):
        if nxt.start >= prev.end - 1e-6:  # "right after" must be unambiguous: no overlap
            yield "after", TEMPLATES["after"].format(text=prev.text.strip().rstrip(".")), nxt.text, nxt
    for seg in annotation.segments:
        if seg.kind == "event" and seg.label and seg.meta.get("position"):
            same = [s for s in annotation.segments if s.label == seg.label]
            if len(same) == 1:
                yield ("event_where", TEMPLATES["event_where"].format(label=_human(seg.label)),
                       str(seg.meta["position"]), seg)
        if seg.kind == "instrument" and seg.label and seg.meta.get("side"):
            phase = _phase_at(annotation, seg.start)
            if phase:
                question = TEMPLATES["instrument_side"].format(side=seg.meta["side"], phase=phase)
                yield "instrument_side", question, _human(seg.label), seg


def _mcq(
    annotation: VideoAnnotation, config: QAConfig, rng: random.Random
) -> Iterator[tuple[str, list[str], int, Segment]]:
    pool = [s for s in annotation.segments if s.kind in ("caption", "event", "query")]
    for seg in pool:
        truth = _option_text(seg)
        others = sorted({_option_text(s) for s in pool if _option_text(s) != truth
                         and (s.end <= seg.start or s.start >= seg.end)})
        if len(others) < config.mcq_options - 1:
            continue
        options = [*rng.sample(others, config.mcq_options - 1), truth]
        rng.shuffle(options)
        question = TEMPLATES["mcq_window"].format(start=seg.start, end=seg.end)
        yield question, options, options.index(truth), seg


def _option_text(seg: Segment) -> str:
    return seg.text.strip().rstrip(".") if seg.kind != "event" or not seg.label else _human(seg.label)


def generate_samples(annotation: VideoAnnotation, duration: float, config: QAConfig | None = None) -> list[Sample]:
    """Every templated sample for one video (at most ``max_per_task`` per task, sub-sampled with the seed)."""
    config = config or QAConfig()
    rng = random.Random(f"{config.seed}/{annotation.source}/{annotation.video_id}")
    by_task: dict[str, list[Sample]] = {task: [] for task in config.tasks}

    def add(task: str, template: str, question: str, answer: str, seg: Segment | None, evidence_text: str,
            options: list[str] | None = None) -> None:
        if task not in by_task:
            return
        evidence = _window(seg) if seg is not None else [[0.0, round(duration, 3)]]
        meta: dict[str, object] = {"template": template, "evidence_text": evidence_text,
                                   "video_id": annotation.video_id}
        if seg is not None:
            meta |= {"segment_kind": seg.kind, "label": seg.label}
            context = _context(annotation, seg)
            if context is not None:
                meta["context"] = context
        sample_id = f"{annotation.source}/{annotation.video_id}/{task}/{len(by_task[task])}"
        by_task[task].append(Sample(id=sample_id, video=annotation.video, duration=duration, question=question,
                                    answer=answer, task=task, evidence=evidence, source=annotation.source,  # type: ignore[arg-type]
                                    options=options, meta=meta))

    for template, question, seg, text in _grounding(annotation):
        add("grounding", template, question, render_window((seg.start, seg.end)), seg, text)
    for template, question, answer, seg in _grounded_vqa(annotation):
        add("grounded_vqa", template, question, answer, seg, seg.text)
    for question, options, index, seg in _mcq(annotation, config, rng):
        add("mcq", "mcq_window", question, chr(65 + index), seg, seg.text, options)
    if annotation.summary:
        add("caption", "caption", TEMPLATES["caption"], annotation.summary, None, annotation.summary)
    for seg in _localisable(annotation):
        if seg.kind in ("caption", "event"):
            question = TEMPLATES["fine_caption"].format(start=seg.start, end=seg.end)
            add("fine_caption", "fine_caption", question, seg.text, seg, seg.text)

    samples: list[Sample] = []
    for task in config.tasks:
        items = by_task[task]
        if config.max_per_task and len(items) > config.max_per_task:
            items = sorted(rng.sample(items, config.max_per_task), key=lambda s: s.id)
        samples.extend(items)
    return samples


REWRITE_PROMPT = (
    "Rewrite this question about a clinical video so it reads naturally to a clinician. Keep its meaning, "
    "every number in it and the answer format it asks for. Reply only with <answer>the question</answer>.\n"
    "Question: {question}"
)
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def rewrite_questions(samples: Sequence[Sample], backend: Backend, *, max_new_tokens: int = 96) -> list[Sample]:
    """Let a model rephrase each templated question; a rewrite that loses a number (a time) or is empty is
    rejected and the template kept, noted in ``meta["rewrite"]``."""
    out = []
    for sample in samples:
        messages = [{"role": "user", "content": [text_part(REWRITE_PROMPT.format(question=sample.question))]}]
        parsed = parse_turn(backend.generate(messages, stop=("</answer>",), max_new_tokens=max_new_tokens))
        text = parsed.answer.strip() if isinstance(parsed, FinalAnswer) else ""
        lost = set(_NUMBER.findall(sample.question)) - set(_NUMBER.findall(text))
        if text and not lost:
            meta = sample.meta | {"rewrite": "accepted", "template_question": sample.question}
            out.append(dataclasses.replace(sample, question=text, meta=meta))
        else:
            reason = f"lost {sorted(lost)}" if text else "no <answer>"
            out.append(dataclasses.replace(sample, meta=sample.meta | {"rewrite": f"rejected: {reason}"}))
    return out
