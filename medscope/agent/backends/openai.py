"""A backend for any OpenAI-compatible chat-completions server: vLLM, SGLang, llama.cpp's server, hosted APIs.

Our protocol speaks text ``<tool_call>`` tags, not native function calling. The request carries what a
medscope-trained model saw in training: the tool schemas as ``tools`` (with ``tool_choice: "none"``, so the
server renders them into the chat template, as training did, and parses nothing; none for a model trained with the
short system prompt, ``prompt="short"``), and, with
``tool_messages="native"``, observations as ``tool`` messages with their images, which vLLM renders through a
template that shows tool images (Qwen3-VL's). Servers that cannot take images in ``tool`` messages get them as
user turns (``tool_messages="user"``, the default, as Qwen2.5-VL was trained). Images travel as base64 JPEG
data URLs, resized first to the model family's patch grid (``image_factor``: 28 for Qwen2.5-VL, 32 for
Qwen3-VL; ``smart_resize``), so the server does not resample them again, and each image is encoded once per
episode although every turn re-sends the conversation.

Retries (408, 409, 429, 5xx, timeouts, connection errors) are counted here, not left to the SDK, so an error says
how many attempts were really made and how long the server asked to wait (``Retry-After``); every transport or
protocol failure (a 200 whose body is not JSON, a choice without a message) becomes a ``BackendError`` naming the
server, the cause and the fix. The API key is read from an environment variable and never appears in reprs,
``identity()`` or error messages; a key written into the URL is masked in ``identity()`` (what traces, reports
and manifests record).
"""

from __future__ import annotations

import base64
import io
import math
import os
import time
from collections.abc import Sequence
from typing import Any

from PIL import Image

from medscope.agent.backends.base import (
    BackendError,
    Message,
    message_text,
    redact_url,
    tool_messages_as_user,
    truncate_at_stop,
)
from medscope.agent.grammar import TurnFormat
from medscope.agent.protocol import check_prompt, tool_schemas
from medscope.cache import LRU

PLACEHOLDER_API_KEY = "EMPTY"  # what vLLM and most local servers accept when they run without --api-key
JPEG_QUALITY = 90
CONNECT_TIMEOUT_S = 10.0  # a blackholed host fails after this, not after the full read timeout
MAX_RETRY_WAIT_S = 60.0  # a Retry-After longer than this is not waited for: the error says what the server asked
_MAX_SERVER_MESSAGE = 500


def _sdk() -> Any:
    try:
        import openai
    except ImportError as err:  # pragma: no cover - exercised only without the extra
        raise BackendError(
            "the openai backend needs the `openai` package: pip install 'medscope[model]' (or 'openai>=1.40')"
        ) from err
    return openai


def smart_resize(height: int, width: int, *, factor: int, min_pixels: int = 56 * 56,
                 max_pixels: int = 28 * 28 * 1280) -> tuple[int, int]:
    """qwen-vl-utils' rule: the nearest size whose sides are multiples of ``factor`` and whose area lies within
    ``[min_pixels, max_pixels]``, keeping the aspect ratio; what a Qwen-VL processor resizes an image to."""
    if max(height, width) / min(height, width) > 200:
        raise ValueError(f"aspect ratio of {width}x{height} is over 200, which Qwen-VL processors refuse")
    h = max(factor, round(height / factor) * factor)
    w = max(factor, round(width / factor) * factor)
    if h * w > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h = max(factor, math.floor(height / beta / factor) * factor)
        w = max(factor, math.floor(width / beta / factor) * factor)
    elif h * w < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h = math.ceil(height * beta / factor) * factor
        w = math.ceil(width * beta / factor) * factor
    return h, w


