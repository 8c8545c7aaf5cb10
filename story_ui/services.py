"""What the UI handlers need, built once at start-up and passed in; and the app's one
generation entry point, :func:`generate`, a ZeroGPU ``@spaces.GPU`` function.

On a ZeroGPU Space a GPU is attached only while a ``@spaces.GPU`` function runs, and it runs in
a worker process forked from the app that gets its arguments and sends back what it yields
pickled. So :func:`generate` takes what can be pickled (the work, the request, the settings, a
:class:`SharedStop`, an :class:`Engine` naming the model) and finds the loaded model in
:data:`ENGINES`, which the worker inherits (or loads it there, if the worker was forked before
it was loaded). An error comes back as a value and is raised again in the app, unchanged: what
the handlers catch is what was raised. Elsewhere the decorator does nothing and the same
function runs in the app's thread.
"""

from __future__ import annotations

import os
import random
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

try:
    import spaces  # ZeroGPU's package (the gpu set); its decorator does nothing elsewhere
except ImportError:  # the CPU Space's set: nothing runs on a GPU
    spaces = None

from human_ratings.identity import RateLimit, folder_key
from human_ratings.mirror import Mirror
from human_ratings.pairs import (
    Item,
    item_id,
    load_requests,
    load_systems,
)
from human_ratings.reactions import Reaction, ReactionLog, system_of
from human_ratings.store import VoteStore
from human_ratings.study import Limits, Study, local_study
from storygen.backends import Backend, load_backend
from storygen.best_of import stream_best
from storygen.config import ModelSpec, SamplingConfig, SystemSpec
from storygen.generation import PlanUpdate, StoryUpdate, stream_plan, stream_story
from storygen.items import write_one
from storygen.request import Plan, StoryRequest

ROOT = Path(__file__).resolve().parent.parent

ENGINES: dict[str, Backend] = {}
"""The loaded models by key (:func:`engine`): a model cannot be pickled, so the GPU function is
given an :class:`Engine` and finds the model here, in the app or in a worker forked from it."""


@dataclass(frozen=True)
class Engine:
    """What the GPU function needs to find a model, or to load it where it is missing (a
    ZeroGPU worker forked before the model was loaded): picklable."""

    key: str
    spec: ModelSpec
    slots: int = 1


def engine(backend: Backend, slots: int = 1) -> Engine:
    """The handle of a loaded model, registered in :data:`ENGINES`."""
    key = str(id(backend))
    ENGINES.setdefault(key, backend)
    return Engine(key, backend.spec, slots)


@dataclass
class Failed:
    """An error raised while writing, sent across as a value (ZeroGPU would replace it with
    its own generic one) and raised again on the app's side, unchanged."""

    error: Exception


class SharedStop:
    """A stop signal that also reaches a forked worker holding a pickled copy of it: set, it is
    a file that exists. Checked between two tokens (a stat, microseconds)."""

    def __init__(self):
        fd, name = tempfile.mkstemp(prefix="storygen-stop-")
        os.close(fd)
        os.unlink(name)
        self.path = Path(name)

    def set(self) -> None:
        self.path.touch()

    def is_set(self) -> bool:
        return self.path.exists()

    def close(self) -> None:
        self.path.unlink(missing_ok=True)


GPU_TOKENS_PER_S = 20
"""A cautious speed for sizing ZeroGPU reservations: the small model, token by token, in NF4."""


def gpu_seconds(engine: Engine, work: str, *args, **kwargs) -> int:
    """The GPU time ZeroGPU reserves for one call, from the tokens it may write: a reservation
    that is too long costs the visitor's quota (and waits longer), one too short is cut off."""
    from storygen.generation import max_new_tokens

    if work == "item":  # (system, request, seed): the system's own attempts and plan
        system, request, seed = args[0], args[1], args[2]
        sampling = system.sampling_for(seed)
        stories = system.attempts + (system.plan == "model")
    else:  # (request, sampling, ...); best-of-n: (request, sampling, attempts, ...)
        request, sampling = args[0], args[1]
        stories = args[2] if work == "best" else 1
    tokens = max_new_tokens(request, sampling) * stories
    return min(300, 10 + round(tokens / GPU_TOKENS_PER_S))


def _on_gpu(fn):
    return spaces.GPU(duration=gpu_seconds)(fn) if spaces is not None else fn


