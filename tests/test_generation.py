"""Streaming generation on the tiny in-process model: seeds, stop, cleaning, provenance."""

import threading
import time

import pytest

from storygen.backends.base import Backend
from storygen.backends.hf import TransformersBackend
from storygen.config import ConfigError, SamplingConfig
from storygen.generation import (
    DecodeStats,
    clean_story,
    decode,
    generate_plan,
    generate_story,
    plan_from_text,
    plan_line,
    repetition_start,
    stream_plan,
    stream_story,
)
from storygen.prompt_format import (
    PLAN_MARKER,
    STORY_MARKER,
    V1,
    V3,
    Prompt,
    parse_plan,
    render_plan,
)
from storygen.request import MAX_BEAT, MAX_BEATS, Plan, RequestError, StoryRequest

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


def test_the_token_budget_is_the_lengths_words_in_tokens_plus_room():
    from storygen.generation import max_new_tokens
    from storygen.request import LENGTHS

    budgets = {n: max_new_tokens(StoryRequest(length=n), SamplingConfig()) for n in LENGTHS}
    assert budgets == {"flash": 242, "short": 521, "medium": 1011, "long": 1432}
    assert max_new_tokens(StoryRequest(length="long"), SamplingConfig(max_new_tokens=7)) == 7


def test_incremental_text_adds_whole_characters_only(tiny_backend):
    from storygen.generation import IncrementalText

    text = "Zoë met a 🐉 dragon, 勇敢 and kind. The end."
    ids = tiny_backend.lm.tokenizer(text, add_special_tokens=False).input_ids
    assert len(ids) > len(text.split())  # the emoji and the Japanese take several byte tokens
    inc, seen = IncrementalText(tiny_backend), []
    for i in range(1, len(ids) + 1):
        out = inc(ids[:i])
        assert "\ufffd" not in out and text.startswith(out), (i, out)
        seen.append(out)
    assert seen[-1] == text and len(set(seen)) > 10  # grew piece by piece to the whole text


@pytest.mark.parametrize(
    "raw, finished, clean",
    [
        ("Once upon a time.<|request|>\ngenre: horror", True, "Once upon a time."),
        ("A.<|request|>B.<|request|>C.", True, "A."),
        ("<|story|>A. <|end|>B.", True, "A. B."),
        ("genre: horror\n\nIt rained.", True, "It rained."),
        ("One.   \n\n\n\n  Two.", True, "One.\n\n  Two."),
        ("One. And they lived happily", True, "One. And they lived happily"),  # its own end
        ("One. Two", False, "One."),
        ("One. Two.", False, "One. Two."),
        ("no sentence end", False, "no sentence end"),
        (
            "Mara\\, alone \\(again\\)\\; a \\\\ and \\| end.",
            True,
            "Mara, alone (again); a \\ and | end.",
        ),
        ("<|plan|>\n1. Mara waits.", True, ""),
        ("A.<|plan|>B.", True, "A."),
    ],
)
def test_clean_story(raw, finished, clean):
    assert clean_story(raw, finished) == clean


def test_a_story_to_continue_is_measured_in_tokens_up_to_the_limit(tiny_backend):
    from storygen.generation import MAX_PREFIX_TOKENS, check_prefix

    word = next(
        w for w in ("the", "a", "and", "of", "to") if tiny_backend.count_tokens(" " + w) == 1
    )
    at_limit = (" " + word) * MAX_PREFIX_TOKENS
    assert tiny_backend.count_tokens(at_limit) == MAX_PREFIX_TOKENS
    check_prefix(tiny_backend, at_limit)  # accepted
    with pytest.raises(RequestError) as info:
        check_prefix(tiny_backend, at_limit + " " + word)
    assert info.value.errors == {
        "story to continue": f"is too long ({MAX_PREFIX_TOKENS + 1} tokens); at most "
        f"{MAX_PREFIX_TOKENS} tokens (about 1462 words) can be continued: keep its last part"
    }
    # Up to 12 characters a token the text is counted in tokens; beyond, refused by its length.
    with pytest.raises(RequestError, match=r"is too long \(\d+ tokens\)"):
        check_prefix(tiny_backend, "x" * (12 * MAX_PREFIX_TOKENS))
    with pytest.raises(RequestError, match=r"is too long \(24577 characters\)"):
        check_prefix(tiny_backend, "x" * (12 * MAX_PREFIX_TOKENS + 1))


