"""The llama.cpp backend: llama-cpp-python in process, on the GGUF base as it is (the embedded
Q4_1 file, no conversion) plus the adapter's GGUF form (``python -m finetune export-gguf``).

llama.cpp computes the logits; the shared :class:`~storygen.sampling.Sampler` chooses each token,
so seeds, the repetition penalty and Stop behave exactly as on the transformers backend. One
llama.cpp context per slot lets the app write several stories at once; the CPU threads are
shared out among the stories running (one story alone gets every core).
"""

from __future__ import annotations

import os
import queue
import threading
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from storygen.backends.base import BackendError, LocalBackend
from storygen.config import EMBEDDED, ModelSpec
from storygen.loading import (
    GGUF_ADAPTER,
    LoadError,
    adapter_path,
    check_adapter,
    read_adapter_meta,
    read_gguf_adapter_meta,
    with_leading,
)
from storygen.prompt_format import Prompt

N_CTX = 4096
"""Prompt + story tokens a context holds (capped at the model's training context)."""
SCORED_TOKENS = 320
"""Prompt + story tokens scored per story when a model's loss is measured (as in the demo
adapter's validation)."""


def resolve_gguf_base(base: str) -> tuple[Path, str]:
    """(GGUF file, base model id) for an embedded model or a ``.gguf`` path."""
    from storygen.embedded import EmbeddedModelError, embedded_model, gguf_path

    embedded = embedded_model(base)
    if embedded is not None:
        try:
            return gguf_path(embedded), embedded.model_id
        except EmbeddedModelError as exc:
            raise LoadError(str(exc)) from exc
    path = Path(base).expanduser()
    if not path.suffix.lower() == ".gguf":
        raise LoadError(
            f"the llamacpp backend runs GGUF files; {base!r} is not one: pass a .gguf file, "
            "an embedded model ('embedded', 'gemma3-270m'), or --backend transformers for a "
            "Hugging Face model"
        )
    if not path.is_file():
        raise LoadError(f"GGUF file {path} does not exist")
    return path, str(path.resolve())


def file_type_name(file_type) -> str:
    """A GGUF's ``general.file_type`` as the quantization name provenance records."""
    try:
        from gguf import LlamaFileType

        name = LlamaFileType(int(file_type)).name.removeprefix("MOSTLY_")
    except (ImportError, TypeError, ValueError):
        name = "unknown"
    return f"gguf-{name.lower()}"


def tokenize(llm, prompt: Prompt) -> list[int]:
    """The prompt's token ids: the format's markers as special tokens, the request's and the
    story's text never (a marker typed into them stays plain text)."""
    ids: list[int] = []
    for text, special in prompt.parts:
        ids += llm.tokenize(text.encode("utf-8"), add_bos=False, special=special)
    return with_leading(leading_tokens(llm), ids)


def chat_template(llm) -> tuple[str, dict[str, str]] | None:
    """The GGUF's chat template and the special tokens it names, if it has one."""
    template = llm.metadata.get("tokenizer.chat_template")
    if not template:
        return None

    def text(token: int) -> str:
        return llm.detokenize([token], special=True).decode("utf-8", errors="replace")

    return template, {"bos_token": text(llm.token_bos()), "eos_token": text(llm.token_eos())}


def leading_tokens(llm) -> list[int]:
    """The model's own rule for a leading BOS (its GGUF's add_bos_token), as in training."""
    return llm.tokenize(b"", add_bos=True, special=False)


