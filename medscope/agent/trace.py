"""Episode records and their JSONL traces (one episode a line, a schema version, no pixels).

The trace is the one shared artifact: the evidence report, the evaluator and the SFT data are functions of
it. Frames are referenced by timestamp and frame index, so a report can re-extract them from the video.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medscope.io import json_line

SCHEMA = "medscope.episode/1"


@dataclass
class ObservationRecord:
    tool: str
    arguments: dict[str, float]
    timestamps: list[float]
    frame_indices: list[int]
    notes: list[str] = field(default_factory=list)


@dataclass
class TurnRecord:
    """One assistant turn: what the model wrote, how it parsed, and what came back."""

    index: int
    raw: str
    kind: str  # "tool_call" | "answer" | "format_error"
    think: str = ""
    tool: str | None = None
    arguments: Any = None
    observation: ObservationRecord | None = None
    error: str | None = None  # the tool error or format error shown to the model
    forced: bool = False  # the turn after the budget ran out, where only an answer is accepted
    generate_seconds: float = 0.0
    tool_seconds: float = 0.0


@dataclass
class Episode:
    question: str
    video: str
    duration: float
    backend: dict[str, str]
    id: str = ""
    task: str | None = None
    options: list[str] | None = None
    config: dict[str, Any] = field(default_factory=dict)
    prompt_version: str = ""
    overview: ObservationRecord | None = None
    turns: list[TurnRecord] = field(default_factory=list)
    answer: str | None = None
    evidence: list[list[float]] = field(default_factory=list)
    evidence_source: str = "none"  # "explicit" (<evidence>), "tools" (last crop / get_frame) or "none"
    last_crop: list[float] | None = None
    last_frame: float | None = None
    tool_calls: int = 0
    frames_viewed: int = 0
    forced_answer: bool = False
    seconds: float = 0.0
    reference: dict[str, Any] | None = None  # ground truth when known: {"answer": ..., "evidence": [[s, e]]}
    meta: dict[str, Any] = field(default_factory=dict)
    schema: str = SCHEMA

    @property
    def errors(self) -> list[str]:
        return [t.error for t in self.turns if t.error]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Episode:
        if data.get("schema") != SCHEMA:
            raise ValueError(f"not a medscope episode (schema {data.get('schema')!r}, expected {SCHEMA!r})")
        data = dict(data)
        if data.get("overview") is not None:
            data["overview"] = ObservationRecord(**data["overview"])
        turns = []
        for turn in data.get("turns", []):
            turn = dict(turn)
            if turn.get("observation") is not None:
                turn["observation"] = ObservationRecord(**turn["observation"])
            turns.append(TurnRecord(**turn))
        data["turns"] = turns
        return cls(**data)


def append_episode(path: str | Path, episode: Episode) -> None:
    """Append one line; a line is written whole with one write, so a crash never leaves half an episode
    followed by a good one (``read_episodes`` reports a torn last line instead of skipping it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json_line(episode.to_dict())
    with path.open("a", encoding="utf-8") as handle:
        handle.write(line)
        handle.flush()


def read_episodes(path: str | Path) -> Iterator[Episode]:
    with Path(path).open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield Episode.from_dict(json.loads(line))
            except (json.JSONDecodeError, TypeError, ValueError) as exc:
                raise ValueError(f"{path}:{number}: not a valid episode line ({exc})") from exc
