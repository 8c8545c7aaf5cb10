"""A study is one folder and one file: ``study.yaml`` says what is compared, by whom, how many
votes each item needs, what annotators read first, how their care is checked, when the answer
is in and whether they are shown which system wrote what.

    python -m human_ratings study new FOLDER --items pairs.jsonl [--k 3] [--access invite]
    python -m human_ratings invite FOLDER --annotators 12        # codes, shown once
    python app.py --study FOLDER                                  # the Rate tab runs it
    python -m human_ratings study status FOLDER                  # progress and decisions
    python -m human_ratings study close FOLDER                   # no more votes; final report

The folder holds ``study.yaml``, the items (a pairs file), ``gold.jsonl`` (made by ``new``),
``guidelines.md``, and what the study writes: ``votes.csv`` (every row names the study),
``assignments.jsonl``, ``invites.jsonl``, ``live_items.jsonl`` (a live study's items, made
on the spot), ``study.key`` (the study's secret: receipts and pseudonyms) and ``closed.json``.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from human_ratings.assign import Assigner, AssignmentLog
from human_ratings.identity import ACCESS, Invites, folder_key
from human_ratings.pairs import Item, ItemLog, load_items
from human_ratings.quality import GOLD_KINDS, Exclusion, make_gold, review
from human_ratings.sequential import MARGIN, decisions
from human_ratings.store import VoteStore
from storygen.config import ConfigError, from_dict, read_yaml
from storygen.prompt_format import request_fields
from storygen.request import StoryRequest

REVEALS = ("each", "end", "never")
ENDS = ("all_rated", "decided", "manual")
GUIDELINES = """# How to judge

You will see a request and two stories written for it, A and B. Read both stories to the end,
then choose:

- **A is better** or **B is better**: the story you would rather read, judging first whether
  it **follows the request** (its characters, place, events, genre, tone, ending), then whether
  it is **coherent** (each sentence follows from the one before) and whether **you would read
  on**;
- **Tie**: both are about as good;
- **Both are bad**: neither is worth reading.

Which system wrote which story is hidden. Some items check that the stories were read: answer
them like the others. Take your time: speed is not the goal.
"""


class StudyError(ValueError):
    """A study file or folder that cannot be used, with the reason."""


@dataclass
class Gold:
    """Gold items mixed in among the study's items."""

    rate: float = 0.15
    """The share of items shown that are gold."""
    count: int = 10
    """How many gold items ``study new`` makes."""
    kinds: list[str] = field(default_factory=lambda: list(GOLD_KINDS))

    def __post_init__(self):
        if isinstance(self.rate, bool) or not isinstance(self.rate, (int, float)):
            raise ValueError("rate must be a share between 0 and 1")
        if not 0 <= self.rate < 1:
            raise ValueError("rate must be at least 0 and below 1")
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 0:
            raise ValueError("count must be a whole number")
        if not isinstance(self.kinds, list) or not set(self.kinds) <= set(GOLD_KINDS):
            raise ValueError(f"kinds must be a list among {', '.join(GOLD_KINDS)}")


