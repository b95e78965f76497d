"""GA-GRPO rewards on hand-made completions and the advantage modulation on a hand-made group."""

from __future__ import annotations

import pytest

from medscope.agent.protocol import render_answer, render_tool_call
from medscope.suite.records import Sample
from medscope.train import rewards
from medscope.train.rewards import RewardConfig, ga_advantages, total_reward

CFG = RewardConfig()


def _sample(
    task: str = "grounded_vqa", evidence: list[list[float]] | None = None, answer: str = "upper left"
) -> Sample:
    return Sample(id="s", video="v.mp4", duration=100.0, question="q", answer=answer, task=task,  # type: ignore[arg-type]
                  evidence=evidence or [[40.0, 50.0]], source="t")


def crop(s: float, e: float) -> str:
    return render_tool_call("crop_video", {"start_time": s, "end_time": e}, "look")


def frame(t: float) -> str:
    return render_tool_call("get_frame", {"timestamp": t}, "closer")


@pytest.mark.parametrize(
    ("window", "expected"),
    [
        ((40.0, 50.0), 2.0),  # IoU 1: 1 + 0.1 * floor(0.5 / 0.05) = 2
        ((40.0, 56.0), 1.2),  # IoU 10/16 = 0.625: 1 + 0.1 * floor(0.125 / 0.05) = 1 + 0.1 * 2
        ((40.0, 60.0), 1.0),  # IoU 0.5 exactly: 1 + 0
        ((45.0, 70.0), -1.0),  # IoU 5/30: partial overlap below h0
        ((60.0, 70.0), 0.0),  # no overlap
        ((-20.0, 45.0), -1.0),  # clamped to [0, 45]: IoU 5/50
    ],
)
def test_crop_bonus(window: tuple[float, float], expected: float) -> None:
    assert rewards.crop_reward([crop(*window), render_answer("x", "t")], _sample(), CFG) == pytest.approx(expected)


def test_crop_reward_uses_the_last_crop_and_plain_iou_ablation() -> None:
    turns = [crop(40, 50), crop(60, 70), render_answer("x", "t")]
    assert rewards.crop_reward(turns, _sample(), CFG) == 0.0
    plain = RewardConfig(crop_bonus=False)
    assert rewards.crop_reward([crop(40, 60), render_answer("x", "t")], _sample(), plain) == pytest.approx(0.5)
    assert rewards.crop_reward([render_answer("x", "t")], _sample(), CFG) == 0.0


def test_coarse_penalty_sets_what_a_coarse_crop_earns_and_nothing_else() -> None:
    no_trap = RewardConfig(coarse_penalty=0.0)
    coarse, miss, tight = crop(45, 70), crop(60, 70), crop(40, 56)  # IoU 5/30, 0, 10/16 with the truth [40, 50]
    assert rewards.crop_reward([coarse, render_answer("x", "t")], _sample(), CFG) == -1.0  # the paper: below a miss
    assert rewards.crop_reward([coarse, render_answer("x", "t")], _sample(), no_trap) == 0.0  # as a miss
    assert rewards.crop_reward([miss, render_answer("x", "t")], _sample(), no_trap) == 0.0
    assert rewards.crop_reward([tight, render_answer("x", "t")], _sample(), no_trap) == pytest.approx(1.2)


def test_single_moment_truth() -> None:
    moment = _sample(evidence=[[42.0, 42.0]])
    assert rewards.crop_reward([crop(40, 45), render_answer("x", "t")], moment, CFG) == 1.0
    assert rewards.crop_reward([crop(43, 45), render_answer("x", "t")], moment, CFG) == 0.0
    assert rewards.frame_reward([frame(42.4), render_answer("x", "t")], moment, CFG) == pytest.approx(0.6)
    assert rewards.frame_reward([frame(44.0), render_answer("x", "t")], moment, CFG) == 0.0


def test_frame_reward_inside_window() -> None:
    assert rewards.frame_reward([frame(45), render_answer("x", "t")], _sample(), CFG) == 1.0
    assert rewards.frame_reward([frame(45), frame(70), render_answer("x", "t")], _sample(), CFG) == 0.0


def test_format_reward() -> None:
    good = [crop(40, 50), frame(45), render_answer("upper left", "t")]
    assert rewards.format_reward(good, _sample(), CFG) == 1.0
    no_think = ['<tool_call>{"name": "get_frame", "arguments": {"timestamp": 1}}</tool_call>', good[-1]]
    assert rewards.format_reward(no_think, _sample(), CFG) == 0.0
    unknown = [render_tool_call("zoom", {"x": 1}, "t"), good[-1]]
    assert rewards.format_reward(unknown, _sample(), CFG) == 0.0
    missing_arg = [render_tool_call("crop_video", {"start_time": 1}, "t"), good[-1]]
    assert rewards.format_reward(missing_arg, _sample(), CFG) == 0.0
    assert rewards.format_reward([crop(1, 2)], _sample(), CFG) == 0.0  # never answered
    long = [render_answer("x" * 1001, "t")]
    assert rewards.format_reward(long, _sample(), CFG) == 0.0
    two = ["<think>t</think><answer>a</answer><answer>b</answer>"]
    assert rewards.format_reward(two, _sample(), CFG) == 0.0


