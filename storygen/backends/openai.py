"""The openai backend: any OpenAI-compatible completions server, over HTTP.

llama.cpp's own server, ``python -m llama_cpp.server``, vLLM (with ``--lora-modules``) and TGI all
speak it. The server samples; every :class:`~storygen.config.SamplingConfig` knob is sent
(``top_k`` and the repetition penalty as the extensions those servers read), and a setting that
cannot be sent is refused. The prompt is rendered here, as for the other backends, and sent as
text; the stream is read on a helper thread so that Stop, a silent server and a dead one all end
the request at once with a message, never a hung request.
"""

from __future__ import annotations

import json
import queue
import threading
from pathlib import Path
from typing import Any

from storygen.backends.base import Backend, BackendError
from storygen.config import ModelSpec, SamplingConfig
from storygen.loading import adapter_path, read_adapter_meta
from storygen.prompt_format import Prompt

CONNECT_TIMEOUT = 5.0
_END = object()


class OpenAIBackend(Backend):
    name = "openai"

    def __init__(self, spec: ModelSpec):
        import httpx

        self.spec = spec
        self.endpoint = str(spec.endpoint).rstrip("/")
        self._http = httpx.Client(timeout=httpx.Timeout(spec.timeout, connect=CONNECT_TIMEOUT))
        self.served_model = spec.served_model or self._first_model()
        self.base_id = self._declared_base()
        adir = adapter_path(spec)
        self.adapter_meta = read_adapter_meta(adir) if adir is not None and adir.exists() else None
        self._template = self._local_chat_template()

    def _get(self, path: str) -> Any:
        import httpx

        url = f"{self.endpoint}{path}"
        try:
            response = self._http.get(url)
            response.raise_for_status()
            return response.json()
        except httpx.HTTPStatusError as exc:
            raise BackendError(f"{url} answered {exc.response.status_code}") from exc
        except (httpx.HTTPError, ValueError) as exc:
            raise BackendError(f"cannot reach {url}: {exc or type(exc).__name__}") from exc

    def _first_model(self) -> str:
        models = self._get("/models").get("data") or []
        if not models:
            raise BackendError(f"{self.endpoint}/models lists no model")
        return str(models[0]["id"])

    def _declared_base(self) -> str:
        from storygen.embedded import embedded_model

        embedded = embedded_model(self.spec.base)
        return embedded.model_id if embedded else self.spec.base

    def _local_chat_template(self):
        """The declared base's chat template, read locally (the server's is not exposed by the
        API): from the embedded GGUF, or a local Hugging Face folder's tokenizer_config.json."""
        if self.spec.adapter is not None:
            return None
        from storygen.embedded import embedded_model, gguf_path

        embedded = embedded_model(self.spec.base)
        if embedded is not None:
            from gguf import GGUFReader

            fields = GGUFReader(gguf_path(embedded)).fields
            if "tokenizer.chat_template" not in fields:
                return None
            tokens = fields["tokenizer.ggml.tokens"]
            specials = {
                f"{name}_token": tokens.contents(
                    fields[f"tokenizer.ggml.{name}_token_id"].contents()
                )
                for name in ("bos", "eos")
                if f"tokenizer.ggml.{name}_token_id" in fields
            }
            return fields["tokenizer.chat_template"].contents(), specials
        cfg = Path(self.spec.base).expanduser() / "tokenizer_config.json"
        if cfg.exists():
            data = json.loads(cfg.read_text())
            if isinstance(data.get("chat_template"), str):
                specials = {
                    k: (v if isinstance(v, str) else v.get("content", ""))
                    for k, v in data.items()
                    if k in ("bos_token", "eos_token") and v
                }
                return data["chat_template"], specials
        return None

    def chat_template(self):
        return self._template

    def provenance(self):
        return {
            **super().provenance(),
            "endpoint": self.endpoint,
            "served_model": self.served_model,
        }

    def quantization(self) -> str:
        return "server"

    def device(self) -> str:
        return "remote"

    def check_sampling(self, sampling: SamplingConfig, stop_on_eos: bool = True) -> None:
        if not stop_on_eos:
            raise BackendError(
                "the openai backend cannot be told to write past the end of the story "
                "(stop_on_eos=False); use the llamacpp or transformers backend"
            )

    def body(self, prompt: Prompt, sampling: SamplingConfig, budget: int) -> dict[str, Any]:
        """The completions request: every sampling knob mapped to the servers' names."""
        return {
            "model": self.served_model,
            "prompt": prompt.text,
            "max_tokens": budget,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "top_k": sampling.top_k if sampling.top_k else -1,  # -1: off, for vLLM and llama.cpp
            "repeat_penalty": sampling.repetition_penalty,  # llama.cpp's name
            "repetition_penalty": sampling.repetition_penalty,  # vLLM's and TGI's name
            "seed": sampling.seed,
            "stream": True,
        }

    def tokens(self, prompt, sampling, budget, stats, stop_on_eos=True):
        chunks: queue.Queue = queue.Queue()
        cancel = threading.Event()
        reader = threading.Thread(
            target=self._read,
            args=(self.body(prompt, sampling, budget), chunks, cancel),
            daemon=True,
        )
        reader.start()
        stats.forward_calls += 1
        finish = "eos"
        try:
            while True:
                try:
                    item = chunks.get(timeout=self.spec.timeout + 1)
                except queue.Empty:
                    raise BackendError(
                        f"{self.endpoint} sent nothing for {self.spec.timeout:g} s; the request "
                        "was abandoned"
                    ) from None
                if item is _END:
                    break
                if isinstance(item, BackendError):
                    raise item
                kind, value = item
                if kind == "usage":
                    stats.prompt_tokens = value.get("prompt_tokens") or stats.prompt_tokens
                elif kind == "finish":
                    finish = "length" if value == "length" else "eos"
                elif value:
                    yield value
        finally:
            cancel.set()  # the reader closes the connection at its next chunk: the server stops
        return finish

    def _read(self, body: dict, chunks: queue.Queue, cancel: threading.Event) -> None:
        """Read the server's event stream into ``chunks`` (runs on its own thread)."""
        import httpx

        url = f"{self.endpoint}/completions"
        try:
            with self._http.stream("POST", url, json=body) as response:
                if response.status_code != 200:
                    detail = response.read().decode("utf-8", errors="replace")[:300]
                    chunks.put(BackendError(f"{url} answered {response.status_code}: {detail}"))
                    return
                for line in response.iter_lines():
                    if cancel.is_set():
                        return
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    event = json.loads(data)
                    if event.get("usage"):
                        chunks.put(("usage", event["usage"]))
                    for choice in event.get("choices") or []:
                        if choice.get("text"):
                            chunks.put(("text", choice["text"]))
                        if choice.get("finish_reason"):
                            chunks.put(("finish", choice["finish_reason"]))
        except httpx.TimeoutException:
            chunks.put(
                BackendError(
                    f"{url} did not answer within {self.spec.timeout:g} s; "
                    "the request was abandoned"
                )
            )
            return
        except (httpx.HTTPError, ValueError) as exc:
            chunks.put(BackendError(f"cannot reach {url}: {exc or type(exc).__name__}"))
            return
        chunks.put(_END)

    def detokenize(self, tokens) -> str:
        return "".join(tokens)

    def count_tokens(self, text: str) -> int:
        # Used only to bound what is sent; a server's tokenizer is not available here. English
        # BPE averages ~1.3 tokens a word; 4 characters a token is the usual upper estimate.
        return max(len(text.split()), len(text) // 4)

    def close(self) -> None:
        self._http.close()
