"""A human evaluation a real study can run: invite codes, fewest-votes-first assignment with
counterbalanced sides, gold items and exclusions, anytime-valid decisions, the study file and
its export."""

import json
import math
import random

import pytest

from human_ratings.assign import Assigner, AssignmentLog
from human_ratings.identity import IdentityError, Invites, RateLimit, oauth_annotator
from human_ratings.quality import Exclusion, annotator_figures, excluded, make_gold
from human_ratings.sequential import confidence_sequence, decide, log_mixture, votes_needed
from human_ratings.store import Vote
from human_ratings.study import Study, StudyConfig, StudyError, new_study

from .test_app import write_pairs


def three_system_pairs(path, n=12):
    """Items of three systems, each item two of them, with stories of several sentences."""
    systems = ["alpha", "beta", "gamma"]
    rows = []
    for i in range(n):
        a, b = [(0, 1), (0, 2), (1, 2)][i % 3]
        stories = {
            s: {
                "text": " ".join(f"{s} sentence {j} of story {i} goes on." for j in range(6)),
                "provenance": {"sampling": {"seed": i}},
            }
            for s in (systems[a], systems[b])
        }
        rows.append({"item_id": f"item{i}", "request": {"genre": "mystery"}, "stories": stories})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# -- invite codes ---------------------------------------------------------------------------


def test_invite_codes_are_shown_once_stored_hashed_and_revocable(tmp_path):
    invites = Invites(tmp_path / "invites.jsonl", "study-a")
    (_, code), (_, owner_code) = (
        invites.create(["ann"])[0],
        invites.create(["boss"], "owner")[0],
    )
    stored = (tmp_path / "invites.jsonl").read_text()
    assert code not in stored and owner_code not in stored  # only salted hashes
    assert (
        invites.sign_in(code).annotator == "ann"
        and invites.sign_in(code.upper()).role == "annotator"
    )
    assert invites.sign_in(owner_code).role == "owner"
    for wrong in ("", "nope", None, 12, "x" * 500):
        with pytest.raises(IdentityError):
            invites.sign_in(wrong)
    other_study = Invites(tmp_path / "invites.jsonl", "study-b")  # the same file, another study
    with pytest.raises(IdentityError, match="not an invitation to this study"):
        other_study.sign_in(code)
    invites.revoke("ann")
    with pytest.raises(IdentityError, match="revoked"):
        invites.sign_in(code)
    ((_, new_code),) = invites.create(["ann"])  # a new code for the same annotator
    assert invites.sign_in(new_code).annotator == "ann"
    with pytest.raises(IdentityError, match="revoked"):
        invites.sign_in(code)


def test_oauth_profiles_and_allow_lists():
    with pytest.raises(IdentityError, match="Sign in"):
        oauth_annotator(None)
    assert oauth_annotator({"preferred_username": "alice"}) == "hf:alice"
    member = {"preferred_username": "bob", "orgs": [{"preferred_username": "acme"}]}
    assert oauth_annotator(member, ["org:acme"]) == "hf:bob"
    with pytest.raises(IdentityError, match="not among"):
        oauth_annotator({"preferred_username": "eve"}, ["alice", "org:acme"])


def test_rate_limits_per_key_and_overall():
    limit = RateLimit(2, window=60, overall=3)
    assert limit.hit("a", 0) == 0 and limit.hit("a", 1) == 0
    assert limit.hit("a", 2) == pytest.approx(58)  # a third within the minute waits
    assert limit.hit("b", 2) == 0 and limit.hit("c", 3) == pytest.approx(57)  # overall full
    assert limit.hit("a", 61) == 0  # the window moved on
    assert limit.wait("z", 0) == 0 and limit.wait("z", 0) == 0  # asking records nothing
    assert limit.wait("b", 3) == 0  # wait() asks about the key's own limit only


def test_idle_keys_are_forgotten():
    limit = RateLimit(2, window=60)
    for n in range(10_001):
        limit.hit(f"visitor-{n}", now=0)
    limit.hit("late", now=61)  # every earlier key has been idle a whole window
    assert set(limit._events) == {"late"}


