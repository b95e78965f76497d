"""Deterministic policies that speak the protocol: for tests, demos and baselines.

They read only what a model would read (the messages: timestamps in text, the duration), plus the
reference they are built with, and write protocol text:

- ``OracleBackend`` knows the ground-truth windows: a coarse crop around the first one widened, a fine crop on
  it, ``get_frame`` at its centre, then the answer (every truth window). The upper bound of looking on purpose.
- ``TeacherBackend`` searches coarse to fine the way a model could learn to: every step follows from what
  the frames seen so far show (with perfect perception of them) and from the context segment the question
  belongs to (the surgical phase, which an overview shows). It writes the suite's VCoT trajectories.
- ``UniformBackend`` never calls a tool and answers from the overview alone. It has *perfect perception of
  the frames it saw*: it knows the answer only if an overview frame fell inside the evidence, so it
  measures what uniform sampling can find at all.
- ``RandomBackend`` calls tools at random times and answers a random window: the floor.
- ``ReplayBackend`` plays back fixed turns: the test model for the loop.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

from medscope.agent.backends.base import Message, message_text
from medscope.agent.grammar import TurnFormat
from medscope.agent.protocol import Window, last_crop, render_answer, render_tool_call, render_window, render_windows

_DURATION = re.compile(r"Video duration: ([0-9.]+)s")
_STAMP = re.compile(r"\[([0-9]+(?:\.[0-9]+)?)s\]")


@dataclass(frozen=True)
class Reference:
    """What a scripted policy knows: the reference answer and its evidence windows.

    ``grounding`` questions are answered with the window itself; others with ``answer`` (when known) and,
    if ``explicit_evidence``, an ``<evidence>`` block. ``context`` is a longer segment that contains the
    evidence and that a coarse overview can show (e.g. the surgical phase, named ``context_label``); ``search``
    the segments the question implies, in the order a search tries them; ``moment`` a time the question names;
    ``traces`` the marks the evidence leaves after it (a frame in one shows that it happened earlier)."""

    answer: str
    windows: tuple[Window, ...]
    grounding: bool = False
    fallback_answer: str = "unknown"
    context: Window | None = None
    context_label: str = ""
    search: tuple[tuple[str, Window], ...] = ()  # (label, window) of the places to look, most likely first
    moment: float | None = None  # a time the question names ("which phase is under way at 63.5s?")
    traces: tuple[Window, ...] = ()


def _duration(messages: Sequence[Message]) -> float:
    for message in messages:
        match = _DURATION.search(message_text(message))
        if match:
            return float(match.group(1))
    raise ValueError("no 'Video duration' in the conversation: is this a medscope episode?")


def _stamps(message: Message) -> list[float]:
    return [float(t) for t in _STAMP.findall(message_text(message))]


def shows(t: float, window: Window) -> bool:
    """Whether the frame at ``t`` shows what happens in ``window``: start included, end excluded (the frame at
    the end time is the first one after it, as annotations and SynthClin count frames), a moment (start = end)
    by the frame at it."""
    return window[0] <= t < window[1] or t == window[0]


def _inside(seen: Sequence[float], window: Window) -> list[float]:
    """The seen timestamps whose frames show ``window``."""
    return [t for t in seen if shows(t, window)]


def _turns_taken(messages: Sequence[Message]) -> int:
    return sum(1 for m in messages if m["role"] == "assistant")


def _wants_evidence(messages: Sequence[Message]) -> bool:
    return "<evidence>" in message_text(messages[0])


def _answer(reference: Reference, windows: Sequence[Window] | None, think: str, messages: Sequence[Message]) -> str:
    """The final turn: the windows found (a grounding answer), else the reference answer when something was found."""
    if reference.grounding:
        text = render_windows(windows or reference.windows)
    else:
        text = reference.answer if windows else reference.fallback_answer
    evidence = list(windows) if (windows and _wants_evidence(messages)) else None
    return render_answer(text, think, evidence)


class OracleBackend:
    def __init__(self, reference: Reference, *, widen: float = 3.0, min_coarse_seconds: float = 20.0) -> None:
        self.reference = reference
        self.widen = widen
        self.min_coarse_seconds = min_coarse_seconds

    def identity(self) -> dict[str, str]:
        return {"backend": "scripted", "model": "oracle"}

    def generate(self, messages: Sequence[Message], *, stop: Sequence[str], max_new_tokens: int,
                 turn: TurnFormat | None = None) -> str:
        duration = _duration(messages)
        start, end = self.reference.windows[0]
        centre, half = (start + end) / 2, max((end - start) * self.widen, self.min_coarse_seconds) / 2
        step = _turns_taken(messages)
        seen = _stamps(messages[-1])  # what the last observation showed, to cite it
        inside = _inside(seen, (start, end))
        if step == 0:
            lo, hi = max(0.0, centre - half), min(duration, centre + half)
            before = max((t for t in seen if t < lo), default=0.0)
            after = min((t for t in seen if t > hi), default=duration)
            think = (f"The overview frames at {before:.1f}s and {after:.1f}s bracket the moment in question; "
                     f"the evidence is likely between {lo:.1f}s and {hi:.1f}s. Watch that interval.")
            return render_tool_call("crop_video", {"start_time": round(lo, 2), "end_time": round(hi, 2)}, think)
        if step == 1:
            cited = ", ".join(f"{t:.1f}s" for t in inside) or f"{start:.1f}s"
            think = f"The frames at {cited} show it, between {start:.1f}s and {end:.1f}s. Look closely there."
            if end - start < 1.0:  # a single moment: watch a second either side of it
                lo, hi = max(0.0, centre - 1.0), min(duration, centre + 1.0)
                return render_tool_call("crop_video", {"start_time": round(lo, 2), "end_time": round(hi, 2)}, think)
            return render_tool_call("crop_video", {"start_time": start, "end_time": end}, think)
        if step == 2:
            think = (f"The dense frames from {min(seen, default=start):.1f}s to {max(seen, default=end):.1f}s "
                     f"confirm it; inspect {centre:.1f}s at full detail.")
            return render_tool_call("get_frame", {"timestamp": round(centre, 2)}, think)
        think = f"The frames at {', '.join(f'{t:.2f}s' for t in seen) or f'{centre:.1f}s'} show it clearly."
        return _answer(self.reference, self.reference.windows, think, messages)


def bracket(seen: Sequence[float], hits: Sequence[float], bounds: Window) -> Window:
    """From the first frame that shows it to the first seen frame after the last one (the end of ``bounds``, what
    was watched, when none): a window named by the labels *next to* the frames that show it, so writing it is a
    copy of the label just before a hit and the label just after one. (The window between the labels around the
    hits holds the event for sure, but its start is the label before the frame before the first hit: a reach
    a small model learnt far later and got wrong far more often.) The one rule for every window the teacher,
    the uniform policy and the curriculum write."""
    return hits[0], min((t for t in seen if t > hits[-1]), default=bounds[1])


def before_trace(seen: Sequence[float], marks: Sequence[float], bounds: Window) -> Window:
    """Where an event happened whose trace the frames at ``marks`` show and no seen frame shows itself: from the seen
    frame before the first mark (the start of ``bounds`` when none) to that mark."""
    return max((t for t in seen if t < marks[0]), default=bounds[0]), marks[0]


def _phase_window(seen: Sequence[float], phase: Window, bounds: Window) -> Window:
    """A phase as the seen frames place it (``bracket`` of the frames that show it); when none does, between
    the frames around its span."""
    shown = _inside(seen, phase)
    if shown:
        return bracket(seen, shown, bounds)
    return (max((t for t in seen if t < phase[0]), default=bounds[0]),
            min((t for t in seen if t >= phase[1]), default=bounds[1]))


def _span(stamps: Sequence[float]) -> str:
    """What the seen frames show, in words: the numbers go in the call or the answer only, written once."""
    return "One frame shows it" if len(stamps) == 1 else "Some frames show it"


class TeacherBackend:
    """Search, then localise; every step follows from the frames already seen (with perfect perception of them)
    and from what the question names, so a model can learn each one. Times it writes are labels it has seen.

    - A moment the question names (``Reference.moment``): ``get_frame`` there, then the answer.
    - Seen frames that show the evidence (hits), in a view coarser than ``fine_spacing``: crop their ``bracket``
      (the coarse-to-fine step).
    - Hits in a fine view: the answer; a grounding answer is their ``bracket``.
    - No hit, but a frame shows a trace the evidence left (``Reference.traces``): it happened between that frame
      and the seen frame before it (``before_trace``); crop there, or answer with it in a fine view.
    - No hit and no trace: crop the next phase of ``Reference.search`` (the phases the question implies, most
      likely first), where the overview frames place it; on a miss, the next one.
    - Nothing left to try, or ``max_calls`` spent: answer with what was watched last."""

    def __init__(self, reference: Reference, *, fine_spacing: float = 1.5, max_calls: int = 4) -> None:
        self.reference = reference
        self.fine_spacing = fine_spacing
        self.max_calls = max_calls

    def identity(self) -> dict[str, str]:
        return {"backend": "scripted", "model": "teacher"}

    def generate(self, messages: Sequence[Message], *, stop: Sequence[str], max_new_tokens: int,
                 turn: TurnFormat | None = None) -> str:
        duration = _duration(messages)
        reference = self.reference
        overview = sorted(set(_stamps(messages[1])))
        seen = sorted(set(_stamps(messages[-1])))
        own_turns = [message_text(m) for m in messages if m["role"] == "assistant"]
        calls = len(own_turns)
        watched = last_crop(own_turns, duration) or (0.0, duration)
        if reference.moment is not None:
            if calls == 0:
                think = "Look at the time asked."
                return render_tool_call("get_frame", {"timestamp": _round(reference.moment)}, think)
            found = (reference.moment - 1.0, reference.moment + 1.0)
            return _answer(reference, [found], "The frame shows it.", messages)
        hits = _first_hits(seen, reference.windows)
        if hits and calls < self.max_calls and _spacing(seen) > self.fine_spacing:
            lo, hi = bracket(seen, hits, watched)
            return _crop(lo, hi, f"{_span(hits)}. Look closer.")
        if hits:
            return _answer(reference, [bracket(seen, hits, watched)], f"{_span(hits)}.", messages)
        marks = _first_hits(seen, reference.traces)
        if marks:
            lo, hi = before_trace(seen, marks, watched)
            if calls < self.max_calls and _spacing(seen) > self.fine_spacing:
                return _crop(lo, hi, "A frame shows its trace. Look before it.")
            return _answer(reference, [(lo, hi)], "A frame shows its trace.", messages)
        views = [_stamps(m) for m in messages[1:] if m["role"] != "assistant"]  # the overview, then each result
        found_before = any(_first_hits(view, reference.windows) for view in views[:-1])
        misses = len(views) - 1  # no view has shown it yet: each call so far searched a place in vain
        if calls < self.max_calls and not found_before and misses < len(reference.search):
            label, phase = reference.search[misses]
            lo, hi = _phase_window(overview, phase, (0.0, duration))
            think = "No frame shows it yet." if misses == 0 else "Not there either."
            think += f" Next most likely: the {label}."
            return _crop(lo, hi, think)
        think = ("It falls between these frames; answering with the part watched last." if found_before else
                 "No frame showed it; answering with the part watched last.")
        if reference.grounding:
            return render_answer(render_window(watched), think)
        return render_answer(reference.fallback_answer, think)


def _round(t: float) -> float:
    return round(t, 1)  # the protocol's time format


def _crop(lo: float, hi: float, think: str) -> str:
    return render_tool_call("crop_video", {"start_time": _round(lo), "end_time": _round(hi)}, think)


def _spacing(stamps: Sequence[float]) -> float:
    """The mean gap between the frames of a view (its coarseness); a single frame is as fine as it gets."""
    return (stamps[-1] - stamps[0]) / (len(stamps) - 1) if len(stamps) > 1 else 0.0


def _first_hits(seen: Sequence[float], windows: Sequence[Window]) -> list[float]:
    """The seen frames inside the earliest window that any seen frame falls in (one window is localised at a time)."""
    for window in sorted(windows):
        inside = _inside(seen, window)
        if inside:
            return inside
    return []


class UniformBackend:
    def __init__(self, reference: Reference) -> None:
        self.reference = reference

    def identity(self) -> dict[str, str]:
        return {"backend": "scripted", "model": "uniform"}

    def generate(self, messages: Sequence[Message], *, stop: Sequence[str], max_new_tokens: int,
                 turn: TurnFormat | None = None) -> str:
        """The labels around the overview frames that show it (or before the first that shows its trace); when none
        does, the phase the question implies most (``Reference.search``), between the frames around it, else the
        middle of the video: the best a policy that only has these frames can write, with the times it saw."""
        duration = _duration(messages)
        seen = sorted(set(_stamps(messages[1])))
        hits = _first_hits(seen, self.reference.windows)
        if hits:
            return _answer(self.reference, [bracket(seen, hits, (0.0, duration))], f"{_span(hits)}.", messages)
        marks = _first_hits(seen, self.reference.traces)
        if marks:
            window = before_trace(seen, marks, (0.0, duration))
            return _answer(self.reference, [window], "A frame shows its trace.", messages)
        if self.reference.search:
            label, phase = self.reference.search[0]
            window = _phase_window(seen, phase, (0.0, duration))
            think = f"No frame shows it; most likely during the {label}."
        else:
            gap = duration / max(len(seen), 1)
            window = (max(0.0, duration / 2 - gap / 2), min(duration, duration / 2 + gap / 2))
            think = "No frame shows it; guessing the middle of the video."
        if self.reference.grounding:
            return render_answer(render_window(window), think)
        return render_answer(self.reference.fallback_answer, think)


class RandomBackend:
    def __init__(self, reference: Reference, *, seed: int = 0, calls: int = 2) -> None:
        self.reference = reference
        self.rng = random.Random(seed)
        self.calls = calls

    def identity(self) -> dict[str, str]:
        return {"backend": "scripted", "model": "random"}

    def generate(self, messages: Sequence[Message], *, stop: Sequence[str], max_new_tokens: int,
                 turn: TurnFormat | None = None) -> str:
        duration = _duration(messages)
        a, b = sorted(self.rng.uniform(0, duration) for _ in range(2))
        if _turns_taken(messages) < self.calls:
            if self.rng.random() < 0.5:
                return render_tool_call("get_frame", {"timestamp": round(a, 2)}, "A random look.")
            window = {"start_time": round(a, 2), "end_time": round(b, 2)}
            return render_tool_call("crop_video", window, "A random look.")
        if self.reference.grounding:
            return render_answer(render_window((a, b)), "A random guess.")
        return render_answer(self.reference.fallback_answer, "A random guess.")


class ReplayBackend:
    """Plays back fixed turns in order (then repeats the last) and keeps every prompt it was given."""

    def __init__(self, turns: Sequence[str], *, name: str = "replay") -> None:
        if not turns:
            raise ValueError("ReplayBackend needs at least one turn")
        self.turns = list(turns)
        self.name = name
        self.prompts: list[list[Message]] = []

    def identity(self) -> dict[str, str]:
        return {"backend": "scripted", "model": self.name}

    def generate(self, messages: Sequence[Message], *, stop: Sequence[str], max_new_tokens: int,
                 turn: TurnFormat | None = None) -> str:
        self.prompts.append(list(messages))
        return self.turns[min(len(self.prompts) - 1, len(self.turns) - 1)]


_SYNONYMS = {"clip_applied": ("clip",), "bleeding": ("bleed", "blood", "hemorrhage", "haemorrhage")}


def synthclin_reference(annotation: dict, question: str) -> Reference:
    """The reference a scripted policy needs for a free-form question about a SynthClin video: the first
    event, instrument or phase the question names. ``when`` questions are grounding questions."""
    q = question.lower()
    segments = [("events", e) for e in annotation["events"]] + [("instruments", i) for i in annotation["instruments"]]
    segments += [("phases", p) for p in annotation["phases"]]
    for _, segment in segments:
        label = segment["label"]
        names = (label, label.replace("_", " "), *_SYNONYMS.get(label, ()))
        if any(name in q for name in names):
            window = (float(segment["start"]), float(segment["end"]))
            caption = next((c["text"] for c in annotation["captions"]
                            if abs(c["start"] - window[0]) < 1e-6 and label.split("_")[0] in c["text"].lower()),
                           label.replace("_", " "))
            return Reference(answer=caption, windows=(window,), grounding=q.lstrip().startswith("when"))
    known = sorted({s["label"] for _, s in segments})
    raise ValueError(f"the question names nothing annotated in this video; ask about one of: {', '.join(known)}")
