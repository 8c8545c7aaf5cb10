"""The commands the README and the guides show exist, with the flags they use: each
``python -m MODULE VERB --flag`` is checked against that verb's own ``--help``, each script and
file path a command names against the repository."""

import re
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
COMMAND = re.compile(r"(?:\.venv/bin/)?python -m ([\w.]+)((?: [^\s`|&;#]+)*)")
CODE = re.compile(r"```(?:bash)?\n(.*?)```", re.S)
INLINE = re.compile(r"`([^`\n]*python -m [^`\n]*)`")


def commands() -> list[tuple[str, str, str]]:
    """(document, module, the rest of the command line) for every command shown."""
    out = []
    for doc in DOCS:
        text = doc.read_text()
        blocks = CODE.findall(text)
        lines = [line for b in blocks for line in b.replace("\\\n", " ").splitlines()]
        lines += INLINE.findall(text)
        for line in lines:
            line = line.split(" #")[0]
            for module, rest in COMMAND.findall(line):
                out.append((doc.name, module, rest.strip()))
    return out


@cache
def help_text(module: str, verb: str | None) -> str:
    args = [sys.executable, "-m", module] + ([verb] if verb else []) + ["--help"]
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{' '.join(args[1:])}: {done.stderr[-500:]}"
    return done.stdout


OURS = {"storygen", "finetune", "eval", "human_ratings", "study"}
SKIP = {"llama_cpp.server", "vllm"}  # other projects' commands, shown as they document them


@pytest.mark.integration  # a process per command's --help
def test_every_command_and_flag_the_docs_show_exists():
    shown = commands()
    assert len(shown) >= 25
    checked = 0
    for doc, module, rest in shown:
        if module in SKIP:
            continue
        words = rest.split()
        if module in OURS:
            verb = words[0] if words and not words[0].startswith("-") else None
            text = help_text(module, verb)
        else:
            assert module.startswith("bench."), f"{doc}: unknown module {module}"
            assert (ROOT / (module.replace(".", "/") + ".py")).exists(), f"{doc}: {module}"
            text = help_text(module, None)
        for flag in [w.split("=")[0] for w in words if w.startswith("--")]:
            assert flag in text, f"{doc}: `python -m {module} {rest}`: {flag} is not an option"
        checked += 1
    assert checked >= 20


def test_every_script_and_config_the_docs_name_exists():
    for doc in DOCS:
        text = doc.read_text()
        for path in re.findall(
            r"(?:scripts|eval|finetune|study|human_ratings)/[\w./-]+\.(?:sh|yaml|py|jsonl)", text
        ):
            assert (ROOT / path).exists(), f"{doc.name} names {path}, which does not exist"


def test_the_readme_is_a_door():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) < 200
    assert "bash scripts/app.sh" in text and "bash scripts/test.sh" in text
    assert not re.search(r"\bsession \d", text, re.I)
