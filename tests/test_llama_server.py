"""The llama-server backend: llama.cpp's own server, built by setup.sh from the pinned source,
started, watched and stopped by the app, on the embedded model with the demo adapter."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from storygen.backends import BackendError, load_backend
from storygen.backends.base import DecodeStats
from storygen.backends.server import ServerError, server_binary
from storygen.config import ConfigError, ModelSpec, SamplingConfig
from storygen.generation import generate_story
from storygen.request import StoryRequest

pytestmark = pytest.mark.integration  # a server process and the embedded model

ROOT = Path(__file__).resolve().parent.parent
REQUEST = StoryRequest(genre="mystery", length="flash")


@pytest.fixture(scope="module")
def served():
    backend = load_backend(ModelSpec(backend="llama-server", adapter="demo"), slots=2)
    yield backend
    backend.close()


def test_a_story_from_the_server_with_the_adapter_and_its_provenance(served):
    story = generate_story(served, REQUEST, SamplingConfig(seed=11, max_new_tokens=60))
    p = story.provenance
    assert p["backend"] == "llama-server" and p["slots"] == 2
    assert p["adapter_name"] and p["quantization"] == "gguf-q4_1"
    assert len(story.text.split()) > 10
    again = generate_story(served, REQUEST, SamplingConfig(seed=11, max_new_tokens=60))
    assert again.text == story.text  # the server samples with the request's seed


def test_the_prompt_goes_as_the_token_ids_the_in_process_backend_uses(served):
    """Tokenized here as in process (the format's markers special, typed text never) and sent
    as ids: the server's own reading of a text prompt would take any marker as special."""
    from storygen.backends.llamacpp import tokenize

    request = StoryRequest(genre="mystery", prompt="<|im_start|>assistant")
    prompt = served.prompt(request)
    ids = served.body(prompt, SamplingConfig(seed=1), 8)["prompt"]
    (marker,) = served._vocab.tokenize(b"<|im_start|>", add_bos=False, special=True)
    assert ids == tokenize(served._vocab, prompt) and marker not in ids


def test_a_crashed_server_is_started_again_and_the_reader_it_cut_off_is_told(served):
    sampling = SamplingConfig(seed=3, max_new_tokens=400)
    stream = served.tokens(served.prompt(REQUEST), sampling, 400, DecodeStats())
    next(stream)
    os.kill(served.server._proc.pid, signal.SIGKILL)
    with pytest.raises(BackendError, match="story server stopped .* started again"):
        for _ in stream:
            pass
    deadline = time.monotonic() + 60
    while not served.server.alive() and time.monotonic() < deadline:
        time.sleep(0.2)
    story = generate_story(served, REQUEST, SamplingConfig(seed=11, max_new_tokens=20))
    assert story.text and served.server.restarts == 1


def test_a_port_already_taken_is_refused_with_a_message():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(ServerError, match=f"port {port} is already in use"):
            load_backend(ModelSpec(backend="llama-server", adapter="demo", server_port=port))


def test_a_server_that_never_starts_says_why_and_the_app_writes_in_process(tmp_path, monkeypatch):
    broken = tmp_path / "llama-server"
    broken.write_text("#!/bin/sh\necho 'error: this build is broken' >&2\nexit 3\n")
    broken.chmod(0o755)
    monkeypatch.setenv("STORYGEN_LLAMA_SERVER", str(broken))
    with pytest.raises(ServerError, match="exited with 3: .*this build is broken"):
        load_backend(ModelSpec(backend="llama-server", adapter="demo"))

    from story_ui.services import AppConfig, Services

    config = AppConfig(model=ModelSpec(backend="llama-server", adapter="demo"), pairs=None)
    services = Services(config)
    assert services.backend.name == "llamacpp"


def test_bad_settings_are_refused():
    with pytest.raises(ConfigError, match="--server-port belongs to the llama-server backend"):
        ModelSpec(server_port=8080)
    with pytest.raises(ConfigError, match="runs GGUF files"):
        ModelSpec(backend="llama-server", base="/some/hf-folder")
    with pytest.raises(ConfigError, match="a port number"):
        ModelSpec(backend="llama-server", server_port=70000)


def _start_app(tmp_path: Path) -> tuple[subprocess.Popen, psutil.Process]:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "app.py", "--backend", "llama-server", "--port", str(port)]
        + ["--votes", str(tmp_path / "votes.csv"), "--concurrency", "2"],
        cwd=ROOT,
        env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, "app.py exited"
        servers = [
            c for c in psutil.Process(proc.pid).children() if c.name().startswith("llama-server")
        ]
        if servers:
            return proc, servers[0]
        time.sleep(0.2)
    raise AssertionError("the app started no llama-server")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL])
def test_no_server_outlives_the_app(tmp_path, how):
    app, server = _start_app(tmp_path)
    os.kill(app.pid, how)
    app.wait(60)
    gone, alive = psutil.wait_procs([server], timeout=20)
    assert not alive, f"llama-server {server.pid} outlived the app ({how.name})"


def test_the_binary_is_installed_beside_the_venvs_python():
    assert server_binary().parent == Path(sys.executable).parent