def test_a_continued_story_is_the_text_then_a_space_or_a_line_then_what_the_model_adds(
    tiny_backend, request_two_characters
):
    for prefix in ("Mara opened the door.", "Mara opened the door.\n"):
        stream = stream_story(tiny_backend, request_two_characters, SETTINGS, prefix=prefix)
        *updates, final = stream
        glue = "" if prefix.endswith("\n") else " "
        bad = [u.text[:40] for u in updates if not u.text.startswith(prefix + glue)]
        assert not bad, (prefix, bad)
        assert final.delta == "" and final.text == final.story.text
        assert final.story.text.startswith(prefix.strip())
    # The model is given the text: what it adds depends on it.
    a = list(stream_story(tiny_backend, request_two_characters, SETTINGS, prefix="Mara ran."))
    b = list(stream_story(tiny_backend, request_two_characters, SETTINGS, prefix="Jonah hid."))
    assert a[-1].story.text.split(" ", 2)[-1] != b[-1].story.text.split(" ", 2)[-1]


def test_provenance_says_how_long_it_took_in_milliseconds(tiny_backend, request_two_characters):
    p = generate_story(tiny_backend, request_two_characters, SETTINGS).provenance
    assert isinstance(p["prompt_tokens"], int) and p["prompt_tokens"] > 0
    for key in ("seconds", "first_token_s"):
        assert isinstance(p[key], float) and p[key] == round(p[key], 3) and p[key] > 0, key
    assert 0 < p["new_tokens"] <= SETTINGS.max_new_tokens


def test_concurrent_same_seed_stories_equal_the_sequential_one(
    tiny_backend, request_two_characters
):
    """Each request samples from its own generator: four users with one seed, writing at the
    same time, each get the story that seed gives alone (a shared or global RNG would
    interleave their draws)."""
    settings = SamplingConfig(seed=11, max_new_tokens=30, temperature=1.5, top_k=0, top_p=1.0)
    alone = generate_story(tiny_backend, request_two_characters, settings).text
    results, start = [None] * 4, threading.Barrier(4)

    def run(i):
        start.wait()
        results[i] = generate_story(tiny_backend, request_two_characters, settings).text

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [alone] * 4


# --- Plan-then-write: the plan stage and stories from a plan --------------------------------

PLAN_SETTINGS = SamplingConfig(seed=3, max_new_tokens=40)
PLAN_REQUEST = StoryRequest(genre="mystery", arc="man in a hole", prompt="a lighthouse keeper")


def test_the_plan_streams_then_arrives_parsed_with_provenance(tiny_backend):
    updates = list(stream_plan(tiny_backend, PLAN_REQUEST, PLAN_SETTINGS))
    *partial, last = updates
    assert partial and all(u.plan is None for u in partial)
    assert all(b.text.startswith(a.text) for a, b in zip(partial, partial[1:], strict=False))
    assert last.plan is not None and last.plan.beats and last.plan.origin == "model"
    assert last.text == render_plan(last.plan, person=True)
    assert last.provenance["request"]["arc"] == "man in a hole"
    assert last.provenance["prompt_format"] == V3 and 0 < last.provenance["new_tokens"] <= 40
    assert (
        generate_plan(tiny_backend, PLAN_REQUEST, PLAN_SETTINGS) == last.plan
    )  # same seed, same plan


def test_the_plan_prompt_asks_for_a_plan_and_the_story_prompt_carries_it(tiny_backend):
    plan = Plan("A keeper finds a letter.", ["Mara keeps the light.", "A ship is lost."])
    asks = tiny_backend.prompt(PLAN_REQUEST, task="plan").text
    assert asks.endswith(f"{PLAN_MARKER}\n") and STORY_MARKER not in asks
    story_prompt = tiny_backend.prompt(PLAN_REQUEST, plan=plan).text
    assert story_prompt.endswith(f"{PLAN_MARKER}\n{render_plan(plan)}{STORY_MARKER}\n")
    story = generate_story(tiny_backend, PLAN_REQUEST, PLAN_SETTINGS, plan=plan)
    assert story.provenance["plan"] == plan.to_dict()
    assert generate_story(tiny_backend, PLAN_REQUEST, PLAN_SETTINGS).provenance["plan"] is None


