"""The evaluator reads windows as a careful person would; one multi-window rule scores answers and rewards."""

from __future__ import annotations

import random

import pytest

from medscope.agent.protocol import render_answer, render_tool_call
from medscope.eval.answers import read_windows
from medscope.eval.metrics import answer_iou, answer_score, at_least, iou, recall_at, set_iou
from medscope.suite.records import Sample
from medscope.train.rewards import RewardConfig, crop_reward, format_reward

FORMS = [  # (answer, windows, parser) — the table in README "Reading answers"
    ("[12, 30]", [(12, 30)], "json"),
    ("[[12, 30], [41.5, 50]]", [(12, 30), (41.5, 50)], "json"),
    ("[80.3, 122.1] seconds", [(80.3, 122.1)], "brackets"),
    ("The evidence is at (12s, 30s).", [(12, 30)], "brackets"),
    ("[00:12, 00:30]", [(12, 30)], "brackets"),
    ("[1.5, 2] min", [(90, 120)], "brackets"),
    ("from 12 to 30 seconds", [(12, 30)], "range"),
    ("It happens from 12s to 30s.", [(12, 30)], "range"),
    ("12.0s-30.5s", [(12, 30.5)], "range"),
    ("00:12-00:30", [(12, 30)], "range"),
    ("between 1:02 and 1:30", [(62, 90)], "range"),
    ("0:01:02 to 0:01:30", [(62, 90)], "range"),
    ("from 1.5 to 2 minutes", [(90, 120)], "range"),
    ("1 min 5 s – 1 min 20 s", [(65, 80)], "range"),
    ("1m5s to 1m20s", [(65, 80)], "range"),
    ("from 2000 ms to 3500 ms", [(2, 3.5)], "range"),
    ("from 10 to 20 seconds and from 40 to 50 seconds", [(10, 20), (40, 50)], "range"),
]


@pytest.mark.parametrize(("text", "windows", "parser"), FORMS)
def test_forms_a_person_would_read(text: str, windows: list[tuple[float, float]], parser: str) -> None:
    reading = read_windows(text)
    assert reading is not None and reading.parser == parser
    assert [v for w in reading.windows for v in w] == pytest.approx([float(v) for w in windows for v in w])
    assert len(reading.windows) == len(windows)


@pytest.mark.parametrize("text", ["the bleeding", "at 12 s and 30 s", "from 30 to 12 seconds", "", None,
                                  "step 3", "[1, 2, 3]"])
def test_what_is_not_a_window(text: str | None) -> None:
    assert read_windows(text) is None


def test_never_raises_on_hostile_text() -> None:
    rng = random.Random(0)
    alphabet = "0123456789:.,-[](){} stominhr\n\ud800" + "é"
    texts = ["9" * 5000, "[" * 2000 + "]" * 2000, "[" + "1" * 5000 + ", 2]", "1:" * 3000, "from " * 5000]
    texts += ["".join(rng.choice(alphabet) for _ in range(rng.randrange(200))) for _ in range(300)]
    for text in texts:
        reading = read_windows(text)
        assert reading is None or all(0 <= s <= e for s, e in reading.windows)
        assert 0.0 <= answer_iou(text, [[10.0, 20.0]]) <= 1.0
        answer_score(text, answer="[10.00, 20.00]", task="grounding", evidence=[[10.0, 20.0]])


