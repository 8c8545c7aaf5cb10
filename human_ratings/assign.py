"""Which item each annotator gets: the fewest votes first, sides counterbalanced.

The next item for an annotator is, among the items they have not seen, one with the fewest
votes plus assignments still open (ties broken at random). So no item is given a (k+1)-th
time while another item the annotator may rate has fewer than k; an item every eligible one
of which has k is not given at all (the annotator is told nothing needs them now). An
assignment not voted on is released after ``timeout`` seconds.

Sides are counterbalanced per annotator and pair of systems: the system of a pair that this
annotator has seen on the left less often goes left (a tie at random), so no annotator's habit
of choosing "A" can favour one system.

Gold items (quality checks, :mod:`human_ratings.quality`) are mixed in at the study's rate,
never counted towards k.

Assignments are kept in an append-only log (``assignments.jsonl``) so that a restart keeps
them: a vote for an item given before the restart is still accepted. The state is rebuilt from
that log and the vote log when the app starts. Each assignment takes O(1) expected time
(buckets of items by count), under 5 ms with 10,000 items and 200 annotators
(``bench/assign.py``).
"""

from __future__ import annotations

import heapq
import json
import random
import threading
import time
from collections import defaultdict
from dataclasses import dataclass

from human_ratings.applog import AppendLog


@dataclass(frozen=True)
class Assignment:
    annotator: str
    item_id: str
    left: str
    right: str
    at: float
    """When it was given (wall-clock seconds): the vote's ``seconds`` is measured from here."""
    gold: bool = False


class AssignmentLog(AppendLog):
    """Assignments as they are made, one JSON line each (never rewritten)."""

    def append(self, a: Assignment, released: bool = False) -> None:
        """Log an assignment, or (``released``) that it was given back unvoted."""
        record = {
            "annotator": a.annotator,
            "item_id": a.item_id,
            "left": a.left,
            "right": a.right,
            "at": a.at,
            "gold": a.gold,
        }
        if released:
            record["released"] = True
        with self._locked():
            # The file is read again only when it is not as this process left it (another
            # process appended, or a torn tail): else each append costs one write.
            size = self.path.stat().st_size if self.path.exists() else 0
            if size != self._offset:
                self._offset = self.path.read_bytes().rfind(b"\n") + 1
            self._cut_torn_tail()
            line = (json.dumps(record) + "\n").encode()
            self._write(line)
            self._offset += len(line)

    def records(self) -> list[tuple[Assignment, bool]]:
        """Every logged record, in order: (assignment, whether it is a release)."""
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_bytes().split(b"\n"):
            try:
                record = json.loads(line)
                released = bool(record.pop("released", False))
                out.append((Assignment(**record), released))
            except (ValueError, TypeError):
                continue  # a torn last line
        return out

    def read_all(self) -> list[Assignment]:
        """The assignments still standing: each one logged, less those given back."""
        return standing(self.records())


def standing(records: list[tuple[Assignment, bool]]) -> list[Assignment]:
    """The assignments of a log's records not given back."""
    out: dict[tuple[str, str, float], Assignment] = {}
    for a, released in records:
        key = (a.annotator, a.item_id, a.at)
        if released:
            out.pop(key, None)
        else:
            out[key] = a
    return list(out.values())


class _Buckets:
    """Items by count, with O(1) moves and random picks."""

    def __init__(self):
        self.by_count: dict[int, list[str]] = defaultdict(list)
        self.where: dict[str, tuple[int, int]] = {}

    def add(self, item: str, count: int = 0) -> None:
        bucket = self.by_count[count]
        self.where[item] = (count, len(bucket))
        bucket.append(item)

    def move(self, item: str, delta: int) -> None:
        count, i = self.where[item]
        bucket = self.by_count[count]
        last = bucket.pop()
        if last != item:
            bucket[i] = last
            self.where[last] = (count, i)
        if not bucket:
            del self.by_count[count]
        self.add(item, count + delta)

    def count(self, item: str) -> int:
        return self.where[item][0]


