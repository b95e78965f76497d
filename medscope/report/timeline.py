"""The timelines and verdicts that the evidence report and the review workspace share, so a window and a
verdict look the same in both.

``episode_timelines(ep, truth)`` lays one episode out on the whole video and, when the action covers a small
part of a long video, on a close-up around it. Each timeline has an axis of ticks and one lane per source:
the overview samples, each tool call (its window, numbered by turn, as run or as asked when it failed, and
the frames it returned), the windows the answer states (a grounding answer), the evidence and the ground
truth, which is also shaded behind every lane. Marks carry their position as percentages of the timeline's
span, and the seconds they stand for, so a template only places them (and a page can seek a player there).

``verdict(ep)`` is the answer judged against the reference by the evaluator's own rule
(``medscope.eval.metrics.answer_score``): right, partly, wrong, or unknown without a reference.
``reference_answer(ep)`` is the reference as a reader should compare it with the answer: for a grounding
question, the truth windows (not the caption of the event, which would read like any answer).

Also here: ``parse_windows`` (a trace's ``[[start, end], ...]`` as clean float pairs), ``is_number`` and the
two time formats the templates show (``seconds``, ``clock``).

It reads the trace and draws nothing: no HTML (the templates do that), no frames and no video access (the
length comes from the trace).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeGuard

from medscope.agent.trace import Episode, TurnRecord
from medscope.eval.answers import read_windows
from medscope.eval.metrics import answer_score

Window = tuple[float, float]
VERDICTS = ("right", "partly", "wrong", "unknown")

_TICK_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200)


@dataclass(frozen=True)
class Mark:
    """A timeline element; ``left`` and ``width`` are percentages of the timeline's span."""

    kind: str  # css class: sample | crop | frame | answer | evidence | truth, plus " error" for a failed call
    left: float
    width: float
    title: str
    label: str = ""
    start: float = 0.0  # the seconds the mark stands for
    end: float = 0.0


@dataclass(frozen=True)
class Lane:
    label: str
    marks: tuple[Mark, ...]
    note: str = ""


@dataclass(frozen=True)
class Timeline:
    title: str
    axis: tuple[Mark, ...]
    lanes: tuple[Lane, ...]
    bands: tuple[Mark, ...]  # the ground truth, shaded behind every lane
    lo: float  # the span in seconds
    hi: float


def episode_timelines(ep: Episode, truth: list[Window]) -> tuple[Timeline, ...]:
    """The whole video, then a closer view when the action is brief.

    The video's length is the trace's ``duration`` or, when that is missing, the latest time the trace names.
    """
    seen = [t for obs in (ep.overview, *(t.observation for t in ep.turns)) if obs for t in obs.timestamps]
    ends = [e for _, e in (*parse_windows(ep.evidence), *answer_windows(ep), *truth)]
    duration = ep.duration if is_number(ep.duration) and ep.duration > 0 else max([*seen, *ends, 1.0])
    timelines = [_timeline(ep, truth, _Scale(0.0, duration), "whole video")]
    if (zoom := _zoom(ep, truth, duration)) is not None:
        timelines.append(_timeline(ep, truth, zoom, f"close-up {clock(zoom.lo)} – {clock(zoom.hi)}"))
    return tuple(timelines)


def is_grounding(ep: Episode) -> bool:
    """A question answered with time windows: the suite's grounding task, or (a trace of ``medscope ask``, which
    has no task) an answer that states windows about a reference that states none (a caption)."""
    if ep.task is not None:
        return ep.task == "grounding"
    reference = ep.reference or {}
    return read_windows(ep.answer) is not None and read_windows(str(reference.get("answer") or "")) is None


def answer_windows(ep: Episode) -> list[Window]:
    """The windows a grounding answer states (none for other questions: their numbers are not places)."""
    reading = read_windows(ep.answer) if is_grounding(ep) else None
    return [(min(s, e), max(s, e)) for s, e in reading.windows] if reading else []


def reference_answer(ep: Episode) -> str | None:
    """The reference answer to show beside the answer: the truth windows for a grounding question."""
    reference = ep.reference or {}
    truth = parse_windows(reference.get("evidence"))
    if is_grounding(ep) and truth:
        return "; ".join(f"{seconds(s)} – {seconds(e)}" for s, e in truth)
    answer = reference.get("answer")
    return None if answer is None else str(answer)


def verdict(ep: Episode, accuracy: float | None = None) -> str:
    """right | partly | wrong | unknown: ``accuracy`` (an eval's score) or the answer scored against the reference
    by the evaluator's rule; unknown when there is no reference to score against."""
    if accuracy is None:
        reference = ep.reference or {}
        if reference.get("answer") is None and not reference.get("evidence"):
            return "unknown"
        truth = parse_windows(reference.get("evidence"))
        task = "grounding" if is_grounding(ep) else (ep.task or "grounded_vqa")
        accuracy = answer_score(ep.answer, answer=str(reference.get("answer") or ""), task=task, evidence=truth)
    return "right" if accuracy >= 1.0 else "partly" if accuracy > 0 else "wrong"


def parse_windows(value: Any) -> list[Window]:
    """``[[s, e], ...]`` (or a single ``[s, e]``) as float pairs; anything malformed is skipped."""
    if not isinstance(value, list | tuple) or not value:
        return []
    if all(is_number(v) for v in value) and len(value) == 2:
        value = [value]
    out = []
    for item in value:
        if isinstance(item, list | tuple) and len(item) == 2 and all(is_number(v) for v in item):
            start, end = float(item[0]), float(item[1])
            out.append((min(start, end), max(start, end)))
    return out


