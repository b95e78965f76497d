"""A backend for any OpenAI-compatible chat-completions server: vLLM, SGLang, llama.cpp's server, hosted APIs.

Our protocol speaks text ``<tool_call>`` tags, not native function calling, and most servers cannot put images
in ``tool`` messages, so tool observations are sent as user turns (``tool_messages_as_user``). Images travel as
base64 JPEG data URLs. Retries (429, 5xx, connection errors) are the SDK's own, with exponential backoff; what
is left after them becomes a ``BackendError`` that says what to do. The API key is read from an environment
variable and never appears in reprs, ``identity()`` or error messages.
"""

from __future__ import annotations

import base64
import io
import os
from collections.abc import Sequence
from typing import Any

from PIL import Image

from medscope.agent.backends.base import (
    BackendError,
    Message,
    message_text,
    tool_messages_as_user,
    truncate_at_stop,
)

PLACEHOLDER_API_KEY = "EMPTY"  # what vLLM and most local servers accept when they run without --api-key
JPEG_QUALITY = 90
CONNECT_TIMEOUT_S = 10.0  # a blackholed host fails after this, not after the full read timeout
_MAX_SERVER_MESSAGE = 500


def _sdk() -> Any:
    try:
        import openai
    except ImportError as err:  # pragma: no cover - exercised only without the extra
        raise BackendError(
            "the openai backend needs the `openai` package: pip install 'medscope[model]' (or 'openai>=1.40')"
        ) from err
    return openai


