"""A real browser (Playwright driving Debian's chromium) uses the app like a person would."""

import shutil
import socket
import time

import pytest

from human_ratings.store import VoteStore
from story_ui.layout import build_app
from story_ui.services import AppConfig, Services
from storygen.backends.hf import TransformersBackend

from .test_app import write_pairs

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="Debian's chromium is not installed (scripts/test.sh installs it with apt)",
)
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def served(tiny_backend, tmp_path):
    config = AppConfig(votes_csv=tmp_path / "votes.csv", pairs=write_pairs(tmp_path / "p.jsonl"))
    demo = build_app(Services(config, backend=tiny_backend))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}/", config.votes_csv
    demo.close()


def test_fill_form_stream_story_vote_and_find_the_vote(served, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    url, votes_csv = served
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page()
        page.goto(url)
        expect(page.locator("#stop-btn")).to_be_hidden()  # offered only while writing
        page.locator("#characters textarea").fill("Mara: stubborn, kind\nJonah: curious")
        page.locator("#place input, #place textarea").first.fill("a lighthouse")
        page.locator("#prompt textarea").fill("A storm <b>cuts</b> the power.")
        page.locator("#write-btn").click()
        story = page.locator("#story textarea")
        expect(page.locator("#write-status")).to_contain_text("Done", timeout=60_000)
        assert story.input_value().strip()
        expect(page.locator("#stop-btn")).to_be_hidden()
        page.screenshot(path=str(tmp_path / "write.png"), full_page=True)

        page.get_by_role("tab", name="Rate").click()
        page.locator("#annotator input, #annotator textarea").first.fill("browser-annotator")
        page.locator("#start-rating").click()
        expect(page.locator("#start-status")).to_contain_text("Read both stories", timeout=30_000)
        shown_a = page.locator("#story-a textarea").input_value()
        page.locator("#choice label", has_text="A is better").click()
        page.locator("#rate-a-coherence label", has_text="5").click()
        page.locator("#comment textarea").fill("clear and vivid")
        page.locator("#submit-vote").click()
        expect(page.locator("#rate-status")).to_contain_text("Saved", timeout=30_000)
        # The item voted on stays on screen; which system wrote it is not said (the default).
        assert page.locator("#story-a textarea").input_value() == shown_a
        assert "written by" not in page.locator("#rate-status").inner_text()
        page.locator("#next-item").click()
        expect(page.locator("#rate-status")).to_contain_text("Read both stories", timeout=30_000)
        expect(page.locator("#comment textarea")).to_have_value("")
        browser.close()

    votes = VoteStore(votes_csv).votes()
    assert len(votes) == 1
    vote = votes[0]
    assert (vote.annotator, vote.choice, vote.left_coherence, vote.comment) == (
        "browser-annotator",
        "left",
        5,
        "clear and vivid",
    )
    assert shown_a.startswith(vote.system_left)  # A was the left system, as recorded


def test_an_oversized_seed_after_a_story_gets_a_message_and_loses_nothing(served):
    """The page used to reload by itself (the echoed seed could not be serialised), taking the
    form, the story and the drafts with it."""
    from playwright.sync_api import expect, sync_playwright

    url, _ = served
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page()
        page.goto(url)
        page.locator("#characters textarea").fill("Mara: stubborn, kind")
        page.locator("#write-btn").click()
        expect(page.locator("#write-status")).to_contain_text("Done", timeout=60_000)
        story = page.locator("#story textarea").input_value()
        assert story.strip()
        page.locator("#seed input").fill(str(2**64))
        page.locator("#write-btn").click()
        expect(page.locator("#write-status")).to_contain_text("seed must be", timeout=30_000)
        page.wait_for_timeout(1500)  # a reload, if one came, would have come by now
        assert page.locator("#characters textarea").input_value() == "Mara: stubborn, kind"
        assert page.locator("#story textarea").input_value() == story
        assert page.get_by_text("story — Mara").count() >= 1  # the draft row is still there
        browser.close()


class PacedBackend(TransformersBackend):
    """The tiny model at about 20 tokens/s that never ends a story early: long enough to press
    Stop in the middle of it."""

    def tokens(self, prompt, sampling, budget, stats, stop_on_eos=True):
        inner = super().tokens(prompt, sampling, budget, stats, stop_on_eos=False)
        while True:
            try:
                token = next(inner)
            except StopIteration as end:
                return end.value
            time.sleep(0.05)
            yield token


class LateStopServices(Services):
    """Stop's own answer arrives a second after the story has already ended: the order a busy
    server can give, which once left the status at "Stopping…" over the story's "Stopped"."""

    def stop(self, session):
        stopped = super().stop(session)
        time.sleep(1.0)
        return stopped


def test_stop_is_offered_while_writing_and_keeps_the_story_as_an_unfinished_draft(
    tiny_lm, tmp_path
):
    from playwright.sync_api import expect, sync_playwright

    config = AppConfig(votes_csv=tmp_path / "votes.csv", pairs=None)
    demo = build_app(LateStopServices(config, backend=PacedBackend(tiny_lm)))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}/")
            stop = page.locator("#stop-btn")
            expect(stop).to_be_hidden()
            page.locator("#characters textarea").fill("Mara: stubborn, kind")
            page.locator("#write-btn").click()
            expect(stop).to_be_visible(timeout=10_000)  # offered while the story is written
            expect(page.locator("#story textarea")).not_to_have_value("", timeout=10_000)
            stop.click()
            expect(page.locator("#write-status")).to_contain_text("Stopped", timeout=10_000)
            expect(stop).to_be_hidden(timeout=10_000)
            page.wait_for_timeout(2000)  # Stop's late answer has come by now
            expect(page.locator("#write-status")).to_contain_text("Stopped")
            expect(stop).to_be_hidden()
            page.locator("#write-btn").click()  # the next story offers a fresh Stop
            expect(stop).to_be_visible(timeout=10_000)
            expect(stop).to_have_text("Stop")
            expect(stop).to_be_enabled()
            stop.click()
            expect(page.locator("#write-status")).to_contain_text("Stopped", timeout=10_000)
            assert page.get_by_text("(unfinished)").count() >= 1  # kept in the drafts
            browser.close()
    finally:
        demo.close()


