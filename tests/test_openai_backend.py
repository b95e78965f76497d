"""OpenAIBackend over real HTTP against a small OpenAI-compatible server started on loopback inside the test."""

from __future__ import annotations

import base64
import io
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from PIL import Image

pytest.importorskip("openai")

from medscope.agent.backends.base import Backend, BackendError, image_part, text_part
from medscope.agent.backends.openai import OpenAIBackend

KEY_ENV = "MEDSCOPE_TEST_OPENAI_KEY"
SECRET = "sk-medscope-test-5f0c9e1d7a"
STOP = ["</tool_call>", "</answer>"]


@dataclass
class Reply:
    status: int = 200
    content: str | None = None  # chat completion text for 200; None -> the server's default
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] | None = None  # raw JSON body for errors, or for a 200 when set
    null_content: bool = False
    raw: bytes | None = None  # a body sent as is, with a JSON content type (a proxy's error page, say)


class FakeServer:
    """``POST /v1/chat/completions`` and ``GET /v1/models``, recording every request."""

    def __init__(self, served: list[str], required_key: str | None = None) -> None:
        self.served = served
        self.required_key = required_key
        self.default_content = "<think>ok</think>"
        self.script: list[Reply] = []  # consumed one per chat request, then the default answer
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def _record(self, body: Any) -> None:
                with server.lock:
                    server.requests.append(
                        {
                            "method": self.command,
                            "path": self.path,
                            "headers": {k.lower(): v for k, v in self.headers.items()},
                            "body": body,
                        }
                    )

            def _authorized(self) -> bool:
                if server.required_key is None or self.headers.get("Authorization") == f"Bearer {server.required_key}":
                    return True
                error = {"message": "Unauthorized", "type": "invalid_request_error", "code": 401}
                self._send(401, {"error": error})
                return False

            def do_GET(self) -> None:
                self._record(None)
                if not self._authorized():
                    return
                if self.path == "/v1/models":
                    data = [{"id": m, "object": "model", "created": 0, "owned_by": "vllm"} for m in server.served]
                    self._send(200, {"object": "list", "data": data})
                else:
                    self._send(404, {"detail": "Not Found"})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"null")
                self._record(body)
                if not self._authorized():
                    return
                if self.path != "/v1/chat/completions":
                    self._send(404, {"detail": "Not Found"})
                    return
                if body.get("model") not in server.served:
                    error = {
                        "message": f"The model `{body.get('model')}` does not exist.",
                        "type": "NotFoundError",
                        "param": None,
                        "code": 404,
                    }
                    self._send(404, {"error": error})
                    return
                with server.lock:
                    reply = server.script.pop(0) if server.script else Reply()
                if reply.raw is not None:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(reply.raw)))
                    self.end_headers()
                    self.wfile.write(reply.raw)
                    return
                if reply.status == 200 and reply.body is not None:
                    self._send(200, reply.body, reply.headers)
                    return
                if reply.status != 200:
                    error = {"message": f"scripted {reply.status}", "type": "ServerError", "code": reply.status}
                    self._send(reply.status, reply.body or {"error": error}, reply.headers)
                    return
                content: str | None = server.default_content if reply.content is None else reply.content
                if reply.null_content:
                    content = None
                self._send(
                    200,
                    {
                        "id": "chatcmpl-test",
                        "object": "chat.completion",
                        "created": 0,
                        "model": body["model"],
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": content},
                                "finish_reason": "stop",
                            }
                        ],
                        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                    },
                    reply.headers,
                )

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_port}/v1"

    def chat_requests(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["path"] == "/v1/chat/completions"]


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, SECRET)
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture()
def server() -> Iterator[FakeServer]:
    srv = FakeServer(served=["Qwen/Qwen2.5-VL-7B-Instruct", "medscope-7b"], required_key=SECRET)
    srv.thread.start()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


def make_backend(base_url: str, model: str = "medscope-7b", **kwargs: Any) -> OpenAIBackend:
    kwargs.setdefault("timeout", 5.0)
    kwargs.setdefault("max_retries", 2)
    return OpenAIBackend(model, base_url=base_url, api_key_env=KEY_ENV, **kwargs)


def conversation() -> list[dict[str, Any]]:
    return [
        {"role": "system", "content": [text_part("You are a clinical video agent.")]},
        {
            "role": "user",
            "content": [
                text_part("Overview frames:"),
                image_part(Image.new("RGB", (64, 48), (200, 30, 30))),
                image_part(Image.new("RGBA", (32, 40), (10, 200, 30, 128))),
                text_part("When is the nucleus separated?"),
            ],
        },
        {
            "role": "assistant",
            "content": [text_part('<tool_call>{"name": "get_frame", "arguments": {"timestamp": 87.0}}</tool_call>')],
        },
        {"role": "tool", "content": [text_part("frame at 87.0 s"), image_part(Image.new("L", (80, 60), 128))]},
    ]


