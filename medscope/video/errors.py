"""Exceptions for videos that cannot be read. Errors the *model* causes (bad tool arguments) are not
exceptions: they come back to it as a ``ToolError`` observation (see ``medscope.video.tools``)."""

from __future__ import annotations


class VideoError(Exception):
    """Base class: the file cannot serve as a video for medscope."""


class VideoNotFoundError(VideoError, FileNotFoundError):
    """The path does not exist or is not a regular file."""


class NotAVideoError(VideoError, ValueError):
    """The file exists but FFmpeg cannot read it as a media container (empty, text, unknown format)."""


class NoVideoStreamError(VideoError, ValueError):
    """The container holds no video stream (an audio-only file, say)."""


class CorruptVideoError(VideoError, ValueError):
    """The container opens but its packets are missing, unreadable or carry no timestamps."""
