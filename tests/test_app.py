"""The Gradio app through its HTTP API (gradio_client), on the tiny in-process model."""

import csv
import json
import socket
import threading
from pathlib import Path

import pytest

from human_ratings.store import VoteStore
from story_ui.forms import SamplingForm, StoryForm
from story_ui.layout import build_app
from story_ui.services import AppConfig, Services

FORM_DEFAULTS = dict(
    characters="",
    place="",
    era="",
    genre="",
    tone="",
    plot_points="",
    ending="",
    pov="",
    length="flash",
    prompt="",
    arc="",
)
SAMPLING = [0.8, 0.92, 50, 1.15, 24]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_pairs(path, n=4):
    req = {
        "characters": [{"name": "Mara", "traits": ["kind"]}],
        "genre": "mystery",
        "length": "flash",
    }
    with path.open("w") as f:
        for i in range(n):
            stories = {
                s: {"text": f"{s} story {i}.", "provenance": {"sampling": {"seed": i}}}
                for s in ("base", "tuned")
            }
            f.write(json.dumps({"item_id": f"item{i}", "request": req, "stories": stories}) + "\n")
    return path


@pytest.fixture(scope="module")
def app(tiny_backend, tmp_path_factory):
    from gradio_client import Client

    tmp = tmp_path_factory.mktemp("app")
    config = AppConfig(
        votes_csv=tmp / "votes.csv",
        pairs=write_pairs(tmp / "pairs.jsonl"),
        rater_password="s3cret",
        concurrency=2,
        stream_every_s=0,  # the tiny model writes a story in milliseconds: show every token
    )
    services = Services(config, backend=tiny_backend)
    demo = build_app(services)
    port = _free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    url = f"http://127.0.0.1:{port}/"
    yield {
        "url": url,
        "client": Client(url, verbose=False),
        "services": services,
        "votes": config.votes_csv,
    }
    demo.close()


def _write(client, seed=5, api="/write", **form):
    values = {**FORM_DEFAULTS, **form}
    return client.submit(*values.values(), *SAMPLING, seed, False, 1, "", api_name=api)


def test_write_streams_and_is_reproducible(app):
    job = _write(
        app["client"],
        characters="Mara: stubborn, kind\nJonah: curious",
        place="a lighthouse",
        genre="mystery",
        ending="happy",
    )
    partial = [out[0] for out in job]
    final = job.result()
    assert final[1].startswith("Done:") and final[2] == 5
    assert len(partial) >= 3  # the story arrived in pieces, not at once
    again = _write(
        app["client"],
        characters="Mara: stubborn, kind\nJonah: curious",
        place="a lighthouse",
        genre="mystery",
        ending="happy",
    ).result()
    assert again[0] == final[0]


def test_bad_input_gets_a_clear_message_not_a_crash(app):
    empty = _write(app["client"]).result()
    assert "Please fix the request" in empty[1] and "empty" in empty[1]
    huge = _write(app["client"], prompt="x" * 50_000).result()
    assert "too long" in huge[1] and "prompt" in huge[1]
    ctrl = _write(app["client"], characters="Ma\x07ra: kind").result()
    assert "control character" in ctrl[1]


def test_markup_and_unicode_are_kept_as_text(app):
    from story_ui import write

    prompt = "<script>alert(1)</script> **bold** 🐉"
    out = _write(app["client"], characters="Zoë: brave, 勇敢", prompt=prompt).result()
    assert out[1].startswith("Done:")
    # What reached the model is what was typed: the request kept in the story's provenance.
    form = StoryForm(**{**FORM_DEFAULTS, "characters": "Zoë: brave, 勇敢", "prompt": prompt})
    names = ["temperature", "top_p", "top_k", "repetition_penalty", "max_new_tokens"]
    sampling = SamplingForm(**dict(zip(names, SAMPLING)), seed=5)
    *_, last = write.write(app["services"], form, sampling, [])
    request = last[4]["request"]
    assert request["characters"] == [{"name": "Zoë", "traits": ["brave", "勇敢"]}]
    assert request["prompt"] == prompt


