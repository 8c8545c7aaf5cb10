"""The backend interface, and the token loop shared by the backends that compute logits locally."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from storygen.config import ModelSpec, SamplingConfig
from storygen.prompt_format import PROMPT_FORMAT_VERSION, Prompt, chat_prompt, tagged_prompt
from storygen.request import Plan, StoryRequest
from storygen.sampling import Sampler


class BackendError(RuntimeError):
    """A backend that cannot load or serve a request, with a message meant for the user."""


@dataclass
class DecodeStats:
    """Counters a caller (or a test) can read after decoding."""

    prompt_tokens: int = 0
    new_tokens: int = 0
    forward_calls: int = 0
    first_token_s: float | None = None
    seconds: float = 0.0


class Backend(ABC):
    """A loaded model on one engine. Shared by all users of the app: nothing in it may hold one
    request's state outside the generator that :meth:`tokens` returns."""

    name: ClassVar[str]
    spec: ModelSpec
    base_id: str
    adapter_meta: dict[str, Any] | None = None

    @property
    def prompt_format(self) -> str:
        """The prompt format version the model speaks: its adapter's, else the current one."""
        return (self.adapter_meta or {}).get("prompt_format") or PROMPT_FORMAT_VERSION

    def prompt(
        self, request: StoryRequest, plan: Plan | None = None, task: str = "story"
    ) -> Prompt:
        """The prompt for a validated request: for its story (from ``plan``, if given) or, with
        ``task="plan"``, for its plan.

        With an adapter (its own, or one merged into the base) the model was trained on the
        tagged format, so it gets exactly that, in the adapter's own version. A bare
        instruction-tuned base gets the same fields inside its own chat template.
        """
        bare = self.spec.adapter is None and self.adapter_meta is None
        chat = self.chat_template() if bare else None
        if chat is not None:
            return chat_prompt(request, *chat, plan=plan, task=task)
        return tagged_prompt(request, self.prompt_format, plan, task)

    @abstractmethod
    def chat_template(self) -> tuple[str, dict[str, str]] | None:
        """(Jinja template, special token strings it may use) of the base model, if it has one."""

    def check_sampling(self, sampling: SamplingConfig, stop_on_eos: bool = True) -> None:  # noqa: B027
        """Raise :class:`BackendError` for a setting this backend cannot honour (the local
        backends honour every one)."""

    @abstractmethod
    def tokens(
        self,
        prompt: Prompt,
        sampling: SamplingConfig,
        budget: int,
        stats: DecodeStats,
        stop_on_eos: bool = True,
    ) -> Iterator[Hashable]:
        """Yield the story's tokens one at a time, at most ``budget``; the stream ends early at
        the end of the story (unless ``stop_on_eos`` is False). Its return value says why it
        ended: ``eos`` or ``length``.

        The stream is lazy: each ``next`` does one model step, so a caller that stops pulling
        (or closes the generator) stops the model between two tokens.
        """

    @abstractmethod
    def detokenize(self, tokens: list[Hashable]) -> str:
        """The text of a list of tokens from :meth:`tokens` (special tokens left out)."""

    @abstractmethod
    def count_tokens(self, text: str) -> int:
        """How many tokens ``text`` takes as plain story text."""

    def quantization(self) -> str:
        return self.spec.quantization or "unknown"

    def device(self) -> str:
        return "cpu"

    def provenance(self) -> dict[str, Any]:
        """What produced a story: engine, base model, adapter, quantization and prompt format."""
        return {
            "backend": self.name,
            "base_model": self.base_id,
            "adapter": self.spec.adapter and str(self.spec.adapter),
            "adapter_name": (self.adapter_meta or {}).get("name"),
            "quantization": self.quantization(),
            "device": self.device(),
            "prompt_format": self.prompt_format,
        }

    def close(self) -> None:  # noqa: B027 - nothing to free by default
        """Free what the engine holds (models, contexts, connections)."""


Forward = Callable[[list[int]], np.ndarray]


class LocalBackend(Backend):
    """A backend whose engine computes logits here: tokens are chosen by the shared
    :class:`~storygen.sampling.Sampler`, so every knob means the same on every local engine."""

    n_ctx: int | None = None
    """The longest prompt + story the engine holds (None: no fixed limit)."""

    @abstractmethod
    def tokenize(self, prompt: Prompt) -> list[int]:
        """Token ids of a prompt; only its template pieces may form special tokens."""

    @abstractmethod
    def session(self) -> AbstractContextManager[Forward]:
        """A fresh decoding state for one story: a function that feeds token ids and returns the
        logits after the last one (float32, vocabulary-sized)."""

    @abstractmethod
    def is_eos(self, token: int) -> bool:
        """Whether ``token`` ends a story."""

    def tokens(self, prompt, sampling, budget, stats, stop_on_eos=True):
        ids = self.tokenize(prompt)
        stats.prompt_tokens = len(ids)
        if self.n_ctx is not None:
            room = self.n_ctx - len(ids)
            if room < 1:
                raise BackendError(
                    f"the prompt takes {len(ids)} tokens, the model's context holds "
                    f"{self.n_ctx}: shorten the story to continue or the request"
                )
            budget = min(budget, room)
        choose = Sampler(sampling)
        generated: list[int] = []
        with self.session() as forward:
            step = ids
            for _ in range(budget):
                logits = forward(step)
                stats.forward_calls += 1
                token = choose(logits, generated)
                if stop_on_eos and self.is_eos(token):
                    return "eos"
                generated.append(token)
                yield token
                step = [token]
        return "length"
