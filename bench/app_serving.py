"""The app as its users meet it: start-up, then 1, 4 and 8 people asking for a story at once.

    python -m bench.app_serving [--users 1,8] [--length short] [--tokens 0] [--repeats 2]

Starts ``app.py`` twice, each in a process of its own, on the embedded model with the demo
adapter: in process (llama.cpp, today's default, 4 stories at once) and in many-readers mode
(``--backend llama-server --concurrency 8``: llama.cpp's own server, continuous batching), and
times start to serving (the first page answered). Then drives them through gradio_client, one
app at a time, the rounds alternating between them: for each round, that many users submit the
Write form at once; per user, the time to the first streamed text, the time to the finished
story and its tokens/s (from the story's provenance). A round is a steady load: each reader
asks for another story as soon as one is written, for ``--seconds``; its total is all the
tokens over its wall time. Prints the server's figures as ratios to in process's, with their
spread.
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


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def round_of(url: str, users: int, form: list, tokens: int, seconds: float = 0) -> dict:
    """``users`` readers at once, each asking for a story and, while ``seconds`` have not
    passed, for another as soon as one is written (0: one story each). The total is every
    token over the round's wall time: a steady load, not one batch's slowest story alone."""
    results: list[dict] = []
    deadline = time.perf_counter() + seconds

    def reader(i: int) -> None:
        seed = 100 + i
        while True:
            one_user(url, form, tokens, seed, results)
            seed += users
            if time.perf_counter() >= deadline:
                return

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(users)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    return {
        "users": users,
        "stories": len(results),
        "ttft_s_median": statistics.median(r["ttft_s"] for r in results),
        "ttft_s_max": max(r["ttft_s"] for r in results),
        "tokens_per_s_per_user": statistics.median(r["tokens_per_s"] for r in results),
        "total_tokens_per_s": sum(r["tokens"] for r in results) / wall,
        "tokens_median": statistics.median(r["tokens"] for r in results),
        "done_s_median": statistics.median(r["done_s"] for r in results),
        "done_s_max": max(r["done_s"] for r in results),
    }


MODES = {
    "in process": ["--backend", "llamacpp"],
    "llama-server": ["--backend", "llama-server", "--concurrency", "8"],
}
"""Today's default (llama.cpp in process, 4 stories at once) and many-readers mode."""


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", default="1,8")
    parser.add_argument("--length", default="short", help="the requested story length")
    parser.add_argument("--tokens", type=int, default=0, help="max new tokens (0: from length)")
    parser.add_argument("--repeats", type=int, default=2, help="rounds per mode, interleaved")
    parser.add_argument(
        "--seconds", type=float, default=40, help="each round's steady load (0: one story each)"
    )
    parser.add_argument("--modes", default=",".join(MODES), help="which of " + ", ".join(MODES))
    args = parser.parse_args(argv)
    form = [*FORM[:8], args.length, *FORM[9:]]
    modes = args.modes.split(",")
    users = [int(n) for n in args.users.split(",")]
    starts, rows = [], []
    with tempfile.TemporaryDirectory() as d:
        apps = {}
        try:
            for mode in modes:
                proc, url, seconds = start_app(Path(d) / f"{len(apps)}.csv", *MODES[mode])
                apps[mode] = (proc, url)
                starts.append({"app": mode, "start_to_serving_s": seconds})
                round_of(url, 1, form, 8)  # warm-up
            # One app writes at a time; the rounds alternate between the modes, so that the
            # machine's drift falls on both alike.
            for repeat in range(args.repeats):
                for n in users:
                    for mode in modes:
                        rows.append(
                            {
                                "mode": mode,
                                "repeat": repeat,
                                **round_of(apps[mode][1], n, form, args.tokens, args.seconds),
                            }
                        )
        finally:
            for proc, _ in apps.values():
                proc.terminate()
                proc.wait(30)
    print(table(starts, ["app", "start_to_serving_s"]))
    print(
        f"\nthe embedded model + demo adapter, {args.length} stories, max new tokens "
        f"{args.tokens or 'from the length'}; each row one round: that many readers asking for "
        f"stories for {args.seconds:g} s\n"
    )
    cols = ["mode", "users", "stories", "ttft_s_median", "ttft_s_max", "tokens_per_s_per_user"]
    print(table(rows, [*cols, "total_tokens_per_s", "tokens_median", "done_s_max"]))
    if set(MODES) <= set(modes):
        print("\nllama-server against in process, median over the rounds (min-max):")
        summary = []
        for n in users:

            def of(mode, key, n=n):
                return [r[key] for r in rows if r["mode"] == mode and r["users"] == n]

            for key in ("total_tokens_per_s", "tokens_per_s_per_user"):
                ratios = [a / b for a, b in zip(of("llama-server", key), of("in process", key))]
                summary.append(
                    {
                        "users": n,
                        "figure": key,
                        "ratio": spread(ratios),
                    }
                )
            for key in ("ttft_s_median", "ttft_s_max"):
                summary.append(
                    {
                        "users": n,
                        "figure": f"{key} llama-server",
                        "ratio": f"{statistics.median(of('llama-server', key)):.2f} s",
                    }
                )
        print(table(summary, ["users", "figure", "ratio"]))
        print(
            "targets: 8 readers: median first token < 3 s, max < 6 s, total tokens/s >= 2x; "
            "1 reader: tokens/s >= 0.9x"
        )


if __name__ == "__main__":
    main()
