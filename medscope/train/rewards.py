"""GA-GRPO rewards and advantages as pure functions (the rules below; no training framework here).

A rollout is the list of assistant turns a policy wrote in one episode (protocol text). Each reward is a
function ``(turns, sample, config) -> float``:

- ``accuracy_reward`` R_acc ∈ {0, 0.5, 1}: the evaluator's own ``answer_score`` on the final answer (an LLM
  judge can replace it through ``medscope.eval.judge``); with ``grounding_iou``, a grounding answer's R_acc is its
  IoU with the truth instead, which pays a tighter window more (the evaluator's rule pays any overlap 0.5, so a
  window over a whole phase earns as much as one a little off the event);
- ``format_reward`` R_fmt ∈ {0, 1}: every turn opens with ``<think>``; all turns but the last make exactly one
  valid call to a known tool; the last gives exactly one answer of at most ``max_answer_chars`` (for grounding,
  windows in the protocol's strict form ``[s, e]`` / ``[[s, e], ...]``);
- ``crop_reward`` R_crop, the IoU bonus on the *last* ``crop_video``, whose IoU is taken with the truth window it
  overlaps most (several truth windows) and compared with a float tolerance: IoU ≥ h0 → 1 + η·⌊(IoU − h0)/Δ⌋ (1 … 2);
  0 < IoU < h0 → −1 (``coarse_penalty``); no overlap or no crop → 0; a single-moment truth: 1 if the crop contains
  it. ``crop_bonus=False`` (the ablation) pays the plain IoU instead. The −1 ranks a crop that finds the evidence
  but is coarse below one that misses it: right for a policy whose crops mostly overlap (it pushes them tighter),
  a trap for one whose crops rarely reach h0 (it learns to miss); ``coarse_penalty=0`` keeps the bonus and drops
  the trap;
- ``frame_reward`` R_frame on the *last* ``get_frame``: 1 inside the truth window; for a single-moment truth
  max(0, 1 − |t − g| / w);
- ``total_reward`` R = w_acc·R_acc + w_fmt·R_fmt + w_evi·(R_crop + R_frame), with every component returned;
- ``unfinished`` ∈ {0, 1}, logged and never paid: the rollout ends on a tool call nobody ran, because the trainer's
  tool rounds or completion budget ran out. Inference has no token budget, so where the completion budget cut the
  rollout, R_fmt = 0 measures the budget, not the policy.

``ga_advantages`` turns one group's rewards into advantages: A_i = R_i − mean(R) (÷ std with
``std_normalise``), then the evidence-weighted modulation for rollouts that called a tool and have R_evi ≥ 0:
A_i > 0 → ×1.2 if R_evi > 0 else ×0.8; A_i < 0 → ×0.8 if R_evi > 0 else ×1.2. ``modulate`` is that rule for one
rollout; the GA-GRPO trainer applies the same function.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from medscope.agent.protocol import (
    FinalAnswer,
    ToolCall,
    last_crop,
    last_frame,
    parse_answer_windows,
    parse_turn,
    tool_calls,
)
from medscope.eval.metrics import answer_iou, answer_score, at_least, best_iou
from medscope.suite.records import Sample
from medscope.video.tools import TOOL_ARGUMENTS


@dataclass(frozen=True)
class RewardConfig:
    w_acc: float = field(default=1.0, metadata={"help": "weight of the answer reward"})
    w_fmt: float = field(default=1.0, metadata={"help": "weight of the format reward"})
    w_evi: float = field(default=1.0, metadata={"help": "weight of the evidence reward (crop + frame)"})
    h0: float = field(default=0.5, metadata={"help": "IoU threshold of the crop bonus"})
    delta: float = field(default=0.05, metadata={"help": "IoU step of the crop bonus"})
    eta: float = field(default=0.1, metadata={"help": "bonus per IoU step above h0"})
    coarse_penalty: float = field(default=-1.0, metadata={"help": "R_crop of a crop with 0 < IoU < h0"})
    moment_width: float = field(default=1.0, metadata={"help": "seconds over which get_frame's reward decays"})
    evidence_reward: bool = field(default=True, metadata={"help": "pay R_evi (off: the ablation)"})
    crop_bonus: bool = field(default=True, metadata={"help": "piecewise IoU bonus (off: plain IoU)"})
    max_answer_chars: int = field(default=1000, metadata={"help": "longer answers earn no format reward"})
    grounding_iou: bool = field(default=False, metadata={"help": "R_acc of a grounding answer is its IoU (off: the "
                                                                  "evaluator's 0 / 0.5 / 1)"})


@dataclass(frozen=True)
class RewardBreakdown:
    accuracy: float
    format: float
    crop: float
    frame: float
    evidence: float
    total: float
    used_tool: bool

    def as_dict(self) -> dict[str, float | bool]:
        return asdict(self)


def final_answer(turns: Sequence[str], duration: float) -> FinalAnswer | None:
    parsed = parse_turn(turns[-1], duration=duration) if turns else None
    return parsed if isinstance(parsed, FinalAnswer) else None


def accuracy_reward(turns: Sequence[str], sample: Sample, config: RewardConfig) -> float:
    answer = final_answer(turns, sample.duration)
    if config.grounding_iou and sample.task == "grounding":
        return answer_iou(answer.answer, sample.evidence) if answer else 0.0
    return answer_score(answer.answer if answer else None, answer=sample.answer, task=sample.task,
                        evidence=sample.evidence)


def format_reward(turns: Sequence[str], sample: Sample, config: RewardConfig) -> float:
    if not turns or not all(t.lstrip().startswith("<think>") for t in turns):
        return 0.0
    for text in turns[:-1]:
        call = parse_turn(text, duration=sample.duration)
        if not (isinstance(call, ToolCall) and call.name in TOOL_ARGUMENTS and isinstance(call.arguments, dict)
                and set(TOOL_ARGUMENTS[call.name]) <= set(call.arguments)):
            return 0.0
    answer = final_answer(turns, sample.duration)
    if answer is None or len(answer.answer) > config.max_answer_chars:
        return 0.0
    # The evaluator reads prose windows too; training pays only for the protocol's own form.
    return float(sample.task != "grounding" or parse_answer_windows(answer.answer) is not None)


def unfinished(turns: Sequence[str], sample: Sample, config: RewardConfig) -> float:
    return float(bool(turns) and isinstance(parse_turn(turns[-1], duration=sample.duration), ToolCall))


def _moment(sample: Sample) -> float | None:
    """The truth as a single moment, when its evidence is one zero-length window."""
    if len(sample.evidence) == 1 and sample.evidence[0][1] - sample.evidence[0][0] <= 1e-6:
        return float(sample.evidence[0][0])
    return None


def crop_reward(turns: Sequence[str], sample: Sample, config: RewardConfig) -> float:
    window = last_crop(turns, sample.duration)
    if window is None:
        return 0.0
    moment = _moment(sample)
    if moment is not None:
        return float(window[0] <= moment <= window[1])
    overlap = best_iou(window, sample.evidence)
    if not config.crop_bonus:
        return overlap
    if at_least(overlap, config.h0):
        steps = math.floor((overlap - config.h0) / config.delta + 1e-6)  # 0.6 - 0.5 is 0.0999… in floats
        return 1.0 + config.eta * steps
    return config.coarse_penalty if overlap > 0 else 0.0


def frame_reward(turns: Sequence[str], sample: Sample, config: RewardConfig) -> float:
    t = last_frame(turns, sample.duration)
    if t is None:
        return 0.0
    moment = _moment(sample)
    if moment is not None:
        return max(0.0, 1.0 - abs(t - moment) / config.moment_width)
    return float(any(s <= t <= e for s, e in sample.evidence))


def total_reward(turns: Sequence[str], sample: Sample, config: RewardConfig | None = None) -> RewardBreakdown:
    config = config or RewardConfig()
    acc, fmt = accuracy_reward(turns, sample, config), format_reward(turns, sample, config)
    crop, frame = crop_reward(turns, sample, config), frame_reward(turns, sample, config)
    evidence = crop + frame if config.evidence_reward else 0.0
    total = config.w_acc * acc + config.w_fmt * fmt + config.w_evi * evidence
    used_tool = bool(tool_calls(turns, sample.duration))
    return RewardBreakdown(acc, fmt, crop, frame, evidence, total, used_tool)


def ga_advantages(
    rewards: Sequence[float],
    evidence: Sequence[float],
    used_tool: Sequence[bool],
    *,
    modulation: bool = True,
    std_normalise: bool = False,
    up: float = 1.2,
    down: float = 0.8,
) -> list[float]:
    """Group-relative advantages with GA-GRPO's evidence-weighted modulation (see the module docstring)."""
    n = len(rewards)
    if not n == len(evidence) == len(used_tool):
        raise ValueError(f"rewards, evidence and used_tool must have one entry per rollout ({n}, {len(evidence)}, "
                         f"{len(used_tool)})")
    mean = sum(rewards) / n
    advantages = [r - mean for r in rewards]
    if std_normalise:
        std = math.sqrt(sum(a * a for a in advantages) / max(n - 1, 1))
        advantages = [a / (std + 1e-4) for a in advantages]
    if not modulation:
        return advantages
    return [modulate(a, r_evi, tool, up=up, down=down)
            for a, r_evi, tool in zip(advantages, evidence, used_tool, strict=True)]


def modulate(advantage: float, evidence_reward: float, used_tool: bool, *, up: float = 1.2,
             down: float = 0.8) -> float:
    """GA-GRPO's evidence-weighted modulation of one rollout's advantage (the trainer applies this same rule):
    for a rollout that called a tool and has R_evi >= 0, amplify (``up``) a positive advantage earned with evidence
    and a negative one earned without; damp (``down``) the other two cases."""
    if not used_tool or evidence_reward < 0 or advantage == 0:
        return advantage
    if advantage > 0:
        return advantage * (up if evidence_reward > 0 else down)
    return advantage * (down if evidence_reward > 0 else up)
