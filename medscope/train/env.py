"""The video-tool environment an RL trainer drives, one instance per rollout.

TRL's ``GRPOTrainer(environment_factory=VideoToolEnv)`` calls ``reset(**row)`` at the start of each rollout and
exposes every public method other than ``reset`` as a tool, with the JSON schema it reads from the method's
signature and docstring (kept identical to ``medscope.video.tools.TOOL_SPECS``; a test checks it). Each tool
returns content blocks, ``[87.50s]`` labels and frames, exactly as the agent loop shows them, or a text
error; bad arguments never raise. Nothing here imports a training framework: another trainer can drive the
same class.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any, ClassVar

from medscope.agent import protocol
from medscope.suite.records import Sample, sample_from_dict
from medscope.video.source import VideoSource
from medscope.video.tools import Observation, ToolConfig, ToolError, VideoTools


@lru_cache(maxsize=64)
def _open(path: str) -> VideoSource:
    """Rollouts of a group share a video: keep it open (index built once) for the whole run."""
    return VideoSource(path)


def content_blocks(result: Observation | ToolError, question: str = "",
                   options: list[str] | None = None) -> list[dict[str, Any]]:
    """The tool message content the agent loop would send for ``result`` about ``question``."""
    content = protocol.observation_message(result, question, options)["content"]
    return list(content)


class VideoToolEnv:
    """One rollout's tools over one sample's video; counts its tool calls."""

    tool_config: ClassVar[ToolConfig] = ToolConfig()

    def __init__(self) -> None:
        self.sample: Sample | None = None
        self.tools: VideoTools | None = None
        self.calls = 0

    def reset(self, **row: Any) -> list[dict[str, Any]]:
        """Start a rollout on ``row["sample"]`` (a Sample as JSON); returns the first user turn's content:
        duration, timestamped overview frames and the question, as the agent loop renders them."""
        self.sample = sample_from_dict(json.loads(row["sample"]))
        self.tools = VideoTools(_open(self.sample.video), self.tool_config)
        self.calls = 0
        overview = self.tools.overview()
        duration = self.tools.source.duration_seconds
        first = protocol.first_user_message(self.sample.question, overview, duration=duration,
                                            options=self.sample.options)
        return list(first["content"])

    def _call(self, name: str, arguments: dict[str, Any]) -> list[dict[str, Any]]:
        if self.tools is None or self.sample is None:
            raise RuntimeError("reset() must start a rollout before tools are called")
        self.calls += 1
        return content_blocks(self.tools.call(name, arguments), self.sample.question, self.sample.options)

    # The tools carry no return annotation on purpose: the schema a trainer derives from a signature would then
    # gain a "return" field that the agent's own prompt (TOOL_SPECS) does not have. They return content blocks.
    def crop_video(self, start_time: float, end_time: float):
        """Watch an interval of the video densely: returns frames spread uniformly between start_time and end_time, each labelled with its timestamp.

        Args:
            start_time: interval start, seconds from video start
            end_time: interval end, seconds; > start_time
        """  # noqa: E501 (the description is the model-facing tool spec, kept on one line)
        return self._call("crop_video", {"start_time": start_time, "end_time": end_time})

    def get_frame(self, timestamp: float):
        """Inspect one moment at high resolution: returns the frames nearest the timestamp.

        Args:
            timestamp: seconds from video start
        """
        return self._call("get_frame", {"timestamp": timestamp})