def decode_data_url(url: str) -> Image.Image:
    prefix = "data:image/jpeg;base64,"
    assert url.startswith(prefix)
    image = Image.open(io.BytesIO(base64.b64decode(url[len(prefix) :], validate=True)))
    assert image.format == "JPEG"
    return image


def test_generate_sends_images_stop_and_tool_turn(server: FakeServer) -> None:
    backend = make_backend(server.base_url, extra_body={"top_k": 1})
    assert isinstance(backend, Backend)
    server.default_content = "<think>look</think>\n<answer>At 87 s.</answer>"
    assert backend.generate(conversation(), stop=STOP, max_new_tokens=256) == server.default_content

    (request,) = server.chat_requests()
    body = request["body"]
    assert request["headers"]["authorization"] == f"Bearer {SECRET}"
    assert body["model"] == "medscope-7b"
    assert body["stop"] == STOP
    assert body["max_tokens"] == 256
    assert body["temperature"] == 0.0
    assert body["top_k"] == 1
    assert [m["role"] for m in body["messages"]] == ["system", "user", "assistant", "user"]
    # the schemas a model trained with the full prompt saw in its system turn; the server renders, parses nothing
    assert [t["function"]["name"] for t in body["tools"]] == ["crop_video", "get_frame"]
    assert body["tool_choice"] == "none"

    urls = [
        part["image_url"]["url"]
        for m in body["messages"]
        if isinstance(m["content"], list)
        for part in m["content"]
        if part["type"] == "image_url"
    ]
    assert [decode_data_url(u).size for u in urls] == [(64, 48), (32, 40), (80, 60)]

    user = body["messages"][1]["content"]
    assert [p["type"] for p in user] == ["text", "image_url", "image_url", "text"]
    assert user[3]["text"] == "When is the nucleus separated?"
    tool = body["messages"][3]["content"]
    texts = "".join(p["text"] for p in tool if p["type"] == "text")
    assert texts.startswith("<tool_response>") and texts.rstrip().endswith("</tool_response>")
    assert "frame at 87.0 s" in texts
    assert sum(p["type"] == "image_url" for p in tool) == 1
    assert body["messages"][2]["content"].endswith("</tool_call>")

    # a server that overshoots the stop string is cut right after it
    server.default_content = '<tool_call>{"name": "crop_video"}</tool_call>\n<tool_call>{"name": "x"}'
    out = backend.generate(conversation(), stop=STOP, max_new_tokens=64)
    assert out == '<tool_call>{"name": "crop_video"}</tool_call>'

    # null content (e.g. a refusal or an empty turn) is the empty string
    server.script.append(Reply(null_content=True))
    assert backend.generate(conversation(), stop=STOP, max_new_tokens=8) == ""
    backend.close()


def test_a_model_trained_with_the_short_prompt_gets_no_tool_schemas(server: FakeServer) -> None:
    backend = make_backend(server.base_url, prompt="short")
    assert backend.prompt == "short"
    backend.generate(conversation(), stop=STOP, max_new_tokens=8)
    (request,) = server.chat_requests()
    assert "tools" not in request["body"] and "tool_choice" not in request["body"]
    with pytest.raises(ValueError, match="unknown system prompt 'tiny'; choose one of full, short"):
        make_backend(server.base_url, prompt="tiny")
    backend.close()


@pytest.mark.parametrize("status", [500, 503, 429])
def test_retries_transient_errors(server: FakeServer, status: int) -> None:
    # retry-after-ms keeps the SDK's backoff at 10 ms instead of 0.5 s, 1 s, ...
    server.script.append(Reply(status=status, headers={"retry-after-ms": "10"}))
    backend = make_backend(server.base_url, max_retries=2)
    server.default_content = "<answer>ok</answer>"
    assert backend.generate(conversation(), stop=STOP, max_new_tokens=16) == "<answer>ok</answer>"
    assert len(server.chat_requests()) == 2


def test_gives_up_after_max_retries_with_clear_error(server: FakeServer) -> None:
    server.script.extend(Reply(status=500, headers={"retry-after-ms": "10"}) for _ in range(5))
    backend = make_backend(server.base_url, max_retries=2)
    with pytest.raises(BackendError) as info:
        backend.generate(conversation(), stop=STOP, max_new_tokens=16)
    assert len(server.chat_requests()) == 3
    message = str(info.value)
    assert "500" in message and server.base_url in message and "scripted 500" in message


def test_server_down_names_base_url_quickly() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    base_url = f"http://127.0.0.1:{port}/v1"
    backend = make_backend(base_url, max_retries=1)  # one real retry with the SDK's 0.5 s backoff
    start = time.monotonic()
    with pytest.raises(BackendError) as info:
        backend.generate(conversation(), stop=STOP, max_new_tokens=16)
    assert time.monotonic() - start < 10.0
    message = str(info.value)
    assert base_url in message and "vllm serve medscope-7b" in message
    assert SECRET not in message and SECRET not in repr(info.value)