def test_rating_needs_the_password_and_records_exactly_one_vote(app):
    """The app's local study (one's own machine): a typed name and the password; the systems
    are never revealed (the default), and the vote records its study and its seconds."""
    from gradio_client import Client

    client = Client(app["url"], verbose=False)
    refused = client.predict("alice", "wrong", api_name="/start_rating")
    assert refused[3] == "Wrong password." and refused[4] == ""  # beside Start, not Submit
    shown = client.predict("alice", "s3cret", api_name="/start_rating")
    assert "Mara" in shown[0] and shown[1] != shown[2]
    result = client.predict(
        "B is better", "=SUM(A1)", "4", "3", "5", "2", "1", "2", "3", "4", api_name="/vote"
    )
    assert "Saved" in result[-1]
    # The voted item stays on screen; which system wrote which is not said.
    assert result[1:3] == shown[1:3]
    assert "written by" not in result[-1] and "tuned" not in result[-1]
    again = client.predict("A is better", "", *[None] * 8, api_name="/vote")
    assert "saved already" in again[-1] and again[1:3] == shown[1:3]
    votes = [v for v in VoteStore(app["votes"]).votes() if v.annotator == "alice"]
    assert len(votes) == 1
    vote = votes[0]
    assert vote.choice == "right" and vote.comment == "=SUM(A1)" and vote.left_coherence == 4
    assert vote.study == "local" and vote.seconds is not None and 0 <= vote.seconds < 60
    # The system on the right is the one whose story was shown as B.
    assert shown[2].startswith(vote.system_right)
    raw = [r for r in csv.reader(app["votes"].open()) if r[0] == "alice"]
    assert raw[0][13] == "'=SUM(A1)"


def test_annotators_never_see_an_item_twice(app):
    from gradio_client import Client

    client = Client(app["url"], verbose=False)
    shown = client.predict("bob", "s3cret", api_name="/start_rating")
    seen = []
    for _ in range(4):
        seen.append(shown[1])  # the story shown as A: each item's are its own
        assert "Saved" in client.predict("Tie", "", *[None] * 8, api_name="/vote")[-1]
        shown = client.predict(api_name="/next_item")
    assert "Nothing needs your vote" in shown[-1] and len(set(seen)) == 4
    assert len({v.item_id for v in VoteStore(app["votes"]).votes() if v.annotator == "bob"}) == 4


def test_many_simultaneous_voters_lose_no_row(app):
    from gradio_client import Client

    errors = []

    def voter(k):
        try:
            c = Client(app["url"], verbose=False)
            c.predict(f"crowd{k}", "s3cret", api_name="/start_rating")
            c.predict("A is better", f"voter {k}", *["3"] * 8, api_name="/vote")
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=voter, args=(k,)) for k in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    crowd = [v for v in VoteStore(app["votes"]).read_all() if v.annotator.startswith("crowd")]
    assert len(crowd) == 12 and len({v.annotator for v in crowd}) == 12


def test_results_view_summarises_the_votes(app):
    table, plot, sync = app["client"].predict(api_name="/results")
    assert "Win rates" in table and "Bradley-Terry" in table and "Position bias" in table
    assert "stay" in sync or "kept" in sync


def test_hub_sync_is_off_by_default_and_says_why_when_half_configured(tmp_path, monkeypatch):
    from story_ui.services import start_hub_sync

    services = Services(AppConfig(votes_csv=tmp_path / "v.csv", pairs=None))
    assert "only" in start_hub_sync(services)  # off: votes stay in the local CSV
    monkeypatch.delenv("HF_TOKEN", raising=False)
    services = Services(AppConfig(votes_csv=tmp_path / "v.csv", pairs=None, hub_dataset="me/votes"))
    assert "HF_TOKEN is not" in start_hub_sync(services)