def test_a_version_1_adapter_is_refused_the_arc_and_the_plan_by_name(tiny_lm):
    old = TransformersBackend(tiny_lm)
    old.adapter_meta = {"prompt_format": V1, "name": "old"}  # as an adapter trained on v1 says
    with pytest.raises(RequestError) as arc:
        generate_story(old, PLAN_REQUEST, PLAN_SETTINGS)
    assert set(arc.value.errors) == {"arc"} and V1 in arc.value.errors["arc"]
    with pytest.raises(RequestError) as plan:
        generate_plan(old, StoryRequest(genre="mystery"), PLAN_SETTINGS)
    assert set(plan.value.errors) == {"plan"}
    plain = generate_story(old, StoryRequest(genre="mystery"), PLAN_SETTINGS)
    assert plain.provenance["prompt_format"] == V1 and plain.text


def test_a_models_plan_is_cut_to_size_and_an_empty_one_is_refused():
    long = "x" * (MAX_BEAT + 50)
    text = "premise: A start.\n" + "\n".join(f"{i}. {long}" for i in range(20))
    plan = plan_from_text(text)
    assert plan.premise == "A start." and len(plan.beats) == MAX_BEATS
    assert all(len(b) <= MAX_BEAT for b in plan.beats)
    unnumbered = plan_from_text("\n".join(f"{i}. beat {i}" for i in range(1, 21)))
    assert unnumbered.premise == "" and unnumbered.beats == [f"beat {i}" for i in range(1, 13)]
    with pytest.raises(RequestError) as none:
        plan_from_text("  \n premise: only a premise \n")
    assert "no usable plan" in none.value.errors["plan"]
    assert none.value.errors["plan"].endswith("try another seed, or write the beats yourself")


def test_parse_plan_reads_the_models_escaped_text_up_to_the_story():
    text = "premise: A \\(small\\) start\n1. Mara\\; alone\n2) a storm\n- rescue\n<|story|>\n3. no"
    assert parse_plan(text) == Plan("A (small) start", ["Mara; alone", "a storm", "rescue"])


def test_decode_spends_exactly_its_budget_and_records_what_it_did(tiny_backend):
    """Every step yields the tokens so far; the last says why it ended. With EOS ignored the
    whole budget is spent, not a token more, and the stats say how many and how long."""
    stats = DecodeStats()
    steps = [
        (len(ids), reason)
        for ids, reason in decode(
            tiny_backend, PLAIN("Once"), SamplingConfig(seed=1), 6, None, stats, stop_on_eos=False
        )
    ]
    assert steps == [(1, ""), (2, ""), (3, ""), (4, ""), (5, ""), (6, ""), (6, "length")]
    assert stats.new_tokens == 6 and stats.prompt_tokens > 0
    assert 0 < stats.first_token_s <= stats.seconds < 60


# The tiny model, hot (temperature 2) with seed 4, writes its end-of-text token within 60.
HOT = SamplingConfig(seed=4, temperature=2.0, top_k=0, top_p=1.0)


def test_decode_ends_at_the_models_end_of_text_unless_told_to_ignore_it(tiny_backend):
    ended = [(len(ids), r) for ids, r in decode(tiny_backend, PLAIN("Once"), HOT, 60)]
    assert ended[-1][1] == "eos" and ended[-1][0] < 60  # stop_on_eos is the default
    spent = [
        (len(ids), r) for ids, r in decode(tiny_backend, PLAIN("Once"), HOT, 60, stop_on_eos=False)
    ]
    assert spent[-1] == (60, "length")
    assert [n for n, _ in spent[: len(ended) - 1]] == [n for n, _ in ended[:-1]]


def test_repetition_guard_boundaries():
    """A loop is a block repeated back to back: at least three copies and 16 tokens, a block of
    at most 48 tokens; the story is cut where the second copy starts."""
    assert repetition_start([5] * 16) == 1 and repetition_start([5] * 15) is None
    block8 = list(range(100, 108))
    assert repetition_start(block8 * 3) == 8  # exactly three copies and nothing before
    assert repetition_start(block8 * 2) is None
    assert repetition_start([1, 2] + block8 * 3) == 10
    other = [9] * 8
    assert repetition_start(block8 + other + block8) is None  # the middle copy differs
    block48, block49 = list(range(48)), list(range(49))
    assert repetition_start([7] + block48 * 3) == 49
    assert repetition_start(block49 * 3) is None  # longer than any block looked for
    assert repetition_start(block49 * 3, max_period=49) == 49
    assert repetition_start([5] * 16, min_span=17) is None


