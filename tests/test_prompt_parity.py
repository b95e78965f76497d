"""The served prompt equals the trained prompt: what OpenAIBackend sends, rendered the way vLLM renders a chat
request, is token for token what SFT trained on, for the Qwen2.5-VL and the Qwen3-VL chat templates."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("transformers")
pytest.importorskip("trl")
pytest.importorskip("openai")

from medscope.agent.backends.base import Message, tool_messages_as_user
from medscope.agent.backends.openai import OpenAIBackend, smart_resize
from medscope.agent.backends.scripted import ReplayBackend
from medscope.agent.loop import AgentConfig, run_episode
from medscope.agent.protocol import render_answer, render_tool_call
from medscope.train import tiny
from medscope.train.sft import AgentSFTCollator
from medscope.video.synthclin import SynthClinVideo
from medscope.video.tools import TOOL_SPECS, ToolConfig

AGENT = AgentConfig(tools=ToolConfig(overview_frames=4, crop_frames=2, get_frame_count=1))


def _episode_messages(video: SynthClinVideo) -> list[Message]:
    """The conversation an agent holds before its last turn: system, overview, two calls and their frames."""
    turns = [render_tool_call("crop_video", {"start_time": 10.0, "end_time": 20.0}, "look there"),
             render_tool_call("get_frame", {"timestamp": 15.0}, "closer"), render_answer("[12, 18]", "seen")]
    backend = ReplayBackend(turns)
    run_episode(backend, str(video.video_path), "When does bleeding happen?", AGENT)
    return backend.prompts[-1]


def as_vllm_renders(request_messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """vLLM's parsing of a chat request for an HF template that loops over content parts ("openai" content
    format): string content stays a string; ``image_url`` parts become ``{"type": "image"}`` placeholders, text
    parts stay text parts, in order; roles (``tool`` included) are kept."""
    out = []
    for message in request_messages:
        content = message["content"]
        if isinstance(content, list):
            content = [{"type": "image"} if p["type"] == "image_url" else {"type": "text", "text": p["text"]}
                       for p in content]
        out.append({"role": message["role"], "content": content})
    return out


@pytest.mark.parametrize(("arch", "tool_messages"), [("qwen3_vl", "native"), ("qwen2_5_vl", "user")])
def test_served_prompt_is_the_trained_prompt(synth_video: SynthClinVideo, arch: str, tool_messages: str) -> None:
    messages = _episode_messages(synth_video)
    texts = [m["content"][0]["text"] for m in messages if m["content"] and m["content"][0]["type"] == "text"] * 3
    tokenizer = tiny.build_tokenizer(texts, vocab_size=600, chat_template=tiny.load_chat_template(arch))
    processor = tiny.build_processor(arch, tokenizer)

    collator = AgentSFTCollator(processor)  # what SFT trains on: its template, its tool-message handling
    assert collator.tool_messages_as_user == (tool_messages == "user")
    trained_convo = tool_messages_as_user(messages) if collator.tool_messages_as_user else messages
    trained = processor.apply_chat_template(trained_convo, tools=list(TOOL_SPECS),
                                            chat_template=collator.chat_template, add_generation_prompt=True,
                                            tokenize=False)

    backend = OpenAIBackend("m", base_url="http://127.0.0.1:9/v1", tool_messages=tool_messages)
    request = backend.request_messages(messages)
    served = processor.apply_chat_template(as_vllm_renders(request), tools=[dict(t) for t in TOOL_SPECS],
                                           add_generation_prompt=True, tokenize=False)
    assert served.count("<|image_pad|>") == sum(p["type"] == "image" for m in messages for p in m["content"]) > 0
    assert '"name": "crop_video"' in served  # the tool schemas reached the system prompt
    ids = tokenizer(trained, add_special_tokens=False)["input_ids"]
    assert tokenizer(served, add_special_tokens=False)["input_ids"] == ids


def test_smart_resize_matches_the_qwen_processors() -> None:
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize as reference

    for height, width in [(240, 320), (480, 720), (720, 1280), (33, 1000), (1080, 1920), (100, 100), (17, 29)]:
        for factor in (28, 32):
            assert smart_resize(height, width, factor=factor) == reference(height, width, factor=factor,
                                                                           min_pixels=56 * 56,
                                                                           max_pixels=28 * 28 * 1280)


def test_each_frame_is_encoded_once_per_episode(synth_video: SynthClinVideo) -> None:
    messages = _episode_messages(synth_video)
    backend = OpenAIBackend("m", base_url="http://127.0.0.1:9/v1", image_factor=32)
    first = backend.request_messages(messages)
    again = backend.request_messages(messages)  # the next turn re-sends the whole conversation
    urls = [p["image_url"]["url"] for m in first if isinstance(m["content"], list) for p in m["content"]
            if p["type"] == "image_url"]
    assert urls and [p["image_url"]["url"] for m in again if isinstance(m["content"], list) for p in m["content"]
                     if p["type"] == "image_url"] == urls
    assert all(u1 is u2 for u1, u2 in zip(urls, [p["image_url"]["url"] for m in again
                                                  if isinstance(m["content"], list) for p in m["content"]
                                                  if p["type"] == "image_url"], strict=True))