def is_number(value: Any) -> TypeGuard[float]:
    """A finite int or float, and not a bool."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def seconds(value: float | None) -> str:
    """``87.5 s``: the timestamp as the model was shown it."""
    if value is None:
        return "?"
    return f"{float(value):.2f}".rstrip("0").rstrip(".") + " s"


def clock(value: float | None) -> str:
    """``1:27.5`` (or ``1:02:07``): for reading a long video's timeline."""
    if value is None:
        return "?"
    tenths = round(float(value) * 10)  # round once, so 59.96 s reads 1:00, never 0:60.0
    hours, rest = divmod(tenths, 36000)
    minutes, secs = divmod(rest, 600)
    text = f"{secs // 10:02d}" + (f".{secs % 10}" if secs % 10 else "")
    return f"{int(hours)}:{int(minutes):02d}:{text}" if hours else f"{int(minutes)}:{text}"


@dataclass(frozen=True)
class _Scale:
    """Maps seconds in [lo, hi] to percent of a track; says whether an interval shows at all."""

    lo: float
    hi: float

    def pct(self, t: float) -> float:
        return min(max((float(t) - self.lo) / (self.hi - self.lo) * 100.0, 0.0), 100.0)

    def shows(self, start: float, end: float | None = None) -> bool:
        return self.lo <= (start if end is None else end) and start <= self.hi

    def mark(self, kind: str, start: float, end: float, title: str, label: str = "") -> Mark:
        return Mark(kind, self.pct(start), max(self.pct(end) - self.pct(start), 0.0), title, label, start, end)


def _window_lane(label: str, kind: str, windows: Sequence[Window], scale: _Scale) -> Lane:
    marks = tuple(
        scale.mark(kind, s, e, f"{label}: {seconds(s)}" + ("" if e <= s else f" – {seconds(e)}"))
        for s, e in windows
        if scale.shows(s, e)
    )
    return Lane(label, marks)


def _turn_lane(number: int, turn: TurnRecord, scale: _Scale) -> Lane | None:
    """The lane of one tool call: its window (as run, or as asked when it failed) and the frames it returned."""
    obs = turn.observation
    tool = obs.tool if obs is not None else turn.tool
    if tool is None:
        return None
    args = obs.arguments if obs is not None else turn.arguments
    args = args if isinstance(args, dict) else {}
    kind = {"crop_video": "crop", "get_frame": "frame"}.get(tool, "crop") + ("" if obs is not None else " error")
    start, end = args.get("start_time", args.get("timestamp")), args.get("end_time", args.get("timestamp"))
    marks: list[Mark] = []
    note = ""
    if is_number(start) and is_number(end):
        lo, hi = sorted((float(start), float(end)))
        span = seconds(lo) if lo == hi else f"{seconds(lo)} – {seconds(hi)}"
        if scale.shows(lo, hi):
            marks.append(scale.mark(kind, lo, hi, f"turn {number}: {tool} {span}", str(number)))
    elif obs is None:
        note = "no valid time in the call"
    if obs is not None:
        marks.extend(
            scale.mark("sample", t, t, f"frame shown at {seconds(t)}") for t in obs.timestamps if scale.shows(t)
        )
    return Lane(f"{number} · {tool}", tuple(marks), note)


def _timeline(ep: Episode, truth: list[Window], scale: _Scale, title: str) -> Timeline:
    span = scale.hi - scale.lo
    step = next((s for s in _TICK_STEPS if span / s <= 10), _TICK_STEPS[-1])
    first = math.ceil(scale.lo / step - 1e-9)
    ticks = [k * step for k in range(first, int(scale.hi / step + 1e-9) + 1)]
    axis = tuple(scale.mark("tick", t, t, seconds(t), clock(t)) for t in ticks)
    lanes = []
    if ep.overview is not None:
        samples = [t for t in ep.overview.timestamps if scale.shows(t)]
        lanes.append(
            Lane("overview", tuple(scale.mark("sample overview", t, t, f"overview at {seconds(t)}") for t in samples))
        )
    lanes.extend(lane for n, turn in enumerate(ep.turns, start=1) if (lane := _turn_lane(n, turn, scale)))
    if answered := answer_windows(ep):
        lanes.append(_window_lane("answer", "answer", answered, scale))
    lanes.append(_window_lane(f"evidence ({ep.evidence_source})", "evidence", parse_windows(ep.evidence), scale))
    bands: tuple[Mark, ...] = ()
    if truth:
        lanes.append(_window_lane("ground truth", "truth", truth, scale))
        bands = lanes[-1].marks
    return Timeline(title, axis, tuple(lanes), bands, scale.lo, scale.hi)


def _zoom(ep: Episode, truth: list[Window], duration: float) -> _Scale | None:
    """A closer view around where the model looked, when that is a small part of a long video."""
    times = [t for turn in ep.turns if turn.observation for t in turn.observation.timestamps]
    times += [t for turn in ep.turns if turn.observation for t in turn.observation.arguments.values() if is_number(t)]
    times += [t for window in (*parse_windows(ep.evidence), *answer_windows(ep), *truth) for t in window]
    if not times:
        return None
    lo, hi = min(times), max(times)
    pad = max((hi - lo) * 0.15, 2.0)
    lo, hi = max(0.0, math.floor(lo - pad)), min(duration, math.ceil(hi + pad))
    return _Scale(lo, hi) if 0 < hi - lo < 0.3 * duration else None
