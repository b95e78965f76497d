"""Backends: anything that turns a conversation into the next assistant turn.

``hf`` (local transformers VLMs), ``openai`` (any OpenAI-compatible server such as vLLM) and ``scripted``
(deterministic policies). ``make_backend`` imports the heavy ones only when asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from medscope.agent.backends.base import Backend, BackendError

if TYPE_CHECKING:  # scripted imports the protocol, which imports base: keep this package's import light
    from medscope.agent.backends.scripted import Reference

BACKENDS = ("hf", "openai", "oracle", "uniform", "random")


def make_backend(
    kind: str, *, model: str | None = None, base_url: str | None = None, reference: Reference | None = None
) -> Backend:
    """Build a backend by name; scripted policies need a ``reference``, model backends a ``model``."""
    if kind == "hf":
        if not model:
            raise ValueError("--backend hf needs --model PATH (a local model folder)")
        from medscope.agent.backends.hf import HFBackend

        return HFBackend.from_pretrained(model)
    if kind == "openai":
        if not model or not base_url:
            raise ValueError("--backend openai needs --model NAME and --base-url URL (e.g. http://localhost:8000/v1)")
        from medscope.agent.backends.openai import OpenAIBackend

        return OpenAIBackend(model, base_url=base_url)
    if kind in ("oracle", "uniform", "random"):
        if reference is None:
            raise ValueError(f"--backend {kind} is a scripted policy and needs the ground truth (annotations)")
        from medscope.agent.backends import scripted

        policy = {"oracle": scripted.OracleBackend, "uniform": scripted.UniformBackend,
                  "random": scripted.RandomBackend}[kind]
        return policy(reference)
    raise ValueError(f"unknown backend {kind!r}; choose one of {', '.join(BACKENDS)}")


__all__ = ["BACKENDS", "Backend", "BackendError", "make_backend"]
