"""Metrics as pure functions: interval IoU, recall at IoU thresholds, answer scores.

Formulas (all windows are ``[start, end]`` in seconds):

- ``iou(a, b) = |a ∩ b| / |a ∪ b|``; 0 when the union is empty (two zero-length windows) unless they are
  the same moment, which scores 1.
- ``set_iou(A, B)``: each set is first merged into disjoint intervals; IoU = total intersection / total union.
- ``recall_at(ious, t)`` = share of samples with IoU >= t, in percent; ``mean_iou`` = mean IoU in percent.
  Every threshold compares with ``at_least`` (a tolerance of ``TOLERANCE``), so an IoU of 0.5 that floats
  compute as 0.49999999999999994 still counts as 0.5.
- **Several truth windows** (one rule everywhere): ``answer_iou`` = ``set_iou`` of the windows the answer states
  (read by ``medscope.eval.answers.read_windows``) with the sample's evidence windows. The eval IoU, R@k and
  mIoU columns, grounding accuracy and the RL answer reward all use it; the crop and frame rewards use the
  truth window the crop (or frame) overlaps most (``best_iou``).
- ``normalize_answer``: lower case, punctuation to spaces, no articles, single spaces (SQuAD's normalisation,
  except that punctuation separates words, so "upper-left" matches "upper left").
- ``token_f1`` = harmonic mean of token precision and recall after normalisation.
- ``answer_score(prediction, sample) ∈ {0, 0.5, 1}`` (the offline accuracy rule, shared by the RL reward and
  the evaluator): MCQ: the first option letter matches; grounding: 1 if ``answer_iou`` >= 0.5, 0.5 if > 0;
  short answers: 1 for a normalised exact match, or token F1 >= 0.5 with every word of the reference in the
  prediction; 0.5 for any other F1 >= 0.25. (F1 >= 0.5 alone gave full marks to "upper left" for "lower left" and
  to one phase name for another that shares "dissection phase": most of what the tiny models' GVQA accuracy
  counted as right.)
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence

from medscope.eval.answers import read_windows

Window = Sequence[float]
TOLERANCE = 1e-9

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_LETTER = re.compile(r"^\s*\(?([A-Za-z])(?:[).:\s]|$)")


def iou(a: Window, b: Window) -> float:
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = max(a[1], b[1]) - min(a[0], b[0])
    if union <= 0:
        return 1.0 if a[0] == b[0] else 0.0
    return inter / union


def merge(windows: Sequence[Window]) -> list[tuple[float, float]]:
    """Sort and merge overlapping or touching windows into disjoint ones."""
    merged: list[tuple[float, float]] = []
    for start, end in sorted((float(w[0]), float(w[1])) for w in windows):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def set_iou(a: Sequence[Window], b: Sequence[Window]) -> float:
    """IoU of two sets of windows (each merged first); 0 when either set is empty."""
    ma, mb = merge(a), merge(b)
    if not ma or not mb:
        return 0.0
    if len(ma) == len(mb) == 1:
        return iou(ma[0], mb[0])
    inter = sum(max(0.0, min(x[1], y[1]) - max(x[0], y[0])) for x in ma for y in mb)
    union = sum(e - s for s, e in ma) + sum(e - s for s, e in mb) - inter
    return inter / union if union > 0 else 0.0


def at_least(value: float, threshold: float) -> bool:
    """``value >= threshold`` up to float rounding: the one comparison every IoU threshold uses."""
    return value >= threshold - TOLERANCE


def answer_iou(prediction: str | None, evidence: Sequence[Window]) -> float:
    """IoU of the union of the windows an answer states with the union of the truth windows (0 if it states none)."""
    reading = read_windows(prediction)
    return set_iou(reading.windows, evidence) if reading else 0.0


def best_iou(window: Window, evidence: Sequence[Window]) -> float:
    """IoU of ``window`` with the truth window it overlaps most (how a crop is scored)."""
    return max((iou(window, truth) for truth in evidence), default=0.0)


def recall_at(ious: Sequence[float], threshold: float) -> float:
    return 100.0 * sum(at_least(v, threshold) for v in ious) / len(ious) if ious else 0.0


def mean_iou(ious: Sequence[float]) -> float:
    return 100.0 * sum(ious) / len(ious) if ious else 0.0


def normalize_answer(text: str) -> str:
    text = text.lower()
    text = "".join(" " if ch in _PUNCTUATION else ch for ch in text)
    return " ".join(_ARTICLES.sub(" ", text).split())


def token_f1(prediction: str, reference: str) -> float:
    pred, ref = normalize_answer(prediction).split(), normalize_answer(reference).split()
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def option_letter(text: str) -> str | None:
    match = _LETTER.match(text)
    return match.group(1).upper() if match else None


def answer_score(prediction: str | None, *, answer: str, task: str, evidence: Sequence[Window]) -> float:
    """The offline accuracy rule in {0, 0.5, 1} (see the module docstring)."""
    if prediction is None or not prediction.strip():
        return 0.0
    if task == "mcq":
        return float(option_letter(prediction) is not None and option_letter(prediction) == option_letter(answer))
    if task == "grounding":
        overlap = answer_iou(prediction, evidence)
        return 1.0 if at_least(overlap, 0.5) else 0.5 if overlap > 0 else 0.0
    if normalize_answer(prediction) == normalize_answer(answer):
        return 1.0
    f1 = token_f1(prediction, answer)
    if f1 >= 0.5 and _holds_every_word(prediction, answer):
        return 1.0
    return 0.5 if f1 >= 0.25 else 0.0


def _holds_every_word(prediction: str, reference: str) -> bool:
    """Every word of the reference is in the prediction (as often): an answer said in a few more words. Half the
    words of a two-word label are a different label ("upper left" for "lower left")."""
    return not Counter(normalize_answer(reference).split()) - Counter(normalize_answer(prediction).split())
