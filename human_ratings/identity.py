"""Who votes: invite codes, signed-in Hugging Face accounts, browser-scoped ids, and the rate
limits that keep any of them from flooding a study.

**Invite codes** (off a Space): ``python -m human_ratings invite STUDY_DIR --annotators 3``
prints each code once; the study keeps only a salted SHA-256 of it (``invites.jsonl``,
append-only: a revocation is a later record). The code *is* the annotator: whoever signs in
with it votes as its annotator id, and a revoked code signs in no more. A code is salted with
the study's name, so one study's code opens no other.

**Hugging Face sign-in** (on a Space): the annotator is ``hf:<username>`` of the
``gr.OAuthProfile`` Gradio hands the handler; an allow-list of accounts (``alice``) or
organisations (``org:acme``) closes a study. Signing in is not access control by itself: every
vote handler checks the profile again.

**Open** (arena-style): a visitor is a random id kept in their browser; votes are marked
anonymous and rate-limited per id and overall.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from human_ratings.applog import AppendLog

ACCESS = ("invite", "oauth", "open", "local")
"""How a study knows its annotators: invite codes, Hugging Face sign-in, anonymous browser
ids, or (``local``) one annotator on their own machine typing a name."""


class IdentityError(ValueError):
    """A sign-in that is refused, with a message for the person."""


def _digest(study: str, salt: str, code: str) -> str:
    return hashlib.sha256(f"{study}\x1f{salt}\x1f{code.strip().lower()}".encode()).hexdigest()


def new_code() -> str:
    """A code people can type: four groups of four letters and digits (about 80 bits)."""
    alphabet = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i
    return "-".join("".join(secrets.choice(alphabet) for _ in range(4)) for _ in range(4))


@dataclass
class Invite:
    annotator: str
    role: str = "annotator"
    """``annotator``, or ``owner`` (sees the Study and Results tabs)."""
    revoked: bool = False
    sha256: str = ""
    """The code's record: a session signed in with a code is valid while it is the
    annotator's current one (a new code, or a revocation, ends it)."""


class Invites(AppendLog):
    """The invite codes of one study (``invites.jsonl``)."""

    def __init__(self, path: str | Path, study: str):
        super().__init__(path)
        self.study = study

    def _records(self) -> list[dict]:
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_bytes().split(b"\n"):
            try:
                out.append(json.loads(line))
            except ValueError:
                continue  # a torn last line
        return out

    def _state(self) -> dict[str, dict]:
        """annotator -> its latest record (a revocation after an invitation revokes it)."""
        state: dict[str, dict] = {}
        for r in self._records():
            if r.get("revoked"):
                if r["annotator"] in state:
                    state[r["annotator"]] = {**state[r["annotator"]], "revoked": True}
            else:
                state[r["annotator"]] = r
        return state

    def create(self, names: list[str], role: str = "annotator") -> list[tuple[str, str]]:
        """New codes for these annotator ids: [(annotator, code)], shown once and stored
        hashed. An id that has a code already gets a new one (the old one is revoked)."""
        if role not in ("annotator", "owner"):
            raise IdentityError(f"a role is annotator or owner, not {role!r}")
        out = []
        for name in names:
            name = str(name).strip()
            if not name or len(name) > 64 or not name.isprintable():
                raise IdentityError(f"an annotator id is 1-64 printable characters: {name!r}")
            code, salt = new_code(), secrets.token_hex(8)
            record = {
                "annotator": name,
                "role": role,
                "salt": salt,
                "sha256": _digest(self.study, salt, code),
                "at": _now(),
            }
            self._append(record)
            out.append((name, code))
        return out

    def revoke(self, annotator: str) -> None:
        if annotator not in self._state():
            raise IdentityError(f"{annotator!r} has no invitation to this study")
        self._append({"revoked": True, "annotator": annotator, "at": _now()})

    def sign_in(self, code) -> Invite:
        """The annotator whose code this is; :class:`IdentityError` for a wrong or revoked
        one (or a code of another study: it was salted with that study's name)."""
        if not isinstance(code, str) or not code.strip() or len(code) > 100:
            raise IdentityError("enter the invite code you were given")
        revoked = False
        for record in self._records():
            if "sha256" not in record:
                continue
            if hmac.compare_digest(_digest(self.study, record["salt"], code), record["sha256"]):
                current = self._state().get(record["annotator"], {})
                if current.get("revoked") or current.get("sha256") != record["sha256"]:
                    revoked = True
                    continue
                return Invite(
                    record["annotator"], record.get("role", "annotator"), sha256=record["sha256"]
                )
        if revoked:
            raise IdentityError("this invite code has been revoked; ask the study's owner")
        raise IdentityError("this invite code is not an invitation to this study")

    def annotators(self) -> dict[str, Invite]:
        return {
            name: Invite(name, r.get("role", "annotator"), bool(r.get("revoked")), r["sha256"])
            for name, r in self._state().items()
        }

    def _append(self, record: dict) -> None:
        with self._locked():
            if self.path.exists():
                self._offset = self.path.read_bytes().rfind(b"\n") + 1
            self._cut_torn_tail()
            self._write((json.dumps(record) + "\n").encode())


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def folder_key(path: str | Path) -> bytes:
    """A random 32-byte secret kept in the file ``path`` (made on first use, readable by its
    owner only; two processes making it at once get the same one). A study's key: its vote
    receipts, the pseudonyms of its exports and Hub copies, and the app's browser ids are keyed
    by it, so they survive a restart and no one without the folder can forge them."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        try:
            os.write(fd, secrets.token_hex(32).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
    for _ in range(50):  # another process may be writing it this instant
        text = path.read_text().strip()
        if len(text) == 64:
            return bytes.fromhex(text)
        time.sleep(0.01)
    raise OSError(f"{path} is not a key (64 hex digits): remove it to make a new one")


def pseudonym(key: bytes, name: str) -> str:
    """A stable stand-in for an annotator id (or visitor) under a study's key."""
    return "a-" + hmac.new(key, name.encode(), hashlib.sha256).hexdigest()[:12]