def test_a_new_code_ends_the_old_codes_session_and_a_role_is_read_at_each_check(tmp_path):
    from story_ui import rate
    from story_ui.services import AppConfig, Services

    study = new_study(tmp_path / "s", three_system_pairs(tmp_path / "p.jsonl"), gold=0)
    ((_, code),) = study.invites.create(["boss"], "owner")
    services = Services(AppConfig(study=tmp_path / "s", pairs=None), backend=object())
    state = rate.start(services, code, "", {}, None, "v")[3]
    assert rate.is_owner(services, state, None)
    study.invites.create(["boss"])  # a new code for boss, as an annotator this time
    assert not rate.is_owner(services, state, None)
    refused = rate.vote(services, state, "Tie", [None] * 8, "")
    assert "revoked or replaced" in refused[-1] and services.study.votes() == []


# -- assignment -----------------------------------------------------------------------------


def test_fewest_votes_first_no_item_gets_k_plus_one_while_another_has_fewer(tmp_path):
    items = {f"i{n}": ("a", "b") for n in range(30)}
    assigner = Assigner(items, k=3, seed=1, log=AssignmentLog(tmp_path / "a.jsonl"))
    rng = random.Random(0)
    annotators = [f"ann{n}" for n in range(12)]
    done = 0
    while True:
        who = rng.choice(annotators)
        a = assigner.next(who)
        if a is None:
            if all(assigner.next(x) is None for x in annotators):
                break
            continue
        counts = assigner.votes_per_item()
        # Never a (k+1)-th vote while an item this annotator could rate has fewer than k.
        assert counts[a.item_id] < 3
        assigner.voted(who, a.item_id)
        done += 1
    counts = assigner.votes_per_item()
    assert set(counts.values()) == {3} and done == 90
    assert assigner.progress()["complete"]


def test_sides_are_counterbalanced_per_annotator_and_pair():
    items = {f"i{n}": ("base", "tuned") for n in range(40)}
    assigner = Assigner(items, k=1, seed=3)
    lefts = []
    for _ in range(40):
        a = assigner.next("solo")
        lefts.append(a.left)
        assigner.voted("solo", a.item_id)
    assert lefts.count("base") == lefts.count("tuned") == 20
    # and within any prefix they never drift apart by more than one
    assert all(abs(lefts[:n].count("base") - lefts[:n].count("tuned")) <= 1 for n in range(41))


def test_an_item_not_voted_on_is_released_after_the_timeout_and_restored_after_a_restart(
    tmp_path,
):
    log = AssignmentLog(tmp_path / "a.jsonl")
    assigner = Assigner({"i0": ("a", "b"), "i1": ("a", "b")}, k=1, timeout=60, log=log, seed=0)
    first = assigner.next("slow", now=0)
    assert assigner.next("slow", now=1) == first  # the one they hold, until they vote
    other = assigner.next("fast", now=30)
    assert other.item_id != first.item_id
    assert assigner.next("third", now=2) is None  # both held: nothing needs a vote
    taken = assigner.next("third", now=61)  # the slow one's item went back
    assert taken.item_id == first.item_id and assigner.held("slow", first.item_id, now=61) is None
    # A restart: the open assignments come back from the log, the votes from the vote log.
    again = Assigner({"i0": ("a", "b"), "i1": ("a", "b")}, k=1, timeout=60, log=log, seed=0)
    vote = Vote("fast", other.item_id, other.left, other.right, "left", study="s")
    again.restore([vote], now=62)
    assert again.held("third", taken.item_id, now=62) is not None
    assert again.held("slow", first.item_id, now=62) is None  # it had been released
    assert again.next("fourth", now=62) is None and again.progress()["votes"] == 1
    # Given back with Next (not voted on): after a restart it is not held any more.
    again.skip("third")
    after = Assigner({"i0": ("a", "b"), "i1": ("a", "b")}, k=1, timeout=60, log=log, seed=0)
    after.restore([vote], now=63)
    assert after.held("third", taken.item_id, now=63) is None
    assert after.next("fourth", now=63).item_id == taken.item_id
    # Whoever was given an item reads it: never again, even given back or expired.
    assert after.next("third", now=64) is None and after.next("slow", now=64) is None


