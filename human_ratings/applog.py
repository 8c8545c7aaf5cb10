"""An append-only log file shared by threads and processes: the one place that locks, appends
and recovers from a writer that died mid-record. The vote CSV and the reactions JSONL use it.

Every append holds an exclusive ``flock`` on a side lock file (and a thread lock: a flock is
per open file, not per thread), writes the whole record with a single ``write`` on an
``O_APPEND`` descriptor, then fsyncs. Bytes past the last complete record can only be the
remains of a writer that died: the next append moves them to ``<log>.torn`` first.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from pathlib import Path


class AppendLog:
    """The file at ``path``; a subclass parses its records and keeps ``_offset``, the bytes
    of the file already parsed (the end of the last complete record)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self._thread_lock = threading.Lock()
        self._offset = 0

    @contextlib.contextmanager
    def _locked(self):
        """Exclusive access across threads (a lock) and processes (flock on the side file)."""
        with self._thread_lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)  # closing the descriptor releases the flock

    def _cut_torn_tail(self) -> None:
        """Move an unfinished last record (a crash mid-write) into ``<log>.torn`` (lock held,
        ``_offset`` fresh).

        Every writer writes whole records under the lock, so bytes past the last complete
        record can only be the remains of a writer that died.
        """
        if not self.path.exists() or self.path.stat().st_size == self._offset:
            return
        with self.path.open("rb+") as f:
            f.seek(self._offset)
            torn = f.read()
            with open(self.path.with_name(self.path.name + ".torn"), "ab") as side:
                side.write(torn + b"\n")
                side.flush()
                os.fsync(side.fileno())
            f.truncate(self._offset)
            os.fsync(f.fileno())

    def _write(self, record: bytes, header: bytes = b"") -> None:
        """Append one whole record (after ``header`` when the file is new), then fsync (lock
        held, torn tail already cut)."""
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            size = os.fstat(fd).st_size
            os.write(fd, (header if size == 0 else b"") + record)
            os.fsync(fd)
        finally:
            os.close(fd)
