"""Training data: suite samples and trajectories → conversations in the agent's exact protocol.

Every conversation is rendered by the same functions the agent loop uses (``medscope.agent.protocol``) with
frames re-extracted from the real video by replaying the tool calls, so what a model learns in SFT is what it
sees at inference. Rows for ``datasets`` keep image *placeholders* (``{"type": "image"}``) in the messages and
the frames, in order of appearance, in an ``images`` column (Arrow cannot hold PIL images inside nested
messages); ``fill_images`` puts them back.

- stage 1 (warm-up): frames of the evidence window + the question → a short answer (perception);
- stage 2 (cold start): VCoT trajectories (overview → crops → get_frame → answer) and CoT ones;
- stage 3 (GA-GRPO): a prompt (the system prompt) and the sample; the environment renders the first user turn.
"""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeGuard

from PIL import Image

from medscope.agent import protocol
from medscope.agent.backends.base import Message, text_part
from medscope.agent.loop import AgentConfig
from medscope.agent.protocol import ToolCall, parse_turn, render_answer
from medscope.suite.records import Sample, Trajectory
from medscope.video.source import VideoSource
from medscope.video.tools import Observation, VideoTools

# An assistant message marked with this key (True) is context only: the collator keeps it out of the loss.
UNTRAINED = "untrained"


def system_message(agent: AgentConfig, prompt: str = "full") -> Message:
    """The system turn the agent loop writes for a model trained with ``prompt`` (``protocol.PROMPTS``)."""
    text = protocol.system_prompt(overview_frames=agent.tools.overview_frames, max_turns=agent.max_turns,
                                  max_frames=agent.tools.max_frames, explicit_evidence=agent.explicit_evidence,
                                  prompt=prompt)
    return {"role": "system", "content": [text_part(text)]}


def trajectory_messages(trajectory: Trajectory, source: VideoSource, agent: AgentConfig, *,
                        slip_at: int = 0, prompt: str = "full") -> list[Message]:
    """The conversation the agent loop would have had, with the teacher's turns as the assistant's.

    ``slip_at`` = k > 0: before the trajectory's k-th ``crop_video``, the slip a half-trained model makes most —
    the window's start written as its end too —, its real tool error, then the teacher's call. The slip is marked
    ``UNTRAINED`` (no loss: the model must not learn to make it); the call after it is trained, so the model
    learns to answer an error by looking back at the last view. A model that never saw an error in training
    wrote nonsense after its first one and lost the episode."""
    sample = trajectory.sample
    tools = VideoTools(source, agent.tools)
    overview = tools.overview()
    messages = [system_message(agent, prompt), protocol.first_user_message(
        sample.question, overview, duration=source.duration_seconds, options=sample.options)]
    crops = 0
    for turn in trajectory.turns:
        parsed = parse_turn(turn["text"], duration=source.duration_seconds)
        if _is_crop(parsed):
            crops += 1
            if crops == slip_at:
                start = parsed.arguments["start_time"]
                arguments = {"start_time": start, "end_time": start}
                slip = protocol.render_tool_call("crop_video", arguments, parsed.think)
                messages.append({"role": "assistant", "content": [text_part(slip)], UNTRAINED: True})
                messages.append(protocol.observation_message(tools.call("crop_video", arguments), sample.question,
                                                             sample.options))
        messages.append({"role": "assistant", "content": [text_part(turn["text"])]})
        if isinstance(parsed, ToolCall):
            messages.append(protocol.observation_message(tools.call(parsed.name, parsed.arguments), sample.question,
                                                         sample.options))
    return messages


def warmup_messages(sample: Sample, source: VideoSource, agent: AgentConfig, *, margin: float = 2.0,
                    prompt: str = "full") -> list[Message]:
    """Stage 1: the frames of the evidence window (a little wider) and the question, then the answer."""
    start = max(0.0, min(s for s, _ in sample.evidence) - margin)
    end = min(source.duration_seconds, max(e for _, e in sample.evidence) + margin)
    crop = VideoTools(source, agent.tools).crop_video(start, end)
    if not isinstance(crop, Observation):
        raise ValueError(f"{sample.id}: cannot show its evidence window [{start}, {end}]: {crop.message}")
    t = protocol.format_time
    head = (protocol.question_text(sample.question, sample.options) + f"\nVideo duration: "
            f"{t(source.duration_seconds)}s. Frames from {t(start)}s to {t(end)}s:")
    parts = [text_part(head), *protocol.frame_parts(crop)]
    think = f"The frames from {t(crop.timestamps[0])}s to {t(crop.timestamps[-1])}s show it."
    return [system_message(agent, prompt), {"role": "user", "content": parts},
            {"role": "assistant", "content": [text_part(render_answer(sample.answer, think))]}]