def test_stop_ends_the_plan_too(tiny_backend):
    stop = threading.Event()
    stop.set()  # pressed before the first token: no beat, so no plan
    with pytest.raises(RequestError, match="no usable plan"):
        list(stream_plan(tiny_backend, PLAN_REQUEST, PLAN_SETTINGS, stop))


def test_provenance_names_exactly_what_made_the_story_and_the_plan(tiny_backend):
    """Readers of provenance (drafts, downloads, the vote log) look keys up by name."""
    plan = Plan("A keeper.", ["Mara waits.", "A ship."])
    with_plan = generate_story(tiny_backend, PLAN_REQUEST, PLAN_SETTINGS, plan=plan)
    without = generate_story(tiny_backend, PLAN_REQUEST, PLAN_SETTINGS)
    p = with_plan.provenance
    assert set(p) == {
        *tiny_backend.provenance(),
        "sampling",
        "prompt_style",
        "request",
        "plan",
        "stop_reason",
        "continued_from_chars",
        "prompt_tokens",
        "new_tokens",
        "seconds",
        "first_token_s",
    }
    assert p["sampling"] == PLAN_SETTINGS.to_dict() and p["prompt_style"] == "tagged"
    assert p["stop_reason"] in ("eos", "length", "repetition") and p["continued_from_chars"] == 0
    assert p["seconds"] == round(p["seconds"], 3) and p["first_token_s"] <= p["seconds"]
    # The plan is in the prompt the model read, not only in the record.
    plan_tokens = len(tiny_backend.tokenize(tiny_backend.prompt(PLAN_REQUEST, plan=plan)))
    assert p["prompt_tokens"] == plan_tokens > without.provenance["prompt_tokens"]
    planned = list(stream_plan(tiny_backend, PLAN_REQUEST, PLAN_SETTINGS))[-1]
    assert set(planned.provenance) == {
        *tiny_backend.provenance(),
        "sampling",
        "prompt_style",
        "request",
        "stop_reason",
        "new_tokens",
        "seconds",
    }
    assert planned.delta == "" and planned.provenance["seconds"] == round(
        planned.provenance["seconds"], 3
    )
    assert render_plan(Plan("", ["a", "b"]), person=True) == "1. a\n2. b"
    assert render_plan(Plan("P", ["a"]), person=True) == "Premise: P\n1. a"


class ScriptedBackend(Backend):
    """An engine whose tokens are given pieces of text, to pin down exactly how the story's
    text is put together from them (the tiny model's text is random). It records what the
    decoding loop asked of it: the budget, whether to stop at EOS, and how many tokens it gave.
    """

    name = "scripted"

    def __init__(self, pieces, end=None, pause=0.0):
        from storygen.config import ModelSpec

        self.spec, self.base_id = ModelSpec(base="scripted", adapter=None), "scripted"
        self.pieces, self.end, self.pause = pieces, end, pause
        self.asked: list[tuple[int, bool]] = []
        self.given = 0

    def chat_template(self):
        return None

    def tokens(self, prompt, sampling, budget, stats, stop_on_eos=True):
        self.asked.append((budget, stop_on_eos))
        for piece in self.pieces:  # more than the budget, if the script says so
            time.sleep(self.pause)
            self.given += 1
            yield piece
        return self.end

    def detokenize(self, tokens):
        return "".join(tokens)

    def count_tokens(self, text):
        return len(text.split())


STORY_REQUEST = StoryRequest(genre="mystery", length="flash")


