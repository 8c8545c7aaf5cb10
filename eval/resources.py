"""Resident memory of this process, sampled while a block runs (the comparison's memory figure
and the benchmarks')."""

from __future__ import annotations

import os
import threading
import time

import psutil


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