def to_row(messages: Sequence[Message]) -> dict[str, Any]:
    """``{"messages": ..., "images": [...]}`` with image placeholders, for a ``datasets.Dataset``."""
    images: list[Image.Image] = []
    out = []
    for message in messages:
        content = []
        for part in message["content"]:
            if part["type"] == "image":
                images.append(part["image"])
                content.append({"type": "image", "text": None})
            else:
                content.append({"type": "text", "text": part["text"]})
        # Every message carries the flag, so that Arrow infers one schema for all rows.
        out.append({"role": message["role"], "content": content, UNTRAINED: bool(message.get(UNTRAINED, False))})
    return {"messages": out, "images": images}


def fill_images(messages: Sequence[dict[str, Any]], images: Sequence[Image.Image]) -> list[Message]:
    """Inverse of ``to_row``: put the frames back into the placeholders (and drop Arrow's None keys)."""
    frames = iter(images)
    out: list[Message] = []
    for message in messages:
        content = []
        for part in message["content"]:
            if part["type"] == "image":
                try:
                    content.append({"type": "image", "image": next(frames)})
                except StopIteration:
                    raise ValueError("more image placeholders than images in this row") from None
            else:
                content.append({"type": "text", "text": part["text"]})
        out.append({"role": message["role"], "content": content})
        if message.get(UNTRAINED):
            out[-1][UNTRAINED] = True
    if next(frames, None) is not None:
        raise ValueError("more images than image placeholders in this row")
    return out


def sft_rows(
    items: Iterable[Sample | Trajectory], agent: AgentConfig, *, stage: int, repair: float = 0.0,
    prompt: str = "full", fit: Callable[[Image.Image], Image.Image] | None = None,
) -> list[dict[str, Any]]:
    """Stage-1 rows from samples, stage-2 rows from trajectories; each video is opened once. ``repair``: the
    share of trajectories shown with a slip before one of their crops and its repair (``trajectory_messages``),
    drawn from the sample id. ``prompt``: the system prompt of the model being trained. ``fit``: applied to every
    frame as its row is made (``processors.fit_image``: the model's size), so the decoded frames are not all held
    at once: at the tools' 258×193 the tiny recipe's SFT rows took about 14 GB, twice over beside the fair baseline's
    SFT, and a run with 16-frame crops ran out of memory."""
    by_video: dict[str, list[Sample | Trajectory]] = {}
    for item in items:
        video = item.video if isinstance(item, Sample) else item.sample.video
        by_video.setdefault(video, []).append(item)
    rows = []
    for video, group in by_video.items():
        with VideoSource(video) as source:
            for item in group:
                if stage == 1 and isinstance(item, Sample):
                    row = to_row(warmup_messages(item, source, agent, prompt=prompt))
                elif stage == 2 and isinstance(item, Trajectory):
                    row = to_row(trajectory_messages(item, source, agent, slip_at=_slip_at(item, repair),
                                                     prompt=prompt))
                else:
                    raise ValueError(f"stage {stage} takes {'samples' if stage == 1 else 'trajectories'}")
                rows.append(row | {"images": [fit(image) for image in row["images"]]} if fit else row)
    return rows


def _is_crop(parsed: object) -> TypeGuard[ToolCall]:
    return isinstance(parsed, ToolCall) and parsed.name == "crop_video"


def _slip_at(trajectory: Trajectory, share: float) -> int:
    """Which ``crop_video`` of the trajectory gets a slip (1-based; 0: none), drawn from the sample id; crops are
    counted as ``trajectory_messages`` counts them."""
    duration = trajectory.sample.duration
    crops = sum(_is_crop(parse_turn(turn["text"], duration=duration)) for turn in trajectory.turns)
    rng = random.Random(f"slip/{trajectory.sample.id}")
    return rng.randint(1, crops) if crops and rng.random() < share else 0


def grpo_rows(samples: Iterable[Sample], agent: AgentConfig, prompt: str = "full") -> list[dict[str, Any]]:
    """Prompts for GA-GRPO: the system prompt and an empty user turn that the environment's ``reset`` fills
    with the overview and the question; the sample travels as JSON for the environment and the rewards."""
    system = system_message(agent, prompt)["content"][0]["text"]
    return [{"prompt": [{"role": "system", "content": system}, {"role": "user", "content": ""}],
             "sample": json.dumps(dataclasses.asdict(s)), "task": s.task} for s in samples]

