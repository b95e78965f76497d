"""Question generation: timestamped segments → evidence-aligned samples of each task type.

Templates (``TEMPLATES``) are plain format strings so a reader sees every question the suite can ask. The
evidence window of a sample is the segment (or segments) that hold its answer:

- ``grounding``: a caption, query, event or question → its window (the answer is ``[start, end]``); a phase or
  an instrument → every window it occupies; the same question asked of several segments of one video
  (MedVidQA's two-window answers, a Charades sentence that recurs) → one sample with every window, answered
  ``[[s, e], [s, e]]``;
- ``grounded_vqa``: a question about one segment (what happens after X; where an event appears; which
  instrument enters) → the segment's text or label, evidence = that segment;
- ``mcq``: which of four options happens in a window → a letter; distractors are other segments or labels
  of the same video; how long a phase lasts → a letter, distractors the other phases' lengths;
- ``caption``: describe the whole video → the summary (evidence = the whole video);
- ``fine_caption``: describe a window → the segment's text;
- a source's own question and answer (``"qa"`` segments, SVU-31K) → that sample as it is (``source_qa``).

Phase sources (Cholec80, AutoLaparo, Cataract-101, OphNet, MultiBypass140) also give ``phase_at`` (which
phase is under way at a time; evidence: that phase's span) and ``phase_next`` (which phase follows a phase
that occurs once; evidence: the next phase). Each sample's ``meta`` keeps the template name, the text the
answer comes from (``evidence_text``) so the consistency filter can check the answer against it, and the
question without its instruction (``query``) so near-duplicates are judged on what is asked. ``source_id``
names the source records; ``split`` is the source's split.
"""

from __future__ import annotations

import dataclasses
import itertools
import random
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from medscope.agent.backends.base import Backend, text_part
from medscope.agent.protocol import FinalAnswer, parse_turn, render_windows
from medscope.eval.metrics import merge
from medscope.suite.records import Sample, Segment, VideoAnnotation

