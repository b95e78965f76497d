"""What the case page shows of one episode, built from the database: the same timeline as the evidence report
(``medscope.report.timeline``), the frames the model saw, the reference, the review and its audit trail."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from medscope.agent.trace import Episode, ObservationRecord, TurnRecord
from medscope.report.html import interval_iou
from medscope.report.timeline import (
    Timeline,
    Window,
    answer_windows,
    episode_timelines,
    parse_windows,
    reference_answer,
)
from medscope.review.db import Review


@dataclass(frozen=True)
class FrameView:
    seconds: float | None
    index: int | None


@dataclass(frozen=True)
class TurnView:
    number: int
    turn: TurnRecord
    frames: tuple[FrameView, ...]


@dataclass(frozen=True)
class EpisodeView:
    id: int
    ep: Episode
    verdict: str
    run: str
    timelines: tuple[Timeline, ...]
    evidence: tuple[Window, ...]
    answer_windows: tuple[Window, ...]
    truth: tuple[Window, ...]
    iou: float | None
    reference_answer: str | None
    overview: tuple[FrameView, ...]
    turns: tuple[TurnView, ...]
    review: Review | None
    draft_windows: tuple[Window, ...]  # what the correction editor starts from
    trace_json: str
    audit: tuple[dict[str, Any], ...]


def _frames(obs: ObservationRecord | None) -> tuple[FrameView, ...]:
    if obs is None:
        return ()
    return tuple(FrameView(t, obs.frame_indices[k] if k < len(obs.frame_indices) else None)
                 for k, t in enumerate(obs.timestamps))


def episode_view(row: dict[str, Any], review: Review | None, audit: list[dict[str, Any]]) -> EpisodeView:
    ep = Episode.from_dict(json.loads(row["trace"]))
    truth = parse_windows((ep.reference or {}).get("evidence"))
    evidence = parse_windows(ep.evidence)
    answered = answer_windows(ep)
    # without a review yet, the reviewer corrects the model's window rather than drawing one from nothing
    draft = review.windows if review is not None else tuple((s, e) for s, e in (evidence or answered) if e > s)
    return EpisodeView(
        id=row["id"], ep=ep, verdict=row["verdict"], run=row["run"],
        timelines=episode_timelines(ep, truth), evidence=tuple(evidence), answer_windows=tuple(answered),
        truth=tuple(truth), iou=interval_iou(evidence, truth) if evidence and truth else None,
        reference_answer=reference_answer(ep), overview=_frames(ep.overview),
        turns=tuple(TurnView(n, t, _frames(t.observation)) for n, t in enumerate(ep.turns, start=1)),
        review=review, draft_windows=tuple(draft),
        trace_json=json.dumps(ep.to_dict(), ensure_ascii=False, indent=1, default=str),
        audit=tuple({**a, "after": json.loads(a["after"])} for a in audit),
    )
