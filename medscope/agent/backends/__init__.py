"""Backends: anything that turns a conversation into the next assistant turn.

``hf`` (local transformers VLMs), ``openai`` (any OpenAI-compatible server such as vLLM) and ``scripted``
(deterministic policies). ``make_backend`` imports the heavy ones only when asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from medscope.agent.backends.base import Backend, BackendError

if TYPE_CHECKING:  # scripted imports the protocol, which imports base: keep this package's import light
    from medscope.agent.backends.scripted import Reference

BACKENDS = ("hf", "openai", "oracle", "teacher", "uniform", "random")


def make_backend(
    kind: str, *, model: str | None = None, base_url: str | None = None, reference: Reference | None = None,
    timeout: float = 60.0, max_retries: int = 2,
) -> Backend:
    """Build a backend by name; scripted policies need a ``reference``, ``openai`` a ``model`` and a server; ``hf``
    loads ``model`` (a local folder), the built-in medscope-tiny when none is given."""
    if kind == "hf":
        from medscope.agent.backends.hf import HFBackend
        from medscope.models import resolve_model

        return HFBackend.from_pretrained(resolve_model(model))
    if kind == "openai":
        if not model or not base_url:
            raise ValueError("--backend openai needs --model NAME and --base-url URL (e.g. http://localhost:8000/v1)")
        from medscope.agent.backends.openai import OpenAIBackend

        return OpenAIBackend(model, base_url=base_url, timeout=timeout, max_retries=max_retries)
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


__all__ = ["BACKENDS", "Backend", "BackendError", "backend_from_spec", "make_backend"]
