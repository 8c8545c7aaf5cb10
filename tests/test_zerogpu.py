"""The app's generation on ZeroGPU: every story, plan and live item goes through one
``@spaces.GPU`` function, which ZeroGPU runs in a worker forked from the app, its arguments and
each value it yields pickled (spaces.zero.wrappers). Real ZeroGPU needs CUDA and Hugging Face's
scheduler; here the same function runs in such a worker (fork, pickles) on the tiny model, and
must give the same stories as in the app's own thread, with Stop reaching into the worker."""

import multiprocessing
import pickle

import pytest

import story_ui.services as services_module
from story_ui.services import AppConfig, Services, SharedStop
from storygen.config import SamplingConfig
from storygen.request import StoryRequest


def _serve(fn, calls, results, fresh):
    import torch

    torch.set_num_threads(1)  # a forked child cannot use the parent's thread pool
    if fresh:  # forked before the app loaded its model
        services_module.ENGINES.clear()
    args, kwargs = pickle.loads(calls.get())
    stream = fn(*args, **kwargs)
    try:
        while calls.get() == "next":  # one value per request: a deterministic Stop test
            results.put(pickle.dumps(("ok", next(stream))))
    except StopIteration:
        results.put(pickle.dumps(("end", None)))
    except Exception as exc:  # noqa: BLE001 - sent back, as ZeroGPU does
        results.put(pickle.dumps(("error", repr(exc))))


def in_forked_worker(fn, fresh=False):
    """``fn`` as ZeroGPU runs a generator function: in a process forked from this one, its
    arguments and each value it yields crossing the boundary pickled; an exception raised in
    it comes back as ZeroGPU's own generic error, its type and message lost. ``fresh``: the
    worker was forked before the app loaded its models."""
    ctx = multiprocessing.get_context("fork")

    def wrapper(*args, **kwargs):
        calls, results = ctx.SimpleQueue(), ctx.SimpleQueue()
        worker = ctx.Process(target=_serve, args=(fn, calls, results, fresh), daemon=True)
        worker.start()
        try:
            calls.put(pickle.dumps((args, kwargs)))
            while True:
                calls.put("next")
                kind, value = pickle.loads(results.get())
                if kind == "end":
                    return
                if kind == "error":
                    raise RuntimeError("ZeroGPU worker error")  # what spaces raises
                yield value
        finally:
            worker.kill()
            worker.join()

    return wrapper


@pytest.fixture
def on_zerogpu(monkeypatch):
    # Off ZeroGPU, spaces.GPU handed the function back undecorated.
    monkeypatch.setattr(services_module, "generate", in_forked_worker(services_module.generate))


@pytest.fixture
def services(tiny_backend, tmp_path):
    return Services(AppConfig(votes_csv=tmp_path / "v.csv", pairs=None), backend=tiny_backend)


def test_generation_is_one_gpu_function_defined_at_import():
    """A ZeroGPU Space that has no @spaces.GPU function fails its start-up check; off ZeroGPU
    the decorator hands the function back as it was."""
    import spaces

    assert services_module.spaces is spaces
    assert services_module.generate.__name__ == "generate"


def test_the_gpu_time_asked_for_follows_the_tokens_to_write():
    from storygen.config import SystemSpec

    short, flash = StoryRequest(length="short"), StoryRequest(length="flash")
    seconds = services_module.gpu_seconds
    one = seconds(None, "story", short, SamplingConfig())
    assert 20 < one < 60 and seconds(None, "story", flash, SamplingConfig()) < one
    assert seconds(None, "best", short, SamplingConfig(), 4) > 3 * (one - 10)
    assert seconds(None, "story", short, SamplingConfig(max_new_tokens=40)) == 12
    planned = SystemSpec(name="p", plan="model", attempts=2)
    assert seconds(None, "item", planned, short, 1) > seconds(
        None, "best", short, SamplingConfig(), 2
    )
    assert seconds(None, "best", short, SamplingConfig(), 64) == 300  # capped


def test_a_story_written_in_a_forked_worker_is_the_one_written_here(
    services, request_two_characters, monkeypatch
):
    sampling = SamplingConfig(seed=3, max_new_tokens=40)
    here = list(services.write(request_two_characters, sampling))
    monkeypatch.setattr(services_module, "generate", in_forked_worker(services_module.generate))
    there = list(services.write(request_two_characters, sampling))
    assert [u.text for _, u in there] == [u.text for _, u in here]
    assert there[-1][1].story.text == here[-1][1].story.text
    assert there[-1][1].story.provenance["sampling"]["seed"] == 3


def test_plans_and_best_of_n_cross_the_boundary_too(services, on_zerogpu):
    request = StoryRequest(genre="mystery", length="flash")
    sampling = SamplingConfig(seed=4, max_new_tokens=24)
    *_, last = services.plan(request, sampling)
    assert last.plan is not None and last.provenance
    *_, (kept, update) = services.write(request, sampling, attempts=2)
    assert update.story is not None and len(update.story.provenance["attempts"]["seeds"]) == 2


def test_stop_reaches_the_worker_and_the_story_so_far_comes_back(services, on_zerogpu):
    request = StoryRequest(genre="mystery")
    mine = services.write(request, SamplingConfig(seed=1, max_new_tokens=400), "", "me")
    next(mine)
    assert services.stop("me")
    *_, (kept, last) = mine
    assert last.story.stop_reason == "stopped" and last.story.provenance["new_tokens"] == 1
    assert not services.stop("me")


def test_a_worker_forked_before_the_model_was_loaded_loads_it(services, monkeypatch):
    request = StoryRequest(genre="mystery", length="flash")
    sampling = SamplingConfig(seed=6, max_new_tokens=20)
    here = list(services.write(request, sampling))[-1][1].story.text
    fresh = in_forked_worker(services_module.generate, fresh=True)
    monkeypatch.setattr(services_module, "generate", fresh)
    assert list(services.write(request, sampling))[-1][1].story.text == here


def test_an_error_in_the_worker_reaches_the_app_as_it_was_raised(services, monkeypatch):
    """ZeroGPU replaces an exception raised in its worker with a generic one; the app's
    handlers catch BackendError and RequestError to keep the page and say why, so the error
    must arrive as itself."""
    from storygen.backends import BackendError

    def broken(*args, **kwargs):
        raise BackendError("the engine fell over")
        yield

    monkeypatch.setattr(services_module, "stream_story", broken)
    monkeypatch.setattr(services_module, "generate", in_forked_worker(services_module.generate))
    with pytest.raises(BackendError, match="the engine fell over"):
        list(services.write(StoryRequest(genre="mystery"), SamplingConfig(seed=1)))


def test_a_shared_stop_is_a_file_that_a_pickled_copy_sees():
    stop = SharedStop()
    copy = pickle.loads(pickle.dumps(stop))
    assert not copy.is_set()
    stop.set()
    assert copy.is_set()
    stop.close()
    assert not copy.is_set() and not stop.path.exists()