def test_live_mode_generates_a_new_item_when_all_are_rated(tiny_model_dir, tmp_path):
    from story_ui import rate

    systems = tmp_path / "systems.yaml"
    systems.write_text(
        f"systems:\n  - name: fp32\n    base: {tiny_model_dir}\n    quantization: fp32\n"
        f"    sampling: {{max_new_tokens: 12}}\n  - name: nf4\n    base: {tiny_model_dir}\n"
        f"    quantization: nf4\n    sampling: {{max_new_tokens: 12}}\n"
    )
    requests = tmp_path / "requests.jsonl"
    requests.write_text('{"genre": "mystery", "characters": ["Mara: kind"]}\n')
    config = AppConfig(
        votes_csv=tmp_path / "v.csv",
        pairs=None,
        live=True,
        live_systems=systems,
        live_requests=requests,
    )
    services = Services(config)
    request_md, a, b, state, _, _, status = rate.show(services, {"annotator": "carol"})
    assert state["item_id"].startswith("live-") and {state["left"], state["right"]} == {
        "fp32",
        "nf4",
    }
    assert "Mara" in request_md and len(services.items) == 1
    out = rate.vote(services, state, "Tie", [None] * 8, "")
    assert "Saved" in out[-1] and len(services.items) == 1
    rate.next_one(services, out[3])
    assert len(services.items) == 2  # the next one was made live too
    (vote,) = services.store.votes()
    assert vote.item_id == state["item_id"] and vote.seed_left == vote.seed_right
    # Both live items are kept beside the votes, stories and all: a restart loses none.
    from human_ratings.pairs import ItemLog

    kept, bad = ItemLog(tmp_path / "live_items.jsonl").read_all()
    assert [it.item_id for it in kept] == [it.item_id for it in services.items] and not bad
    assert kept[0].stories == services.items[0].stories
    # After a restart the live items are back before the votes are counted: ann's counts.
    again = Services(config)
    assert again.study.assigner.votes_per_item() == {state["item_id"]: 1, kept[1].item_id: 0}


def test_the_page_is_refreshed_at_most_every_stream_interval(tiny_backend, tmp_path):
    """Every token costs the server a resend of the story: a slow interval shows the first
    piece at once, then only the finished story."""
    from story_ui import write

    config = AppConfig(votes_csv=tmp_path / "v.csv", pairs=None, stream_every_s=3600)
    services = Services(config, backend=tiny_backend)
    form = StoryForm(**{**FORM_DEFAULTS, "characters": "Mara: kind", "genre": "mystery"})
    sampling = SamplingForm(0.8, 0.9, 50, 1.1, max_new_tokens=30, seed=5)
    outs = list(write.write(services, form, sampling, []))
    statuses = [o[1] for o in outs]
    assert statuses[:2] == ["Writing…", "Writing…"] and statuses[-1].startswith("Done:")
    assert len(outs) == 3 and outs[1][0] and outs[-1][0].startswith(outs[1][0].strip()[:3])


def test_stop_ends_only_this_visitors_story_and_keeps_it(tiny_backend, tmp_path):
    from storygen.config import SamplingConfig
    from storygen.request import StoryRequest

    services = Services(AppConfig(votes_csv=tmp_path / "v.csv", pairs=None), backend=tiny_backend)
    request = StoryRequest(genre="mystery")
    mine = services.write(request, SamplingConfig(seed=1, max_new_tokens=400), "", "me")
    theirs = services.write(request, SamplingConfig(seed=1, max_new_tokens=30), "", "them")
    next(mine), next(theirs)
    assert services.stop("me") and not services.stop("nobody")
    *_, (kept, last) = mine
    assert kept is None  # the last update holds the story kept
    assert last.story.stop_reason == "stopped" and last.story.provenance["new_tokens"] == 1
    assert not services.stop("me")  # finished: nothing left to stop
    *_, (_, other) = theirs
    assert other.story.stop_reason != "stopped"


def test_stop_through_the_app_with_nothing_running_says_so(app):
    assert app["client"].predict(api_name="/stop") == "Nothing is being written."


@pytest.mark.parametrize("seed", [2**64, 2**63, -1, 2**53])
def test_a_seed_that_cannot_be_used_gets_a_message_and_keeps_the_page(app, seed):
    out = _write(app["client"], genre="mystery", seed=seed).result()
    assert "seed must be" in out[1]


