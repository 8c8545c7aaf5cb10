"""The app as its users meet it: start-up, then 1, 4 and 8 people asking for a story at once.

    python -m bench.app_serving [--users 1,4,8] [--length short] [--tokens 0]

Starts ``app.py`` in a fresh process on the embedded default (llama.cpp + demo adapter) and
times start to serving (the first page answered), next to the same start on the old default
(transformers NF4 + adapter). Then drives it through gradio_client: for each round, that many
users submit the Write form at once; per user, the time to the first streamed text, the time to
the finished story and its tokens/s (from the story's provenance).
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from bench.common import table

ROOT = Path(__file__).resolve().parent.parent
FORM = [
    "Mara: stubborn, kind\nJonah: curious",
    "a lighthouse",
    "the 1920s",
    "mystery",
    "",
    "",
    "happy",
    "",
    "short",
    "",
    "",
]
"""The Write form in the order of /write's parameters (characters ... prompt, arc)."""


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(
    votes: Path, *extra: str, log: Path | None = None
) -> tuple[subprocess.Popen, str, float]:
    """Start app.py; return (process, url, seconds until it served its page). Its output goes
    to ``log`` when given (appended), else nowhere."""
    port = _port()
    out = log.open("ab") if log else subprocess.DEVNULL
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "app.py", "--port", str(port), "--votes", str(votes), *extra],
        cwd=ROOT,
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    if log:
        out.close()  # the child has its own copy
    url = f"http://127.0.0.1:{port}/"
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"app.py {' '.join(extra)} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return proc, url, time.perf_counter() - t0
        except httpx.HTTPError:
            time.sleep(0.05)


def one_user(url: str, form: list, tokens: int, seed: int, out: list) -> None:
    from gradio_client import Client

    client = Client(url, verbose=False)
    t0 = time.perf_counter()
    job = client.submit(*form, 0.8, 0.92, 50, 1.15, tokens, seed, False, 1, "", api_name="/write")
    first = None
    for update in job:
        if first is None and update[0]:
            first = time.perf_counter() - t0
    status = job.result()[1]
    m = re.search(r"(\d+) tokens in ([\d.]+) s", status)
    out.append(
        {
            "ttft_s": first,
            "tokens": int(m.group(1)),
            "tokens_per_s": int(m.group(1)) / float(m.group(2)),
            "done_s": time.perf_counter() - t0,
        }
    )


def round_of(url: str, users: int, form: list, tokens: int) -> dict:
    results: list[dict] = []
    threads = [
        threading.Thread(target=one_user, args=(url, form, tokens, 100 + i, results))
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
        "tokens_median": statistics.median(r["tokens"] for r in results),
        "done_s_median": statistics.median(r["done_s"] for r in results),
        "done_s_max": max(r["done_s"] for r in results),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", default="1,4,8")
    parser.add_argument("--length", default="short", help="the requested story length")
    parser.add_argument("--tokens", type=int, default=0, help="max new tokens (0: from length)")
    parser.add_argument("--skip-nf4-start", action="store_true")
    args = parser.parse_args(argv)
    form = [*FORM[:8], args.length, *FORM[9:]]
    starts = []
    with tempfile.TemporaryDirectory() as d:
        if not args.skip_nf4_start:
            proc, _, seconds = start_app(
                Path(d) / "nf4.csv", "--backend", "transformers", "--quantization", "nf4"
            )
            starts.append(
                {"app": "transformers nf4 + adapter (old default)", "start_to_serving_s": seconds}
            )
            proc.terminate()
            proc.wait(30)
        proc, url, seconds = start_app(Path(d) / "v.csv")
        starts.append({"app": "llamacpp + adapter (default)", "start_to_serving_s": seconds})
        try:
            round_of(url, 1, form, 8)  # warm-up
            rows = [round_of(url, int(n), form, args.tokens) for n in args.users.split(",")]
        finally:
            proc.terminate()
            proc.wait(30)
    print(table(starts, ["app", "start_to_serving_s"]))
    print(
        f"\napp on the embedded default (llama.cpp + demo adapter, default concurrency), "
        f"{args.length} stories, max new tokens {args.tokens or 'from the length'}\n"
    )
    cols = ["users", "ttft_s_median", "ttft_s_max", "tokens_per_s_per_user", "tokens_median"]
    print(table(rows, [*cols, "done_s_median", "done_s_max"]))


if __name__ == "__main__":
    main()
