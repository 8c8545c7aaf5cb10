"""The dependency sets: the Space files are made of them, the app on llama.cpp needs only the CPU
Space's set (no torch), and the code runs on the Pythons a Space offers (3.10, 3.12)."""

import json
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def deps(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "scripts/deps.py", *args], cwd=ROOT, capture_output=True, text=True
    )


def test_the_space_files_are_the_sets_pyproject_declares(tmp_path):
    assert deps("--check").returncode == 0, "run: python scripts/deps.py --write"
    zero = (ROOT / "requirements.txt").read_text()
    cpu = (ROOT / "requirements-cpu.txt").read_text()
    assert "spaces==" in zero and "torch==" in zero and "llama-cpp-python" not in zero
    cpu_lines = [line for line in cpu.splitlines() if not line.startswith("#")]
    assert not any(line.startswith("torch") for line in cpu_lines)
    assert "llama-cpp-python==0.3.36" in cpu_lines
    assert "--extra-index-url https://abetlen.github.io/llama-cpp-python/whl/cpu" in cpu
    assert re.search(r"^python_version: \"3\.12\"$", (ROOT / "README.md").read_text(), re.M)
    got = deps("core", "nonsense")
    assert got.returncode != 0 and "no dependency set ['nonsense']" in got.stderr


def test_the_code_needs_no_python_newer_than_3_10():
    """ZeroGPU runs 3.10 or 3.12; vermin finds the oldest Python each module needs (syntax and
    standard library)."""
    done = subprocess.run(
        [str(Path(sys.executable).with_name("vermin")), "-t=3.10-", "--no-tips", "--violations"]
        + ["--eval-annotations", "storygen", "human_ratings", "story_ui", "eval", "finetune"]
        + ["study", "app.py", "scripts", "bench", "tests"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout[-3000:]


def closure(requirements: list[str]) -> set[str]:
    """The distributions these requirements install, by their installed metadata."""
    norm = lambda name: re.sub(r"[-_.]+", "-", name).lower()  # noqa: E731
    seen: set[str] = set()
    todo = [
        (re.split(r"[\[=<>;! ]", r)[0], set(m.group(1).split(",")) if m else set())
        for r in requirements
        for m in [re.search(r"\[(.*?)\]", r)]
    ]
    while todo:
        name, extras = todo.pop()
        key = norm(name)
        if key in seen:
            continue
        seen.add(key)
        for req in metadata.requires(name) or []:
            spec, _, marker = req.partition(";")
            if "extra ==" in marker and not any(f'"{e}"' in marker for e in extras):
                continue
            if 'sys_platform == "win32"' in marker or 'platform_system == "Windows"' in marker:
                continue
            sub = re.split(r"[\[=<>!~ (]", spec.strip())[0]
            try:
                metadata.distribution(sub)
            except metadata.PackageNotFoundError:
                continue  # an optional dependency for a Python or platform not this one
            m = re.search(r"\[(.*?)\]", spec)
            todo.append((sub, set(m.group(1).split(",")) if m else set()))
    return seen


APP_IMPORTS = """
import json, os, sys
from importlib.metadata import packages_distributions
allowed = set(json.loads(sys.argv[1]))
norm = lambda name: name.replace("_", "-").replace(".", "-").lower()
dists = packages_distributions()


class NotInstalled:  # every distribution outside the set is as if it were not installed
    def find_spec(self, name, path=None, target=None):
        owners = dists.get(name.split(".")[0])
        if owners and not any(norm(d) in allowed for d in owners):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, NotInstalled())
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
from story_ui.layout import build_app
from story_ui.services import AppConfig, Services
from storygen.config import ModelSpec, SamplingConfig
from storygen.request import StoryRequest
import story_ui.rate, human_ratings.report, human_ratings.sequential, storygen.judges.embed
services = Services(AppConfig.from_env(model=ModelSpec(adapter="demo")))
build_app(services)
request = StoryRequest.from_dict({"characters": ["Mara"], "genre": "mystery"})
for _, update in services.write(request, SamplingConfig(max_new_tokens=8, seed=1)):
    pass
assert update.story.text, update
assert storygen.judges.embed.embedder()(["a story"]).shape == (1, 384)
top = {m.split(".")[0] for m in sys.modules}
print(json.dumps(sorted({d for m in top for d in dists.get(m, [])})))
"""


@pytest.mark.integration  # loads the embedded model on llama.cpp
def test_the_app_on_llama_cpp_needs_only_the_cpu_space_set_and_no_torch():
    """Build the app, write a story on llama.cpp and run a judge's embedding with every
    distribution outside the CPU Space's set (core + runtime, with what they depend on, and the
    wheels app.py installs without dependencies) hidden as if it were not installed."""
    from storygen.embedded import NO_DEPS_REQUIREMENTS

    wanted = closure(deps("core", "runtime").stdout.split())
    wanted |= {r.split("==")[0] for r in NO_DEPS_REQUIREMENTS} | {"setuptools", "pip"}
    done = subprocess.run(
        [sys.executable, "-c", APP_IMPORTS, json.dumps(sorted(wanted))],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    imported = json.loads(done.stdout.strip().splitlines()[-1])
    assert "torch" not in imported and "llama_cpp_python" in imported