def test_a_huge_continue_text_is_refused_fast(app):
    import time

    t0 = time.perf_counter()
    client = app["client"]
    values = {**FORM_DEFAULTS, "genre": "mystery"}.values()
    out = client.predict(*values, *SAMPLING, 5, False, 1, "word " * 20_000, api_name="/continue")
    assert "too long" in out[1] and time.perf_counter() - t0 < 5


def test_results_never_show_the_servers_file_path(app):
    _, _, sync = app["client"].predict(api_name="/results")
    assert str(app["votes"]) not in str(sync) and "votes.csv" not in str(sync)


BAD_VALUES = [None, "", "x" * 20_000, -1, 2**70, 10**400, [1, 2], {"a": 1}, "\x00\x07"]
GENERIC = "has raised an exception but has not enabled verbose error reporting"


@pytest.mark.integration  # about 30 s of requests
def test_every_input_of_every_endpoint_gets_a_message_never_a_bare_error(app):
    """Each parameter of each named endpoint in turn gets values of the wrong type, size or
    range, the others valid. The answer is a message in the endpoint's own message output
    (ours, or Gradio's own error for a choice that is not offered), never a bare error."""
    import itertools
    from concurrent.futures import ThreadPoolExecutor

    from gradio_client import Client
    from gradio_client.exceptions import AppError

    form = [*{**FORM_DEFAULTS, "genre": "mystery"}.values()]
    write = [*form, *SAMPLING, 5, False, 1, ""]
    # endpoint: (valid values, index of the output that carries its message)
    valid = {
        "/write": (write, 1),
        "/regenerate": (write, 1),
        "/continue": ([*write[:-1], "Once upon a time"], 1),
        "/plan": ([*form, *SAMPLING, 5, False, 1, ""], 1),
        "/write_from_plan": ([*form, *SAMPLING, 5, False, 1, "1. Mara finds a key."], 1),
        "/download": (["A story.", "Markdown"], 1),
        "/open_draft": ([1], 1),
        "/thumbs_up": ([], 0),
        "/thumbs_down": ([], 0),
        "/save_edit": (["A better story."], 0),
        "/start_rating": (["fuzzer", "s3cret"], 3),
        "/vote": (["A is better", "", *["3"] * 8], 4),
        "/stop": ([], 0),
        "/next_item": ([], 4),
        "/results": ([], 0),
        "/study_status": ([], 0),
    }
    # The three story buttons share one handler: /write covers the form, /continue its text.
    fuzzed = {
        "/regenerate": [],
        "/continue": ["story"],
        "/plan": ["seed", "randomize", "max_new_tokens"],
        "/write_from_plan": ["plan"],
    }
    api = Client(app["url"], verbose=False).view_api(return_format="dict", print_info=False)
    api = api["named_endpoints"]
    assert set(api) == set(valid), "a new endpoint needs its valid values here"
    cases = []
    for name, endpoint in api.items():
        params = [p["parameter_name"] for p in endpoint["parameters"]]
        assert len(params) == len(valid[name][0]) and not any(
            p.startswith("param_") for p in params
        )
        for i, param in enumerate(params):
            if param in fuzzed.get(name, params):
                cases += [(name, i, param, bad) for bad in BAD_VALUES]
    local, fresh = threading.local(), itertools.count()

    def answer(case):
        name, i, param, bad = case
        if not hasattr(local, "client"):
            local.client = Client(app["url"], verbose=False)
        values, message_at = valid[name]
        args = list(values)
        args[i] = bad
        if name == "/vote":  # a fresh annotator, so an item is on screen to vote on
            local.client.predict(f"fuzzer{next(fresh)}", "s3cret", api_name="/start_rating")
        try:
            out = local.client.predict(*args, api_name=name)
        except AppError as exc:
            return None if str(exc).strip() and GENERIC not in str(exc) else (case, "bare")
        outs = out if isinstance(out, (list, tuple)) else [out]
        message = outs[message_at]
        return None if isinstance(message, str) and message.strip() else (case, "silent")

    with ThreadPoolExecutor(4) as pool:
        bare = [r for r in pool.map(answer, cases) if r]
    assert len(cases) > 200 and not bare