def test_the_streamed_text_is_the_prefix_the_glue_and_the_models_text_without_its_spaces():
    cases = [  # (prefix, the model's pieces, streamed texts, final story)
        ("", [" Once", " upon."], ["Once", "Once upon."], "Once upon."),
        ("Mara ran.  ", [" Xavier", " hid."], ["Mara ran. Xavier", "Mara ran. Xavier hid."], None),
        (
            "The sign said X",
            [" and", " Y."],
            ["The sign said X and", "The sign said X and Y."],
            None,
        ),
        ("Mara ran.\n", [" Then", " left."], ["Mara ran.\nThen", "Mara ran.\nThen left."], None),
        ("Mara ran.", ["\n", "Then."], ["Mara ran. \n", "Mara ran. \nThen."], "Mara ran.\nThen."),
    ]
    for prefix, pieces, streamed, final in cases:
        *updates, last = stream_story(
            ScriptedBackend(pieces), STORY_REQUEST, SETTINGS, prefix=prefix
        )
        texts = [u.text for u in updates]
        assert texts == streamed
        assert "".join(u.delta for u in updates) == texts[-1]
        assert last.story.text == (final or texts[-1])
    # The glue is one space after a sentence, a line break after a paragraph, never doubled.
    *_, last = stream_story(ScriptedBackend([" B."]), STORY_REQUEST, SETTINGS, prefix="A. \t ")
    assert last.story.text == "A. B."
    *_, last = stream_story(ScriptedBackend(["B."]), STORY_REQUEST, SETTINGS, prefix="  \n ")
    assert last.story.text == "B." and last.story.provenance["continued_from_chars"] == 0


def test_nothing_after_the_models_new_request_is_shown_and_no_empty_update_is_sent():
    pieces = ["Once.", " Twice.", "<|request|>", "genre: x", "<|request|>", "more"]
    *updates, last = stream_story(ScriptedBackend(pieces), STORY_REQUEST, SETTINGS)
    assert [(u.delta, u.text) for u in updates] == [("Once.", "Once."), (" Twice.", "Once. Twice.")]
    assert last.story.text == "Once. Twice."


def test_the_story_asks_the_engine_for_its_budget_and_to_stop_at_eos_unless_told_not_to():
    from storygen.generation import max_new_tokens

    auto = SamplingConfig(seed=1, max_new_tokens=None)  # the budget comes from the length
    backend = ScriptedBackend(["A."])
    generate_story(backend, STORY_REQUEST, auto)
    list(stream_story(backend, STORY_REQUEST, auto, stop_on_eos=False))
    budget = max_new_tokens(STORY_REQUEST, auto)
    assert budget != max_new_tokens(StoryRequest(genre="mystery", length="long"), auto)
    assert backend.asked == [(budget, True), (budget, False)]


def test_a_story_the_engine_ended_is_kept_whole_and_one_cut_short_ends_at_its_last_sentence():
    pieces = ["It ended.", " The end"]
    ended = generate_story(ScriptedBackend(pieces, end="eos"), STORY_REQUEST, SETTINGS)
    assert (ended.text, ended.stop_reason) == ("It ended. The end", "eos")
    default = generate_story(ScriptedBackend(pieces, end=None), STORY_REQUEST, SETTINGS)
    assert (default.text, default.stop_reason) == ("It ended. The end", "eos")  # no reason: EOS
    full = generate_story(ScriptedBackend(pieces, end="length"), STORY_REQUEST, SETTINGS)
    assert (full.text, full.stop_reason) == ("It ended.", "length")


def test_decode_holds_the_budget_itself_whatever_the_engine_gives():
    backend = ScriptedBackend(["a"] * 10)
    steps = [(len(ids), r) for ids, r in decode(backend, PLAIN("x"), SETTINGS, 3)]
    assert steps == [(1, ""), (2, ""), (3, ""), (3, "length")] and backend.given == 3


class LineScripted(ScriptedBackend):
    """A scripted engine for plans: each call gives the next of ``lines`` (a list of pieces
    per line asked for); it records each prompt and seed."""

    def __init__(self, lines: list[list[str]], pause=0.0):
        super().__init__([], pause=pause)
        self.lines, self.prompts, self.seeds = list(lines), [], []

    def tokens(self, prompt, sampling, budget, stats, stop_on_eos=True):
        self.prompts.append(prompt.text)
        self.seeds.append(sampling.seed)
        self.pieces = self.lines.pop(0) if self.lines else []
        return (yield from super().tokens(prompt, sampling, budget, stats, stop_on_eos))


