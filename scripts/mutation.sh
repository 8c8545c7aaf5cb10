#!/usr/bin/env bash
# Mutation testing of the modules where a silent bug costs the most (pyproject.toml,
# [tool.mutmut]): mutmut plants one small bug at a time and runs the tests that cover it.
# About 20 minutes on 2 cores; results stay in mutants/ (rerun only redoes what changed).
#   bash scripts/mutation.sh            run, then the score per module
#   bash scripts/mutation.sh --list     also the survivors that no test or reason covers
set -euo pipefail
cd "$(dirname "$0")/.."
OMP_NUM_THREADS=1 .venv/bin/mutmut run --max-children "$(nproc)" > mutants-run.log 2>&1 || {
    tail -20 mutants-run.log
    exit 1
}
exec .venv/bin/python scripts/mutation_report.py "$@"