def test_a_refused_start_or_a_second_vote_keeps_the_item_on_screen(app):
    from story_ui import rate

    services = app["services"]
    shown = rate.start(services, "keeper", "s3cret")
    state = shown[3]
    refused = rate.start(services, "", "s3cret", state)
    assert refused[3] is state and "Enter an annotator ID" in refused[5]
    assert all(isinstance(x, dict) and x.get("__type__") == "update" for x in refused[:3])
    first = rate.vote(services, state, "A is better", [None] * 8, "first")
    second = rate.vote(services, state, "B is better", [None] * 8, "second")  # another tab
    assert "Saved" in first[-1] and "first vote stands" in second[-1]
    assert second[1:3] == shown[1:3] and second[3]["voted"]
    (vote,) = [v for v in services.store.votes() if v.annotator == "keeper"]
    assert vote.comment == "first"


def test_plan_first_then_write_from_the_plan_as_written_or_edited(app):
    """Plan first fills the plan box; Write from plan follows it and says whose plan it was
    (the model's as written, or edited by the person)."""
    from gradio_client import Client

    client = Client(app["url"], verbose=False)  # one visitor: the model's plan is remembered
    form = [*{**FORM_DEFAULTS, "genre": "mystery", "characters": "Mara: kind"}.values()]
    plan_text, status = client.predict(*form, *SAMPLING, 5, False, 1, "", api_name="/plan")[:2]
    assert status.startswith("Plan ready") and plan_text.strip()
    as_is = client.predict(*form, *SAMPLING, 5, False, 1, plan_text, api_name="/write_from_plan")
    assert as_is[1].startswith("Done:") and "Written from the model's plan" in as_is[1]
    edited = plan_text + "\nMara opens the lighthouse door."
    changed = client.predict(*form, *SAMPLING, 5, False, 1, edited, api_name="/write_from_plan")
    assert "Written from your edited plan" in changed[1]
    assert changed[0] != as_is[0]  # the extra beat is in the prompt: another story
    empty = client.predict(*form, *SAMPLING, 5, False, 1, "  ", api_name="/write_from_plan")
    assert "plan" in empty[1] and "empty" in empty[1]
    # Continue goes on from the story on screen, written from the same (edited) plan.
    cont = client.predict(*form, *SAMPLING, 5, False, 1, changed[0], api_name="/continue")
    assert cont[0].startswith(changed[0].rstrip()) and "Written from your edited plan" in cont[1]


def test_a_reader_reacts_to_the_finished_story_and_the_results_count_it(app):
    """Thumbs and an edit are kept with the server's copy of the story on screen (an opened
    draft's, not the last written) and its provenance; one thumb per visitor and story; the
    Results tab counts them per system."""
    from gradio_client import Client

    client = Client(app["url"], verbose=False)  # a visitor of its own: its own drafts
    said = client.predict(api_name="/thumbs_up")
    assert said.startswith("There is no finished story")
    first = _write(client, seed=11, genre="mystery").result()
    second = _write(client, seed=12, genre="horror").result()
    log = app["services"].reactions
    before = len(log.read_all())
    assert client.predict(api_name="/thumbs_down").startswith("Thank you")
    again = client.predict(api_name="/thumbs_up")  # the same visitor, the same story
    assert again.startswith("Not kept") and "first one stands" in again
    client.predict(1, api_name="/open_draft")  # back to the first story
    edited = first[0] + "\nAnd then, at last, the lamp was lit."
    assert client.predict(edited, api_name="/save_edit").startswith("Thank you")
    assert client.predict(first[0], api_name="/save_edit").startswith("Not kept")
    down, edit = log.read_all()[before:]
    assert (down.kind, down.story, down.provenance["sampling"]["seed"]) == ("down", second[0], 12)
    assert (edit.kind, edit.story, edit.edited) == ("edit", first[0], edited)
    assert (
        edit.provenance["sampling"]["seed"] == 11
        and edit.provenance["request"]["genre"] == "mystery"
    )
    assert edit.reader == "" and edit.system == down.system == edit.provenance["base_model"]
    assert edit.visitor == down.visitor and edit.visitor
    table = client.predict(api_name="/results")[0]
    counts = app["services"].reactions.counts()[edit.system]
    assert f"| {edit.system} | {counts['up']} | {counts['down']} | {counts['edit']} |" in table