@dataclass
class Limits:
    """Rate limits (per minute)."""

    votes: int = 12
    """Votes of one annotator."""
    signins: int = 5
    """Failed sign-ins of one visitor."""
    overall: int = 300
    """Votes of everyone together (open studies: what anonymous visitors may cast)."""

    def __post_init__(self):
        for name in ("votes", "signins", "overall"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a whole number of at least 1")


@dataclass
class StudyConfig:
    """``study.yaml``."""

    name: str
    items: str = "items.jsonl"
    """The A/B items (a pairs file), relative to the study folder."""
    k: int = 3
    """Votes wanted per item."""
    guidelines: str = "guidelines.md"
    """Shown before the first item and on demand (Markdown, relative to the folder)."""
    access: str = "invite"
    """invite (codes from ``python -m human_ratings invite``), oauth (Hugging Face sign-in, on
    a Space), open (anonymous, browser-scoped ids, rate-limited) or local (one annotator on
    their own machine, typing a name)."""
    allow: list[str] = field(default_factory=list)
    """oauth: the accounts (``alice``) or organisations (``org:acme``) that may vote; empty:
    anyone signed in."""
    owners: list[str] = field(default_factory=list)
    """oauth: accounts that see the Study and Results tabs (the Space's owner always does)."""
    reveal: str = "never"
    """Whether annotators learn which system wrote which story after each vote (``each``:
    they soon learn the systems apart; gold items are revealed alike, so the reveal does not
    give them away), once they have no item left (``end``: every vote of theirs, with its
    systems, when nothing more can be learned from it) or ``never``."""
    gold: Gold = field(default_factory=Gold)
    exclusion: Exclusion = field(default_factory=Exclusion)
    margin: float = MARGIN
    """Two systems whose win rate is surely within 0.5 ± margin are called equivalent."""
    end: str = "all_rated"
    """When the study stops giving items: every item has k votes (all_rated), every pair of
    systems is decided (decided), or only when closed (manual)."""
    timeout_s: float = 900.0
    """An item shown but not voted on goes back to others after this many seconds."""
    limits: Limits = field(default_factory=Limits)
    live: bool = False
    """Items are also made on the spot, when an annotator has none left (the app's
    ``--live`` systems and requests write them); the items file may start empty."""

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name.strip() or len(self.name) > 100:
            raise ValueError("name must be 1-100 characters")
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise ValueError(
                f"k (votes per item) must be a whole number of at least 1, not {self.k!r}"
            )
        if self.access not in ACCESS:
            raise ValueError(f"access must be one of {', '.join(ACCESS)}, not {self.access!r}")
        if self.reveal not in REVEALS:
            raise ValueError(f"reveal must be one of {', '.join(REVEALS)}, not {self.reveal!r}")
        if self.end not in ENDS:
            raise ValueError(f"end must be one of {', '.join(ENDS)}, not {self.end!r}")
        for name in ("allow", "owners"):
            v = getattr(self, name)
            if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                raise ValueError(f"{name} must be a list of account names")
        if (
            isinstance(self.margin, bool)
            or not isinstance(self.margin, (int, float))
            or not 0 < self.margin < 0.5
        ):
            raise ValueError("margin must be between 0 and 0.5")
        if (
            isinstance(self.timeout_s, bool)
            or not isinstance(self.timeout_s, (int, float))
            or self.timeout_s <= 0
        ):
            raise ValueError("timeout_s must be a positive number of seconds")

    @classmethod
    def from_dict(cls, data: Any, where: str = "study") -> StudyConfig:
        """Every section checked now; unknown keys are named."""
        if not isinstance(data, dict):
            raise StudyError(f"{where}: expected a mapping of settings")
        try:
            parts = {
                "gold": from_dict(Gold, data.get("gold") or {}, f"{where}: gold"),
                "exclusion": from_dict(
                    Exclusion, data.get("exclusion") or {}, f"{where}: exclusion"
                ),
                "limits": from_dict(Limits, data.get("limits") or {}, f"{where}: limits"),
            }
            return from_dict(cls, {**data, **parts}, where)
        except ConfigError as exc:
            raise StudyError(str(exc)) from exc

    def to_dict(self) -> dict:
        return asdict(self)


class Study:
    """A study folder, loaded: its settings, items, gold items, logs and assigner."""

    def __init__(
        self,
        folder: str | Path,
        config: StudyConfig | None = None,
        votes: Path | None = None,
        password: str | None = None,
    ):
        """The study in ``folder`` (its ``study.yaml``), or, with ``config``, a study made on
        the spot (the app's local one) whose votes go to ``votes``. ``password``: what a
        ``local`` study's annotator gives before rating, if anything."""
        self.folder = Path(folder)
        self.password = password
        path = self.folder / "study.yaml"
        if config is None:
            if not path.exists():
                raise StudyError(f"{self.folder} is not a study: it has no study.yaml")
            try:
                config = StudyConfig.from_dict(read_yaml(path), str(path))
            except ConfigError as exc:
                raise StudyError(str(exc)) from exc
        self.config = config
        self.votes_path = Path(votes) if votes else self.folder / "votes.csv"
        self.items = self._items(self.folder / self.config.items, self.config.live)
        # A live study's items made on the spot are kept beside its votes: the votes on them
        # count after a restart (they are loaded before the assigner counts the votes).
        self.live_items = ItemLog(self.votes_path.with_name("live_items.jsonl"))
        known = {it.item_id for it in self.items}
        self.items += [it for it in self.live_items.read_all()[0] if it.item_id not in known]
        wants_gold = self.config.gold.count or self.config.gold.rate
        self.gold_rows = self._gold(self.folder / "gold.jsonl") if wants_gold else []
        self.gold = {r["item_id"]: r["gold"]["better"] for r in self.gold_rows}
        self.gold_items = {
            r["item_id"]: Item(r["item_id"], StoryRequest.from_dict(r["request"]), r["stories"])
            for r in self.gold_rows
        }
        if self.config.gold.rate > 0 and not self.gold_rows:
            raise StudyError(
                f"{self.folder}: the gold rate is {self.config.gold.rate} but there are no gold "
                "items (gold.jsonl): set gold.rate to 0 or make some with `study new`"
            )
        self.by_id = {it.item_id: it for it in self.items} | self.gold_items
        self.store = VoteStore(self.votes_path)
        self.invites = Invites(self.folder / "invites.jsonl", self.config.name)
        self.assigner = Assigner(
            {it.item_id: tuple(sorted(it.stories)) for it in self.items},
            self.config.k,
            self.config.timeout_s,
            {g: tuple(sorted(it.stories)) for g, it in self.gold_items.items()},
            self.config.gold.rate,
            AssignmentLog(self.votes_path.with_name("assignments.jsonl")),
            gold_first=self.config.exclusion.min_gold if self.gold_rows else 0,
            gold_from={r["item_id"]: r["gold"].get("from", "") for r in self.gold_rows},
        )
        votes = self.store.votes()
        self.unnamed_votes = sum(not v.study for v in votes)
        """Votes logged before votes named their study (the local study's, if any)."""
        self.assigner.restore([v for v in votes if self._mine(v)])

    def _mine(self, vote) -> bool:
        """A vote of this study: it names it, or it names none and this is the local study
        (votes before studies were named were all the local one's)."""
        return vote.study == self.name or (not vote.study and self.name == "local")

    @property
    def key(self) -> bytes:
        """The study's secret (``study.key`` beside its votes, made on first use)."""
        return folder_key(self.votes_path.with_name("study.key"))

    def _gold(self, path: Path) -> list[dict]:
        if not path.exists():
            return []
        try:
            rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
            for r in rows:
                StoryRequest.from_dict(r["request"])
                if r["gold"]["better"] not in r["stories"] or len(r["stories"]) != 2:
                    raise ValueError(
                        f"gold item {r['item_id']}: the better story is not one of its two"
                    )
        except (ValueError, KeyError, TypeError) as exc:
            raise StudyError(f"{path}: not gold items ({exc})") from exc
        if len(rows) > len(self.items):
            raise StudyError(
                f"{path}: {len(rows)} gold items for {len(self.items)} items: more gold than items"
            )
        return rows

    @staticmethod
    def _items(path: Path, live: bool = False) -> list[Item]:
        if live and not path.exists():
            return []
        if not path.exists():
            raise StudyError(f"the study's items file {path} does not exist")
        try:
            items = load_items(path)
        except ValueError as exc:
            raise StudyError(str(exc)) from exc
        if not items and not live:
            raise StudyError(f"{path} holds no item")
        ids = [it.item_id for it in items]
        if len(set(ids)) != len(ids):
            raise StudyError(f"{path}: item ids repeat")
        return items

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def closed(self) -> bool:
        return self.votes_path.with_name("closed.json").exists()

    def add_item(self, item: Item) -> None:
        """A new item (a live study's, made on the spot) joins the study, kept in its log."""
        self.live_items.append(item)
        self.items.append(item)
        self.by_id[item.item_id] = item
        self.assigner.add(item.item_id, tuple(sorted(item.stories)))

    def guidelines(self) -> str:
        path = self.folder / self.config.guidelines
        if self.config.guidelines == "":
            return GUIDELINES
        return path.read_text(encoding="utf-8") if path.exists() else GUIDELINES

    def votes(self, with_gold: bool = False) -> list:
        """The study's effective votes (gold items left out unless asked)."""
        votes = [v for v in self.store.votes() if self._mine(v)]
        return votes if with_gold else [v for v in votes if v.item_id not in self.gold]

    def revealed(self, annotator: str) -> str:
        """Markdown: the annotator's own votes in this study with the systems named (gold
        items as gold), for ``reveal: end``."""
        names = {"left": "A", "right": "B", "tie": "tie", "both_bad": "both bad"}
        rows = []
        for v in self.votes(with_gold=True):
            if v.annotator != annotator:
                continue
            pick = {"left": v.system_left, "right": v.system_right}.get(v.choice)
            what = f"`{pick}`" if pick else names.get(v.choice, v.choice)
            gold = (
                " (a gold item: one story was made worse on purpose)"
                if v.item_id in self.gold
                else ""
            )
            item = self.by_id.get(v.item_id)
            asked = "; ".join(list(request_fields(item.request).values())[:2]) if item else ""
            asked = f" ({asked[:80]})" if asked else ""
            rows.append(
                f"- `{v.item_id}`{asked}: A was `{v.system_left}`, B `{v.system_right}`; "
                f"you chose {what}{gold}"
            )
        if not rows:
            return ""
        return "**Your votes, with their systems**\n\n" + "\n".join(rows)

    def review(self) -> dict[str, dict]:
        return review(self.votes(with_gold=True), self.gold, self.config.exclusion)

    def excluded(self) -> set[str]:
        return {a for a, f in self.review().items() if f["excluded"]}

    def complete(self) -> bool:
        """Whether the end condition is met (the study then gives no more items)."""
        if self.closed:
            return True
        if self.config.end == "all_rated":
            return self.assigner.progress()["complete"]
        if self.config.end == "decided":  # decided on the votes the results keep
            out = self.excluded()
            ds = decisions([v for v in self.votes() if v.annotator not in out], self.config.margin)
            return bool(ds) and all(d.decision != "undecided" for d in ds)
        return False

    def status(self) -> dict[str, Any]:
        """Progress, decisions (with and without the excluded) and each annotator's figures."""
        people = self.review()
        out = [a for a, f in people.items() if f["excluded"]]
        votes = self.votes()
        kept = [v for v in votes if v.annotator not in out]
        return {
            "study": self.name,
            "closed": self.closed,
            "complete": self.complete(),
            "progress": self.assigner.progress(),
            "decisions": [d.to_dict() for d in decisions(kept, self.config.margin)],
            "decisions_with_excluded": [d.to_dict() for d in decisions(votes, self.config.margin)],
            "annotators": people,
            "excluded": out,
        }

    def close(self) -> dict:
        """No more votes; the final status is written beside the votes."""
        status = self.status()
        self.votes_path.with_name("closed.json").write_text(
            json.dumps(
                {"closed_utc": datetime.now(timezone.utc).isoformat(), "status": status},
                indent=2,
                default=str,
            )
            + "\n"
        )
        return status


def new_study(
    folder: Path,
    items: Path,
    name: str | None = None,
    k: int = 3,
    access: str = "invite",
    reveal: str = "never",
    gold: int | None = None,
    seed: int = 0,
) -> Study:
    """A new study folder: its settings, its items, gold items made from them (``gold``:
    how many; default 10, or as many as there are items when fewer), guidelines."""
    folder = Path(folder)
    if (folder / "study.yaml").exists():
        raise StudyError(f"{folder} holds a study already")
    settings = {
        "name": name or folder.resolve().name,
        "k": k,
        "access": access,
        "reveal": reveal,
        "gold": {"count": gold if gold is not None else 10, "rate": 0.15},
    }
    StudyConfig.from_dict(settings)  # every setting checked before anything is read or made
    loaded = Study._items(Path(items))
    gold = min(10, len(loaded)) if gold is None else gold
    if gold > len(loaded):
        raise StudyError(f"{gold} gold items asked for {len(loaded)} items: more gold than items")
    settings["gold"] = {"count": gold, "rate": 0.15 if gold else 0.0}
    config = StudyConfig.from_dict(settings)
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(items, folder / "items.jsonl")
    rows = make_gold(loaded, gold, config.gold.kinds, seed)
    (folder / "gold.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "guidelines.md").write_text(GUIDELINES)
    (folder / "study.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    return Study(folder)


def local_study(
    items: Path | None,
    votes: Path,
    access: str = "local",
    password: str | None = None,
    live: bool = False,
) -> Study:
    """The app's study when none is given: every item of ``items`` for every annotator (k is
    unbounded), no gold, no reveal; votes to ``votes``. ``local`` on one's own machine (a typed
    name, and the password if one is set), ``open`` on a public Space (anonymous visitors)."""
    config = StudyConfig(
        name="local",
        items=str(Path(items).resolve() if items else Path(votes).with_name("no_items.jsonl")),
        k=1_000_000,
        guidelines="",
        access=access,
        gold=Gold(rate=0.0, count=0),
        live=live,
    )
    return Study(Path(votes).parent, config, votes, password)