TEMPLATES = {
    "ground_text": 'When does the following happen: "{text}"? Answer with the time window in seconds.',
    "ground_question": "{text} Answer with the time window, in seconds, of the part of the video that shows it.",
    "ground_label": "When does {label} happen? Answer with the time window(s) in seconds.",
    "ground_phase": "When does {phase} take place? Answer with the time window(s) in seconds.",
    "ground_instrument": "When is the {label} in view? Answer with the time window(s) in seconds.",
    "phase_at": "Which surgical phase is under way at {time:.1f}s?",
    "phase_next": "Which phase comes right after {phase}?",
    "phase_length": "How long does {phase} last in total?",
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
    templates: tuple[str, ...] = field(
        default=(), metadata={"help": f"question templates to use (default: all): {', '.join(TEMPLATES)}"})
    mcq_options: int = field(default=4, metadata={"help": "options per multiple-choice question"})
    max_per_task: int = field(
        default=0, metadata={"help": "keep at most N samples per task and video after filtering (0: all)"})
    seed: int = field(default=0, metadata={"help": "seed for distractors and sub-sampling"})

    def __post_init__(self) -> None:
        unknown = sorted(set(self.templates) - set(TEMPLATES))
        if unknown:
            raise ValueError(f"unknown question template(s) {', '.join(unknown)}: choose from {', '.join(TEMPLATES)}")


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


def _phase_windows(annotation: VideoAnnotation) -> list[list[object]]:
    """``[[label, start, end], ...]`` of the video's phases, in time order."""
    phases = sorted((s for s in annotation.segments if s.kind == "phase"), key=lambda s: s.start)
    return [[f"{_human(p.label or p.text)} phase", round(p.start, 3), round(p.end, 3)] for p in phases]


def _windows(segs: Sequence[Segment]) -> list[list[float]]:
    """Every window of the segments, sorted, merged where they touch (the union is what the answer covers), in
    tenths of a second: the precision answers are written in (``protocol.TIME_FORMAT``), so a reference answer is its
    evidence exactly."""
    spans = [(round(s, 1), round(e, 1)) for seg in segs for s, e in (seg.windows or ((seg.start, seg.end),))]
    return [[start, end] for start, end in merge(spans)]


def _source_id(segs: Sequence[Segment], annotation: VideoAnnotation) -> str:
    ids = list(dict.fromkeys(seg.source_id for seg in segs if seg.source_id))
    return ",".join(ids) if ids else annotation.video_id


def _localisable(annotation: VideoAnnotation) -> list[Segment]:
    # Phases are long and predictable from the procedure's order; they are context, not local evidence.
    return [s for s in annotation.segments if s.kind in ("caption", "event", "query", "question", "instrument")]


def _grounding(annotation: VideoAnnotation) -> Iterator[tuple[str, str, list[Segment], str]]:
    """``(template, question, segments, query)``; a question asked of several segments comes once, with all."""
    asked: dict[tuple[str, str], tuple[str, list[Segment], str]] = {}

    def ask(template: str, question: str, seg: Segment, query: str) -> None:
        key = (template, " ".join(question.lower().split()))
        asked.setdefault(key, (question, [], query))[1].append(seg)

    for seg in _localisable(annotation):
        if seg.kind == "question":
            ask("ground_question", TEMPLATES["ground_question"].format(text=seg.text.strip()), seg, seg.text)
        elif seg.kind == "event" and seg.label:  # a label that recurs gives one question with every window
            ask("ground_label", TEMPLATES["ground_label"].format(label=_name(seg)), seg, _name(seg))
        elif seg.kind == "instrument" and not seg.meta.get("side") and seg.label:
            ask("ground_instrument", TEMPLATES["ground_instrument"].format(label=_name(seg)), seg, _name(seg))
        elif seg.kind != "instrument":
            text = seg.text.strip().rstrip(".")
            ask("ground_text", TEMPLATES["ground_text"].format(text=text), seg, text)
    for seg in annotation.segments:
        if seg.kind == "phase" and seg.label:
            name = _name(seg)
            ask("ground_phase", TEMPLATES["ground_phase"].format(phase=_phase_phrase(name)), seg, name)
    for (template, _), (question, segs, query) in asked.items():
        yield template, question, segs, query


def _name(seg: Segment) -> str:
    """A labelled segment's readable name: the adapter's ``meta["name"]``, else its label made readable."""
    return str(seg.meta.get("name") or _human(seg.label or seg.text))


def _phase_phrase(name: str) -> str:
    """``"the clipping and cutting phase"``; a name that already says phase (OphNet's ``"phase 12"``) as it is."""
    return name if "phase" in name.lower().split() else f"the {name} phase"


def _phases(annotation: VideoAnnotation) -> Iterator[tuple[str, str, str, Segment, str]]:
    """Phase questions a phase-labelled video gives: ``(template, question, answer, evidence, query)``."""
    phases = sorted((s for s in annotation.segments if s.kind == "phase" and s.label), key=lambda s: s.start)
    for seg in phases:
        middle = round((seg.start + seg.end) / 2, 1)
        question = TEMPLATES["phase_at"].format(time=middle)
        yield "phase_at", question, _name(seg), seg, f"phase at {middle}"
    for prev, nxt in itertools.pairwise(phases):
        if sum(p.label == prev.label for p in phases) == 1 and nxt.label != prev.label:
            question = TEMPLATES["phase_next"].format(phase=_phase_phrase(_name(prev)))
            yield "phase_next", question, _name(nxt), nxt, f"after {_name(prev)}"


def _phase_lengths(annotation: VideoAnnotation, config: QAConfig,
                   rng: random.Random) -> Iterator[tuple[str, list[str], int, list[Segment]]]:
    """How long each phase lasts in total, as a choice between its length and other phases' lengths."""
    by_label: dict[str, list[Segment]] = {}
    for seg in annotation.segments:
        if seg.kind == "phase" and seg.label:
            by_label.setdefault(seg.label, []).append(seg)
    totals = {label: sum(s.end - s.start for s in segs) for label, segs in by_label.items()}
    for label, segs in by_label.items():
        truth = _minutes(totals[label])
        others = sorted({_minutes(t) for other, t in totals.items() if other != label
                         and abs(t - totals[label]) > 0.2 * max(totals[label], 1.0)} - {truth})
        if len(others) < config.mcq_options - 1:
            continue
        options = [*rng.sample(others, config.mcq_options - 1), truth]
        rng.shuffle(options)
        question = TEMPLATES["phase_length"].format(phase=_phase_phrase(_name(segs[0])))
        yield question, options, options.index(truth), segs


def _minutes(seconds: float) -> str:
    return f"about {seconds / 60:.1f} minutes" if seconds >= 90 else f"about {seconds:.0f} seconds"


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
    """Every templated sample for one video (``filters.cap_per_task`` applies ``max_per_task`` after filtering)."""
    config = config or QAConfig()
    rng = random.Random(f"{config.seed}/{annotation.source}/{annotation.video_id}")
    by_task: dict[str, list[Sample]] = {task: [] for task in config.tasks}

    def add(task: str, template: str, question: str, answer: str, segs: Sequence[Segment], evidence_text: str,
            query: str, options: list[str] | None = None, moment: float | None = None) -> None:
        if task not in by_task or (config.templates and template not in config.templates):
            return
        evidence = _windows(segs) if segs else [[0.0, round(duration, 3)]]
        meta: dict[str, object] = {"template": template, "evidence_text": evidence_text,
                                   "video_id": annotation.video_id, "query": query}
        if moment is not None:  # the time the question names
            meta["moment"] = moment
        if segs:
            meta |= {"segment_kind": segs[0].kind, "label": segs[0].label}
            traces = [seg.meta["trace"] for seg in segs if seg.meta.get("trace")]
            if traces:  # marks the evidence leaves after it: a coarse view that shows one places it before
                meta["traces"] = [[round(s, 3), round(e, 3)] for s, e in traces]
            context = _context(annotation, segs[0])
            if context is not None:
                # Every phase of the video: where a search may look when no frame seen so far shows the evidence.
                meta["context"] = context | {"phases": _phase_windows(annotation)}
        sample_id = f"{annotation.source}/{annotation.video_id}/{task}/{len(by_task[task])}"
        by_task[task].append(Sample(id=sample_id, video=annotation.video, duration=duration, question=question,
                                    answer=answer, task=task, evidence=evidence, source=annotation.source,  # type: ignore[arg-type]
                                    options=options, meta=meta, source_id=_source_id(segs, annotation),
                                    split=annotation.split))

    for template, question, segs, query in _grounding(annotation):
        answer = render_windows([(s, e) for s, e in _windows(segs)])
        add("grounding", template, question, answer, segs, " ".join(seg.text for seg in segs), query)
    for template, question, answer, seg in _grounded_vqa(annotation):
        add("grounded_vqa", template, question, answer, [seg], seg.text, question)
    for seg in annotation.segments:  # a source's own question and answer (SVU-31K), evidence its window
        if seg.kind == "qa" and seg.meta.get("task") in ("grounded_vqa", "fine_caption"):
            answer = str(seg.meta.get("answer", ""))
            add(str(seg.meta["task"]), "source_qa", seg.text, answer, [seg], answer, seg.text)
    for template, question, answer, seg, query in _phases(annotation):
        add("grounded_vqa", template, question, answer, [seg], seg.text, query,
            moment=round((seg.start + seg.end) / 2, 1) if template == "phase_at" else None)
    for question, options, index, seg in _mcq(annotation, config, rng):
        add("mcq", "mcq_window", question, chr(65 + index), [seg], seg.text, _option_text(seg), options)
    for question, options, index, segs in _phase_lengths(annotation, config, rng):
        add("mcq", "phase_length", question, chr(65 + index), segs, options[index], question, options)
    if annotation.summary:
        add("caption", "caption", TEMPLATES["caption"], annotation.summary, [], annotation.summary, "caption")
    for seg in _localisable(annotation):
        if seg.kind in ("caption", "event"):
            question = TEMPLATES["fine_caption"].format(start=seg.start, end=seg.end)
            add("fine_caption", "fine_caption", question, seg.text, [seg], seg.text, question)
    return [sample for task in config.tasks for sample in by_task[task]]


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
