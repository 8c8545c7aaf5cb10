"""Integration: the real embedded SmolLM2-135M-Instruct, in 4-bit, writes a short story."""

import pytest

from storygen.config import ModelSpec, SamplingConfig
from storygen.generation import generate_story

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def embedded_nf4():
    from storygen.backends import load_backend

    return load_backend(ModelSpec(adapter=None, quantization="nf4"))


def test_embedded_model_writes_a_story_in_4bit(embedded_nf4, request_two_characters):
    import bitsandbytes as bnb

    assert embedded_nf4.name == "transformers"
    assert any(isinstance(m, bnb.nn.Linear4bit) for m in embedded_nf4.lm.model.modules())
    story = generate_story(
        embedded_nf4, request_two_characters, SamplingConfig(seed=11, max_new_tokens=60)
    )
    words = story.text.split()
    assert len(words) >= 10
    assert story.text.rstrip()[-1] in ".!?\"'”’)…*"  # ends on a full sentence
    assert "<|" not in story.text and "genre:" not in story.text
    assert story.provenance["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    again = generate_story(
        embedded_nf4, request_two_characters, SamplingConfig(seed=11, max_new_tokens=60)
    )
    assert again.text == story.text
