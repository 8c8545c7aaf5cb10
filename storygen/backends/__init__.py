"""One seam, three engines: every backend turns a prompt into a stream of tokens.

- ``transformers`` (:mod:`storygen.backends.hf`): torch, NF4/int8/bf16/fp32 + peft; the reference
  path, for GPUs and for parity tests.
- ``llamacpp`` (:mod:`storygen.backends.llamacpp`): llama.cpp in process on the GGUF base as it
  is, with the adapter's GGUF form; the default on a CPU.
- ``openai`` (:mod:`storygen.backends.openai`): any OpenAI-compatible completions server, over
  HTTP; how the app scales past one machine.
- ``llama-server`` (:mod:`storygen.backends.server`): llama.cpp's own server, started and
  watched by the app, through the openai backend; many readers on one machine.

The engine modules are imported only when their backend is loaded, so the app starts without
torch when it serves through llama.cpp or a server.
"""

from __future__ import annotations

from storygen.backends.base import Backend, BackendError
from storygen.config import ModelSpec

__all__ = ["Backend", "BackendError", "load_backend"]


def load_backend(spec: ModelSpec | None = None, slots: int = 1) -> Backend:
    """Load the model ``spec`` names on the backend it names.

    ``slots`` is how many stories may be written at once (the app's concurrency); the llama.cpp
    backend keeps one context per slot.
    """
    spec = spec or ModelSpec()
    backend = spec.resolved_backend()
    if backend == "llamacpp":
        from storygen.backends.llamacpp import LlamaCppBackend

        return LlamaCppBackend(spec, slots=slots)
    if backend == "llama-server":
        from storygen.backends.server import LlamaServerBackend

        return LlamaServerBackend(spec, slots=slots)
    if backend == "openai":
        from storygen.backends.openai import OpenAIBackend

        return OpenAIBackend(spec)
    from storygen.backends.hf import TransformersBackend

    return TransformersBackend.load(spec)