def test_a_vote_said_twice_counts_once():
    assigner = Assigner({"i0": ("a", "b"), "i1": ("a", "b")}, k=2, seed=0)
    a = assigner.next("ann")
    assigner.voted("ann", a.item_id)
    assigner.voted("ann", a.item_id)  # a second tab, a double click
    assert assigner.votes_per_item()[a.item_id] == 1
    b = assigner.next("bob")
    assert b.item_id != a.item_id  # i0 has 1 (ann's), i1 none: bob gets the one with fewest


def test_an_annotator_never_gets_both_a_gold_item_and_its_source():
    items = {"i0": ("a", "b"), "i1": ("a", "b")}
    assigner = Assigner(
        items, k=1, gold={"gold-0": ("a", "b")}, gold_rate=0.99, seed=0, gold_from={"gold-0": "i0"}
    )
    shown = []
    while (a := assigner.next("ann")) is not None:
        shown.append(a.item_id)
        assigner.voted("ann", a.item_id)
    assert not {"gold-0", "i0"} <= set(shown) and len(shown) == 2


def test_gold_items_come_at_the_rate_and_never_count_towards_k():
    items = {f"i{n}": ("a", "b") for n in range(200)}
    gold = {f"gold-{n}": ("a", "b") for n in range(200)}
    assigner = Assigner(items, k=1, gold=gold, gold_rate=0.2, seed=5)
    shown = []
    for _ in range(200):
        a = assigner.next("ann")
        shown.append(a.gold)
        assigner.voted("ann", a.item_id)
    assert 0.13 < sum(shown) / 200 < 0.27
    assert sum(assigner.votes_per_item().values()) == 200 - sum(shown)


def test_assignment_is_fast_with_many_items_and_annotators():
    """The figure is bench/assign.py's; this only guards against an accidental O(items) pass."""
    import time

    items = {f"i{n}": ("a", "b") for n in range(10_000)}
    assigner = Assigner(items, k=3, seed=0)
    t0 = time.perf_counter()
    for n in range(2000):
        who = f"ann{n % 200}"
        a = assigner.next(who)
        assigner.voted(who, a.item_id)
    assert (time.perf_counter() - t0) / 2000 < 0.02


# -- quality --------------------------------------------------------------------------------


def test_gold_items_hide_among_the_items_and_name_the_better_story(tmp_path):
    from human_ratings.pairs import load_items

    items = load_items(three_system_pairs(tmp_path / "p.jsonl"))
    gold = make_gold(items, 6, seed=1)
    assert {g["gold"]["kind"] for g in gold} == {"shuffled", "other_request"}
    for g in gold:
        better = g["gold"]["better"]
        assert better in g["stories"] and set(g["stories"]) <= {"alpha", "beta", "gamma"}
        (worse,) = set(g["stories"]) - {better}
        good, bad = g["stories"][better]["text"], g["stories"][worse]["text"]
        assert good != bad
        if g["gold"]["kind"] == "shuffled":
            assert sorted(good.split()) == sorted(bad.split())  # the same sentences, reordered


def test_a_shuffled_story_keeps_its_layout_and_a_story_with_no_order_makes_none():
    from human_ratings.quality import shuffled

    text = "One rose. Two fell.\n\nThree ran. Four hid. Five slept.\n\nSix woke."
    for seed in range(20):
        out = shuffled(text, random.Random(seed))
        assert out != text and sorted(out.split()) == sorted(text.split())
        assert [len(p.split(". ")) for p in out.split("\n\n")] == [2, 3, 1]
    assert shuffled("Same. Same. Same. Same. Same.", random.Random(0)) is None  # no loop


def test_the_exclusion_rule_catches_careless_annotators_and_keeps_careful_ones():
    rule = Exclusion(min_median_seconds=5, min_votes=6, min_gold=2)
    gold = {"g1": "good", "g2": "good", "g3": "good"}
    votes = []

    def vote(who, item, left, right, choice, seconds=20.0):
        votes.append(Vote(who, item, left, right, choice, seconds=seconds))

    for n in range(10):
        for who in ("careful1", "careful2", "careful3", "fast", "always_a"):
            left, right = ("good", "bad") if n % 2 else ("bad", "good")
            pick = {"careful1": "good", "careful2": "good", "careful3": "good"}.get(who)
            if who == "always_a":
                choice = "left"
            else:
                choice = "left" if pick == left or (who == "fast" and n % 3) else "right"
            vote(who, f"i{n}", left, right, choice, 1.0 if who == "fast" else 20.0)
    for who in ("careful1", "always_a"):
        for g in gold:
            vote(who, g, "bad", "good", "right" if who == "careful1" else "left")
    figures = annotator_figures(votes, gold)
    assert figures["careful1"]["gold_pass_rate"] == 1.0 and figures["always_a"]["gold_passed"] == 0
    assert figures["always_a"]["share_a"] == 1.0 and figures["fast"]["median_seconds"] == 1.0
    reasons = {who: excluded(f, rule) for who, f in figures.items()}
    assert not reasons["careful1"] and not reasons["careful2"] and not reasons["careful3"]
    assert any("gold" in r for r in reasons["always_a"])
    assert any("same side" in r for r in reasons["always_a"])
    assert any("median" in r for r in reasons["fast"])


