"""The README's screenshots of the Write and Rate tabs, from the app on the embedded model:

    .venv/bin/python scripts/screenshots.py      # writes docs/images/write.png and rate.png

Starts ``app.py`` on a free port (a local study of the demo items, votes in a temporary folder),
drives it with Debian's chromium through Playwright, and stops it.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def main() -> None:
    from playwright.sync_api import expect, sync_playwright

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as d:
        app = subprocess.Popen(
            [sys.executable, "app.py", "--port", str(port), "--votes", f"{d}/votes.csv"],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{port}/"
        try:
            while True:
                try:
                    if httpx.get(url, timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.3)
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=FLAGS)
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.goto(url)
                page.locator("#characters textarea").fill("Mara: stubborn, kind\nJonah: curious")
                page.locator("#place input, #place textarea").first.fill("a lighthouse")
                page.locator("#era input, #era textarea").first.fill("the 1920s")
                page.locator("#plot textarea").fill("the lamp goes dark during a storm")
                page.locator("#seed input").fill("7")
                page.locator("#write-btn").click()
                expect(page.locator("#write-status")).to_contain_text("Done", timeout=120_000)
                page.screenshot(path=str(ROOT / "docs/images/write.png"), full_page=False)
                page.get_by_role("tab", name="Rate").click()
                page.locator("#annotator input, #annotator textarea").first.fill("a reader")
                page.locator("#start-rating").click()
                expect(page.locator("#start-status")).to_contain_text("Read both", timeout=30_000)
                page.screenshot(path=str(ROOT / "docs/images/rate.png"), full_page=False)
                browser.close()
        finally:
            app.terminate()
            app.wait()
    print("wrote docs/images/write.png and docs/images/rate.png")


if __name__ == "__main__":
    main()
