"""Reading the time windows out of an answer the way a careful person would, and saying how it was read.

The protocol asks for ``[s, e]`` (or ``[[s, e], ...]``) in seconds, and the RL format reward pays only for
that. Models from elsewhere write times in many other ways; scoring those 0 would measure the format, not
the grounding. ``read_windows`` tries, in order (the first that finds a window wins):

| parser     | accepts (examples)                                                                   |
|------------|--------------------------------------------------------------------------------------|
| ``json``   | the whole answer is ``[12, 30]`` or ``[[12, 30], [41, 50]]``                          |
| ``brackets`` | pairs inside text: ``[80.3, 122.1] seconds``, ``(12s, 30s)``, ``[00:12, 00:30]``, ``[1.5, 2] min`` |
| ``range``  | prose ranges: ``from 12 to 30 seconds``, ``12.0s-30.5s``, ``between 1:02 and 1:30``,  |
|            | ``00:12-00:30``, ``1 min 5 s – 1 min 20 s``, ``0:01:02 to 0:01:30``, several joined by "and" |

Times are seconds unless a unit says otherwise (``ms``, ``s``/``sec``/``seconds``, ``m``/``min``/``minutes``,
``h``/``hours``); a unit written once applies to both ends (``from 1.5 to 2 minutes``); ``mm:ss`` and
``hh:mm:ss`` are clock times. A pair whose end is before its start is not a window. Only the first
``MAX_CHARS`` characters are read and every number is bounded, so this never raises and stays fast on any text.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from medscope.agent.protocol import Window, parse_answer_windows

MAX_CHARS = 20_000
PARSERS = ("json", "brackets", "range")

_NUM = r"\d{1,9}(?:\.\d{1,9})?"
_CLOCK = r"\d{1,3}(?::\d{1,2}){1,2}(?:\.\d{1,6})?"
_UNIT = r"(?:milliseconds?|msecs?|ms|hours?|hrs?|h|minutes?|mins?|m|seconds?|secs?|s)(?![a-z])"
_PART = rf"{_NUM}\s*{_UNIT}"
# One time: a clock time, a compound like "1 min 5 s" / "1h2m3s", or a number with an optional unit.
_TIME = rf"(?:{_CLOCK}|(?:{_PART}\s*){{2,3}}|{_NUM}\s*(?:{_UNIT})?)"
_BRACKET = re.compile(rf"[\[(]\s*({_TIME})\s*[,;]\s*({_TIME})\s*[\])]+\s*({_UNIT})?", re.I)
_RANGE = re.compile(
    rf"(?:\b(from|between)\s+)?({_TIME})\s*(-|–|—|−|~|→|->|\bto\b|\buntil\b|\btill\b|\bthrough\b|\band\b)\s*({_TIME})",
    re.I,
)
_SCALE = {"ms": 0.001, "h": 3600.0, "m": 60.0, "s": 1.0}


@dataclass(frozen=True)
class Reading:
    windows: tuple[Window, ...]
    parser: str  # one of PARSERS


def _unit_scale(unit: str) -> float:
    unit = unit.lower()
    if unit.startswith(("ms", "msec", "milli")):
        return _SCALE["ms"]
    return _SCALE[unit[0]]


def _seconds(token: str, default_scale: float | None) -> tuple[float, bool]:
    """A time token in seconds, and whether it carried its own unit (a clock time does)."""
    token = token.strip()
    if ":" in token:
        total = 0.0
        for part in token.split(":"):
            total = total * 60 + float(part)
        return total, True
    parts = re.findall(rf"({_NUM})\s*({_UNIT})?", token, re.I)
    if len(parts) > 1 or parts[0][1]:
        return sum(float(n) * _unit_scale(u or "s") for n, u in parts), True
    return float(parts[0][0]) * (default_scale or 1.0), False


def _pair(first: str, second: str, after: str | None = None) -> Window | None:
    """Both ends in seconds; a unit on one end only (or after the pair) applies to the bare end."""
    shared = _unit_scale(after) if after else None
    if shared is None:
        for token in (second, first):
            bare = re.fullmatch(rf"\s*({_NUM})\s*({_UNIT})\s*", token, re.I)
            if bare:
                shared = _unit_scale(bare.group(2))
                break
    start, _ = _seconds(first, shared)
    end, _ = _seconds(second, shared)
    if not (math.isfinite(start) and math.isfinite(end)) or end < start:
        return None
    return start, end


def _brackets(text: str) -> tuple[Window, ...]:
    windows = (_pair(m.group(1), m.group(2), m.group(3)) for m in _BRACKET.finditer(text))
    return tuple(w for w in windows if w is not None)


def _ranges(text: str) -> tuple[Window, ...]:
    windows = []
    for match in _RANGE.finditer(text):
        lead, first, joiner, second = match.groups()
        if joiner.lower() == "and" and (lead or "").lower() != "between":
            continue  # "at 12 s and 30 s" names two moments, not a window
        window = _pair(first, second)
        if window is not None:
            windows.append(window)
    return tuple(windows)


def read_windows(text: str | None) -> Reading | None:
    """The windows an answer states, and the parser that read them; None when it states none. Never raises."""
    if not text:
        return None
    text = text[:MAX_CHARS]
    strict = parse_answer_windows(text)
    if strict:
        return Reading(strict, "json")
    for name, parse in (("brackets", _brackets), ("range", _ranges)):
        found = parse(text)
        if found:
            return Reading(found, name)
    return None

