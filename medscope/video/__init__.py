"""Reading clinical videos: frame-exact random access (``VideoSource``), the model-facing tools
(``VideoTools``: overview, ``crop_video``, ``get_frame``) and the SynthClin generator (``synthclin``)."""

from medscope.video.errors import (
    CorruptVideoError,
    NotAVideoError,
    NoVideoStreamError,
    VideoError,
    VideoNotFoundError,
)
from medscope.video.source import Frame, VideoSource
from medscope.video.tools import TOOL_SPECS, Observation, ToolConfig, ToolError, VideoTools

__all__ = [
    "TOOL_SPECS",
    "CorruptVideoError",
    "Frame",
    "NoVideoStreamError",
    "NotAVideoError",
    "Observation",
    "ToolConfig",
    "ToolError",
    "VideoError",
    "VideoNotFoundError",
    "VideoSource",
    "VideoTools",
]