def test_a_reader_likes_a_story_then_edits_it_and_both_are_kept(served, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    from human_ratings.reactions import ReactionLog

    url, votes = served
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page()
        page.goto(url)
        page.locator("#characters textarea").fill("Mara: stubborn, kind")
        page.locator("#write-btn").click()
        expect(page.locator("#write-status")).to_contain_text("Done", timeout=60_000)
        story = page.locator("#story textarea").input_value()
        page.get_by_text("Your reaction (optional, anonymous)").click()
        page.locator("#thumbs-up").click()
        expect(page.locator("#reaction-status")).to_contain_text("a story you liked")
        page.locator("#start-edit").click()
        expect(page.locator("#edit-box textarea")).to_have_value(story)
        page.locator("#edit-box textarea").fill(story + "\nThe lamp stayed lit.")
        page.locator("#save-edit").click()
        expect(page.locator("#reaction-status")).to_contain_text("your edit is kept")
        browser.close()
    up, edit = ReactionLog(votes.with_name("reactions.jsonl")).read_all()
    assert (up.kind, up.story, edit.kind, edit.story) == ("up", story, "edit", story)
    assert edit.edited == story + "\nThe lamp stayed lit."


def _serve_study(tiny_backend, folder):
    from story_ui.services import AppConfig, Services

    demo = build_app(Services(AppConfig(study=folder, pairs=None), backend=tiny_backend))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    return demo, f"http://127.0.0.1:{port}/"


def test_an_annotator_signs_in_with_an_invite_code_reads_the_guidelines_and_votes(
    tiny_backend, tmp_path
):
    """Sign-in by invite code, the guidelines on screen before the first item, a vote with its
    receipt, and the Study tab: closed to the annotator, open to the owner's code."""
    from playwright.sync_api import expect, sync_playwright

    from human_ratings.study import new_study

    from .test_rating_study import three_system_pairs

    study = new_study(tmp_path / "s", three_system_pairs(tmp_path / "p.jsonl"), k=2, gold=3)
    (_, code), (_, owner) = (
        study.invites.create(["ann"])[0],
        study.invites.create(["boss"], "owner")[0],
    )
    demo, url = _serve_study(tiny_backend, tmp_path / "s")
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            page = browser.new_page()
            page.goto(url)
            page.get_by_role("tab", name="Rate").click()
            expect(page.locator("#guidelines")).to_contain_text("How to judge")
            page.locator("#annotator input").fill("wrong-code")
            page.locator("#start-rating").click()
            expect(page.locator("#start-status")).to_contain_text("not an invitation")
            page.locator("#annotator input").fill(code)
            page.locator("#start-rating").click()
            expect(page.locator("#start-status")).to_contain_text("Read both stories")
            assert page.locator("#story-a textarea").input_value().strip()
            page.locator("#choice label", has_text="B is better").click()
            page.locator("#submit-vote").click()
            expect(page.locator("#rate-status")).to_contain_text("receipt")
            page.get_by_role("tab", name="Study").click()
            page.locator("#refresh-study").click()
            expect(page.locator("#study-status")).to_contain_text("study owner's")
            page.get_by_role("tab", name="Rate").click()
            page.locator("#annotator input").fill(owner)
            page.locator("#start-rating").click()
            expect(page.locator("#start-status")).to_contain_text("Read both stories")
            page.get_by_role("tab", name="Study").click()
            page.locator("#refresh-study").click()
            expect(page.locator("#study-status")).to_contain_text("Decisions")
            annotators = page.locator("#study-status table").last  # the annotators' table
            expect(annotators).to_contain_text("ann")
            page.screenshot(path=str(tmp_path / "study.png"), full_page=True)
            browser.close()
    finally:
        demo.close()
    (vote,) = study.store.votes()
    assert vote.annotator == "ann" and vote.choice == "right" and vote.study == study.name


def test_hugging_face_sign_in_through_gradios_local_mock(tiny_backend, tmp_path, monkeypatch):
    """Off a Space, Gradio mocks "Sign in with Hugging Face" with the machine's own account,
    which it asks the Hub for; here the account is given offline, and Gradio's mocked login
    routes do the rest."""
    import gradio.oauth
    from playwright.sync_api import expect, sync_playwright

    from human_ratings.study import new_study

    from .test_rating_study import three_system_pairs

    account = {
        "access_token": "mock-oauth-token-for-local-dev",
        "token_type": "bearer",
        "expires_in": 3600,
        "id_token": "AAAA",
        "scope": "openid profile",
        "expires_at": int(time.time()) + 3600,
        "userinfo": {
            "sub": "1",
            "name": "Alice",
            "preferred_username": "alice",
            "profile": "https://huggingface.co/alice",
            "picture": "",
            "website": "",
        },
    }
    monkeypatch.setattr(gradio.oauth, "_get_mocked_oauth_info", lambda: account)
    new_study(tmp_path / "s", three_system_pairs(tmp_path / "p.jsonl"), access="oauth", gold=0)
    demo, url = _serve_study(tiny_backend, tmp_path / "s")
    # Gradio's session cookie is Secure: the browser keeps it for localhost, a secure context.
    url = url.replace("127.0.0.1", "localhost")
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            page = browser.new_page()
            page.goto(url)
            page.get_by_role("tab", name="Rate").click()
            page.locator("#start-rating").click()
            expect(page.locator("#start-status")).to_contain_text("Sign in with Hugging Face")
            page.get_by_role("button", name="Sign in with Hugging Face").click()
            # The mocked login redirects through /login/callback back to the page, reloaded.
            page.wait_for_timeout(3000)
            page.get_by_role("tab", name="Rate").click()
            expect(page.get_by_role("button", name="Logout (alice)")).to_be_visible(timeout=10_000)
            page.locator("#start-rating").click()
            expect(page.locator("#start-status")).to_contain_text("Read both stories")
            page.locator("#choice label", has_text="Tie").click()
            page.locator("#submit-vote").click()
            expect(page.locator("#rate-status")).to_contain_text("receipt")
            browser.close()
    finally:
        demo.close()
    from human_ratings.study import Study

    (vote,) = Study(tmp_path / "s").store.votes()
    assert vote.annotator == "hf:alice" and vote.choice == "tie"