@_on_gpu
def generate(engine: Engine, work: str, *args, **kwargs) -> Iterator:
    """Every generation the app does, on a GPU when it runs on ZeroGPU: ``work`` is ``story``
    (:func:`stream_story`), ``best`` (:func:`stream_best`), ``plan`` (:func:`stream_plan`) or
    ``item`` (:func:`write_one`, yielded once), given the model and then these arguments. An
    error is yielded as :class:`Failed` (:func:`relay` raises it again)."""
    try:
        backend = ENGINES.get(engine.key)
        if backend is None:
            backend = ENGINES[engine.key] = load_backend(engine.spec, slots=engine.slots)
        if work == "story":
            yield from stream_story(backend, *args, **kwargs)
        elif work == "best":
            yield from stream_best(backend, *args, **kwargs)
        elif work == "plan":
            yield from stream_plan(backend, *args, **kwargs)
        elif work == "item":
            yield write_one(backend, *args, **kwargs)
        else:
            raise ValueError(f"no such work {work!r}")
    except Exception as exc:  # noqa: BLE001 - relayed to the app, raised there
        yield Failed(exc)


def relay(stream: Iterator) -> Iterator:
    """What :func:`generate` yields, with a :class:`Failed` raised as its error."""
    for item in stream:
        if isinstance(item, Failed):
            raise item.error
        yield item


@dataclass
class AppConfig:
    """Settings of the app, from the command line or the environment (Spaces)."""

    model: ModelSpec = field(default_factory=ModelSpec)
    votes_csv: Path = Path("runs/votes.csv")
    """Where the Rate tab appends votes."""
    reactions_jsonl: Path | None = None
    """Where the Write tab keeps readers' reactions (thumbs, edits); default: reactions.jsonl
    beside the votes (so that a Hub sync of the votes' folder carries both)."""
    pairs: Path | None = ROOT / "human_ratings" / "demo_pairs.jsonl"
    """A/B items for annotators (``python -m human_ratings pairs`` writes them)."""
    live: bool = False
    """When an annotator has rated every stored item, generate a new one on the spot."""
    live_systems: Path = ROOT / "human_ratings" / "demo_systems.yaml"
    """The two systems compared by live items."""
    live_requests: Path = ROOT / "examples" / "requests.jsonl"
    """Requests that live items are drawn from."""
    rater_password: str | None = None
    """If set, annotators must give it before rating."""
    concurrency: int = 4
    """Stories written at once (the rest wait in Gradio's queue). On llama.cpp each has its own
    context and they share the cores: one story alone gets them all, four get one each."""
    stream_every_s: float = 0.1
    """While a story is written, the page is refreshed at most this often (each refresh sends
    the story so far; every token at 50 tokens/s costs the server more than it shows)."""
    hub_dataset: str | None = None
    """Push votes to this Hub dataset with scheduled commits (needs HF_TOKEN)."""
    study: Path | None = None
    """A study folder (``python -m human_ratings study new``) for the Rate tab. Without one,
    the Rate tab runs a local study of ``pairs``: every annotator may rate every item, votes go
    to ``votes_csv``; annotators type a name (and ``rater_password``, if set) on one's own
    machine, and are anonymous visitors on a Hugging Face Space."""

    @classmethod
    def from_env(cls, **overrides) -> AppConfig:
        env = os.environ
        cfg = cls(
            votes_csv=Path(env.get("STORYGEN_VOTES", "runs/votes.csv")),
            reactions_jsonl=Path(env["STORYGEN_REACTIONS"])
            if env.get("STORYGEN_REACTIONS")
            else None,
            rater_password=env.get("STORYGEN_RATER_PASSWORD") or None,
            live=env.get("STORYGEN_LIVE_AB", "") in ("1", "true", "yes"),
            hub_dataset=env.get("STORYGEN_HUB_DATASET") or None,
            study=Path(env["STORYGEN_STUDY"]) if env.get("STORYGEN_STUDY") else None,
        )
        for k, v in overrides.items():
            if v is not None:
                setattr(cfg, k, v)
        return cfg