def test_a_reaction_names_the_servers_story_never_the_clients_text(app):
    """The reaction endpoints take no story text: what a client might send as "the story" is
    never stored under a real story's provenance."""
    from gradio_client import Client

    client = Client(app["url"], verbose=False)
    api = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    for name in ("/thumbs_up", "/thumbs_down", "/save_edit"):
        params = [p["parameter_name"] for p in api[name]["parameters"]]
        assert "story" not in params, (name, params)
    written = _write(client, seed=21, genre="mystery").result()
    assert client.predict(api_name="/thumbs_up").startswith("Thank you")
    last = app["services"].reactions.read_all()[-1]
    assert last.story == written[0] and last.kind == "up"


def test_a_hub_sync_pushes_append_only_copies_one_file_per_process(
    tmp_path, tiny_backend, monkeypatch
):
    """CommitScheduler uploads files while they grow: the app gives it one JSON Lines file per
    process that is only ever appended to, written after the vote is in its log."""
    import huggingface_hub

    from human_ratings.mirror import Mirror
    from story_ui import rate
    from story_ui.services import start_hub_sync

    made = {}

    class StandIn:  # the huggingface_hub seam: what the app asks of the scheduler
        def __init__(self, **kwargs):
            made.update(kwargs)

    monkeypatch.setattr(huggingface_hub, "CommitScheduler", StandIn)
    monkeypatch.setenv("HF_TOKEN", "x")
    config = AppConfig(
        votes_csv=tmp_path / "votes.csv",
        pairs=write_pairs(tmp_path / "p.jsonl"),
        hub_dataset="me/v",
    )
    services = Services(config, backend=tiny_backend)
    assert "every 5 minutes" in start_hub_sync(services)
    assert made["repo_type"] == "dataset" and made["allow_patterns"] == ["*.jsonl"]
    assert made["private"] is True
    assert Path(made["folder_path"]) == tmp_path / "sync"
    sizes = []
    for who in ("ann", "bob"):
        state = rate.start(services, who, "")[3]
        rate.vote(services, state, "A is better", [None] * 8, who)
        sizes.append(services.mirror.paths["votes"].stat().st_size)
    assert sizes[0] < sizes[1]  # only appended to
    mirrored = Mirror.read(tmp_path / "sync")
    from human_ratings.identity import pseudonym

    key = services.study.key  # pseudonymised as the study's exports are
    assert [(m["annotator"], m["comment"]) for m in mirrored] == [
        (pseudonym(key, "ann"), "ann"),
        (pseudonym(key, "bob"), "bob"),
    ]
    assert {v.annotator for v in services.store.votes()} == {"ann", "bob"}


def test_a_value_of_the_wrong_type_is_refused_with_a_message_never_converted(app):
    """Over the API, a number or a dict where text belongs, and a seed Gradio would round or
    default, are refused naming the field: never written about as their text or run as
    another seed."""
    c = app["client"]
    cases = [
        ({"characters": 123}, 5, "characters** must be text, not int"),
        ({"place": {"a": 1}}, 5, "place** must be text, not dict"),
        ({"characters": "Mara"}, 1.5, "seed must be a whole number, not '1.5'"),
        ({"characters": "Mara"}, None, "seed must be a whole number, not 'None'"),
    ]
    for form, seed, said in cases:
        out = _write(c, seed=seed, **form).result()
        assert said in out[1], (form, seed, out[1])
        assert not out[1].startswith("Done:")
    assert _write(c, seed=7.0, characters="Mara").result()[2] == 7  # a whole float is a seed
    text = [*{**FORM_DEFAULTS, "characters": "Mara"}.values(), *SAMPLING, 5, False, 1]
    out = c.predict(*text, {"text": "Once"}, api_name="/continue")
    assert "the story to continue must be text" in out[1]
