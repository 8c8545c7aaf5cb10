"""The mutation score per module, from the results of ``mutmut run`` (in ``mutants/``).

    .venv/bin/python scripts/mutation_report.py [--list]

Killed counts kills and timeouts (the tests noticed). A surviving mutant is either explained in
``tests/mutants_equivalent.txt`` (one line each: the mutant's name, then why no test can or
should tell it apart: the same behaviour, or a choice with nothing to observe) or it is a gap
that a test should close: ``--list`` prints those. Exits 1 when a module is below the target or
a survivor is unexplained.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = 0.85
EXPLAINED = ROOT / "tests" / "mutants_equivalent.txt"
DETECTED = {"killed", "timeout", "caught by type check", "segfault"}


def explained() -> dict[str, str]:
    """Mutant name -> the reason it survives, from the committed list."""
    out = {}
    for line in EXPLAINED.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, why = line.partition(" ")
            out[name] = why.strip()
    return out


def results() -> dict[str, dict[str, str]]:
    """Module -> {mutant: status}, from mutmut's own files."""
    from mutmut.stats import status_by_exit_code

    by_module: dict[str, dict[str, str]] = defaultdict(dict)
    for meta in sorted((ROOT / "mutants").rglob("*.py.meta")):
        module = str(meta.relative_to(ROOT / "mutants"))[: -len(".meta")]
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        for name, code in codes.items():
            by_module[module][name] = status_by_exit_code[code]
    return by_module


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--list", action="store_true", help="print unexplained survivors")
    args = parser.parse_args(argv)
    why = explained()
    by_module = results()
    if not by_module:
        print("no results: run `bash scripts/mutation.sh` first", file=sys.stderr)
        return 1
    cols = ["module", "mutants", "killed", "explained", "unexplained", "not run", "killed %"]
    cols += ["killed % of the rest"]
    print("| " + " | ".join(cols) + " |")
    print("|---" * len(cols) + "|")
    failed = False
    gaps = []
    for module, statuses in by_module.items():
        n = len(statuses)
        counts = Counter("killed" if s in DETECTED else s for s in statuses.values())
        alive = [m for m, s in statuses.items() if s not in DETECTED]
        equivalent = [m for m in alive if m in why]
        open_ = [m for m in alive if m not in why and statuses[m] != "not checked"]
        gaps += [(m, statuses[m]) for m in open_]
        score = counts["killed"] / n
        rest = counts["killed"] / max(1, n - len(equivalent))
        failed |= score < TARGET or bool(open_) or counts["not checked"] > 0
        print(
            f"| {module} | {n} | {counts['killed']} | {len(equivalent)} | {len(open_)} "
            f"| {counts['not checked']} | {100 * score:.1f} | {100 * rest:.1f} |"
        )
    stale = sorted(set(why) - {m for s in by_module.values() for m in s})
    if stale:
        print(f"\n{len(stale)} explained mutants no longer exist (the code moved): {stale[:5]}")
    if args.list:
        for m, status in gaps:
            print(f"{status:>10}  {m}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