# -- anytime-valid decisions ----------------------------------------------------------------


def test_the_confidence_sequence_is_the_set_where_the_mixture_stays_below_one_over_alpha():
    for s, n in [(0, 1), (3, 10), (10, 10), (55, 100), (500, 1000)]:
        lo, hi = confidence_sequence(s, n)
        grid = [i / 2000 for i in range(1, 2000)]
        inside = [p for p in grid if log_mixture(s, n, p) < math.log(20)]
        assert lo == pytest.approx(inside[0], abs=1e-3) and hi == pytest.approx(
            inside[-1], abs=1e-3
        )
        assert lo <= s / n <= hi


def test_decisions_and_the_votes_still_needed():
    assert decide(30, 30) == "a better" and decide(0, 30) == "b better"
    assert decide(15, 30) == "undecided" and decide(600, 1200) == "equivalent"
    need = votes_needed(40, 60)
    assert need is not None and decide(round(41 / 62 * (60 + need)), 60 + need) != "undecided"
    assert votes_needed(30, 30) is None


def test_looking_after_every_vote_keeps_false_winners_rare():
    """Equal systems, checked after every one of 300 votes, in 300 studies: a winner is
    declared in at most about 5% (bench/sequential.py runs 1000 longer studies)."""
    rng = random.Random(0)
    wrong = 0
    for _ in range(300):
        s = 0
        for n in range(1, 301):
            s += rng.random() < 0.5
            if decide(s, n) in ("a better", "b better"):
                wrong += 1
                break
    assert wrong / 300 <= 0.06


# -- the study file -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"colour": "blue"}, "unknown setting 'colour'"),
        ({"k": 0}, "k .* at least 1"),
        ({"access": "password"}, "access must be one of"),
        ({"reveal": "sometimes"}, "reveal must be one of"),
        ({"gold": {"rate": 1.5}}, "gold: rate"),
        ({"exclusion": {"min_gold_pass": 2}}, "min_gold_pass"),
        ({"exclusion": {"speed": 1}}, "unknown setting 'speed'"),
        ({"timeout_s": True}, "timeout_s"),
        ({"reveal": "after"}, "reveal must be one of each, end, never"),
        ({"limits": {"votes": 0}}, "^study.yaml: limits: votes must"),  # said once
    ],
)
def test_a_bad_study_file_gets_a_clear_message(settings, message):
    with pytest.raises(StudyError, match=message):
        StudyConfig.from_dict({"name": "s", **settings}, "study.yaml")


def test_a_new_study_is_one_folder_and_more_gold_than_items_is_refused(tmp_path):
    pairs = three_system_pairs(tmp_path / "p.jsonl", n=6)
    with pytest.raises(StudyError, match="more gold than items"):
        new_study(tmp_path / "s0", pairs, gold=7)
    study = new_study(tmp_path / "s1", pairs, k=2, gold=3)
    assert (tmp_path / "s1" / "study.yaml").exists() and len(study.gold_rows) == 3
    assert study.config.reveal == "never" and study.config.access == "invite"
    with pytest.raises(StudyError, match="holds a study already"):
        new_study(tmp_path / "s1", pairs)
    # A hand edit that breaks the file is named when the study is opened.
    text = (tmp_path / "s1" / "study.yaml").read_text()
    (tmp_path / "s1" / "study.yaml").write_text(text.replace("k: 2", "k: 0"))
    with pytest.raises(StudyError, match="k"):
        Study(tmp_path / "s1")
    # Few items: as many gold items as items; a bad setting is named before the items are read.
    three = three_system_pairs(tmp_path / "three.jsonl", n=3)
    assert len(new_study(tmp_path / "s2", three).gold_rows) == 3
    with pytest.raises(StudyError, match="k"):
        new_study(tmp_path / "s3", tmp_path / "missing.jsonl", k=0)