def oauth_annotator(profile, allow: list[str] | None = None) -> str:
    """``hf:<username>`` of a signed-in Hugging Face profile, checked against ``allow``
    (accounts, or ``org:NAME``); :class:`IdentityError` without a profile or off the list."""
    username = getattr(profile, "username", None) or (
        profile.get("preferred_username") if isinstance(profile, dict) else None
    )
    if not username:
        raise IdentityError("Sign in with Hugging Face first (the button above).")
    if allow:
        orgs = profile_orgs(profile)
        if username not in allow and not any(a.startswith("org:") and a[4:] in orgs for a in allow):
            raise IdentityError(f"{username} is not among this study's annotators")
    return f"hf:{username}"


def profile_orgs(profile) -> set[str]:
    """The organisations a signed-in Hugging Face profile belongs to."""
    orgs = profile.get("orgs") or [] if isinstance(profile, dict) else []
    return {o.get("preferred_username") or o.get("name") for o in orgs if isinstance(o, dict)}


class RateLimit:
    """At most ``limit`` events per ``window`` seconds per key, and ``overall`` for all keys
    together; :meth:`hit` says how many seconds to wait (0 when the event may go ahead)."""

    def __init__(self, limit: int, window: float = 60.0, overall: int | None = None):
        self.limit, self.window, self.overall = limit, window, overall
        self._events: dict[str, deque] = {}
        self._all: deque = deque()
        self._lock = threading.Lock()

    def wait(self, key: str, now: float | None = None) -> float:
        """Seconds until ``key``'s own limit lets it act again (0: now), recording nothing.
        The overall limit is not consulted: others' failures must not lock this key out."""
        now = time.monotonic() if now is None else now
        with self._lock:
            live = [t for t in self._events.get(key, ()) if t > now - self.window]
            return live[0] + self.window - now if len(live) >= self.limit else 0.0

    def hit(self, key: str, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        with self._lock:
            mine = self._events.setdefault(key, deque())
            for q in (mine, self._all):
                while q and q[0] <= now - self.window:
                    q.popleft()
            if len(mine) >= self.limit:
                return mine[0] + self.window - now
            if self.overall is not None and len(self._all) >= self.overall:
                return self._all[0] + self.window - now
            mine.append(now)
            self._all.append(now)
            if len(self._events) > 10_000:  # forget keys idle for a whole window
                for k in [k for k, q in self._events.items() if q[-1] <= now - self.window]:
                    del self._events[k]
            return 0.0
