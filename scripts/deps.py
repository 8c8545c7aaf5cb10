"""The dependency sets of pyproject.toml as pip requirement lines, and the Space files of them.

    python scripts/deps.py core runtime gpu model dev   # the lines of these sets (setup.sh)
    python scripts/deps.py --check                      # the Space files equal their sets
    python scripts/deps.py --write                      # rewrite the Space files from the sets

``core`` is ``[project].dependencies``; the others are its extras. A Space installs one file
with no constraints file, so each file is whole: requirements.txt for a ZeroGPU Space (core +
gpu; the transformers backend on CUDA) and requirements-cpu.txt for a CPU Space (core +
runtime; llama.cpp from its project's prebuilt CPU wheels). Wheels installed without their
dependencies (the embedded model; scripts/setup.sh and app.py install them) are not in either.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

try:
    import tomllib  # novermin
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
LLAMA_CPP_CPU_WHEELS = "https://abetlen.github.io/llama-cpp-python/whl/cpu"
"""llama-cpp-python's prebuilt CPU wheels (PyPI has only its source)."""

SPACE_FILES = {
    "requirements.txt": {
        "sets": ("core", "gpu"),
        "head": [
            "# A ZeroGPU Space (README front matter): the app on the transformers backend, 4-bit",
            "# NF4 + the adapter on CUDA inside a @spaces.GPU function. torch comes from PyPI",
            "# with CUDA. Generated from pyproject.toml: python scripts/deps.py --write",
            "# A CPU Space (a paid plan since July 2026) installs requirements-cpu.txt instead.",
        ],
    },
    "requirements-cpu.txt": {
        "sets": ("core", "runtime"),
        "head": [
            "# A CPU Space (hardware cpu-basic; creating one needs a paid plan since July 2026):",
            "# the app on llama.cpp, no torch. Use it as the Space's requirements.txt (README,",
            '# "A CPU Space"). Generated from pyproject.toml: python scripts/deps.py --write',
            "# llama-cpp-python has no wheel on PyPI; its project's prebuilt CPU wheels:",
            f"--extra-index-url {LLAMA_CPP_CPU_WHEELS}",
        ],
    },
}


def sets(pyproject: Path = ROOT / "pyproject.toml") -> dict[str, list[str]]:
    project = tomllib.loads(pyproject.read_text())["project"]
    return {"core": list(project["dependencies"]), **project["optional-dependencies"]}


def lines(names: list[str], all_sets: dict[str, list[str]] | None = None) -> list[str]:
    """The requirement lines of these sets, in order, each once."""
    all_sets = all_sets or sets()
    unknown = [n for n in names if n not in all_sets]
    if unknown:
        raise SystemExit(f"no dependency set {unknown}; there are {sorted(all_sets)}")
    out: list[str] = []
    for name in names:
        out += [r for r in all_sets[name] if r not in out]
    return out


def space_file(name: str) -> str:
    spec = SPACE_FILES[name]
    return "\n".join(spec["head"] + lines(list(spec["sets"]))) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("sets", nargs="*", help="core, runtime, gpu, model, dev")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--check", action="store_true", help="the Space files equal their sets")
    what.add_argument("--write", action="store_true", help="rewrite the Space files")
    args = p.parse_args(argv)
    if args.check or args.write:
        stale = []
        for name in SPACE_FILES:
            path, want = ROOT / name, space_file(name)
            if args.write:
                path.write_text(want)
            elif not path.exists() or path.read_text() != want:
                stale.append(name)
        if stale:
            print(f"{', '.join(stale)} differ from pyproject.toml's sets: run")
            print("python scripts/deps.py --write")
            return 1
        return 0
    print("\n".join(lines(args.sets or ["core"])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
