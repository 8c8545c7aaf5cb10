"""Helpers shared by the benchmarks: thread pinning, table printing (RSS sampling is
:class:`eval.resources.PeakRSS`, which the comparison uses too)."""

from __future__ import annotations


def pin_threads(n: int = 1) -> None:
    """Benchmarks run on a fixed number of threads; a busy 2-core machine ruins 2-thread timings."""
    import torch

    torch.set_num_threads(n)


def table(rows: list[dict], columns: list[str]) -> str:
    """A Markdown table; floats get three significant decimals."""

    def fmt(v):
        if not isinstance(v, float):
            return str(v)
        return f"{v:.0f}" if abs(v) >= 100 else f"{v:.3g}"

    out = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    out += ["| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(out)