class Services:
    """The loaded model, the vote store and the A/B items, shared read-only by all sessions."""

    def __init__(self, config: AppConfig, backend: Backend | None = None):
        self.config = config
        self.study = self._study(config)
        votes = self.study.votes_path if self.study else Path(config.votes_csv)
        self.store = self.study.store if self.study else VoteStore(votes)
        self.reactions = ReactionLog(config.reactions_jsonl or votes.with_name("reactions.jsonl"))
        limits = self.study.config.limits if self.study else Limits()
        self.vote_limit = RateLimit(limits.votes, 60, limits.overall)
        # Failed sign-ins, per visitor only: a flood of others' failures must lock no one out
        # (an invite code is about 80 random bits: guessing one is hopeless anyway).
        self.signin_limit = RateLimit(limits.signins, 60)
        # Items asked for (Start, Next item): each one shown is spent for that annotator.
        self.assign_limit = RateLimit(2 * limits.votes, 60)
        self.react_limit = RateLimit(limits.votes, 60, limits.overall)
        self.space_owner = os.environ.get("SPACE_AUTHOR_NAME") or None
        # What a Hub sync pushes: append-only copies, one file per process (on when syncing).
        key = self.study.key if self.study else folder_key(votes.with_name("study.key"))
        self.mirror = Mirror(votes.with_name("sync"), key) if config.hub_dataset else None
        # Visitors' browser ids are sealed with the same key: they outlive a restart.
        self.browser_secret = key.hex()
        self._backend = backend
        self._lock = threading.Lock()
        self._system_models: dict[str, Backend] = {}
        self._stops: dict[str | None, set[SharedStop]] = {}
        self._stops_lock = threading.Lock()  # not _lock: Stop must not wait for a model load
        # Never the server's file path: the Results tab shows this line to every visitor.
        self.sync_status = "Votes are kept on this server only (not synced anywhere)."
        self.scheduler = None
        """The Hub sync's ``huggingface_hub.CommitScheduler``, when it runs."""

    @staticmethod
    def _study(config: AppConfig) -> Study | None:
        """The study the Rate tab runs: the one named, else a local one of the pairs file."""
        if config.study is not None:
            return Study(config.study)
        pairs = config.pairs if config.pairs and Path(config.pairs).exists() else None
        if pairs is None and not config.live:
            return None
        access = "open" if os.environ.get("SPACE_ID") else "local"
        return local_study(pairs, config.votes_csv, access, config.rater_password, config.live)

    @property
    def items(self) -> list[Item]:
        return self.study.items if self.study else []

    @property
    def backend(self) -> Backend:
        """The model on its backend, loaded on first use (once, whichever session asks first),
        with one slot per story the app writes at once."""
        with self._lock:
            if self._backend is None:
                self._backend = self._load(self.config.model)
            return self._backend

    def _load(self, spec: ModelSpec) -> Backend:
        """The model on its backend; if llama.cpp's server cannot be started, the same model in
        process (one reader's speed, the same stories' quality), with a line saying why."""
        from storygen.backends.server import ServerError

        try:
            return load_backend(spec, slots=self.config.concurrency)
        except ServerError as exc:
            fallback = replace(spec, backend="llamacpp", server_port=None)
            print(f"llama-server: {exc}\nwriting in process instead (llamacpp)", flush=True)
            self.config.model = fallback
            return load_backend(fallback, slots=self.config.concurrency)

    def write(
        self,
        request: StoryRequest,
        sampling: SamplingConfig,
        prefix: str = "",
        session: str | None = None,
        plan: Plan | None = None,
        attempts: int = 1,
    ) -> Iterator[tuple[int | None, StoryUpdate]]:
        """The one way the UI reaches generation: stream a story for ``request`` (from
        ``plan``, if given), as (attempt, update) pairs; with ``attempts`` > 1 (best-of-n, not
        for a continued story) the attempts stream one after another and the last update
        holds the one kept.

        :meth:`stop` with the same ``session`` ends it between two tokens; the story so far is
        still returned, as it was shown, and the engine's slot is free at once.
        """
        with self._stoppable(session) as stop:
            if attempts > 1 and not prefix:
                yield from self._generate("best", request, sampling, attempts, stop, plan)
                return
            for update in self._generate(
                "story", request, sampling, stop, prefix=prefix, plan=plan
            ):
                yield (None if update.story is not None else 0), update

    def react(
        self,
        kind: str,
        story: str,
        provenance: dict,
        edited: str = "",
        reader: str = "",
        visitor: str = "",
    ) -> Reaction:
        """Keep a reader's reaction to a finished story, with what made it (raises
        :class:`~human_ratings.reactions.ReactionError` with a message for the reader)."""
        reaction = Reaction(kind, story, edited, system_of(provenance), provenance, reader, visitor)
        self.reactions.append(reaction)
        if self.mirror is not None:
            self.mirror.add("reactions", reaction)
        return reaction

    def plan(
        self, request: StoryRequest, sampling: SamplingConfig, session: str | None = None
    ) -> Iterator[PlanUpdate]:
        """Stream the model's plan for ``request``; :meth:`stop` ends it like a story."""
        with self._stoppable(session) as stop:
            yield from self._generate("plan", request, sampling, stop)

    def _generate(self, work: str, *args, model: Backend | None = None, **kwargs) -> Iterator:
        """:func:`generate` on ``model`` (default: the app's), errors raised as themselves."""
        slots = self.config.concurrency if model is None else 1
        handle = engine(model or self.backend, slots)
        return relay(generate(handle, work, *args, **kwargs))

    @contextmanager
    def _stoppable(self, session: str | None) -> Iterator[SharedStop]:
        """A stop signal for one piece of work, registered under ``session`` while it runs."""
        stop = SharedStop()
        with self._stops_lock:
            self._stops.setdefault(session, set()).add(stop)
        try:
            yield stop
        finally:
            with self._stops_lock:
                self._stops[session].discard(stop)
                if not self._stops[session]:
                    del self._stops[session]
                stop.close()

    def stop(self, session: str | None) -> bool:
        """Stop the stories ``session`` is writing; False if it is writing none."""
        with self._stops_lock:  # under the lock: never a stop file made after it was removed
            events = list(self._stops.get(session, ()))
            for event in events:
                event.set()
        return bool(events)

    def flush_sync(self, timeout: float = 60) -> str:
        """Push what the Hub sync has not pushed yet, now (before the app stops: a Space is
        restarted with SIGTERM, and its disk may not outlive it). Returns what happened."""
        if self.scheduler is None:
            return "no Hub sync"
        try:
            self.scheduler.trigger().result(timeout=timeout)
        except Exception as exc:  # noqa: BLE001 - said, the app is stopping anyway
            return f"the last push to the Hub failed: {type(exc).__name__}: {exc}"
        return "pushed to the Hub"

    def model_for(self, system: SystemSpec) -> Backend:
        """A model per live system, loaded once. Separate models rather than toggling one
        adapter on and off: that toggle would be state shared by concurrent users."""
        with self._lock:
            if system.name not in self._system_models:
                self._system_models[system.name] = load_backend(system.spec())
            return self._system_models[system.name]

    def live_item(self) -> Item:
        """Generate a new A/B item now: a random request, both systems, the same seed (the
        study keeps it: :meth:`~human_ratings.study.Study.add_item`)."""
        systems = load_systems(self.config.live_systems)
        request = random.SystemRandom().choice(load_requests(self.config.live_requests))
        seed = random.SystemRandom().randrange(2**31)
        stories = {}
        for s in systems:
            written = next(self._generate("item", s, request, seed, model=self.model_for(s)))
            stories[s.name] = written.as_story()
        return Item(f"live-{item_id(request, seed)}", request, stories)


def start_hub_sync(services: Services) -> str:
    """Push the votes folder to a Hub dataset every few minutes, when configured.

    Off by default. Returns (and stores) a status line the Results tab shows.
    """
    repo = services.config.hub_dataset
    if not repo:
        return services.sync_status
    token = os.environ.get("HF_TOKEN")
    if not token:
        services.sync_status = (
            f"STORYGEN_HUB_DATASET={repo} is set but HF_TOKEN is not: votes stay local."
        )
        return services.sync_status
    from huggingface_hub import CommitScheduler

    try:
        services.scheduler = CommitScheduler(
            repo_id=repo,
            repo_type="dataset",
            folder_path=services.mirror.folder,
            path_in_repo="votes",
            every=5,
            token=token,
            private=True,  # votes and reactions are not for everyone to read
            # Only the append-only copies: the vote CSV may have a torn record cut off.
            allow_patterns=["*.jsonl"],
        )
        services.sync_status = f"Votes are pushed to the Hub dataset {repo} every 5 minutes."
    except Exception as exc:  # noqa: BLE001 - the app must still serve without the Hub
        services.sync_status = f"Hub sync to {repo} is OFF: {type(exc).__name__}: {exc}"
    return services.sync_status