def test_votes_before_studies_were_named_count_for_the_local_study(tmp_path):
    from human_ratings.store import VoteStore
    from human_ratings.study import local_study

    pairs = three_system_pairs(tmp_path / "p.jsonl", n=3)
    votes = tmp_path / "votes.csv"
    VoteStore(votes).append(Vote("old", "item0", "alpha", "beta", "left"))  # no study named
    study = local_study(pairs, votes)
    assert study.unnamed_votes == 1 and [v.annotator for v in study.votes()] == ["old"]
    assert study.assigner.votes_per_item()["item0"] == 1


def test_receipts_are_keyed_by_the_study_and_survive_a_restart(tmp_path):
    from human_ratings.store import receipt

    a = new_study(tmp_path / "a", three_system_pairs(tmp_path / "p.jsonl"), gold=0)
    b = new_study(tmp_path / "b", tmp_path / "p.jsonl", name=a.name, gold=0)  # the same name
    assert receipt(a.key, "ann", "item0") != receipt(b.key, "ann", "item0")
    assert receipt(Study(tmp_path / "a").key, "ann", "item0") == receipt(a.key, "ann", "item0")
    assert (tmp_path / "a" / "study.key").stat().st_mode & 0o077 == 0  # the owner's only


def test_hub_copies_name_no_one(tmp_path):
    from human_ratings.mirror import Mirror
    from human_ratings.reactions import Reaction

    mirror = Mirror(tmp_path / "sync", b"k" * 32)
    mirror.add("votes", Vote("hf:alice", "item0", "a", "b", "left", study="s"))
    mirror.add("reactions", Reaction("up", "A story.", "", "sys", {}, "Alice", "browser-9"))
    text = "".join(p.read_text() for p in (tmp_path / "sync").iterdir())
    assert "alice" not in text.lower() and "browser-9" not in text
    (vote,) = Mirror.read(tmp_path / "sync")
    assert vote["annotator"].startswith("a-") and vote["item_id"] == "item0"


def test_a_study_exports_parquet_that_datasets_reads_whole(tmp_path):
    from datasets import load_dataset

    from human_ratings.export import export

    study = new_study(tmp_path / "s", write_pairs(tmp_path / "p.jsonl"), gold=0)
    study.config.gold.rate = 0.0
    for who in ("ann", "bob"):
        a = study.assigner.next(who)
        study.store.append(
            Vote(
                who, a.item_id, a.left, a.right, "left", comment="=x", study=study.name, seconds=3.5
            )
        )
    counts = export(study, tmp_path / "out")
    assert counts == {"votes": 2, "reactions": 0}
    data = load_dataset("parquet", data_files=str(tmp_path / "out" / "votes.parquet"))["train"]
    assert data.num_rows == 2 and set(data["study"]) == {study.name}
    assert not {"ann", "bob"} & set(data["annotator"])  # pseudonymised
    assert data["comment"] == ["=x", "=x"] and data["seconds"] == [3.5, 3.5]
    again = export(study, tmp_path / "again")
    assert again == counts
    data2 = load_dataset("parquet", data_files=str(tmp_path / "again" / "votes.parquet"))["train"]
    assert data2["annotator"] == data["annotator"]  # the same pseudonyms every time
    card = (tmp_path / "out" / "README.md").read_text()
    assert card.startswith("---\nconfigs:") and "pseudonymised" in card


# -- through the app ------------------------------------------------------------------------


@pytest.fixture
def invite_study(tiny_backend, tmp_path):
    """An invite-only study of three systems served by the app, with two annotators' codes and
    an owner's."""
    import socket

    from gradio_client import Client

    from story_ui.layout import build_app
    from story_ui.services import AppConfig, Services

    study = new_study(tmp_path / "study", three_system_pairs(tmp_path / "p.jsonl"), k=2, gold=3)
    codes = dict(study.invites.create(["ann", "bob"]))
    codes["owner"] = study.invites.create(["owner"], "owner")[0][1]
    services = Services(AppConfig(study=tmp_path / "study", pairs=None), backend=tiny_backend)
    demo = build_app(services)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    url = f"http://127.0.0.1:{port}/"
    yield {
        "url": url,
        "codes": codes,
        "services": services,
        "client": lambda: Client(url, verbose=False),
    }
    demo.close()


