"""``finetune export-gguf --merge``: the demo adapter merged into the embedded base with
llama.cpp's own tools and re-quantized, a model llama.cpp runs as the base + adapter does."""

import numpy as np
import pytest

from finetune.export_gguf import ExportError, merge_gguf
from storygen.config import DEMO_ADAPTER, demo_adapter_dir

pytestmark = pytest.mark.integration  # llama.cpp's tools and the embedded model

TEXT = (
    "The keeper climbed the stairs of the lighthouse every night. Mara followed him once, and "
    "found the lamp dark and a letter under it, addressed to a man who had drowned."
)


def logits(base, adapter):
    from eval.parity import LlamaScorer

    scorer = LlamaScorer(adapter, base=base)
    ids = scorer.prompt_ids(TEXT)
    out = scorer.logits(ids)
    scorer.llm.close()
    return ids, out


def test_the_merged_model_scores_text_as_base_plus_adapter_does(tmp_path):
    from storygen.config import EMBEDDED

    merged = merge_gguf(demo_adapter_dir(), "Q8_0", tmp_path / "m.gguf")
    assert merged.exists() and merged.with_suffix(".json").exists()
    ids, runtime = logits(EMBEDDED, DEMO_ADAPTER)
    _, merged_logits = logits(str(merged), None)
    _, base_alone = logits(EMBEDDED, None)

    def nll(z):
        z = z[:-1].astype(np.float64)
        logz = z.max(-1) + np.log(np.exp(z - z.max(-1, keepdims=True)).sum(-1))
        return float(np.mean(logz - z[np.arange(len(ids) - 1), ids[1:]]))

    assert abs(nll(merged_logits) / nll(runtime) - 1) < 0.01  # Q8_0 kept the adapter's loss
    # The adapter is in it: its logits sit far nearer base + adapter's than the base's alone.
    off = np.abs(merged_logits - runtime).mean()
    assert off < 0.2 * np.abs(base_alone - runtime).mean(), off
    agree = (merged_logits.argmax(-1) == runtime.argmax(-1)).mean()
    assert agree > 0.9


def test_the_merged_model_writes_as_the_adapter_does_with_adapter_none(tmp_path):
    """Its JSON names the adapter merged in: the backend then prompts in the adapter's tagged
    format (not the base's chat template) and says in provenance which adapter it holds."""
    import json

    from storygen.backends import load_backend
    from storygen.config import ModelSpec, SamplingConfig
    from storygen.generation import generate_story
    from storygen.loading import LoadError
    from storygen.request import StoryRequest

    merged = merge_gguf(demo_adapter_dir(), "Q8_0", tmp_path / "m.gguf")
    side = json.loads(merged.with_suffix(".json").read_text())
    assert abs(side["loss_change"]) < 0.01 and side["quantization"] == "Q8_0"
    backend = load_backend(ModelSpec(base=str(merged), adapter=None))
    request = StoryRequest(genre="mystery", length="flash")
    assert backend.prompt(request).style == "tagged"
    story = generate_story(backend, request, SamplingConfig(seed=2, max_new_tokens=30))
    p = story.provenance
    assert p["adapter_name"] == side["name"] and p["base_model"] == side["base_model"]
    backend.close()
    with pytest.raises(LoadError, match="already has the adapter .* merged into it"):
        load_backend(ModelSpec(base=str(merged), adapter=str(demo_adapter_dir())))


def test_a_merge_whose_loss_moved_more_than_allowed_is_refused_and_removed(tmp_path):
    out = tmp_path / "q40.gguf"
    with pytest.raises(
        ExportError, match=r"Q4_0, the model's loss is \+\d.*more than 1%: not kept"
    ):
        merge_gguf(demo_adapter_dir(), "Q4_0", out)
    assert not out.exists() and not list(tmp_path.glob("*.gguf"))


def test_a_type_it_cannot_make_and_a_base_it_cannot_find_are_refused(tmp_path):
    with pytest.raises(ExportError, match="--merge takes one of .*not 'Q3_X'"):
        merge_gguf(demo_adapter_dir(), "Q3_X")
    with pytest.raises(ExportError, match="llama-export-lora failed"):
        merge_gguf(demo_adapter_dir(), "Q8_0", tmp_path / "m.gguf", tmp_path / "missing.gguf")
    assert not (tmp_path / "m.gguf").exists()