def test_the_plan_holds_its_shape_one_sentence_a_line_whatever_the_model_rambles_into():
    lines = [
        [" A keeper", " finds", " a letter.", " Then", " more", " and more."],  # premise
        [" Mara\\", ", alone\\", ", waits.", "\n", "2. not asked for"],
        [" A ship", " is lost", " at sea and"],  # the model's end of text, mid-sentence
        [],  # an empty line is left out: the next one is asked for as 3. again
        [" Mr.", " Smith", " comes home.", " He"],  # a title's period ends nothing
        [" The light", " <|story|>", " never shown"],
    ]
    backend = LineScripted(lines, pause=0.002)
    *updates, last = stream_plan(backend, STORY_REQUEST, SamplingConfig(seed=7))
    plan = Plan(
        "A keeper finds a letter.",
        ["Mara, alone, waits.", "A ship is lost at sea and", "Mr. Smith comes home.", "The light"],
        "model",
    )
    assert last.plan == plan and last.text == render_plan(plan, person=True)
    # Every update adds text, shows no escape or half sentence, and is where the plan ends up.
    texts = [u.text for u in updates]
    assert all(b.startswith(a) and b != a for a, b in zip(texts, texts[1:], strict=False))
    assert texts[-1] == last.text and "\\" not in "".join(texts) and "Then" not in texts[-1]
    assert "".join(u.delta for u in updates) == texts[-1]
    # The model read its own lines (escapes kept) and each line had its own seed.
    assert backend.prompts[1].endswith("<|plan|>\npremise: A keeper finds a letter.\n1.")
    assert backend.prompts[3].endswith("at sea and\n3.") and backend.prompts[4].endswith("and\n3.")
    assert backend.prompts[5].endswith(
        "1. Mara\\, alone\\, waits.\n2. A ship is lost at sea and\n3. Mr. Smith comes home.\n4."
    )
    assert backend.seeds == [7, 8, 9, 10, 11, 12]
    p = last.provenance
    assert p["stop_reason"] == "eos" and p["new_tokens"] == backend.given
    assert 0.01 <= p["seconds"] < 1 and p["seconds"] == round(p["seconds"], 3)
    assert generate_plan(LineScripted(lines), STORY_REQUEST, SamplingConfig(seed=7)) == plan


def test_a_plan_line_ends_at_its_first_sentence_and_waits_when_unsure():
    cases = [  # (the model's text so far, what of the line stands, whether it is complete)
        ("Mara waits alone", "Mara waits alone", False),
        ("Mara waits alone.", "Mara waits alone.", False),  # unless more follows
        ("Mara waits alone. ", "Mara waits alone.", False),
        ("Mara waits alone. Then", "Mara waits alone.", True),
        ('"Go," said Mara. "Now"', '"Go," said Mara.', True),
        ("It was 3.5 miles away. X", "It was 3.5 miles away.", True),
        ("Stop. Go now. X", "Stop. Go now.", True),  # three words at least
        ("Then Mr. Smith came. X", "Then Mr. Smith came.", True),
        ("Mara waits\nmore", "Mara waits", True),
        ("Mara waits <|story|> x", "Mara waits", True),
        ("Mara waits <", "Mara waits ", False),  # perhaps a marker
        ("She woke at 6 a.m. and ran. Then", "She woke at 6 a.m. and ran.", True),
        ("Mara waits alone. 3 ships", "Mara waits alone.", True),
        ("Mara waits alone\u2028more", "Mara waits alone", True),
        ('"Dr. Who is here," she said. X', '"Dr. Who is here," she said.', True),
    ]
    for text, stands, complete in cases:
        assert plan_line(text) == (stands, complete), text


def test_a_plan_numbers_only_the_lines_it_keeps_and_shows_what_it_will_give():
    lines = [
        ["\n", "1. Mara waits alone."],  # an empty premise: the line breaks at once
        [" Mara  waits", "  alone."],  # two spaces, shown as the plan will hold them
        [" \\"],  # nothing a person could read: left out, its number taken by the next
        [" A ship", " is lost", "\u2028", "2. x"],
        [" The light comes back."],
        [],  # the model's end of text at once: the plan has three beats
    ]
    backend = LineScripted(lines)
    *updates, last = stream_plan(backend, STORY_REQUEST, SamplingConfig(seed=2**63 - 2))
    assert last.plan == Plan("", ["Mara waits alone.", "A ship is lost", "The light comes back."])
    texts = [u.text for u in updates]
    assert all(b.startswith(a) for a, b in zip(texts, texts[1:], strict=False))
    assert texts[-1] == last.text
    assert [p.rsplit("\n", 1)[-1] for p in backend.prompts] == [
        "premise:", "1.", "2.", "2.", "3.", "4."
    ]  # fmt: skip
    assert backend.seeds[:3] == [2**63 - 2, 2**63 - 1, 0]  # the seed wraps, as seeds may