def test_an_invite_study_through_the_app(invite_study):
    services, codes = invite_study["services"], invite_study["codes"]
    ann = invite_study["client"]()
    wrong = ann.predict("not-a-code", "", api_name="/start_rating")
    assert "not an invitation" in wrong[3]  # (API replies hold no state: [3] is Start's note)
    shown = ann.predict(codes["ann"], "", api_name="/start_rating")
    assert shown[1] and shown[2] and "Read both stories" in shown[3]
    # Results and the Study tab are the owner's while the study runs.
    assert "owner" in ann.predict(api_name="/results")[0]
    assert "owner" in ann.predict(api_name="/study_status")[0]
    saved = ann.predict("A is better", "", *[None] * 8, api_name="/vote")
    assert "Saved" in saved[-1] and "written by" not in saved[-1]  # never revealed
    (vote,) = services.study.votes(with_gold=True)
    assert vote.annotator == "ann" and vote.study == services.study.name and vote.seconds >= 0
    # Another client cannot vote as ann: its session holds no sign-in.
    other = invite_study["client"]()
    refused = other.predict("A is better", "", *[None] * 8, api_name="/vote")
    assert "Sign in first" in refused[-1]
    # A revoked code signs in no more, and its session's next vote is refused.
    ann.predict(api_name="/next_item")
    services.study.invites.revoke("ann")
    after = ann.predict("B is better", "", *[None] * 8, api_name="/vote")
    assert "revoked" in after[-1]
    assert "revoked" in other.predict(codes["ann"], "", api_name="/start_rating")[3]
    assert len(services.study.votes(with_gold=True)) == 1  # nothing recorded or changed
    # The owner sees the study.
    boss = invite_study["client"]()
    boss.predict(codes["owner"], "", api_name="/start_rating")
    view = boss.predict(api_name="/study_status")[0]
    assert "Decisions" in view and "Annotators" in view and "| ann |" in view


def test_a_vote_for_an_item_not_assigned_is_refused(invite_study):
    from story_ui import rate

    services, codes = invite_study["services"], invite_study["codes"]
    out = rate.start(services, codes["bob"], "", {}, None, "v1")
    state = out[3]
    others = [i for i in services.study.by_id if i != state["item_id"]]
    forged = {**state, "item_id": others[0]}
    refused = rate.vote(services, forged, "A is better", [None] * 8, "")
    assert "not yours to rate" in refused[-1]
    assert services.study.votes(with_gold=True) == []


def test_failed_sign_ins_are_rate_limited(invite_study):
    from story_ui import rate

    services = invite_study["services"]
    said = [rate.start(services, f"guess-{n}", "", {}, None, "attacker")[5] for n in range(8)]
    assert all("not an invitation" in s for s in said[:5])
    assert all("Too many failed sign-ins" in s for s in said[5:])
    # the right code from that visitor waits too; another visitor is not held up
    assert (
        "Too many"
        in rate.start(services, invite_study["codes"]["bob"], "", {}, None, "attacker")[5]
    )
    assert "Read both" in rate.start(services, invite_study["codes"]["bob"], "", {}, None, "bob")[5]


