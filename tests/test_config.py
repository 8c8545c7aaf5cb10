"""Configuration as data: the one loader, flags from field docstrings, the backend choice."""

import argparse

import pytest

from storygen.config import (
    MODEL_CHOICES,
    ConfigError,
    ModelSpec,
    SamplingConfig,
    SystemSpec,
    add_fields,
    field_docs,
    fields_from_args,
    from_dict,
)


def test_an_unknown_key_is_named_with_the_known_ones():
    with pytest.raises(ConfigError, match=r"eval\.yaml: unknown setting 'max_tokens' for Sampl"):
        from_dict(SamplingConfig, {"max_tokens": 5}, "eval.yaml")
    with pytest.raises(ConfigError, match="known: temperature, top_p, top_k"):
        SamplingConfig.from_dict({"temprature": 1.0})
    with pytest.raises(ConfigError, match="system 'a'.*unknown setting 'quantisation'"):
        SystemSpec.from_dict({"name": "a", "quantisation": "nf4"}, "systems.yaml")
    with pytest.raises(ConfigError, match="needs 'name'"):
        from_dict(SystemSpec, {})
    with pytest.raises(ConfigError, match="top_p must be between 0.01 and 1"):
        SystemSpec.from_dict({"name": "a", "sampling": {"top_p": 2}}, "x.yaml")


def test_a_system_is_flat_yaml_over_one_model_spec():
    s = SystemSpec.from_dict({"name": "a", "backend": "transformers", "quantization": "fp32"})
    assert s.spec() == ModelSpec(adapter=None, backend="transformers", quantization="fp32")
    assert SystemSpec.from_dict({"name": "b"}).spec().adapter is None
    assert s.sampling_for(9).seed == 9


def test_flags_come_from_the_fields_with_their_docstrings_as_help():
    parser = argparse.ArgumentParser()
    add_fields(parser, ModelSpec, MODEL_CHOICES)
    add_fields(parser, SamplingConfig)
    text = parser.format_help()
    assert "--served-model" in text and "--repetition-penalty" in text
    assert field_docs(SamplingConfig)["top_k"] in " ".join(text.split())
    args = parser.parse_args(["--adapter", "none", "--top-k", "3", "--max-new-tokens", "none"])
    assert fields_from_args(ModelSpec, args).adapter is None  # "none" given, not the default
    assert fields_from_args(ModelSpec, parser.parse_args([])).adapter == "demo"
    sampling = fields_from_args(SamplingConfig, args)
    assert sampling.top_k == 3 and sampling.max_new_tokens is None and sampling.seed == 1234
    with pytest.raises(SystemExit):
        parser.parse_args(["--backend", "vllm"])


@pytest.mark.parametrize(
    "spec, backend",
    [
        (ModelSpec(), "llamacpp"),
        (ModelSpec(base="/m/model.Q4_K_M.gguf", adapter=None), "llamacpp"),
        (ModelSpec(quantization="nf4"), "transformers"),
        (ModelSpec(device="cuda"), "transformers"),
        (ModelSpec(base="meta-llama/Llama-2-7b-hf", adapter=None), "transformers"),
        (ModelSpec(endpoint="http://127.0.0.1:1/v1"), "openai"),
        (ModelSpec(backend="transformers"), "transformers"),
    ],
)
def test_auto_picks_llamacpp_for_a_gguf_base_on_the_cpu(spec, backend):
    assert spec.resolved_backend() == backend


def test_settings_that_do_not_fit_the_backend_are_refused():
    with pytest.raises(ConfigError, match="GGUF file's own quantization"):
        ModelSpec(backend="llamacpp", quantization="nf4")
    with pytest.raises(ConfigError, match="backend must be one of"):
        ModelSpec(backend="vllm")
    with pytest.raises(ConfigError, match="timeout"):
        ModelSpec(backend="openai", endpoint="http://x/v1", timeout=0)
