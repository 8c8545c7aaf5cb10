"""What the UI handlers need, built once at start-up and passed in (no module-level state)."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from human_ratings.pairs import Item, load_items
from human_ratings.store import VoteStore
from storygen.config import ModelSpec
from storygen.loading import LoadedModel, load_model


@dataclass
class AppConfig:
    """Settings of the app, from the command line or the environment (Spaces)."""

    model: ModelSpec = field(default_factory=ModelSpec)
    votes_csv: Path = Path("runs/votes.csv")
    """Where the Rate tab appends votes."""
    pairs: Path | None = (
        Path(__file__).resolve().parent.parent / "human_ratings" / "demo_pairs.jsonl"
    )
    """A/B items for annotators (``python -m human_ratings pairs`` writes them)."""
    rater_password: str | None = None
    """If set, annotators must give it before rating."""
    concurrency: int = 2
    """Story generations running at once (the rest wait in Gradio's queue)."""
    hub_dataset: str | None = None
    """Push votes to this Hub dataset with scheduled commits (needs HF_TOKEN)."""

    @classmethod
    def from_env(cls, **overrides) -> AppConfig:
        env = os.environ
        cfg = cls(
            votes_csv=Path(env.get("STORYGEN_VOTES", "runs/votes.csv")),
            rater_password=env.get("STORYGEN_RATER_PASSWORD") or None,
            hub_dataset=env.get("STORYGEN_HUB_DATASET") or None,
        )
        for k, v in overrides.items():
            if v is not None:
                setattr(cfg, k, v)
        return cfg


class Services:
    """The loaded model, the vote store and the A/B items, shared read-only by all sessions."""

    def __init__(self, config: AppConfig, lm: LoadedModel | None = None):
        self.config = config
        self.store = VoteStore(config.votes_csv)
        self.items: list[Item] = (
            load_items(config.pairs) if config.pairs and Path(config.pairs).exists() else []
        )
        self._lm = lm
        self._lock = threading.Lock()
        self.sync_status = "Votes are kept in " + str(config.votes_csv) + " only."

    @property
    def lm(self) -> LoadedModel:
        """The model, loaded on first use (once, whichever session asks first)."""
        with self._lock:
            if self._lm is None:
                self._lm = load_model(self.config.model)
            return self._lm


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
            folder_path=services.config.votes_csv.parent,
            path_in_repo="votes",
            every=5,
            token=token,
            allow_patterns=["*.csv"],
        )
        services.sync_status = f"Votes are pushed to the Hub dataset {repo} every 5 minutes."
    except Exception as exc:  # noqa: BLE001 - the app must still serve without the Hub
        services.sync_status = f"Hub sync to {repo} is OFF: {type(exc).__name__}: {exc}"
    return services.sync_status