def encode_image(image: Image.Image, quality: int = JPEG_QUALITY, *, factor: int | None = None) -> str:
    """A ``data:image/jpeg;base64,...`` URL for ``image`` (converted to RGB: JPEG has no alpha or palette),
    resized to the ``factor`` grid first when one is given."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    if factor:
        height, width = smart_resize(image.height, image.width, factor=factor)
        if (width, height) != image.size:
            image = image.resize((width, height), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


class _Encoded:
    """Data URLs of the images of the running episodes, by object: each turn re-sends the whole conversation,
    and its frames are the same objects turn after turn. Holding the image keeps its id from being reused."""

    def __init__(self, entries: int = 512) -> None:
        self._urls: LRU[int, tuple[Image.Image, str]] = LRU(entries)

    def get(self, image: Image.Image, quality: int, factor: int | None) -> str:
        hit = self._urls.get(id(image))
        if hit is not None and hit[0] is image:
            return hit[1]
        url = encode_image(image, quality, factor=factor)  # outside any lock: workers encode in parallel
        self._urls.put(id(image), (image, url))
        return url


def to_openai_messages(messages: Sequence[Message], *, quality: int = JPEG_QUALITY, native_tools: bool = False,
                       factor: int | None = None, encoded: _Encoded | None = None) -> list[dict[str, Any]]:
    """Our messages (base.py shape) in OpenAI chat format.

    ``tool`` messages stay ``tool`` messages with ``native_tools``, else become user turns wrapped in
    ``<tool_response>``. Text-only messages get a plain string content (what every server and chat template
    accepts); messages with images a list of ``text`` and ``image_url`` parts in their original order.
    Assistant turns are text only.
    """
    cache = encoded or _Encoded()
    out: list[dict[str, Any]] = []
    for message in (list(messages) if native_tools else tool_messages_as_user(messages)):
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
                parts.append({"type": "image_url", "image_url": {"url": cache.get(part["image"], quality, factor)}})
            else:
                raise ValueError(f"unknown message part type {part['type']!r}")
        out.append({"role": role, "content": parts})
    return out


class OpenAIBackend:
    """Generates assistant turns through ``POST {base_url}/chat/completions``.

    ``base_url`` is the API root including its version prefix, e.g. ``http://localhost:8000/v1`` for
    ``vllm serve MODEL``. ``max_retries`` retries on 408/409/429/5xx, timeouts and connection errors with
    exponential backoff (0.5 s doubling, capped at 8 s; a ``Retry-After``/``retry-after-ms`` header from the
    server takes precedence, up to a minute). ``timeout`` bounds each attempt, so a stalled server costs at
    most ``(max_retries + 1) × timeout`` plus the waits. ``extra_body`` is merged
    into every request body (e.g. vLLM's ``{"top_k": 1}`` or ``{"chat_template_kwargs": {...}}``).
    """

    def __init__(
        self,
        model: str,
        *,
        base_url: str,
        api_key_env: str = "OPENAI_API_KEY",
        timeout: float = 60.0,
        max_retries: int = 2,
        temperature: float = 0.0,
        extra_body: dict[str, Any] | None = None,
        tool_messages: str = "user",
        image_factor: int | None = None,
        prompt: str = "full",
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
        if tool_messages not in ("user", "native"):
            raise ValueError(f"tool_messages must be 'user' or 'native', got {tool_messages!r}")
        self.native_tools = tool_messages == "native"
        self.image_factor = image_factor or None
        self.prompt = check_prompt(prompt)  # the system prompt the served model was trained with
        self._encoded = _Encoded()
        env_key = os.environ.get(api_key_env, "")
        self._api_key_set = bool(env_key)
        self._api_key = env_key or PLACEHOLDER_API_KEY
        sdk = _sdk()
        self._sdk = sdk
        self._client = sdk.OpenAI(
            api_key=self._api_key,
            base_url=self.base_url,
            timeout=sdk.Timeout(self.timeout, connect=min(self.timeout, CONNECT_TIMEOUT_S)),
            max_retries=0,  # retried in _call, which counts the attempts it reports
        )

    def __repr__(self) -> str:
        return f"OpenAIBackend(model={self.model!r}, base_url={redact_url(self.base_url)!r})"

    def identity(self) -> dict[str, str]:
        return {"backend": "openai", "model": self.model, "base_url": redact_url(self.base_url) or ""}

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> OpenAIBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- API ---------------------------------------------------------------------------------------------------

    def generate(self, messages: Sequence[Message], *, stop: Sequence[str], max_new_tokens: int,
                 turn: TurnFormat | None = None) -> str:
        # ``turn`` is not sent: servers spell grammars differently (vLLM's structured outputs take one through
        # --extra-body); the parser judges what the model wrote.
        kwargs: dict[str, Any] = {
            "model": self.model,
            "messages": self.request_messages(messages),
            "max_tokens": int(max_new_tokens),
            "temperature": self.temperature,
        }
        schemas = tool_schemas(self.prompt)
        if schemas is not None:  # what training rendered into the system prompt; "none": the server parses nothing
            kwargs.update(tools=[dict(spec) for spec in schemas], tool_choice="none")
        if stop:
            kwargs["stop"] = list(stop)
        if self.extra_body:
            kwargs["extra_body"] = self.extra_body
        completion = self._call("chat/completions", lambda: self._client.chat.completions.create(**kwargs))
        where = self._where("chat/completions")
        choices = getattr(completion, "choices", None)
        if not isinstance(choices, list) or not choices:
            raise BackendError(f"{where} answered without choices ({_shape(completion)}); is it an "
                               "OpenAI-compatible chat-completions endpoint?")
        message = getattr(choices[0], "message", None)
        content = getattr(message, "content", None) if message is not None else None
        if message is None or not (content is None or isinstance(content, str)):
            raise BackendError(f"{where} answered with a choice that has no text message ({_shape(choices[0])}); "
                               "is it an OpenAI-compatible chat-completions endpoint?")
        return truncate_at_stop(content or "", stop)

    def request_messages(self, messages: Sequence[Message]) -> list[dict[str, Any]]:
        """The ``messages`` of a request as this backend sends them."""
        return to_openai_messages(messages, native_tools=self.native_tools, factor=self.image_factor,
                                  encoded=self._encoded)

    def list_models(self) -> list[str]:
        """The model ids the server serves (``GET {base_url}/models``)."""
        return [model.id for model in self._call("models", lambda: list(self._client.models.list()))]

    def _call(self, endpoint: str, request: Any) -> Any:
        """``request()`` with the retries, each counted; any failure left is a ``BackendError``."""
        sdk = self._sdk
        attempts = 0
        while True:
            attempts += 1
            try:
                return request()
            except sdk.OpenAIError as err:
                wait = _retry_after(err)
                if not _transient(sdk, err) or attempts > self.max_retries or (wait or 0) > MAX_RETRY_WAIT_S:
                    raise self._translate(err, endpoint=endpoint, attempts=attempts, retry_after=wait) from None
                time.sleep(wait if wait is not None else min(8.0, 0.5 * 2 ** (attempts - 1)))
            except ValueError as err:  # a 200 whose body is not JSON (the SDK's json.JSONDecodeError)
                raise BackendError(self._scrub(
                    f"{self._where(endpoint)} answered with a body that is not JSON ({err}); is {self.base_url} "
                    "the API root of an OpenAI-compatible server (usually ending in /v1), not a web page or a proxy?"
                )) from None

    # -- errors ------------------------------------------------------------------------------------------------

    def _where(self, endpoint: str) -> str:
        return f"the OpenAI-compatible server at {redact_url(self.base_url)} ({endpoint})"

    def _scrub(self, text: str) -> str:
        """``text`` with the API key masked, in case a server echoes it back."""
        if self._api_key_set and len(self._api_key) >= 4:
            text = text.replace(self._api_key, "***")
        return text

    def _translate(self, err: Exception, *, endpoint: str, attempts: int = 1,
                   retry_after: float | None = None) -> BackendError:
        sdk = self._sdk
        where = self._where(endpoint)
        retries = f"{attempts} attempt{'s' if attempts > 1 else ''}"
        if retry_after is not None:
            retries += f"; the server asked to retry after {retry_after:g} s"
        if isinstance(err, sdk.APITimeoutError):
            message = (
                f"{where} did not answer within {self.timeout:g} s ({retries}); the server may be overloaded or "
                "still loading the model: raise --timeout or check the server's log"
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


def _transient(sdk: Any, err: Exception) -> bool:
    """Worth another attempt: timeouts, lost connections, 408, 409, 429 and 5xx."""
    if isinstance(err, sdk.APITimeoutError | sdk.APIConnectionError):
        return True
    return isinstance(err, sdk.APIStatusError) and (err.status_code in (408, 409, 429) or err.status_code >= 500)


def _retry_after(err: Any) -> float | None:
    """Seconds the server asked to wait (``retry-after-ms``, or ``Retry-After`` in seconds), else None."""
    response = getattr(err, "response", None)
    headers = getattr(response, "headers", None) or {}
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) * scale
        except ValueError:
            continue  # an HTTP date: the fallback backoff is used
        if seconds >= 0:
            return seconds
    return None


def _shape(value: Any) -> str:
    """A short description of what came back, for an error message."""
    text = repr(value)
    return f"{type(value).__name__}: {text[:120]}{'...' if len(text) > 120 else ''}"


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
