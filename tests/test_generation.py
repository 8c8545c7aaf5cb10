"""Streaming generation on the tiny in-process model: seeds, stop, cleaning, provenance."""

import threading

import pytest

from storygen.config import ConfigError, SamplingConfig
from storygen.generation import (
    DecodeStats,
    clean_story,
    decode,
    generate_story,
    repetition_start,
    stream_story,
)
from storygen.prompt_format import Prompt
from storygen.request import RequestError, StoryRequest

SETTINGS = SamplingConfig(seed=7, max_new_tokens=40)


def PLAIN(text: str) -> Prompt:
    return Prompt(((text, False),), "tagged")


def test_same_seed_same_story_and_other_seed_differs(tiny_backend, request_two_characters):
    a = generate_story(tiny_backend, request_two_characters, SETTINGS)
    b = generate_story(tiny_backend, request_two_characters, SETTINGS)
    c = generate_story(
        tiny_backend, request_two_characters, SamplingConfig(seed=8, max_new_tokens=40)
    )
    assert a.text == b.text and a.provenance["new_tokens"] == b.provenance["new_tokens"]
    assert a.text != c.text


def test_stream_yields_growing_text_then_the_story(tiny_backend, request_two_characters):
    updates = list(stream_story(tiny_backend, request_two_characters, SETTINGS))
    assert updates[-1].done and not any(u.done for u in updates[:-1])
    texts = [u.text for u in updates[:-1]]
    assert all(t2.startswith(t1) for t1, t2 in zip(texts, texts[1:]))
    assert "".join(u.delta for u in updates[:-1]) == texts[-1]


def test_provenance_says_what_made_the_story(tiny_backend, request_two_characters):
    story = generate_story(tiny_backend, request_two_characters, SETTINGS)
    p = story.provenance
    assert p["sampling"]["seed"] == 7 and p["quantization"] == "fp32"
    assert p["prompt_format"] and p["adapter"] is None and p["prompt_style"] == "tagged"
    assert p["request"]["characters"][0]["name"] == "Mara"
    assert p["stop_reason"] in ("eos", "length", "repetition")


def test_stop_event_ends_the_work_promptly(tiny_backend, request_two_characters):
    stop = threading.Event()
    stats = DecodeStats()
    gen = decode(
        tiny_backend,
        PLAIN("Once upon a time"),
        SamplingConfig(seed=1),
        400,
        stop,
        stats,
        stop_on_eos=False,
    )
    for i, (_, reason) in enumerate(gen):
        if i == 4:
            stop.set()
        if reason:
            break
    assert reason == "stopped"
    assert stats.forward_calls == 5  # not one forward pass after Stop


def test_closing_the_stream_stops_the_model(tiny_backend, request_two_characters):
    stats = DecodeStats()
    gen = decode(
        tiny_backend,
        PLAIN("Once upon a time"),
        SamplingConfig(seed=1),
        400,
        None,
        stats,
        stop_on_eos=False,
    )
    for i, _ in enumerate(gen):
        if i == 3:
            break
    gen.close()
    assert stats.forward_calls == 4


def test_stop_still_returns_a_clean_story(tiny_backend, request_two_characters):
    stop = threading.Event()
    stop.set()
    final = list(stream_story(tiny_backend, request_two_characters, SETTINGS, stop))[-1]
    assert final.story.stop_reason == "stopped" and final.story.text == ""


def test_greedy_decoding_is_deterministic_without_seed_effect(tiny_backend, request_two_characters):
    a = generate_story(
        tiny_backend,
        request_two_characters,
        SamplingConfig(temperature=0, seed=1, max_new_tokens=20),
    )
    b = generate_story(
        tiny_backend,
        request_two_characters,
        SamplingConfig(temperature=0, seed=2, max_new_tokens=20),
    )
    assert a.text == b.text


def test_continue_extends_the_given_text(tiny_backend, request_two_characters):
    story = generate_story(tiny_backend, request_two_characters, SETTINGS)
    prefix = "Mara opened the door."
    final = list(stream_story(tiny_backend, request_two_characters, SETTINGS, prefix=prefix))[-1]
    assert final.story.text.startswith(prefix)
    assert final.story.provenance["continued_from_chars"] > 0
    assert story.text != final.story.text


def test_bad_request_and_settings_raise_clear_errors(tiny_backend):
    with pytest.raises(RequestError):
        list(stream_story(tiny_backend, StoryRequest(), SETTINGS))
    with pytest.raises(ConfigError, match="top_p"):
        SamplingConfig(top_p=0)
    with pytest.raises(ConfigError, match="temperature"):
        SamplingConfig(temperature=-1)


def test_repetition_guard_finds_loops_and_ignores_normal_text():
    assert repetition_start([1, 2, 3, 4] + [9, 8, 7, 6] * 5) == 8
    assert repetition_start([5] * 20) == 1
    assert repetition_start(list(range(60))) is None
    assert repetition_start([1, 2, 1, 2, 3]) is None  # too short to be a loop


def test_repetition_guard_ends_a_degenerate_story(tiny_backend, monkeypatch):
    import storygen.generation as g

    calls = []

    def fake_start(ids, **kw):
        calls.append(len(ids))
        return 3 if len(ids) >= 6 else None

    monkeypatch.setattr(g, "repetition_start", fake_start)
    out = list(decode(tiny_backend, PLAIN("Once"), SamplingConfig(seed=1), 100, stop_on_eos=False))
    ids, reason = out[-1]
    assert reason == "repetition" and len(ids) == 3


def test_clean_story_removes_echo_markers_and_half_sentences():
    raw = "genre: mystery\ncharacters: Mara\n\nMara ran. She hid! Then she"
    assert clean_story(raw, finished=False) == "Mara ran. She hid!"
    assert clean_story("It ended.<|request|>\ngenre: x", finished=True) == "It ended."
    assert clean_story('"Go," she said. "Now."', finished=True) == '"Go," she said. "Now."'
    assert clean_story("no sentence end at all", finished=False) == "no sentence end at all"


def test_greedy_matches_plain_generate(tiny_backend):
    """Our cached decoding loop computes exactly what transformers' generate computes."""
    import torch

    prompt = "Once upon a time, Mara"
    ids, _ = list(
        decode(
            tiny_backend,
            PLAIN(prompt),
            SamplingConfig(temperature=0, repetition_penalty=1.0),
            25,
            stop_on_eos=False,
        )
    )[-1]
    lm = tiny_backend.lm
    enc = lm.tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        out = lm.model.generate(**enc, max_new_tokens=25, min_new_tokens=25, do_sample=False)
    assert ids == out[0, enc.input_ids.shape[1] :].tolist()


def test_story_text_too_long_to_continue_is_refused_before_any_model_work(
    tiny_backend, request_two_characters
):
    import time

    from storygen.generation import MAX_PREFIX_TOKENS

    stats_before = time.perf_counter()
    for prefix in ("word " * (MAX_PREFIX_TOKENS + 10), "x" * 10_000_000):
        with pytest.raises(RequestError, match="too long") as err:
            list(stream_story(tiny_backend, request_two_characters, SETTINGS, prefix=prefix))
        assert "story to continue" in err.value.errors
    assert time.perf_counter() - stats_before < 2  # ten megabytes are not even tokenized
    fits = "word " * 100
    final = list(stream_story(tiny_backend, request_two_characters, SETTINGS, prefix=fits))[-1]
    assert final.story.text.startswith(fits.strip()[:50])
