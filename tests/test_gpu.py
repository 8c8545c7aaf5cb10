"""The ZeroGPU Space's path on a real CUDA GPU: the embedded base in 4-bit NF4 with the demo
adapter, through the app's services, as on a ZeroGPU Space (less its scheduler). Skipped
without CUDA; ``bash scripts/gpu_check.sh`` runs these in the Space's own environment."""

import json
from pathlib import Path

import pytest
import torch

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def gpu_services(tmp_path_factory):
    from story_ui.services import AppConfig, Services
    from storygen.config import ModelSpec

    tmp = tmp_path_factory.mktemp("gpu")
    config = AppConfig(model=ModelSpec(adapter="demo", device="cuda"), votes_csv=tmp / "v.csv")
    services = Services(config)
    services.backend  # noqa: B018 - load, as app.py does at start-up
    return services


def first_request():
    from storygen.request import StoryRequest

    line = (ROOT / "examples" / "requests.jsonl").read_text().splitlines()[0]
    return StoryRequest.from_dict(json.loads(line))


def test_a_story_streams_on_cuda_in_nf4_with_the_adapter(gpu_services):
    from storygen.config import SamplingConfig

    updates = list(gpu_services.write(first_request(), SamplingConfig(seed=7)))
    story = updates[-1][1].story
    p = story.provenance
    assert p["backend"] == "transformers" and p["quantization"] == "nf4"
    assert p["device"].startswith("cuda") and p["adapter_name"]
    assert len(story.text.split()) > 20 and len(updates) > 3
    again = list(gpu_services.write(first_request(), SamplingConfig(seed=7)))[-1][1].story
    assert again.text == story.text  # the same seed, the same story


def test_stop_on_cuda_keeps_the_story_so_far(gpu_services):
    from storygen.config import SamplingConfig

    stream = gpu_services.write(first_request(), SamplingConfig(seed=1), "", "me")
    next(stream)
    assert gpu_services.stop("me")
    *_, (_, last) = stream
    assert last.story.stop_reason == "stopped" and last.story.provenance["new_tokens"] == 1


def test_nf4_on_cuda_scores_text_as_the_cpu_reference_does(gpu_services):
    """Per-token loss of a story under NF4 on CUDA within 5% of fp32 on the CPU (NF4 costs a
    little; a broken path, far more)."""
    from eval.perplexity import story_nll
    from storygen.config import ModelSpec
    from storygen.loading import load_model

    text = " ".join(["Mara climbed the stairs of the lighthouse while Jonah kept watch."] * 4)
    gpu = gpu_services.backend.lm
    cpu = load_model(ModelSpec(adapter="demo", device="cpu", quantization="fp32"))
    on_gpu = story_nll(gpu.model, gpu.tokenizer, "", text).summary()["nll_per_token"]
    on_cpu = story_nll(cpu.model, cpu.tokenizer, "", text).summary()["nll_per_token"]
    assert abs(on_gpu - on_cpu) / on_cpu < 0.05, (on_gpu, on_cpu)


def test_a_vote_is_logged_as_on_the_cpu(gpu_services):
    from story_ui import rate

    if gpu_services.study is None or not gpu_services.items:
        pytest.skip("no A/B items")
    state = rate.start(gpu_services, "gpu-annotator", "")[3]
    out = rate.vote(gpu_services, state, "A is better", [None] * 8, "")
    assert "receipt" in out[-1]
    assert [v.annotator for v in gpu_services.store.votes()] == ["gpu-annotator"]