def encode_image(image: Image.Image, quality: int = JPEG_QUALITY) -> str:
    """A ``data:image/jpeg;base64,...`` URL for ``image`` (converted to RGB: JPEG has no alpha or palette)."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def to_openai_messages(messages: Sequence[Message], *, quality: int = JPEG_QUALITY) -> list[dict[str, Any]]:
    """Our messages (base.py shape) in OpenAI chat format.

    ``tool`` messages become user turns wrapped in ``<tool_response>``. Text-only messages get a plain string
    content (what every server and chat template accepts); messages with images a list of ``text`` and
    ``image_url`` parts in their original order. Assistant turns are text only.
    """
    out: list[dict[str, Any]] = []
    for message in tool_messages_as_user(messages):
        role = message["role"]
        content = message["content"]
        if isinstance(content, str):
            out.append({"role": role, "content": content})
            continue
        has_images = any(part["type"] == "image" for part in content)
        if role == "assistant" or not has_images:
            out.append({"role": role, "content": message_text(message)})
            continue
        parts: list[dict[str, Any]] = []
        for part in content:
            if part["type"] == "text":
                if part["text"]:
                    parts.append({"type": "text", "text": part["text"]})
            elif part["type"] == "image":
                parts.append({"type": "image_url", "image_url": {"url": encode_image(part["image"], quality)}})
            else:
                raise ValueError(f"unknown message part type {part['type']!r}")
        out.append({"role": role, "content": parts})
    return out


class OpenAIBackend:
    """Generates assistant turns through ``POST {base_url}/chat/completions``.

    ``base_url`` is the API root including its version prefix, e.g. ``http://localhost:8000/v1`` for
    ``vllm serve MODEL``. ``max_retries`` retries on 408/409/429/5xx and connection errors with the SDK's
    exponential backoff (0.5 s doubling, capped at 8 s, with jitter; a ``Retry-After``/``retry-after-ms``
    header from the server takes precedence). ``timeout`` bounds each attempt. ``extra_body`` is merged
    into every request body (e.g. vLLM's ``{"top_k": 1}`` or ``{"chat_template_kwargs": {...}}``).
    """

    def __init__(
        self,
        model: str,
        *,
        base_url: str,
        api_key_env: str = "OPENAI_API_KEY",
        timeout: float = 120.0,
        max_retries: int = 4,
        temperature: float = 0.0,
        extra_body: dict[str, Any] | None = None,
    ) -> None:
        if not model:
            raise ValueError("model must be a non-empty model id as the server knows it")
        if not base_url:
            raise ValueError("base_url must be the server's API root, e.g. http://localhost:8000/v1")
        self.model = model
        self.base_url = base_url.rstrip("/")
        self.api_key_env = api_key_env
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.temperature = float(temperature)
        self.extra_body = dict(extra_body) if extra_body else None
        env_key = os.environ.get(api_key_env, "")
        self._api_key_set = bool(env_key)
        self._api_key = env_key or PLACEHOLDER_API_KEY
        sdk = _sdk()
        self._sdk = sdk
        self._client = sdk.OpenAI(
            api_key=self._api_key,
            base_url=self.base_url,
            timeout=sdk.Timeout(self.timeout, connect=min(self.timeout, CONNECT_TIMEOUT_S)),
            max_retries=self.max_retries,
        )

    def __repr__(self) -> str:
        return f"OpenAIBackend(model={self.model!r}, base_url={self.base_url!r})"

    def identity(self) -> dict[str, str]:
        return {"backend": "openai", "model": self.model, "base_url": self.base_url}

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> OpenAIBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- API ---------------------------------------------------------------------------------------------------

    def generate(self, messages: Sequence[Message], *, stop: Sequence[str], max_new_tokens: int) -> str:
        kwargs: dict[str, Any] = {
            "model": self.model,
            "messages": to_openai_messages(messages),
            "max_tokens": int(max_new_tokens),
            "temperature": self.temperature,
        }
        if stop:
            kwargs["stop"] = list(stop)
        if self.extra_body:
            kwargs["extra_body"] = self.extra_body
        try:
            completion = self._client.chat.completions.create(**kwargs)
        except self._sdk.OpenAIError as err:
            raise self._translate(err, endpoint="chat/completions") from None
        choices = getattr(completion, "choices", None)
        if not choices:
            raise BackendError(f"{self._where('chat/completions')} returned no choices")
        content = choices[0].message.content
        return truncate_at_stop(content or "", stop)

    def list_models(self) -> list[str]:
        """The model ids the server serves (``GET {base_url}/models``)."""
        try:
            return [model.id for model in self._client.models.list()]
        except self._sdk.OpenAIError as err:
            raise self._translate(err, endpoint="models") from None

    # -- errors ------------------------------------------------------------------------------------------------

    def _where(self, endpoint: str) -> str:
        return f"the OpenAI-compatible server at {self.base_url} ({endpoint})"

    def _scrub(self, text: str) -> str:
        """``text`` with the API key masked, in case a server echoes it back."""
        if self._api_key_set and len(self._api_key) >= 4:
            text = text.replace(self._api_key, "***")
        return text

    def _translate(self, err: Exception, *, endpoint: str) -> BackendError:
        sdk = self._sdk
        where = self._where(endpoint)
        retries = f"after {self.max_retries} retr{'y' if self.max_retries == 1 else 'ies'}"
        if isinstance(err, sdk.APITimeoutError):
            message = (
                f"{where} did not answer within {self.timeout:g} s ({retries}); the server may be overloaded or "
                "still loading the model: raise the backend's timeout or check the server's log"
            )
        elif isinstance(err, sdk.APIConnectionError):
            cause = err.__cause__
            detail = f"{type(cause).__name__}: {cause}" if cause is not None else str(err)
            message = (
                f"cannot reach {where} ({retries}): {detail}. Is the server running? Start one with "
                f"`vllm serve {self.model}` (it listens on http://localhost:8000/v1 by default), "
                "or point base_url at a running one"
            )
        elif isinstance(err, sdk.AuthenticationError | sdk.PermissionDeniedError):
            status = err.status_code
            if self._api_key_set:
                hint = f"the key in the environment variable {self.api_key_env} was rejected; set it to a valid key"
            else:
                hint = f"no API key was sent: the environment variable {self.api_key_env} is not set"
            message = f"{where} refused the request ({status}): {hint}. Server said: {_server_message(err)}"
        elif isinstance(err, sdk.NotFoundError):
            message = self._not_found_message(err, endpoint=endpoint)
        elif isinstance(err, sdk.RateLimitError):
            message = f"{where} kept rate-limiting the request (429, {retries}): {_server_message(err)}"
        elif isinstance(err, sdk.InternalServerError):
            message = f"{where} failed with {err.status_code} ({retries}): {_server_message(err)}"
        elif isinstance(err, sdk.BadRequestError):
            message = (
                f"{where} rejected the request (400): {_server_message(err)}. Too many frames for the server's "
                "context or per-prompt image limit (vLLM: --max-model-len, --limit-mm-per-prompt)?"
            )
        elif isinstance(err, sdk.APIStatusError):
            message = f"{where} answered {err.status_code}: {_server_message(err)}"
        else:
            message = f"{where}: {type(err).__name__}: {err}"
        return BackendError(self._scrub(message))

    def _not_found_message(self, err: Any, *, endpoint: str) -> str:
        where = self._where(endpoint)
        try:
            served = [model.id for model in self._client.with_options(max_retries=0).models.list()]
        except Exception:
            served = None
        if served is None:
            return (
                f"{where} answered 404 and its model list could not be read either: is {self.base_url} the API "
                f"root (usually ending in /v1)? Server said: {_server_message(err)}"
            )
        if self.model not in served:
            listed = ", ".join(repr(model) for model in served) or "(none)"
            return f"model {self.model!r} is not served by {self.base_url}; it serves: {listed}"
        return f"{where} answered 404 for model {self.model!r} (which it lists): {_server_message(err)}"


def _server_message(err: Any) -> str:
    """The server's own error text from an SDK status error, shortened."""
    body = getattr(err, "body", None)
    text = None
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            text = inner.get("message") or inner.get("detail")
        elif isinstance(inner, str):
            text = inner
        if text is None and isinstance(body.get("detail"), str):
            text = body["detail"]
    elif isinstance(body, str) and body:
        text = body
    if not text:
        text = getattr(err, "message", None) or str(err)
    text = str(text)
    return text if len(text) <= _MAX_SERVER_MESSAGE else text[: _MAX_SERVER_MESSAGE - 3] + "..."
