"""The app serving simultaneous story requests: one user alone against several at once.

    python -m bench.app_serving [--users 4] [--tokens 96] [--concurrency 2]

Starts the app on the embedded default (NF4 + demo adapter) in this process and drives it
through gradio_client. For each user: time to first streamed text and tokens/s of its story
(from the story's provenance). Torch runs 1 thread per generation, so the 2 cores serve two
stories at a time; the rest wait in Gradio's queue (that wait counts in time to first token).
"""

from __future__ import annotations

import argparse
import re
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path

from bench.common import pin_threads, table

FORM = [
    "Mara: stubborn, kind\nJonah: curious",
    "a lighthouse",
    "the 1920s",
    "mystery",
    "",
    "",
    "happy",
    "",
    "flash",
    "",
]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_user(url: str, tokens: int, seed: int, out: list) -> None:
    from gradio_client import Client

    client = Client(url, verbose=False)
    t0 = time.perf_counter()
    job = client.submit(*FORM, 0.8, 0.92, 50, 1.15, tokens, seed, False, "", api_name="/write")
    first = None
    for update in job:
        if first is None and update[0]:
            first = time.perf_counter() - t0
    status = job.result()[1]
    m = re.search(r"(\d+) tokens in ([\d.]+) s", status)
    out.append(
        {
            "ttft_s": first,
            "tokens_per_s": int(m.group(1)) / float(m.group(2)),
            "wall_s": time.perf_counter() - t0,
        }
    )


def round_of(url: str, users: int, tokens: int) -> dict:
    results: list[dict] = []
    threads = [
        threading.Thread(target=one_user, args=(url, tokens, 100 + i, results))
        for i in range(users)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {
        "users": users,
        "ttft_s_median": statistics.median(r["ttft_s"] for r in results),
        "ttft_s_max": max(r["ttft_s"] for r in results),
        "tokens_per_s_per_user": statistics.median(r["tokens_per_s"] for r in results),
        "wall_s_max": max(r["wall_s"] for r in results),
    }


def main(argv=None) -> None:
    from story_ui.layout import build_app
    from story_ui.services import AppConfig, Services

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=96)
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args(argv)
    pin_threads(1)
    with tempfile.TemporaryDirectory() as d:
        services = Services(AppConfig(votes_csv=Path(d) / "v.csv", concurrency=args.concurrency))
        services.lm  # noqa: B018 - load before timing
        demo = build_app(services)
        port = _port()
        demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
        url = f"http://127.0.0.1:{port}/"
        round_of(url, 1, 8)  # warm-up
        rows = [round_of(url, 1, args.tokens), round_of(url, args.users, args.tokens)]
        demo.close()
    rows.append(
        {
            "users": f"ratio {args.users} users / 1 user",
            "ttft_s_median": rows[1]["ttft_s_median"] / rows[0]["ttft_s_median"],
            "tokens_per_s_per_user": rows[1]["tokens_per_s_per_user"]
            / rows[0]["tokens_per_s_per_user"],
        }
    )
    print(
        f"app on the embedded default (nf4 + demo adapter), concurrency {args.concurrency}, "
        f"{args.tokens} tokens per story"
    )
    print(
        table(rows, ["users", "ttft_s_median", "ttft_s_max", "tokens_per_s_per_user", "wall_s_max"])
    )


if __name__ == "__main__":
    main()
