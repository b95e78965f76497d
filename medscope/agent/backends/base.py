"""The one interface every backend implements, and the chat-message shape the agent speaks.

A message is ``{"role": "system" | "user" | "assistant" | "tool", "content": [part, ...]}`` where a part is
``{"type": "text", "text": str}`` or ``{"type": "image", "image": PIL.Image.Image}``. Tool observations use the
``tool`` role; a backend whose model or server cannot show images in tool messages converts them with
``tool_messages_as_user`` (a user turn wrapped in ``<tool_response>``), which is what Qwen's own templates do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable
from urllib.parse import urlsplit, urlunsplit

from PIL import Image

if TYPE_CHECKING:
    from medscope.agent.grammar import TurnFormat

Message = dict[str, Any]


class BackendError(RuntimeError):
    """The backend cannot produce a turn (server down, wrong model, auth): our problem, not the model's."""


@runtime_checkable
class Backend(Protocol):
    """Produces the next assistant turn. ``generate`` returns the new text only; it may or may not include
    the stop string that ended it (servers strip it), so the protocol's parser accepts both.

    A backend whose model was trained with another system prompt than the full one says so in a ``prompt``
    attribute (``protocol.PROMPTS``; the HF backend reads it from the model's config), and the agent loop writes
    that prompt (``backend_prompt``)."""

    def identity(self) -> dict[str, str]:
        """``{"backend": ..., "model": ...}`` for traces and reports."""
        ...

    def generate(self, messages: Sequence[Message], *, stop: Sequence[str], max_new_tokens: int,
                 turn: TurnFormat | None = None) -> str:
        """``turn``: what the turn may be (``grammar.TurnFormat``); a backend that can constrain decoding to it does
        (the HF backend), the others write freely and the parser judges the turn."""
        ...


@dataclass(frozen=True)
class Request:
    """One ``generate`` call's arguments, so that several can be decoded as one batch (``HFBackend.generate_batch``,
    ``BatchingBackend``)."""

    messages: Sequence[Message]
    stop: tuple[str, ...] = ()
    max_new_tokens: int = 512
    turn: TurnFormat | None = None


def backend_prompt(backend: object) -> str:
    """The system prompt ``backend``'s model was trained with: its ``prompt`` attribute, else the full one."""
    return str(getattr(backend, "prompt", "full"))


def text_part(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def image_part(image: Image.Image) -> dict[str, Any]:
    return {"type": "image", "image": image}


def message_text(message: Message) -> str:
    """The text parts of a message joined (images dropped)."""
    content = message["content"]
    if isinstance(content, str):
        return content
    return "".join(part["text"] for part in content if part["type"] == "text")


def message_images(message: Message) -> list[Image.Image]:
    content = message["content"]
    return [] if isinstance(content, str) else [part["image"] for part in content if part["type"] == "image"]


def tool_messages_as_user(messages: Sequence[Message]) -> list[Message]:
    """Rewrite ``tool`` messages as user turns wrapped in ``<tool_response>`` so their images survive."""
    out: list[Message] = []
    for message in messages:
        if message["role"] != "tool":
            out.append(message)
            continue
        content = message["content"]
        parts = [text_part(content)] if isinstance(content, str) else list(content)
        wrapped = [text_part("<tool_response>\n"), *parts, text_part("\n</tool_response>")]
        out.append({"role": "user", "content": wrapped})
    return out


def truncate_at_stop(text: str, stop: Sequence[str]) -> str:
    """Cut ``text`` right after the earliest stop string (kept), for backends that overshoot."""
    cut = len(text)
    for s in stop:
        pos = text.find(s)
        if pos != -1:
            cut = min(cut, pos + len(s))
    return text[:cut]


def redact_url(url: str | None) -> str | None:
    """``url`` without a password in it (``https://user:KEY@host`` → ``https://user:***@host``) and without the
    values of query parameters that carry keys or tokens, so it can be written to manifests and traces."""
    if not url:
        return url
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        user, host = netloc.rsplit("@", 1)
        netloc = f"{user.split(':', 1)[0]}:***@{host}" if ":" in user else f"***@{host}"
    query = "&".join(
        f"{k}=***" if any(w in k.lower() for w in ("key", "token", "secret", "sig", "auth", "password")) else p
        for p in parts.query.split("&") if p for k in [p.split("=", 1)[0]]
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
