"""The vote log: an append-only CSV with one fixed column order, and its reader.

Safe with many annotators at once, in threads and in several processes (the locking, appending
and torn-record recovery of :mod:`human_ratings.applog`): every append checks the
one-vote-per-(annotator, item) rule against the file as it is *now*, under the lock. Each row
carries a CRC of its own cells.

The file is standard CSV (RFC 4180, as Python's csv module, pandas and spreadsheets read it):
free text is stored exactly as typed, line breaks inside quoted cells. A cell that a
spreadsheet would run as a formula (it starts with ``= + - @``, a tab or a CR), or that starts
with ``'``, gets one ``'`` in front; the reader takes exactly one off, so the rule is reversible
and two texts never share a cell. A row torn by a crash is cut off before the next append, under
the lock, and its bytes are kept in ``<log>.torn``: its open quote would otherwise swallow every
later row in other tools.

Schema 1 (before these rules) wrote line breaks as spaces and quoted only formula starts; its
rows are still read, by their own rule.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import zlib
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path

from human_ratings.applog import AppendLog

SCHEMA_VERSION = 3
CHOICES = ("left", "right", "tie", "both_bad")
CRITERIA = ("coherence", "engagement", "relevance", "personalization")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# The Write form's rule for multi-line text: no control character but tab, LF and CR (and no
# lone surrogate, which has no UTF-8 form).
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
_RECORD_BREAKS = re.compile(rb'["\n]')


class VoteError(ValueError):
    """A vote that cannot be recorded, with a message for the annotator."""


class DuplicateVote(VoteError):
    """This annotator already voted on this item."""


@dataclass
class Vote:
    """One annotator's judgement of one A/B item. The column order of the CSV is this order."""

    annotator: str
    item_id: str
    system_left: str
    system_right: str
    choice: str
    left_coherence: int | None = None
    left_engagement: int | None = None
    left_relevance: int | None = None
    left_personalization: int | None = None
    right_coherence: int | None = None
    right_engagement: int | None = None
    right_relevance: int | None = None
    right_personalization: int | None = None
    comment: str = ""
    seed_left: int | None = None
    seed_right: int | None = None
    settings: str = ""
    """Generation settings of both stories, as JSON."""
    replaces: bool = False
    """True when this vote deliberately replaces the annotator's earlier vote on the item."""
    study: str = ""
    """The study the vote belongs to ("" outside a study)."""
    seconds: float | None = None
    """Seconds from the item's being shown (assigned) to the vote, measured by the server."""
    anonymous: bool = False
    """Cast in an open study by a visitor known only by a browser-scoped id."""
    schema_version: int = SCHEMA_VERSION
    timestamp_utc: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat())

    def __post_init__(self):
        errors = []
        for name in ("annotator", "item_id", "system_left", "system_right"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                errors.append(f"{name} is missing")
            elif len(value) > 200:
                errors.append(f"{name} is too long")
        if self.choice not in CHOICES:
            errors.append(f"choice must be one of {CHOICES}")
        if self.system_left == self.system_right:
            errors.append("the two sides must show different systems")
        for side in ("left", "right"):
            for c in CRITERIA:
                v = getattr(self, f"{side}_{c}")
                if v is not None and (isinstance(v, bool) or v not in (1, 2, 3, 4, 5)):
                    errors.append(f"{side} {c} must be 1-5")
        if self.seconds is not None and (
            isinstance(self.seconds, bool)
            or not isinstance(self.seconds, (int, float))
            or not 0 <= self.seconds < 1e7
        ):
            errors.append("seconds must be a duration in seconds")
        if not isinstance(self.study, str) or len(self.study) > 200:
            errors.append("study must be a name of at most 200 characters")
        if not isinstance(self.comment, str) or len(self.comment) > 5000:
            errors.append("comment must be text of at most 5000 characters")
        for name in (
            "annotator",
            "item_id",
            "system_left",
            "system_right",
            "comment",
            "settings",
            "study",
        ):
            value = getattr(self, name)
            bad = _CONTROL.search(value) if isinstance(value, str) else None
            if bad:
                errors.append(f"{name} contains a control character ({ascii(bad.group(0))})")
        if errors:
            raise VoteError("; ".join(errors))

    @property
    def winner(self) -> str | None:
        """The system that won, or None for a tie or both bad."""
        return {"left": self.system_left, "right": self.system_right}.get(self.choice)


COLUMNS = [f.name for f in fields(Vote)] + ["row_crc"]
_NEW_IN_3 = ("study", "seconds", "anonymous")
COLUMNS_2 = [c for c in COLUMNS if c not in _NEW_IN_3]
"""Schema 1 and 2 rows: the same columns without those schema 3 added."""
_INT_FIELDS = {f.name for f in fields(Vote) if "int" in str(f.type)}
_FLOAT_FIELDS = {f.name for f in fields(Vote) if "float" in str(f.type)}
_BOOL_FIELDS = {f.name for f in fields(Vote) if str(f.type) == "bool"}


def neutralize(cell: str) -> str:
    """Keep spreadsheets from running a cell as a formula (a leading ' makes it text). A cell
    that starts with ' gets one more, so :func:`restore` is exact."""
    return "'" + cell if cell.startswith((*_FORMULA_START, "'")) else cell


def restore(cell: str) -> str:
    """The text :func:`neutralize` was given."""
    return cell[1:] if cell.startswith("'") else cell


def _cells(vote: Vote) -> list[str]:
    raw = asdict(vote)
    cells = []
    for name in COLUMNS[:-1]:
        v = raw[name]
        if v is None:
            cells.append("")
        elif isinstance(v, bool):
            cells.append(str(int(v)))
        elif isinstance(v, int):
            cells.append(str(v))
        elif isinstance(v, float):
            cells.append(repr(round(v, 3)))
        else:
            cells.append(neutralize(v))
    return cells


def _crc(cells: list[str]) -> str:
    return format(zlib.crc32("\x1f".join(cells).encode()), "08x")


def _encode(vote: Vote) -> bytes:
    cells = _cells(vote)
    buf = io.StringIO()
    # Every cell quoted: the csv module quotes a lone CR only then, and a raw CR would end the
    # row for other readers.
    csv.writer(buf, lineterminator="\n", quoting=csv.QUOTE_ALL).writerow(cells + [_crc(cells)])
    return buf.getvalue().encode()


def _decode(row: list[str]) -> Vote | None:
    """A row back into a Vote; None when it is torn, altered or from an unknown schema."""
    columns = {len(COLUMNS): COLUMNS, len(COLUMNS_2): COLUMNS_2}.get(len(row))
    if columns is None or _crc(row[:-1]) != row[-1]:
        return None
    data = dict(zip(columns[:-1], row[:-1]))
    schema_1 = data["schema_version"] == "1"
    try:
        for name in columns[:-1]:
            v = data[name]
            if name in _BOOL_FIELDS:
                data[name] = v == "1"
            elif name in _INT_FIELDS:
                data[name] = int(v) if v != "" else None
            elif name in _FLOAT_FIELDS:
                data[name] = float(v) if v != "" else None
            elif schema_1:  # the old rule: only a formula start was quoted
                data[name] = v[1:] if v.startswith("'") and v[1:].startswith(_FORMULA_START) else v
            else:
                data[name] = restore(v)
        return Vote(**data)
    except (ValueError, VoteError):
        return None


class VoteStore(AppendLog):
    """The CSV vote log at ``path`` (created with its header on first use)."""

    def __init__(self, path: str | Path):
        super().__init__(path)
        self._cache: list[Vote] = []  # the votes in the first _offset bytes

    def append(self, vote: Vote) -> Vote:
        """Record ``vote``; raises :class:`DuplicateVote` if the annotator already voted on the
        item and ``vote.replaces`` is not set."""
        data = _encode(vote)
        header = ",".join(COLUMNS)
        with self._locked():
            if self.path.exists() and self.path.stat().st_size:
                with self.path.open("rb") as f:
                    first = f.readline().decode("utf-8", "replace").rstrip("\r\n")
                if first != header:
                    raise VoteError(
                        f"{self.path} was written with other columns (an older schema): it is "
                        "still read, but new votes go to a new file; move it aside"
                    )
            current = self._read()  # always: the torn-tail cut below relies on a fresh offset
            if not vote.replaces and any(
                v.annotator == vote.annotator and v.item_id == vote.item_id for v in current
            ):
                raise DuplicateVote(f"{vote.annotator} has already rated item {vote.item_id}")
            self._cut_torn_tail()
            self._write(data, (header + "\n").encode())
        return vote

    def _read(self) -> list[Vote]:
        """Parse the rows appended since the last call (call with the lock held).

        A row ends at a line break outside quotes. An unfinished last row is left unparsed:
        the next append cuts it off (see :meth:`_cut_torn_tail`).
        """
        if not self.path.exists():
            self._offset, self._cache = 0, []
            return []
        if self.path.stat().st_size < self._offset:
            self._offset, self._cache = 0, []  # the file was replaced
        with self.path.open("rb") as f:
            f.seek(self._offset)
            chunk = f.read()
        start, quoted = 0, False
        header = (",".join(COLUMNS)).encode()
        for m in _RECORD_BREAKS.finditer(chunk):
            if m.group() == b'"':
                quoted = not quoted  # a doubled quote inside a cell toggles twice
                continue
            if quoted:
                continue
            record, start = chunk[start : m.end()], m.end()
            if record.rstrip(b"\r\n") == header:
                continue
            try:
                row = next(csv.reader([record.decode("utf-8")[:-1]]), [])
            except (UnicodeDecodeError, csv.Error):
                continue  # damaged bytes: that row alone is lost
            vote = _decode(row)
            if vote is not None:
                self._cache.append(vote)
        self._offset += start
        return list(self._cache)

    def read_all(self) -> list[Vote]:
        """Every intact row, in order (torn or altered rows skipped)."""
        with self._locked():
            return self._read()

    def votes(self) -> list[Vote]:
        """The effective votes: the latest per (annotator, item)."""
        latest: dict[tuple[str, str], Vote] = {}
        for v in self.read_all():
            latest[(v.annotator, v.item_id)] = v
        return list(latest.values())

    def rated_items(self, annotator: str) -> set[str]:
        return {v.item_id for v in self.read_all() if v.annotator == annotator}


def receipt(key: bytes, annotator: str, item_id: str) -> str:
    """A short receipt of a vote, shown to the annotator when it is saved: keyed by the
    study's secret (:attr:`~human_ratings.study.Study.key`), so that only a vote the study
    acknowledged has one, and naming the vote without naming the item (an item's id could
    tell a gold item apart). The owner checks a receipt against the log."""
    message = f"{annotator}\x1f{item_id}".encode()
    return hashlib.blake2b(message, digest_size=5, key=key[:64]).hexdigest()


def settings_json(left: dict, right: dict) -> str:
    """The generation settings of both sides, for the ``settings`` column."""
    return json.dumps({"left": left, "right": right}, sort_keys=True)