def merged_meta(model_path: Path) -> dict | None:
    """What a GGUF with an adapter merged into it was made of (``finetune export-gguf
    --merge`` writes it beside the file as JSON): the adapter's name, base and prompt format."""
    import json

    side = Path(model_path).with_suffix(".json")
    try:
        meta = json.loads(side.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("made_with") != MERGED_WITH:
        return None
    return meta


MERGED_WITH = "llama-export-lora + llama-quantize"


def gguf_adapter(
    spec: ModelSpec, model_path: Path, base_id: str
) -> tuple[Path | None, dict | None]:
    """The adapter's GGUF file and its metadata, both checked against the base (``model_path``
    and ``base_id``, from :func:`resolve_gguf_base`). A base with an adapter merged into it has
    no adapter file, and its merged adapter's metadata."""
    adir = adapter_path(spec)
    merged = merged_meta(model_path)
    if adir is None:
        return None, merged
    if merged is not None:
        raise LoadError(
            f"{spec.base} already has the adapter {merged.get('name')!r} merged into it: "
            "pass --adapter none"
        )
    if not adir.exists():
        raise LoadError(f"adapter folder {adir} does not exist")
    meta = read_adapter_meta(adir)
    check_adapter(meta, base_id, adir)
    lora = adir / GGUF_ADAPTER
    if not lora.exists():
        raise LoadError(
            f"{adir} has no {GGUF_ADAPTER} (the adapter's llama.cpp form): run "
            f"`python -m finetune export-gguf {adir}`"
        )
    check_adapter(read_gguf_adapter_meta(lora), base_id, lora)
    return lora, meta


class _Session:
    """One story on one slot: feeds tokens, returns the last position's logits."""

    def __init__(self, backend: LlamaCppBackend, llm):
        self.backend, self.llm = backend, llm
        self.threads = 0
        self.first = True

    def __call__(self, ids: list[int]) -> np.ndarray:
        llm, lc = self.llm, self.backend._llama_cpp
        want = self.backend._threads()
        if want != self.threads:  # a story alone uses every core; several share them
            lc.llama_set_n_threads(llm.ctx, want, want)
            self.threads = want
        if self.first:
            # The slot still holds its last story's cache: keep what the new prompt shares with
            # it (Regenerate, Continue, a chat template's system part) and compute only the
            # rest; at least one token, for the logits. The prompt's last token is always
            # computed alone, after the rest: llama.cpp's batched and one-token kernels differ
            # in the last bits, so a prompt computed whole and the same prompt found cached
            # would start from different logits, and the same seed could give another story.
            keep = common_prefix(llm.input_ids[: llm.n_tokens].tolist(), ids)
            llm.n_tokens = min(keep, len(ids) - 1)
            ids = ids[llm.n_tokens :]
            self.first = False
            if len(ids) > 1:
                self._eval(ids[:-1])
                ids = ids[-1:]
        self._eval(ids)
        # The logits of the last position, valid until the next eval (the sampler copies them).
        logits = lc.llama_get_logits_ith(llm.ctx, -1)
        return np.ctypeslib.as_array(logits, shape=(self.backend._n_vocab,))

    def _eval(self, ids: list[int]) -> None:
        try:
            self.llm.eval(ids)  # drops the cache past n_tokens first
        except RuntimeError as exc:
            raise BackendError(f"llama.cpp failed to decode: {exc}") from exc


def common_prefix(a: list, b: list) -> int:
    """How many leading items ``a`` and ``b`` share."""
    n = min(len(a), len(b))
    return next((i for i in range(n) if a[i] != b[i]), n)


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class LlamaCppBackend(LocalBackend):
    name = "llamacpp"

    def __init__(self, spec: ModelSpec, slots: int = 1):
        try:
            import llama_cpp
        except ImportError as exc:
            raise LoadError(
                "llama-cpp-python is not installed: run `bash scripts/setup.sh` (it builds it), "
                "or use --backend transformers"
            ) from exc
        self._llama_cpp = llama_cpp
        self.spec = spec
        self.model_path, self.base_id = resolve_gguf_base(spec.base)
        self.lora_path, self.adapter_meta = gguf_adapter(spec, self.model_path, self.base_id)
        if self.lora_path is None and self.adapter_meta:  # an adapter merged into the base
            self.base_id = self.adapter_meta.get("base_model") or self.base_id
        self._slots: queue.Queue = queue.Queue()
        self._all = [self._open() for _ in range(max(1, slots))]
        for llm in self._all:
            self._slots.put(llm)
        self._running = 0
        self._lock = threading.Lock()
        first = self._all[0]
        self.n_ctx = first.n_ctx()
        self._vocab = llama_cpp.llama_model_get_vocab(first.model)
        self._n_vocab = first.n_vocab()
        self._file_type = first.metadata.get("general.file_type")

    def _open(self):
        from llama_cpp import Llama

        kwargs = dict(
            model_path=str(self.model_path),
            n_ctx=N_CTX,
            n_batch=512,
            n_threads=self.spec.threads or cpu_count(),
            n_threads_batch=self.spec.threads or cpu_count(),
            verbose=False,
        )
        if self.lora_path is not None:
            kwargs["lora_path"] = str(self.lora_path)
        try:
            llm = Llama(**kwargs)
        except (ValueError, RuntimeError) as exc:
            raise LoadError(f"llama.cpp could not load {self.model_path}: {exc}") from exc
        train_ctx = self._llama_cpp.llama_model_n_ctx_train(llm.model)
        if 0 < train_ctx < N_CTX:
            llm.close()
            llm = Llama(**{**kwargs, "n_ctx": train_ctx})
        return llm

    def quantization(self) -> str:
        return file_type_name(self._file_type)

    def provenance(self):
        return {**super().provenance(), "engine": f"llama-cpp-python {self._llama_cpp.__version__}"}

    def chat_template(self):
        return chat_template(self._all[0])

    def tokenize(self, prompt: Prompt) -> list[int]:
        return tokenize(self._all[0], prompt)  # the vocabulary is read-only: any slot will do

    def count_tokens(self, text: str) -> int:
        return len(self._all[0].tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def detokenize(self, tokens) -> str:
        raw = self._all[0].detokenize(list(tokens), special=False)
        return raw.decode("utf-8", errors="replace")

    def is_eos(self, token: int) -> bool:
        return bool(self._llama_cpp.llama_vocab_is_eog(self._vocab, token))

    def _threads(self) -> int:
        return self.spec.threads or max(1, cpu_count() // max(1, self._running))

    @contextmanager
    def session(self):
        try:
            # The app's concurrency equals the slots, so one is free unless a story abandoned
            # mid-token has not been closed yet; then open another rather than wait for it.
            llm = self._slots.get(timeout=1.0)
        except queue.Empty:
            llm = self._open()
            self._all.append(llm)
        with self._lock:
            self._running += 1
        try:
            yield _Session(self, llm)
        finally:
            with self._lock:
                self._running -= 1
            self._slots.put(llm)

    def clear_cache(self) -> None:
        """Forget every slot's cached prompt, so the next story computes its whole prompt."""
        for llm in self._all:
            llm.reset()

    def close(self) -> None:
        for llm in self._all:
            llm.close()
        self._all = []


def token_ids(prompt: str, story: str, scorer) -> tuple[list[int], int]:
    """Prompt + story ids for ``scorer`` (capped at SCORED_TOKENS), the prompt after the model's
    BOS if it has one, and the number of prompt ids."""
    p, s = scorer.prompt_ids(prompt), scorer.tokenize(story)
    return (p + s)[:SCORED_TOKENS], len(p)


def nll_and_argmax(logits: np.ndarray, ids: list[int], n_prompt: int):
    """Per-token NLL of the story tokens and the model's top token at each of those positions."""
    logits = logits[n_prompt - 1 : len(ids) - 1].astype(np.float64)
    targets = np.asarray(ids[n_prompt:])
    top = logits.max(-1, keepdims=True)
    logz = top[:, 0] + np.log(np.exp(logits - top).sum(-1))
    return logz - logits[np.arange(len(targets)), targets], logits.argmax(-1)


class LlamaScorer:
    """Every position's logits from llama.cpp (the GGUF base, the adapter's GGUF form or none)."""

    def __init__(
        self,
        adapter: str | None,
        threads: int = 2,
        base: str = EMBEDDED,
        lora: Path | None = None,
    ):
        """``adapter`` as the backends take it (checked against ``base``), or a GGUF LoRA file
        as ``lora``, applied as it is."""
        from llama_cpp import Llama

        spec = ModelSpec(base=base, adapter=adapter, backend="llamacpp")
        model_path, base_id = resolve_gguf_base(spec.base)
        if lora is None:
            lora, _ = gguf_adapter(spec, model_path, base_id)
        kwargs = {"lora_path": str(lora)} if lora else {}
        self.llm = Llama(
            model_path=str(model_path),
            n_ctx=SCORED_TOKENS,
            n_batch=SCORED_TOKENS,
            n_threads=threads,
            logits_all=True,
            verbose=False,
            **kwargs,
        )

    def tokenize(self, text: str) -> list[int]:
        return self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)

    def prompt_ids(self, text: str) -> list[int]:
        return with_leading(leading_tokens(self.llm), self.tokenize(text))

    def logits(self, ids: list[int]) -> np.ndarray:
        self.llm.reset()
        self.llm.eval(ids)
        return np.array(self.llm.scores[: len(ids)])

    def mean_loss(self, texts: list[tuple[str, str]]) -> float:
        """Mean per-token loss of each story after its prompt (the first SCORED_TOKENS of
        both), averaged over the stories."""
        losses = []
        for prompt, story in texts:
            ids, n_prompt = token_ids(prompt, story, self)
            losses.append(float(nll_and_argmax(self.logits(ids), ids, n_prompt)[0].mean()))
        return float(np.mean(losses))

    def close(self) -> None:
        self.llm.close()
