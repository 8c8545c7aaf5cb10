#!/usr/bin/env bash
# Create (or update) the virtual environment in .venv. Idempotent: does nothing when the pinned
# requirements and this script have not changed since the last successful run.
#   --with-gemma  also install the opt-in second base, Gemma 3 270M (Gemma Terms of Use:
#                 https://ai.google.dev/gemma/terms), from its PyPI chunk packages
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
with_gemma=0
for arg in "$@"; do
  case "$arg" in
    --with-gemma) with_gemma=1 ;;
    *) echo "usage: bash scripts/setup.sh [--with-gemma]" >&2; exit 2 ;;
  esac
done
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.storygen-installed
want=$(cat pyproject.toml constraints.txt scripts/setup.sh scripts/deps.py storygen/embedded.py | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  # llama-cpp-python has no binary wheel on PyPI, so it is built from source once: for the
  # AVX2 baseline (GGML_NATIVE=OFF; a native build can use instructions another machine of the
  # same kind lacks), without the multimodal library, tools, tests, examples and server binary
  # it would also compile. The wheel is kept under a key of version and flags; later setups,
  # and the requirements install below, take it from there in seconds.
  llama_version=$(sed -n 's/^llama-cpp-python==//p' constraints.txt)
  llama_flags="-DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_OPENSSL=OFF"
  key=$(echo "$llama_version $llama_flags" | sha256sum | cut -c1-12)
  wheels="${STORYGEN_WHEELS:-$HOME/.cache/storygen/wheels}/llama-cpp-python-$key"
  if ! ls "$wheels"/llama_cpp_python-*.whl >/dev/null 2>&1; then
    echo "building llama-cpp-python $llama_version from source, once (about 6-10 min on 2 cores) ..."
    rm -rf "$wheels.tmp"
    CMAKE_ARGS="$llama_flags" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
      .venv/bin/python -m pip wheel -q --disable-pip-version-check --no-deps --no-cache-dir \
      -w "$wheels.tmp" "llama-cpp-python==$llama_version"
    mv "$wheels.tmp" "$wheels"
  fi
  # torch first, alone: its CPU build (torch==...+cpu in constraints.txt), from PyTorch's CPU
  # index when it can be reached (only for torch: an unreachable index costs every lookup its
  # retries), else from wherever pip is configured to look.
  torch_pin=$(grep '^torch==' constraints.txt)
  torch_index=https://download.pytorch.org/whl/cpu
  if .venv/bin/python -c "import urllib.request as u; u.urlopen('$torch_index/torch/', timeout=10)" 2>/dev/null; then
    torch_from=(--extra-index-url "$torch_index")
  else
    torch_from=()
  fi
  .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps "${torch_from[@]}" \
    "$torch_pin"
  # Then every dependency set of pyproject.toml (scripts/deps.py), pinned by constraints.txt.
  .venv/bin/python scripts/deps.py core runtime gpu model dev > .venv/requirements-all.txt
  .venv/bin/python -m pip install -q --disable-pip-version-check --find-links "$wheels" \
    -r .venv/requirements-all.txt -c constraints.txt
  # A llama-cpp-python of the same version built with other flags may be installed already.
  .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps --force-reinstall \
    "$wheels"/llama_cpp_python-*.whl
  # llama.cpp's own server (the llama-server backend: many readers at once) and the tools that
  # merge an adapter into the base and re-quantize it, from the same pinned source as the wheel,
  # static, for the same AVX2 baseline; kept in the cache like the wheel (about 10 min once).
  tools_flags="-DGGML_NATIVE=OFF -DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF"
  tools_targets="llama-server llama-export-lora llama-quantize"
  tools_key=$(echo "$llama_version $tools_flags $tools_targets" | sha256sum | cut -c1-12)
  tools="${STORYGEN_WHEELS:-$HOME/.cache/storygen/wheels}/llama-tools-$tools_key"
  if [ ! -x "$tools/llama-server" ]; then
    echo "building llama-server, llama-export-lora and llama-quantize $llama_version, once (about 10 min on 2 cores) ..."
    cmake=$(command -v cmake || true)
    if [ -z "$cmake" ]; then  # no system cmake: PyPI's
      .venv/bin/python -m pip install -q --disable-pip-version-check cmake
      cmake=.venv/bin/cmake
    fi
    src=$(mktemp -d)
    trap 'rm -rf "$src"' EXIT
    .venv/bin/python -m pip download -q --disable-pip-version-check --no-deps --no-binary :all: \
      -d "$src" "llama-cpp-python==$llama_version"
    tar xzf "$src"/llama_cpp_python-*.tar.gz -C "$src"
    # shellcheck disable=SC2086
    "$cmake" -S "$src"/llama_cpp_python-*/vendor/llama.cpp -B "$src/build" -DCMAKE_BUILD_TYPE=Release \
      $tools_flags >/dev/null
    # shellcheck disable=SC2086
    "$cmake" --build "$src/build" -j "$(nproc)" --target $tools_targets >/dev/null
    rm -rf "$tools.tmp" && mkdir -p "$tools.tmp"
    # shellcheck disable=SC2086
    (cd "$src/build/bin" && cp $tools_targets "$tools.tmp/")
    mv "$tools.tmp" "$tools"
    rm -rf "$src"
  fi
  cp "$tools"/llama-* .venv/bin/
  # The embedded model ships inside this wheel, and the judges' sentence-embedding model
  # (all-MiniLM-L6-v2, read in numpy) inside the second; their own dependencies are not needed.
  # shellcheck disable=SC2046
  .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps \
    $(.venv/bin/python -c 'from storygen.embedded import NO_DEPS_REQUIREMENTS as r; print(*r)')
  echo "$want" > "$stamp"
fi
if [ "$with_gemma" = 1 ]; then
  # Opt-in: its terms are not an open source license. The pins live in storygen/embedded.py.
  echo "installing Gemma 3 270M, under the Gemma Terms of Use (https://ai.google.dev/gemma/terms)"
  # shellcheck disable=SC2046
  .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps \
    $(.venv/bin/python -c 'from storygen.embedded import GEMMA_REQUIREMENTS; print(*GEMMA_REQUIREMENTS)')
fi
