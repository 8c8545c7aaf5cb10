"""What a Hub sync pushes: an append-only copy of every acknowledged vote and reaction.

``huggingface_hub.CommitScheduler`` uploads files while they are being written, and a file it
syncs must only ever grow: the vote CSV does not qualify (a record torn by a crash is cut off
before the next append). So each app process appends, after a vote or reaction is safely in its
log, one JSON line to a file of its own (``sync/votes-<host>-<pid>-<start>.jsonl``,
``reactions-...``): never rewritten, never truncated, never shared with another process. A
restart starts a new file and loses nothing acknowledged: every line was written before the
reader saw "Saved". ``python -m human_ratings export`` reads the logs themselves.

The copies are pseudonymised (annotators, readers and visitors as an HMAC under the study's key,
the same pseudonyms as its exports): a Hub dataset, even a private one, holds no account names
or invite ids.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from dataclasses import asdict
from pathlib import Path

from human_ratings.identity import pseudonym

PEOPLE = ("annotator", "reader", "visitor")
"""The fields of a vote or reaction that name a person."""


class Mirror:
    """Append-only JSON Lines files of this process, under ``folder``."""

    def __init__(self, folder: str | Path, key: bytes):
        self.folder, self.key = Path(folder), key
        self.folder.mkdir(parents=True, exist_ok=True)
        tag = f"{socket.gethostname()}-{os.getpid()}-{int(time.time())}"
        self.paths = {kind: self.folder / f"{kind}-{tag}.jsonl" for kind in ("votes", "reactions")}
        self._lock = threading.Lock()

    def add(self, kind: str, record) -> None:
        """Append one record (a Vote or a Reaction), pseudonymised, as a JSON line; fsync."""
        row = asdict(record)
        for name in PEOPLE:
            if row.get(name):
                row[name] = pseudonym(self.key, row[name])
        line = json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n"
        with self._lock:
            fd = os.open(self.paths[kind], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line.encode())
                os.fsync(fd)
            finally:
                os.close(fd)

    @staticmethod
    def read(folder: str | Path, kind: str = "votes") -> list[dict]:
        """Every whole record of every process's file of this kind."""
        out = []
        for path in sorted(Path(folder).glob(f"{kind}-*.jsonl")):
            for line in path.read_bytes().split(b"\n"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    continue
        return out