def test_an_oauth_study_refuses_a_request_without_a_profile(tmp_path, tiny_backend):
    from story_ui import rate
    from story_ui.services import AppConfig, Services

    study = new_study(
        tmp_path / "s", three_system_pairs(tmp_path / "p.jsonl"), access="oauth", gold=0
    )
    yaml_path = tmp_path / "s" / "study.yaml"
    yaml_path.write_text(yaml_path.read_text().replace("allow: []", "allow: [alice]"))
    services = Services(AppConfig(study=tmp_path / "s", pairs=None), backend=tiny_backend)
    assert services.study.config.allow == ["alice"]
    assert "Sign in with Hugging Face" in rate.start(services, "", "", {}, None, "v")[5]
    assert "not among" in rate.start(services, "", "", {}, {"preferred_username": "eve"}, "v")[5]
    ok = rate.start(services, "", "", {}, {"preferred_username": "alice"}, "v")
    state = ok[3]
    assert state["annotator"] == "hf:alice"
    # Signing in is not access control by itself: the vote checks the profile again.
    assert "Sign in" in rate.vote(services, state, "Tie", [None] * 8, "", None)[-1]
    elsewhere = rate.vote(services, state, "Tie", [None] * 8, "", {"preferred_username": "eve"})
    assert "someone else" in elsewhere[-1] or "not among" in elsewhere[-1]
    saved = rate.vote(services, state, "Tie", [None] * 8, "", {"preferred_username": "alice"})
    assert "Saved" in saved[-1] and study.name == services.study.votes()[0].study


def test_an_open_study_marks_votes_anonymous_and_reveals_as_its_setting_says(
    tmp_path, tiny_backend
):
    from story_ui import rate
    from story_ui.services import AppConfig, Services

    new_study(
        tmp_path / "s",
        three_system_pairs(tmp_path / "p.jsonl"),
        access="open",
        reveal="each",
        gold=0,
    )
    services = Services(AppConfig(study=tmp_path / "s", pairs=None), backend=tiny_backend)
    state = rate.start(services, "", "", {}, None, "browser-1")[3]
    saved = rate.vote(services, state, "A is better", [None] * 8, "")
    assert f"**A** was written by `{state['left']}`" in saved[-1]
    (vote,) = services.study.votes()
    assert vote.anonymous and vote.annotator == "anon:browser-1"
    # The browser ids are sealed with the study's key: the same after a restart.
    again = Services(AppConfig(study=tmp_path / "s", pairs=None), backend=tiny_backend)
    assert again.browser_secret == services.browser_secret
    # Asking for item after item without voting is rate-limited (each one shown is spent).
    said = [rate.next_one(services, state)[-1] for _ in range(30)]
    assert any("Too many items asked for" in s for s in said)


def test_reveal_at_the_end_names_the_systems_only_when_no_item_can_come_back(
    tmp_path, tiny_backend
):
    """``reveal: end``: nothing is named while an item could still reach the annotator (one
    another annotator holds may come back after its timeout); once none can, every vote of
    theirs is listed with its systems, gold items marked."""
    from story_ui import rate
    from story_ui.services import AppConfig, Services

    new_study(
        tmp_path / "s",
        three_system_pairs(tmp_path / "p.jsonl", n=4),
        k=1,
        access="open",
        reveal="end",
        gold=1,
    )
    services = Services(AppConfig(study=tmp_path / "s", pairs=None), backend=tiny_backend)
    other = rate.start(services, "", "", {}, None, "browser-2")[3]
    twins = {*services.study.gold, *services.study.assigner.gold_from.values()}
    while other["item_id"] in twins:  # until it holds an item the first annotator may get
        rate.vote(services, other, "Tie", [None] * 8, "")
        other = rate.next_one(services, other)[3]
    state = rate.start(services, "", "", {}, None, "browser-1")[3]
    said = []
    while state.get("item_id"):
        said.append(rate.vote(services, state, "A is better", [None] * 8, "")[-1])
        out = rate.next_one(services, state)
        state, said = out[3], [*said, out[-1]]
    assert not any("written by" in m or "Your votes" in m for m in said), said
    assert "Nothing needs your vote" in said[-1]  # the other's item may still come back
    assert not services.study.assigner.finished("anon:browser-1")
    rate.vote(services, other, "Tie", [None] * 8, "")  # now every item has its vote
    final = rate.next_one(services, state)[-1]
    mine = [v for v in services.study.votes(with_gold=True) if v.annotator == "anon:browser-1"]
    assert "Your votes, with their systems" in final and len(mine) >= 2
    for v in mine:
        line = final.split(f"`{v.item_id}` (mystery")[1].split("\n")[0]  # what was asked
        assert f"): A was `{v.system_left}`, B `{v.system_right}`; " in line
        assert f"you chose `{v.system_left}`" in line
        assert ("a gold item" in line) == (v.item_id in services.study.gold), line