class Assigner:
    """Gives items to annotators (thread-safe); see the module's description."""

    def __init__(
        self,
        items: dict[str, tuple[str, str]],
        k: int,
        timeout: float = 900.0,
        gold: dict[str, tuple[str, str]] | None = None,
        gold_rate: float = 0.0,
        log: AssignmentLog | None = None,
        seed: int | None = None,
        gold_first: int = 2,
        gold_from: dict[str, str] | None = None,
    ):
        """``items``: item id -> its two systems; ``gold``: the gold items likewise. Every
        annotator meets ``gold_first`` gold items early (every second item until then), so that
        the exclusion rule has evidence on everyone; after that, gold comes at ``gold_rate``.
        ``gold_from``: gold item -> the item its stories come from; an annotator gets at most
        one of the two (having read one, they would recognise the other)."""
        if k < 1:
            raise ValueError("k (votes per item) must be at least 1")
        self.items, self.k, self.timeout = dict(items), k, timeout
        self.gold, self.gold_rate = dict(gold or {}), gold_rate
        self.gold_first = gold_first
        self.gold_from = dict(gold_from or {})
        self._given: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # items, gold items
        self.log = log
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._counts = _Buckets()  # votes + open assignments
        for item in self.items:
            self._counts.add(item)
        self._votes: dict[str, int] = defaultdict(int)
        self._seen: dict[str, set[str]] = defaultdict(set)
        self._voted: set[tuple[str, str]] = set()
        self._open: dict[tuple[str, str], Assignment] = {}
        self._expiry: list[tuple[float, str, str]] = []  # a heap of (release time, annotator, item)
        self._left: dict[tuple[str, frozenset], dict[str, int]] = defaultdict(
            lambda: defaultdict(int)
        )

    def add(self, item_id: str, systems: tuple[str, str]) -> None:
        """A new item (made on the spot), with no votes yet."""
        with self._lock:
            if item_id not in self.items:
                self.items[item_id] = systems
                self._counts.add(item_id)

    def finished(self, annotator: str) -> bool:
        """Whether no item can ever come to this annotator again, and they hold none: each
        item is one they have seen or one with its k votes cast (an item others merely hold
        may come back to them after its timeout; gold comes only with an item)."""
        with self._lock:
            if any(who == annotator for who, _ in self._open):
                return False
            seen = self._seen[annotator]
            return all(i in seen or self._votes[i] >= self.k for i in self.items)

    # -- rebuilding after a restart --------------------------------------------------------

    def restore(self, votes, now: float | None = None) -> None:
        """Count ``votes`` (the vote log), mark every item ever given to an annotator as seen
        by them (given back or expired too: they read it), and reopen the logged assignments
        still open."""
        now = time.time() if now is None else now
        with self._lock:
            records = self.log.records() if self.log else []
            for a, _ in records:
                self._see(a.annotator, a.item_id)
            for v in votes:
                if (v.annotator, v.item_id) in self._voted:
                    continue
                self._voted.add((v.annotator, v.item_id))
                self._see(v.annotator, v.item_id)
                self._given[v.annotator][0] += 1
                self._given[v.annotator][1] += v.item_id in self.gold
                self._count_sides(v.annotator, v.system_left, v.system_right)
                if v.item_id in self.items:
                    self._votes[v.item_id] += 1
                    self._counts.move(v.item_id, +1)
            for a in standing(records):
                key = (a.annotator, a.item_id)
                if key in self._voted or key in self._open or a.at + self.timeout <= now:
                    continue
                if a.item_id not in self.items and a.item_id not in self.gold:
                    continue
                self._hold(a)

    # -- giving and taking back ------------------------------------------------------------

    def next(self, annotator: str, now: float | None = None) -> Assignment | None:
        """The annotator's next item (the one still open, if they have one), or None when
        nothing needs their vote now."""
        now = time.time() if now is None else now
        with self._lock:
            self._release(now)
            for (who, _), a in self._open.items():
                if who == annotator:
                    return a
            # Gold is mixed among items, never given alone: an annotator with no item left
            # gets none, so nothing can come to them once ``finished`` says so.
            item, gold = self._fewest(annotator), False
            if item is None:
                return None
            given, golds = self._given[annotator]
            early = golds < self.gold_first and given % 2 == 1
            if self.gold and (early or self._rng.random() < self.gold_rate):
                unseen = [g for g in self.gold if g not in self._seen[annotator]]
                unseen = [g for g in unseen if self.gold_from.get(g) not in self._seen[annotator]]
                if unseen:
                    item, gold = self._rng.choice(unseen), True
            systems = self.gold[item] if gold else self.items[item]
            left, right = self._sides(annotator, *systems)
            a = Assignment(annotator, item, left, right, now, gold)
            self._given[annotator][0] += 1
            self._given[annotator][1] += gold
            self._hold(a)
            self._count_sides(annotator, left, right)
            if self.log is not None:
                self.log.append(a)
            return a

    def held(self, annotator: str, item_id: str, now: float | None = None) -> Assignment | None:
        """The open assignment of this item to this annotator, if any."""
        now = time.time() if now is None else now
        with self._lock:
            self._release(now)
            return self._open.get((annotator, item_id))

    def voted(self, annotator: str, item_id: str) -> None:
        """The annotator voted on the item: it counts (once, however often this is said),
        and the assignment closes."""
        with self._lock:
            key = (annotator, item_id)
            a = self._open.pop(key, None)
            if key in self._voted:  # counted already: only the assignment closes
                if a is not None and item_id in self.items:
                    self._counts.move(item_id, -1)
                return
            self._voted.add(key)
            self._see(annotator, item_id)
            if item_id in self.items:
                self._votes[item_id] += 1
                if a is None:  # a vote without an open assignment (restored from the log)
                    self._counts.move(item_id, +1)

    def skip(self, annotator: str) -> None:
        """Give back the annotator's open item (Next without voting): it goes to others."""
        with self._lock:
            for key in [key for key in self._open if key[0] == annotator]:
                a = self._open[key]
                self._drop(key)
                if self.log is not None:
                    self.log.append(a, released=True)

    # -- what the owner sees ----------------------------------------------------------------

    def progress(self) -> dict:
        with self._lock:
            votes = [self._votes[i] for i in self.items]
            return {
                "items": len(votes),
                "votes": sum(votes),
                "items_with_k": sum(v >= self.k for v in votes),
                "open": len(self._open),
                "min_votes": min(votes, default=0),
                "max_votes": max(votes, default=0),
                "complete": all(v >= self.k for v in votes),
            }

    def votes_per_item(self) -> dict[str, int]:
        with self._lock:
            return {i: self._votes[i] for i in self.items}

    # -- inside (lock held) -----------------------------------------------------------------

    def _fewest(self, annotator: str) -> str | None:
        seen = self._seen[annotator]
        for count in sorted(self._counts.by_count):
            if count >= self.k:
                return None  # every item this annotator may rate has its k votes (or is open)
            bucket = self._counts.by_count[count]
            for _ in range(8):  # random picks: the seen ones are few
                item = bucket[self._rng.randrange(len(bucket))]
                if item not in seen:
                    return item
            unseen = [i for i in bucket if i not in seen]
            if unseen:
                return self._rng.choice(unseen)
        return None

    def _sides(self, annotator: str, a: str, b: str) -> tuple[str, str]:
        first, second = sorted((a, b))
        shown = self._left[(annotator, frozenset((a, b)))]
        if shown[first] == shown[second]:
            return (first, second) if self._rng.random() < 0.5 else (second, first)
        return (first, second) if shown[first] < shown[second] else (second, first)

    def _count_sides(self, annotator: str, left: str, right: str) -> None:
        self._left[(annotator, frozenset((left, right)))][left] += 1

    def _see(self, annotator: str, item_id: str) -> None:
        """The annotator read this item: neither it nor its gold twin is given to them again."""
        seen = self._seen[annotator]
        seen.add(item_id)
        if item_id in self.gold_from:
            seen.add(self.gold_from[item_id])

    def _hold(self, a: Assignment) -> None:
        self._open[(a.annotator, a.item_id)] = a
        self._see(a.annotator, a.item_id)
        if a.item_id in self.items:
            self._counts.move(a.item_id, +1)
        heapq.heappush(self._expiry, (a.at + self.timeout, a.annotator, a.item_id))

    def _drop(self, key: tuple[str, str]) -> None:
        a = self._open.pop(key)
        if a.item_id in self.items:
            self._counts.move(a.item_id, -1)
        # The annotator saw it: it is not offered to them again.

    def _release(self, now: float) -> None:
        while self._expiry and self._expiry[0][0] <= now:
            _, annotator, item = heapq.heappop(self._expiry)
            a = self._open.get((annotator, item))
            if a is not None and a.at + self.timeout <= now:
                self._drop((annotator, item))