def test_wrong_model_lists_served_models(server: FakeServer) -> None:
    backend = make_backend(server.base_url, model="x")
    with pytest.raises(BackendError) as info:
        backend.generate(conversation(), stop=STOP, max_new_tokens=16)
    message = str(info.value)
    assert "'x'" in message and "'Qwen/Qwen2.5-VL-7B-Instruct'" in message and "'medscope-7b'" in message
    assert server.base_url in message
    assert SECRET not in message
    assert len(server.chat_requests()) == 1  # 404 is not retried
    assert backend.list_models() == ["Qwen/Qwen2.5-VL-7B-Instruct", "medscope-7b"]


def test_bad_key_names_env_var_not_key(server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-wrong-key-0123456789")
    backend = make_backend(server.base_url)
    with pytest.raises(BackendError) as info:
        backend.generate(conversation(), stop=STOP, max_new_tokens=16)
    message = str(info.value)
    assert "401" in message and KEY_ENV in message and "sk-wrong-key" not in message
    assert server.requests[-1]["headers"]["authorization"] == "Bearer sk-wrong-key-0123456789"

    monkeypatch.delenv(KEY_ENV)  # unset: the placeholder goes out, and the error says the variable is unset
    backend = make_backend(server.base_url)
    assert server.requests[-1]["headers"]["authorization"] == "Bearer sk-wrong-key-0123456789"
    with pytest.raises(BackendError, match=f"{KEY_ENV} is not set"):
        backend.list_models()
    assert server.requests[-1]["headers"]["authorization"] == "Bearer EMPTY"


def test_key_never_in_repr_or_identity(server: FakeServer) -> None:
    backend = make_backend(server.base_url)
    assert backend.identity() == {"backend": "openai", "model": "medscope-7b", "base_url": server.base_url}
    assert SECRET not in repr(backend)
    assert SECRET not in json.dumps(backend.identity())
    assert backend.list_models() == ["Qwen/Qwen2.5-VL-7B-Instruct", "medscope-7b"]
    assert server.requests[-1]["headers"]["authorization"] == f"Bearer {SECRET}"


def test_a_body_that_is_not_json_names_the_server_and_the_fix(server: FakeServer) -> None:
    server.script.append(Reply(raw=b"<html><body>502 Bad Gateway</body></html>"))
    with pytest.raises(BackendError) as info:
        make_backend(server.base_url).generate(conversation(), stop=STOP, max_new_tokens=8)
    message = str(info.value)
    assert server.base_url in message and "not JSON" in message and "API root" in message


@pytest.mark.parametrize("choice", [{"index": 0, "finish_reason": "stop"}, {"index": 0, "message": None},
                                    {"index": 0, "message": {"role": "assistant", "content": [1, 2]}}])
def test_a_choice_without_a_text_message_is_a_backend_error(server: FakeServer, choice: dict[str, Any]) -> None:
    server.script.append(Reply(body={"id": "x", "object": "chat.completion", "created": 0, "model": "medscope-7b",
                                     "choices": [choice]}))
    with pytest.raises(BackendError, match="no text message"):
        make_backend(server.base_url).generate(conversation(), stop=STOP, max_new_tokens=8)


def test_retry_counts_are_honest_and_retry_after_is_reported(server: FakeServer) -> None:
    server.script.append(Reply(status=503, headers={"retry-after-ms": "10"}))
    with pytest.raises(BackendError, match=r"\(1 attempt; the server asked to retry after 0.01 s\)"):
        make_backend(server.base_url, max_retries=0).generate(conversation(), stop=STOP, max_new_tokens=8)
    assert len(server.chat_requests()) == 1  # "after N retries" was printed when none were made
    server.script.append(Reply(status=429, headers={"retry-after": "300"}))
    start = time.monotonic()
    with pytest.raises(BackendError, match=r"429, 1 attempt; the server asked to retry after 300 s"):
        make_backend(server.base_url, max_retries=3).generate(conversation(), stop=STOP, max_new_tokens=8)
    assert time.monotonic() - start < 5 and len(server.chat_requests()) == 2  # not waited for five minutes


def test_a_key_inside_the_url_is_masked_everywhere(server: FakeServer) -> None:
    url = server.base_url.replace("http://", "http://user:sk-in-url-123@")
    backend = make_backend(url, max_retries=0)
    assert "sk-in-url-123" not in json.dumps(backend.identity()) and "sk-in-url-123" not in repr(backend)
    server.script.append(Reply(status=500))
    with pytest.raises(BackendError) as info:
        backend.generate(conversation(), stop=STOP, max_new_tokens=8)
    assert "sk-in-url-123" not in str(info.value) and "user:***@" in str(info.value)


def test_timeout_and_retries_are_flags() -> None:
    from medscope.cli import build_parser

    for command in (["ask", "v.mp4", "q"], ["eval"]):
        args = build_parser().parse_args([*command, "--timeout", "5", "--max-retries", "0"])
        assert (args.timeout, args.max_retries) == (5.0, 0)