def test_gold_comes_only_with_items_so_a_finished_annotator_gets_nothing_more():
    """Gold is mixed among items, never given alone: once an annotator has no item left,
    no gold item reaches them either (else a reveal at the end would come before gold)."""
    items = {f"i{n}": ("a", "b") for n in range(4)}
    gold = {f"g{n}": ("a", "b") for n in range(3)}
    for seed in range(30):
        assigner = Assigner(items, k=1, gold=gold, gold_rate=0.9, seed=seed)
        given = []
        while (a := assigner.next("ann")) is not None:
            assert not assigner.finished("ann")  # they hold an item
            given.append(a.item_id)
            assigner.voted("ann", a.item_id)
        assert assigner.finished("ann") and set(items) <= set(given)
        assert all(assigner.next("ann") is None for _ in range(20))  # gold left, never alone


def test_reference_items_set_a_system_beside_a_strong_models_stories(tmp_path, tiny_model_dir):
    """The fixed reference's stories come from the shared folder (here a stand-in with the
    same columns), keyed by the judge set's written requests; the system's are written now."""
    import csv

    from finetune.judge_set import GOLD, read_jsonl
    from storygen.config import SystemSpec
    from study.reference import reference_items

    ids = [
        w["id"].split(":")[1]
        for w in read_jsonl(GOLD / "requests_written.jsonl")
        if w["id"].startswith("gpt4:") and w.get("characters")
    ][:3]
    for name in ("train_sample_500.csv", "model_stories_gpt4.csv", "model_stories_gpt35.csv"):
        with (tmp_path / name).open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["row_id", "prompt", "story", "writer"])
            for i in ids:
                story = f"A strong story number {i}. " * 20
                w.writerow([i, "[ WP ] A prompt .", story, "gpt-4"])
    system = SystemSpec.from_dict(
        {
            "name": "tiny",
            "base": str(tiny_model_dir),
            "quantization": "fp32",
            "sampling": {"max_new_tokens": 8},
        }
    )
    items = reference_items(system, tmp_path, "gpt4", n=2)
    assert len(items) == 2
    for item in items:
        assert set(item.stories) == {"gpt-4", "tiny"}
        assert item.stories["gpt-4"]["text"].startswith("A strong story number")
        assert item.stories["gpt-4"]["provenance"]["writer"] == "gpt-4"


def test_a_terminal_votes_through_the_rate_tab_on_the_item_it_read(invite_study):
    from human_ratings.terminal import TerminalError, rate

    services, codes, url = invite_study["services"], invite_study["codes"], invite_study["url"]
    page = rate(url, codes["ann"])
    screen = page.rsplit("screen: ", 1)[1].strip()
    assert "## Story A" in page and "## Story B" in page
    assert rate(url, codes["ann"]) == page  # signing in again shows the item held
    with pytest.raises(TerminalError, match="not the one you read"):
        rate(url, codes["ann"], vote="A", screen="00000000")
    assert services.study.votes(with_gold=True) == []
    after = rate(
        url, codes["ann"], vote="B", screen=screen, comment="reads on", ratings=[4, 3, None, 5] * 2
    )
    assert "**Saved**" in after and after.rsplit("screen: ", 1)[1].strip() != screen
    (vote,) = services.study.votes(with_gold=True)
    assert vote.annotator == "ann" and vote.choice == "right" and vote.comment == "reads on"
    assert (vote.left_coherence, vote.left_relevance, vote.right_personalization) == (4, None, 5)
    # The same screen again (a repeated command): the item on screen is another now.
    with pytest.raises(TerminalError, match="not the one you read"):
        rate(url, codes["ann"], vote="B", screen=screen)
    assert len(services.study.votes(with_gold=True)) == 1
    with pytest.raises(TerminalError, match="from 1 to 5"):
        rate(url, codes["ann"], vote="A", screen=screen, ratings=[6] * 8)
    with pytest.raises(TerminalError, match="did not answer"):
        rate("http://127.0.0.1:9/", codes["ann"])
    # The screen named was the one the study gave: its sides are the ones recorded.
    item = services.study.by_id[vote.item_id]
    assert item.stories[vote.system_right]["text"] in page.split("## Story B", 1)[1]
    with pytest.raises(TerminalError, match="one of"):
        rate(url, codes["ann"], vote="C", screen=screen)
    refused = rate(url, "not-a-code")
    assert "not an invitation" in refused
