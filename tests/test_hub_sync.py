"""Votes synced to a Hub dataset as huggingface_hub.CommitScheduler wants them (append-only
files, one per process, a dataset repo), and none acknowledged lost when the Space restarts.

The real app runs in its own process with the real CommitScheduler; the Hub is a local stand-in
at the huggingface_hub seam (an HfApi whose create_repo and create_commit write to a folder).
A Space is restarted with SIGTERM, its disk may be wiped with it, and a crash is a SIGKILL."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.integration  # three app processes, a few seconds each

ROOT = Path(__file__).resolve().parent.parent

LAUNCH = """
import json, os, runpy, sys
from pathlib import Path

import huggingface_hub._commit_scheduler as scheduler
from huggingface_hub import HfApi, RepoUrl

hub = Path(os.environ["LOCAL_HUB"])


class LocalHub(HfApi):
    # What CommitScheduler asks of the Hub, kept in a folder.
    def create_repo(self, repo_id, *, private=False, repo_type=None, exist_ok=False, **kw):
        (hub / "repo.json").write_text(json.dumps({"repo_type": repo_type, "private": private}))
        return RepoUrl(f"https://huggingface.co/datasets/{repo_id}")

    def create_commit(self, repo_id, operations, *, commit_message, repo_type=None, **kw):
        for op in operations:
            with op.as_file() as f:
                data = f.read()
            target = hub / "files" / op.path_in_repo
            before = target.read_bytes() if target.exists() else b""
            if not data.startswith(before):
                with (hub / "rewritten.txt").open("a") as log:
                    log.write(op.path_in_repo + "\\n")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        with (hub / "commits.txt").open("a") as log:
            log.write(f"{repo_type} {len(operations)}\\n")


scheduler.HfApi = LocalHub
sys.argv = ["app.py", *sys.argv[1:]]
runpy.run_path("app.py", run_name="__main__")
"""


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(disk: Path, hub: Path, log: Path) -> tuple[subprocess.Popen, str]:
    port = _port()
    env = {
        **os.environ,
        "GRADIO_ANALYTICS_ENABLED": "False",
        "STORYGEN_HUB_DATASET": "someone/votes",
        "HF_TOKEN": "hf_stand_in",
        "LOCAL_HUB": str(hub),
    }
    args = ["--port", str(port), "--votes", str(disk / "votes.csv"), "--lazy"]
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", LAUNCH, *args], cwd=ROOT, env=env, stdout=out, stderr=out
        )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError("the app did not serve its page")


def vote(url: str, annotator: str) -> str:
    """One vote through the app's API, as the Rate tab sends it; returns its item."""
    from gradio_client import Client

    client = Client(url, verbose=False)
    shown = client.predict(annotator, "", api_name="/start_rating")
    result = client.predict("A is better", "", *[None] * 8, api_name="/vote")
    assert "receipt" in (result[-1] or ""), result  # acknowledged
    return shown


def hub_votes(hub: Path) -> list[dict]:
    rows = []
    for path in sorted((hub / "files" / "votes").glob("votes-*.jsonl")):
        rows += [json.loads(line) for line in path.read_text().splitlines()]
    return rows


def test_no_acknowledged_vote_is_lost_to_sigterm_a_wiped_disk_or_sigkill(tmp_path):
    hub, disk, log = tmp_path / "hub", tmp_path / "disk", tmp_path / "app.log"
    hub.mkdir()

    # A restart: SIGTERM pushes what the 5-minute schedule has not pushed yet.
    first, url = start(disk, hub, log)
    vote(url, "ann")
    vote(url, "bob")
    first.send_signal(signal.SIGTERM)
    assert first.wait(60) == 0, log.read_text()[-3000:]
    assert len(hub_votes(hub)) == 2

    # The restarted Space's disk is empty: the next process writes a file of its own.
    import shutil

    shutil.rmtree(disk)
    second, url = start(disk, hub, log)
    vote(url, "cat")
    second.kill()  # a crash: nothing runs, but this disk survives it
    second.wait(30)
    third, url = start(disk, hub, log)  # its first push carries the crashed process's file
    vote(url, "dan")
    third.send_signal(signal.SIGTERM)
    assert third.wait(60) == 0, log.read_text()[-3000:]

    votes = hub_votes(hub)
    assert len(votes) == 4, votes
    assert len({v["annotator"] for v in votes}) == 4
    assert not {"ann", "bob", "cat", "dan"} & {v["annotator"] for v in votes}  # pseudonyms
    files = list((hub / "files" / "votes").glob("votes-*.jsonl"))
    assert len(files) == 3  # one per process
    assert not (hub / "rewritten.txt").exists()  # every upload of a file only grew it
    repo = json.loads((hub / "repo.json").read_text())
    assert repo == {"repo_type": "dataset", "private": True}
    assert "SIGTERM: pushed to the Hub" in log.read_text()
    assert "Traceback" not in log.read_text()
