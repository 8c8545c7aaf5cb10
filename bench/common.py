"""Helpers shared by the benchmarks: thread pinning, RSS sampling, table printing."""

from __future__ import annotations

import os
import threading
import time

import psutil


def pin_threads(n: int = 1) -> None:
    """Benchmarks run on a fixed number of threads; a busy 2-core machine ruins 2-thread timings."""
    import torch

    torch.set_num_threads(n)


class PeakRSS:
    """Sample this process's resident memory every 5 ms inside a ``with`` block."""

    def __init__(self):
        self.proc = psutil.Process(os.getpid())
        self.peak = self.start = 0
        self._stop = threading.Event()

    def __enter__(self):
        self.start = self.peak = self.proc.memory_info().rss
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.005)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)

    @property
    def peak_mib(self) -> float:
        return self.peak / 2**20

    @property
    def delta_mib(self) -> float:
        return (self.peak - self.start) / 2**20


def table(rows: list[dict], columns: list[str]) -> str:
    """A Markdown table; floats get three significant decimals."""

    def fmt(v):
        if not isinstance(v, float):
            return str(v)
        return f"{v:.0f}" if abs(v) >= 100 else f"{v:.3g}"

    out = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    out += ["| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(out)