def test_a_loop_in_a_plan_line_is_cut_from_it():
    loop = [" la"] * 40
    lines = [[" A keeper waits"] + loop, [" Mara waits alone."]]
    *_, last = stream_plan(LineScripted(lines), STORY_REQUEST, SamplingConfig(seed=7))
    assert last.plan == Plan("A keeper waits la", ["Mara waits alone."])


def test_a_loop_of_any_block_length_is_found_as_soon_as_three_copies_are_there():
    for period in range(1, 30):
        block = list(range(100, 100 + period))
        copies = max(3, -(-16 // period))
        assert repetition_start(block * copies) == period, period
        assert repetition_start((block * copies)[:-1]) is None, period


class SentencePieceLike(ScriptedBackend):
    """Decodes as SentencePiece does: the first piece of a text loses its leading space."""

    def detokenize(self, tokens):
        return "".join(tokens).removeprefix(" ")


def test_incremental_text_keeps_the_context_a_tokenizer_needs_past_a_token_that_adds_nothing():
    from storygen.generation import IncrementalText

    text_of = IncrementalText(SentencePieceLike([]))
    pieces = [" Once", "", " upon", "", "", " a", " time."]
    texts = [text_of(pieces[: k + 1]) for k in range(len(pieces))]
    assert texts[-1] == "Once upon a time." == SentencePieceLike([]).detokenize(pieces)


def test_best_of_n_keeps_the_judges_best_attempt_within_the_perplexity_guard(tiny_backend):
    """Attempt k is written on seed + k (attempt 1 is the story n = 1 gives); the one kept
    is the best judged, unless the base model finds it much less likely than attempt 1."""

    from storygen.best_of import choose, generate_best, provenance_of, stream_best

    request = StoryRequest(genre="mystery", length="flash")
    sampling = SamplingConfig(seed=3, max_new_tokens=20)
    one = generate_story(tiny_backend, request, sampling)
    best = generate_best(tiny_backend, request, sampling, 3)
    a = best.provenance["attempts"]
    assert a["n"] == 3 and a["seeds"] == [3, 4, 5] and 0 <= a["chosen"] < 3
    firsts = [u.text for k, u in stream_best(tiny_backend, request, sampling, 3) if k == 0]
    assert firsts[-1].strip() and one.text.startswith(firsts[-1].strip()[:20])
    assert generate_best(tiny_backend, request, sampling, 1).text == one.text  # n = 1: as before
    nan = float("nan")
    cands = [{"score": (0.2, 0.5), "base_ppl": 10.0}, {"score": (0.9, 0.9), "base_ppl": 10.4}]
    assert choose(cands) == 1  # better judged, within 5% of attempt 1's perplexity
    cands[1]["base_ppl"] = 11.0
    assert choose(cands) == 0  # better judged but less likely to the base model: guarded
    unscorable = [{"score": (0, 0), "base_ppl": nan}, {"score": (1, 0), "base_ppl": nan}]
    assert choose(unscorable) == 1  # no first perplexity to guard by
    both = [{**c, "adherence": None} for c in unscorable]
    assert provenance_of(both, 1, [3, 4], guard=len)["guard"].startswith("off (attempt 1")
    assert provenance_of(both, 1, [3, 4], guard=None)["guard"] == "off"
    assert "5%" in provenance_of([{**c, "adherence": None} for c in cands], 0, [3, 4], len)["guard"]
    with pytest.raises(ValueError, match="attempts"):
        generate_best(tiny_backend, request, sampling, 0)


def test_stop_keeps_the_text_shown_half_sentence_and_all():
    """Stopped mid-sentence, the story is what the writer saw (marked unfinished by its stop
    reason), not cut back to the last full sentence; a story cut by its budget is."""
    pieces = [" Mara", " ran.", " Then", " the", " lamp", " went", " out", " and"]
    stop = threading.Event()
    updates = []
    for update in stream_story(ScriptedBackend(pieces), STORY_REQUEST, SETTINGS, stop):
        updates.append(update)
        if update.text.endswith("lamp"):
            stop.set()
    assert updates[-1].story.stop_reason == "stopped"
    assert updates[-1].story.text == updates[-2].text == "Mara ran. Then the lamp"
    budget = SamplingConfig(seed=0, max_new_tokens=5)
    cut = list(stream_story(ScriptedBackend(pieces), STORY_REQUEST, budget))[-1].story
    assert cut.stop_reason == "length" and cut.text == "Mara ran."