def test_unfinished_marks_a_rollout_that_ends_on_a_call() -> None:
    """Cut by the trainer's budget (a call, never run, then nothing) is told from a policy that never answered
    in words (prose last) and from a finished episode; both of the first two score R_fmt 0."""
    assert rewards.unfinished([crop(40, 50), crop(42, 46)], _sample(), CFG) == 1.0
    assert rewards.unfinished([crop(40, 50), "<think>t</think> it is upper left"], _sample(), CFG) == 0.0
    assert rewards.unfinished([crop(40, 50), render_answer("upper left", "t")], _sample(), CFG) == 0.0
    assert rewards.unfinished([], _sample(), CFG) == 0.0


def test_accuracy_reward_is_the_evaluator_rule() -> None:
    assert rewards.accuracy_reward([render_answer("Upper-left", "t")], _sample(), CFG) == 1.0
    assert rewards.accuracy_reward([render_answer("lower right", "t")], _sample(), CFG) == 0.0
    grounding = _sample(task="grounding", answer="[40.00, 50.00]")
    assert rewards.accuracy_reward([render_answer("[41, 50]", "t")], grounding, CFG) == 1.0
    assert rewards.accuracy_reward([crop(1, 2)], grounding, CFG) == 0.0


def test_grounding_iou_pays_a_tighter_window_more() -> None:
    grounding = _sample(task="grounding", answer="[40.00, 50.00]")
    dense = RewardConfig(grounding_iou=True)
    wide, near = [render_answer("[0, 100]", "t")], [render_answer("[30, 48]", "t")]
    # The evaluator's rule pays any overlap the same half mark; the IoU tells the wide window from the near one.
    assert rewards.accuracy_reward(wide, grounding, CFG) == rewards.accuracy_reward(near, grounding, CFG) == 0.5
    assert rewards.accuracy_reward(wide, grounding, dense) == pytest.approx(0.1)
    assert rewards.accuracy_reward(near, grounding, dense) == pytest.approx(8 / 20)
    assert rewards.accuracy_reward([crop(1, 2)], grounding, dense) == 0.0  # no answer
    # Other tasks keep the evaluator's rule.
    assert rewards.accuracy_reward([render_answer("lower left", "t")], _sample(), dense) == 0.5


def test_total_reward_and_ablation() -> None:
    turns = [crop(40, 50), frame(45), render_answer("upper left", "t")]
    full = total_reward(turns, _sample())
    assert (full.accuracy, full.format, full.crop, full.frame, full.evidence) == (1.0, 1.0, 2.0, 1.0, 3.0)
    assert full.total == pytest.approx(5.0) and full.used_tool
    ablated = total_reward(turns, _sample(), RewardConfig(evidence_reward=False))
    assert ablated.total == pytest.approx(2.0) and ablated.crop == 2.0  # still logged, not paid
    weighted = total_reward(turns, _sample(), RewardConfig(w_evi=0.5))
    assert weighted.total == pytest.approx(3.5)


def test_advantage_modulation_on_a_hand_made_group() -> None:
    # rewards 4, 2, 1, 1 → mean 2 → raw advantages 2, 0, -1, -1
    r = [4.0, 2.0, 1.0, 1.0]
    evidence = [1.0, 0.0, 2.0, 0.0]
    used = [True, True, True, False]
    assert ga_advantages(r, evidence, used, modulation=False) == [2.0, 0.0, -1.0, -1.0]
    # +2 with evidence → ×1.2; 0 stays; -1 with evidence → ×0.8; -1 without a tool call → unchanged
    assert ga_advantages(r, evidence, used) == pytest.approx([2.4, 0.0, -0.8, -1.0])
    # a positive advantage without evidence is damped, a negative one amplified
    assert ga_advantages([3.0, 1.0], [0.0, 0.0], [True, True]) == pytest.approx([0.8, -1.2])
    # negative evidence reward (a sloppy crop): no modulation
    assert ga_advantages([3.0, 1.0], [-1.0, -1.0], [True, True]) == pytest.approx([1.0, -1.0])
    normalised = ga_advantages([3.0, 1.0], [0.0, 0.0], [False, False], std_normalise=True)
    assert normalised == pytest.approx([1 / (2**0.5 + 1e-4), -1 / (2**0.5 + 1e-4)])
    with pytest.raises(ValueError, match="one entry per rollout"):
        ga_advantages([1.0], [], [])
