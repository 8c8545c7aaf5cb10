"""The ``llama-server`` backend: llama.cpp's own server, started and watched by the app, for
many readers at once.

In process (the ``llamacpp`` backend) each story has its own context and the stories written at
once take turns on the cores. ``llama-server`` holds one model with the adapter applied as a
LoRA (``--lora``), one slot per story written at once (``--parallel``) and continuous batching:
every running story's next token is decoded in one batch per step, so eight readers cost little
more than one. The server is built from the same pinned llama.cpp source as llama-cpp-python
(``scripts/setup.sh`` puts ``llama-server`` beside the venv's python). Requests go through the
:mod:`openai backend <storygen.backends.openai>`: the prompt is rendered here as for every
backend and the server samples (seed, temperature, top-p, top-k, repetition penalty).

The server is supervised: a thread of its own starts it, waits until it answers ``/health``,
and starts it again if it dies (a story it cut off ends with a message; the text so far is
kept). It never outlives the app: closing the backend or the app's exit stops it, and on Linux
the kernel kills it when the app is killed (``PR_SET_PDEATHSIG``), even by SIGKILL.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from dataclasses import replace
from pathlib import Path

from storygen.backends.base import BackendError
from storygen.backends.openai import OpenAIBackend
from storygen.config import ModelSpec

BINARY_ENV = "STORYGEN_LLAMA_SERVER"
ALIAS = "storygen"
N_CTX_PER_SLOT = 4096
"""Prompt + story tokens each slot holds, as one in-process context does."""
MAX_RESTARTS = 5
"""Restarts within a minute after which the server is left down (it would only crash again)."""


class ServerError(BackendError):
    """The server cannot be started or has stopped for good; the message says why."""


def llama_tool(name: str, env: str | None = None) -> Path:
    """One of llama.cpp's programs: ``$env`` if set, else beside this Python (where setup.sh
    puts them), else on PATH."""
    named = os.environ.get(env) if env else None
    candidates = [Path(named)] if named else []
    candidates.append(Path(sys.executable).with_name(name))
    on_path = shutil.which(name)
    candidates += [Path(on_path)] if on_path else []
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    raise ServerError(
        f"{name} is not installed: bash scripts/setup.sh builds it from llama.cpp's source"
        + (f" (or set {env} to one)" if env else "")
    )


def server_binary() -> Path:
    return llama_tool("llama-server", BINARY_ENV)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_taken(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _parent_death_signal():
    """A function for the child to call between fork and exec that asks the kernel to kill it
    when its parent thread ends (``prctl(PR_SET_PDEATHSIG, SIGKILL)``), resolved here in the
    parent so that the child only makes the call; None off Linux (closing the backend still
    stops the server)."""
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return lambda: prctl(1, signal.SIGKILL)


class LlamaServer:
    """One ``llama-server`` process on 127.0.0.1, started and restarted by a thread of its own
    (the kernel's parent-death signal follows the thread that started a process, so the same
    long-lived thread starts every one)."""

    def __init__(
        self,
        model: Path,
        lora: Path | None,
        slots: int,
        threads: int | None = None,
        port: int | None = None,
        binary: Path | None = None,
        ready_timeout: float = 120.0,
    ):
        self.model, self.lora, self.slots = Path(model), lora, max(1, slots)
        self.threads = threads
        self.requested_port = port
        self.binary = binary
        self.ready_timeout = ready_timeout
        self.port: int | None = None
        self.restarts = 0
        """How often the server was started again after dying."""
        self.last_restart = -1.0
        self.down = threading.Event()
        """Set when the server died too often and is left down."""
        self.log = Path(tempfile.mkstemp(prefix="storygen-llama-server-", suffix=".log")[1])
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()  # the process, against stop() racing a restart
        self._stopping = threading.Event()
        self._ready = threading.Event()
        self._started = threading.Event()
        self._failed: str | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def command(self) -> list[str]:
        binary = self.binary or server_binary()
        cmd = [str(binary), "--model", str(self.model), "--alias", ALIAS]
        cmd += ["--host", "127.0.0.1", "--port", str(self.port)]
        cmd += ["--parallel", str(self.slots), "--cont-batching"]
        cmd += ["--ctx-size", str(N_CTX_PER_SLOT * self.slots), "--no-kv-unified"]
        cmd += ["--threads", str(self.threads or os.cpu_count() or 1), "--no-webui"]
        if self.lora is not None:
            cmd += ["--lora", str(self.lora)]
        return cmd

    def start(self) -> str:
        """Start the server and wait until it answers; its URL, or :class:`ServerError`."""
        if self.requested_port is not None and port_taken(self.requested_port):
            raise ServerError(
                f"port {self.requested_port} is already in use: choose another --server-port, "
                "or leave it out for a free one"
            )
        self.port = self.requested_port or free_port()
        self.command()  # no binary: say so now, on the caller's thread
        atexit.register(self.stop)  # before it exists: an exit while it loads stops it too
        self._thread = threading.Thread(target=self._supervise, name="llama-server", daemon=True)
        self._thread.start()
        if not self._started.wait(self.ready_timeout + 30):
            self._failed = f"llama-server did not start within {self.ready_timeout + 30:g} s"
        if self._failed:
            self.stop()
            raise ServerError(self._failed)
        return self.url

    def alive(self) -> bool:
        proc = self._proc
        up = self._ready.is_set() and not self.down.is_set()
        return up and proc is not None and proc.poll() is None

    def died_since(self, t: float, wait: float = 2.0) -> bool:
        """Whether the server died (or was started again) since ``t``; a request cut off a
        moment ago may be seen before the watching thread sees the death, so wait a little."""
        deadline = time.monotonic() + wait
        while True:
            proc = self._proc
            if self.last_restart >= t or self.down.is_set() or (proc and proc.poll() is not None):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            proc = self._proc
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        atexit.unregister(self.stop)
        self.log.unlink(missing_ok=True)

    def _spawn(self) -> str | None:
        """Start one process and wait for /health; None when it serves, else why not."""
        import httpx

        self._ready.clear()
        with self._lock:
            if self._stopping.is_set():
                return "stopped"
            with self.log.open("ab") as out:
                self._proc = subprocess.Popen(
                    self.command(),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    preexec_fn=_parent_death_signal(),  # noqa: PLW1509 - only calls prctl
                )
            proc = self._proc
        health = f"http://127.0.0.1:{self.port}/health"
        deadline = time.monotonic() + self.ready_timeout
        with httpx.Client(trust_env=False, timeout=1) as http:  # never through a proxy
            while time.monotonic() < deadline and not self._stopping.is_set():
                if proc.poll() is not None:
                    return f"llama-server exited with {proc.returncode}: {self._tail()}"
                try:
                    if http.get(health).status_code == 200:
                        self._ready.set()
                        return None
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
        with self._lock:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        return f"llama-server did not answer within {self.ready_timeout:g} s: {self._tail()}"

    def _supervise(self) -> None:
        try:
            self._failed = self._spawn()
        except Exception as exc:  # noqa: BLE001 - start() reports it, never waits forever
            self._failed = f"llama-server could not be started: {type(exc).__name__}: {exc}"
        finally:
            self._started.set()
        if self._failed:
            return
        recent: deque[float] = deque()
        while not self._stopping.wait(0.2):
            if self._proc.poll() is None:
                continue
            now = time.monotonic()
            self._ready.clear()
            self.last_restart = now
            while recent and now - recent[0] > 60:
                recent.popleft()
            if len(recent) >= MAX_RESTARTS:
                self.down.set()
                print(
                    f"llama-server died {MAX_RESTARTS + 1} times within a minute; it is left "
                    f"down ({self._tail()})",
                    file=sys.stderr,
                    flush=True,
                )
                return
            print(
                f"llama-server exited with {self._proc.returncode}; starting it again",
                file=sys.stderr,
                flush=True,
            )
            recent.append(now)
            self.restarts += 1
            try:
                why = self._spawn()
            except Exception as exc:  # noqa: BLE001 - the next round tries again
                why = f"{type(exc).__name__}: {exc}"
            if why and why != "stopped":
                print(why, file=sys.stderr, flush=True)

    def _tail(self, lines: int = 6) -> str:
        try:
            text = self.log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(text[-lines:]) or "(no output)"


class LlamaServerBackend(OpenAIBackend):
    """The openai backend on a ``llama-server`` this backend starts, watches and stops."""

    name = "llama-server"

    def __init__(self, spec: ModelSpec, slots: int = 1):
        from llama_cpp import Llama

        from storygen.backends.llamacpp import gguf_adapter, resolve_gguf_base

        model, base_id = resolve_gguf_base(spec.base)
        lora, _ = gguf_adapter(spec, model, base_id)
        # The prompt is tokenized here, as in process, and sent as token ids: the format's
        # markers are special tokens, text typed by a person never is.
        self._vocab = Llama(model_path=str(model), vocab_only=True, verbose=False)
        self.server = LlamaServer(model, lora, slots, spec.threads, spec.server_port)
        try:
            self.server.start()
        except Exception:
            self._vocab.close()
            raise
        self.slots = self.server.slots
        try:
            served = replace(
                spec,
                backend="openai",
                endpoint=self.server.url,
                served_model=ALIAS,
                server_port=None,
            )
            super().__init__(served)
        except Exception:
            self.server.stop()
            self._vocab.close()
            raise
        self.spec = spec
        self._file_type = self._vocab.metadata.get("general.file_type")

    def chat_template(self):
        from storygen.backends.llamacpp import chat_template

        return chat_template(self._vocab)

    def body(self, prompt, sampling, budget):
        """The openai request, with the prompt as token ids and llama.cpp's samplers set to
        ours: repetition penalty, top-k, temperature, top-p, in that order, and none of its
        others (min-p is on by default there). Its penalty covers the last 64 tokens, the
        prompt's tail among them at first, where ours covers every story token and no prompt
        token; over 24 seeds of the same request the stories came out as long (mean 202
        against 191 tokens; 32 tokens gave 224, 256 far shorter)."""
        from storygen.backends.llamacpp import tokenize

        return {
            **super().body(prompt, sampling, budget),
            "prompt": tokenize(self._vocab, prompt),
            "samplers": ["penalties", "top_k", "temperature", "top_p"],
            "min_p": 0.0,
            "repeat_last_n": 64,
        }

    def count_tokens(self, text: str) -> int:
        return len(self._vocab.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def tokens(self, prompt, sampling, budget, stats, stop_on_eos=True):
        t0 = time.monotonic()
        try:
            return (yield from super().tokens(prompt, sampling, budget, stats, stop_on_eos))
        except BackendError as exc:
            if self.server.down.is_set():
                raise BackendError(
                    "the story server stopped and could not be started again: the text so far "
                    "is kept; the app must be restarted"
                ) from exc
            if self.server.died_since(t0):
                raise BackendError(
                    "the story server stopped while writing this story and is being started "
                    "again: the text so far is kept; press Write or Continue in a moment"
                ) from exc
            raise

    def quantization(self) -> str:
        from storygen.backends.llamacpp import file_type_name

        return file_type_name(self._file_type)

    def device(self) -> str:
        return "cpu"

    def provenance(self):
        p = super().provenance()
        p.pop("endpoint", None)  # a port on this machine: not worth keeping
        return {**p, "engine": "llama-server (llama.cpp)", "slots": self.slots}

    def close(self) -> None:
        super().close()
        self.server.stop()
        self._vocab.close()
