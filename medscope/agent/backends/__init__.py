"""Backends: anything that turns a conversation into the next assistant turn.

``hf`` (local transformers VLMs), ``openai`` (any OpenAI-compatible server such as vLLM) and ``scripted``
(deterministic policies). ``make_backend`` imports the heavy ones only when asked for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from medscope.agent.backends.base import Backend, BackendError

if TYPE_CHECKING:  # scripted imports the protocol, which imports base: keep this package's import light
    from medscope.agent.backends.scripted import Reference

BACKENDS = ("hf", "openai", "oracle", "teacher", "uniform", "random")


@dataclass(frozen=True)
class BackendOptions:
    """How a model backend runs (flags of ``medscope ask`` and ``medscope eval``)."""

    device: str = field(default="auto", metadata={"help": "hf: auto | cpu | cuda | cuda:N | mps (auto: a GPU if any)"})
    dtype: str = field(
        default="auto", metadata={"help": "hf: auto | bfloat16 | float16 | float32 (auto: bf16 on GPU, fp32 on CPU)"})
    attn_implementation: str | None = field(
        default=None, metadata={"help": "hf: sdpa | flash_attention_2 | eager (default: the model's)"})
    threads: int = field(
        default=0, metadata={"help": "hf on CPU: torch threads (0: 1 for models under 100M parameters: 1.6x faster "
                                     "when other processes share the cores, 22% slower on an idle machine)"})
    prefix_cache: bool = field(
        default=True, metadata={"help": "hf: keep each episode's attention cache between its turns, so a turn encodes "
                                        "only its new tokens and frames (same turns; 1.6x faster evals of "
                                        "medscope-tiny)"})
    tool_messages: str = field(
        default="user", metadata={"help": "openai: native (tool messages with images, as Qwen3-VL is trained; vLLM) "
                                          "| user (observations as user turns, for any server)"})
    image_factor: int = field(
        default=0, metadata={"help": "openai: resize frames to this patch grid first (28 Qwen2.5-VL, 32 Qwen3-VL; 0: "
                                     "send as they are)"})
    prompt: str = field(
        default="full", metadata={"help": "openai: the system prompt the served model was trained with: full | short "
                                          "(medscope-tiny; hf reads it from the model's config)"})
    timeout: float = field(default=60.0, metadata={"help": "openai: seconds to wait for one answer"})
    max_retries: int = field(
        default=2, metadata={"help": "openai: retries of a timeout, lost connection, 429 or 5xx (honestly counted)"})


def make_backend(
    kind: str, *, model: str | None = None, base_url: str | None = None, reference: Reference | None = None,
    options: BackendOptions | None = None,
) -> Backend:
    """Build a backend by name; scripted policies need a ``reference``, ``openai`` a ``model`` and a server; ``hf``
    loads ``model`` (a local folder or a Hub id), the built-in medscope-tiny when none is given."""
    options = options or BackendOptions()
    if kind == "hf":
        from medscope.agent.backends.hf import HFBackend
        from medscope.models import resolve_model

        return HFBackend.from_pretrained(resolve_model(model), device=options.device, dtype=options.dtype,
                                         attn_implementation=options.attn_implementation, threads=options.threads,
                                         prefix_cache=options.prefix_cache)
    if kind == "openai":
        if not model or not base_url:
            raise ValueError("--backend openai needs --model NAME and --base-url URL (e.g. http://localhost:8000/v1)")
        from medscope.agent.backends.openai import OpenAIBackend

        return OpenAIBackend(model, base_url=base_url, timeout=options.timeout, max_retries=options.max_retries,
                             tool_messages=options.tool_messages, image_factor=options.image_factor or None,
                             prompt=options.prompt)
    if kind in ("oracle", "teacher", "uniform", "random"):
        if reference is None:
            raise ValueError(f"--backend {kind} is a scripted policy and needs the ground truth (annotations)")
        from medscope.agent.backends import scripted

        policy = {"oracle": scripted.OracleBackend, "teacher": scripted.TeacherBackend,
                  "uniform": scripted.UniformBackend, "random": scripted.RandomBackend}[kind]
        return policy(reference)
    raise ValueError(f"unknown backend {kind!r}; choose one of {', '.join(BACKENDS)}")


def backend_from_spec(spec: str) -> Backend:
    """A model backend from a one-string spec: ``hf:MODEL_DIR`` (or ``hf:medscope-tiny``) or
    ``openai:MODEL@BASE_URL``."""
    kind, _, rest = spec.partition(":")
    if kind == "hf" and rest:
        return make_backend("hf", model=rest)
    if kind == "openai" and "@" in rest:
        model, _, url = rest.partition("@")
        return make_backend("openai", model=model, base_url=url)
    raise ValueError(f"backend spec {spec!r}: use hf:MODEL_DIR or openai:MODEL@BASE_URL")


__all__ = ["BACKENDS", "Backend", "BackendError", "BackendOptions", "backend_from_spec", "make_backend"]
