"""The openai backend against a real ``llama_cpp.server`` process on 127.0.0.1 with the demo LoRA,
and against servers that are down or silent."""

import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest

from storygen.backends import BackendError, load_backend
from storygen.config import ConfigError, ModelSpec, SamplingConfig
from storygen.embedded import gguf_path
from storygen.generation import generate_story, stream_story
from storygen.loading import GGUF_ADAPTER
from storygen.request import StoryRequest

DEMO_GGUF = (
    __import__("storygen.config", fromlist=["demo_adapter_dir"]).demo_adapter_dir() / GGUF_ADAPTER
)
REQUEST = StoryRequest(genre="mystery", prompt="a lighthouse keeper finds a letter", length="flash")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(gguf_path()),
            "--lora_path",
            str(DEMO_GGUF),
            "--model_alias",
            "storygen-demo",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            "2048",
            "--n_threads",
            "1",
            "--verbose",
            "False",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"llama_cpp.server exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(f"{url}/models", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.3)
    else:
        proc.kill()
        pytest.fail("llama_cpp.server did not start within 90 s")
    yield url
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="module")
def backend(server):
    return load_backend(ModelSpec(backend="openai", endpoint=server, adapter="demo"))


def test_streams_a_story_and_records_where_it_came_from(backend):
    updates = list(stream_story(backend, REQUEST, SamplingConfig(seed=3, max_new_tokens=48)))
    texts = [u.text for u in updates[:-1]]
    assert len(texts) > 5 and all(b.startswith(a) for a, b in zip(texts, texts[1:]))
    story = updates[-1].story
    assert story.text and story.stop_reason in ("eos", "length", "repetition")
    p = story.provenance
    assert p["backend"] == "openai" and p["served_model"] == "storygen-demo"
    assert p["adapter_name"] == "smollm2-135m-wp-mix" and p["prompt_style"] == "tagged"
    # Each update is one token's new text (a token that adds no visible text sends none).
    assert len(texts) <= p["new_tokens"] <= 48
    assert (p["new_tokens"] == 48) == (story.stop_reason == "length")


def test_same_seed_same_story_other_seed_differs(backend):
    a = generate_story(backend, REQUEST, SamplingConfig(seed=21, max_new_tokens=40))
    b = generate_story(backend, REQUEST, SamplingConfig(seed=21, max_new_tokens=40))
    c = generate_story(backend, REQUEST, SamplingConfig(seed=22, max_new_tokens=40))
    assert a.text == b.text
    assert a.text != c.text


def test_stop_ends_the_request_between_tokens(backend):
    stop = threading.Event()
    seen = 0
    t0 = time.monotonic()
    for update in stream_story(backend, REQUEST, SamplingConfig(seed=4, max_new_tokens=400), stop):
        if update.story is None:
            seen += 1
            if seen == 3:
                stop.set()
        else:
            story = update.story
    assert story.stop_reason == "stopped" and story.provenance["new_tokens"] == 3
    assert time.monotonic() - t0 < 10


def test_a_server_that_is_down_gets_a_clear_message_at_once():
    t0 = time.monotonic()
    with pytest.raises(BackendError, match="cannot reach http://127.0.0.1"):
        load_backend(ModelSpec(backend="openai", endpoint=f"http://127.0.0.1:{free_port()}/v1"))
    assert time.monotonic() - t0 < 5


def test_a_silent_server_is_abandoned_after_the_timeout():
    """A server that accepts the connection and never answers: no hung request."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    held = []
    threading.Thread(target=lambda: held.append(listener.accept()), daemon=True).start()
    endpoint = f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
    backend = load_backend(
        ModelSpec(backend="openai", endpoint=endpoint, served_model="x", adapter=None, timeout=1)
    )
    t0 = time.monotonic()
    with pytest.raises(BackendError, match="did not answer within 1 s|sent nothing for 1 s"):
        generate_story(backend, REQUEST, SamplingConfig(max_new_tokens=5))
    assert time.monotonic() - t0 < 4
    listener.close()


def test_settings_it_cannot_honour_are_refused():
    with pytest.raises(ConfigError, match="needs --endpoint"):
        ModelSpec(backend="openai")
    with pytest.raises(ConfigError, match="belong to the openai backend"):
        ModelSpec(backend="llamacpp", endpoint="http://127.0.0.1:1/v1")


def test_every_sampling_knob_is_sent(backend):
    s = SamplingConfig(temperature=0.5, top_p=0.8, top_k=7, repetition_penalty=1.3, seed=99)
    body = backend.body(backend.prompt(REQUEST), s, 77)
    assert body["prompt"].startswith("<|request|>") and body["max_tokens"] == 77
    assert (body["temperature"], body["top_p"], body["top_k"], body["seed"]) == (0.5, 0.8, 7, 99)
    assert body["repeat_penalty"] == body["repetition_penalty"] == 1.3
    with pytest.raises(BackendError, match="stop_on_eos"):
        list(stream_story(backend, REQUEST, s, stop_on_eos=False))
