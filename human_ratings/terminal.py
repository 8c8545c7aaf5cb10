"""The Rate tab from a terminal: sign in with an invite code, read the item on screen, vote.

    python -m human_ratings rate http://127.0.0.1:7860 --code CODE            # the item
    python -m human_ratings rate URL --code CODE --vote A --screen 1f2e3d4c   # vote, then next

It talks to a running app (``app.py --study FOLDER``) through its own API, the very calls the
Rate tab's buttons make, so a vote from a terminal goes through everything a browser's does:
the invite check, the item the study assigned and its sides, gold items, rate limits, the
receipt. Each call signs in again (the app gives back the item the annotator holds), so a vote
names the screen it answers (``--screen``: a hash of the two stories shown): if the item on
screen is another one by then (given back after a long wait), the vote is refused, never cast
on a story that was not read.
"""

from __future__ import annotations

import hashlib

CHOICES = {"A": "A is better", "B": "B is better", "tie": "Tie", "bad": "Both are bad"}


class TerminalError(RuntimeError):
    """A vote the terminal client did not send, with the reason."""


def screen_id(request_md: str, story_a: str, story_b: str) -> str:
    """A short hash of what is on screen: the request and the two stories."""
    return hashlib.sha256(f"{request_md}\x1f{story_a}\x1f{story_b}".encode()).hexdigest()[:8]


def _page(reply, notes: str = "") -> str:
    request_md, story_a, story_b, start_note, vote_note = reply
    notes = "\n\n".join(n for n in (notes, start_note, vote_note) if n)
    if not story_a:
        return notes or "No item on screen."
    return (
        f"{request_md}\n\n## Story A\n\n{story_a}\n\n## Story B\n\n{story_b}\n\n---\n{notes}\n\n"
        f"screen: {screen_id(request_md, story_a, story_b)}"
    )


def rate(
    url: str,
    code: str,
    vote: str | None = None,
    screen: str | None = None,
    comment: str = "",
    ratings: list[int | None] | None = None,
    client=None,
) -> str:
    """Sign in, and either show the item on screen or vote on it (then show the next one).
    ``ratings``: the eight optional 1-5 marks (A's coherence, engagement, relevance,
    personalization, then B's). Returns the page as Markdown."""
    if vote is not None and vote not in CHOICES:
        raise TerminalError(f"a vote is one of {', '.join(CHOICES)}, got {vote!r}")
    if vote is not None and not screen:
        raise TerminalError("name the screen the vote answers (--screen, printed with the item)")
    marks = list(ratings or [None] * 8)
    if len(marks) != 8 or any(m is not None and m not in range(1, 6) for m in marks):
        raise TerminalError("ratings: eight marks from 1 to 5 (A's four criteria, then B's)")
    marks = [None if m is None else str(m) for m in marks]  # the page's radios hold text
    try:
        return _rate(url, code, vote, screen, comment, marks, client)
    except TerminalError:
        raise
    except Exception as exc:  # noqa: BLE001 - the app unreachable, or an error it sent back
        raise TerminalError(
            f"the app at {url} did not answer: {type(exc).__name__}: {exc}"
        ) from exc


def _rate(url, code, vote, screen, comment, marks, client) -> str:
    if client is None:
        from gradio_client import Client

        client = Client(url, verbose=False)
    shown = client.predict(code, "", api_name="/start_rating")
    if vote is None:
        return _page(shown)
    if not shown[1] or screen_id(*shown[:3]) != screen:
        raise TerminalError(
            "the item on screen is not the one you read (it was given back, or voted on): "
            "nothing was sent. Here is the item on screen now:\n\n" + _page(shown)
        )
    saved = client.predict(CHOICES[vote], comment, *marks, api_name="/vote")
    said = saved[-1]
    if not said.startswith("**Saved**"):
        return _page(saved, "Vote not saved.")
    return _page(client.predict(api_name="/next_item"), said)