def test_realistic_outputs_within_eight_seconds_score_like_their_windows() -> None:
    """Outside models write times in prose; the strict reader alone scored these near 0."""
    rng = random.Random(1)
    writers = [lambda s, e: f"from {s:.0f} to {e:.0f} seconds", lambda s, e: f"{s:.1f}s-{e:.1f}s",
               lambda s, e: f"{int(s) // 60:02d}:{int(s) % 60:02d}-{int(e) // 60:02d}:{int(e) % 60:02d}",
               lambda s, e: f"[{s:.1f}, {e:.1f}] seconds", lambda s, e: f"between {s:.0f} and {e:.0f} s"]
    truths, outputs, exact = [], [], []
    for k in range(200):
        start = rng.uniform(0, 500)
        truth = [start, start + rng.uniform(10, 60)]
        guess = (max(0.0, truth[0] + rng.uniform(-8, 8)), truth[1] + rng.uniform(-8, 8))
        truths.append(truth)
        outputs.append(writers[k % len(writers)](*guess))
        exact.append(set_iou([(round(guess[0]), round(guess[1]))], [truth]))
    lenient = [answer_iou(o, [t]) for o, t in zip(outputs, truths, strict=True)]
    strict = [answer_iou(o, [t]) if o.startswith("[") and o.endswith("]") else 0.0
              for o, t in zip(outputs, truths, strict=True)]
    assert sum(lenient) / len(lenient) == pytest.approx(sum(exact) / len(exact), abs=0.03)
    assert sum(lenient) > 4 * sum(strict)


def _sample(evidence: list[list[float]], task: str = "grounding") -> Sample:
    answer = "[" + ", ".join(f"[{s:.2f}, {e:.2f}]" for s, e in evidence) + "]" if len(evidence) > 1 else (
        f"[{evidence[0][0]:.2f}, {evidence[0][1]:.2f}]")
    return Sample(id="q/v/grounding/0", video="v.mp4", duration=600.0, question="When?", answer=answer, task=task,  # type: ignore[arg-type]
                  evidence=evidence, source="qvhighlights")


def test_one_rule_for_several_truth_windows() -> None:
    sample = _sample([[10.0, 20.0], [40.0, 50.0]])
    both = "[[10, 20], [40, 50]]"
    assert answer_iou(both, sample.evidence) == 1.0
    assert answer_score(both, answer=sample.answer, task="grounding", evidence=sample.evidence) == 1.0
    assert answer_iou("[10, 20]", sample.evidence) == 0.5  # one of two windows: half the union
    assert answer_score("[10, 20]", answer=sample.answer, task="grounding", evidence=sample.evidence) == 1.0
    assert answer_score("[10, 15]", answer=sample.answer, task="grounding", evidence=sample.evidence) == 0.5
    # the crop is scored against the truth window it overlaps most: a tight crop on one window pays in full
    assert crop_reward([render_tool_call("crop_video", {"start_time": 40.0, "end_time": 50.0}, "t"),
                        render_answer(both, "t")], sample, RewardConfig()) == 2.0


def test_thresholds_tolerate_float_rounding() -> None:
    # crop [0.0, 0.6] on truth [0.2, 0.8]: IoU 0.4 / 0.8 = 0.5 in decimals, 0.49999999999999994 in floats
    raw = iou((0.0, 0.6), (0.2, 0.8))
    assert raw < 0.5
    rollout = [render_tool_call("crop_video", {"start_time": 0.0, "end_time": 0.6}, "t"), render_answer("x", "t")]
    assert crop_reward(rollout, _sample([[0.2, 0.8]]), RewardConfig()) == 1.0  # the bonus, not -1
    assert recall_at([raw], 0.5) == 100.0 and at_least(raw, 0.5)
    assert answer_score("[0.0, 0.6]", answer="[0.20, 0.80]", task="grounding", evidence=[[0.2, 0.8]]) == 1.0


def test_format_reward_stays_strict_while_accuracy_reads_prose() -> None:
    sample = _sample([[10.0, 20.0]])
    prose = [render_answer("from 10 to 20 seconds", "t")]
    assert answer_score("from 10 to 20 seconds", answer=sample.answer, task="grounding",
                        evidence=sample.evidence) == 1.0
    assert format_reward(prose, sample, RewardConfig()) == 0.0
    assert format_reward([render_answer("[[10.0, 20.0]]", "t")], sample, RewardConfig()) == 1.0
