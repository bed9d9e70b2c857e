"""A public server under load, in headless Chromium: SESSIONS tabs uploading a selfie, one tab training and one
evaluating, all at once. Prints figures, asserts nothing.

    nice -n 19 python tests/benchmarks/bench_public_load.py [--sessions 16]

"Answered" means the tab shows a prediction or the server's own busy message (at most two photos are analysed at
a time; a visitor who waits too long is told so). Peak memory is the sum of resident memory over the server and
its children (the training child and any worker), sampled every 0.2 s; goal ≤ 2.5 GB.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.benchmarks.bench_app import upload_selfie  # noqa: E402
from tests.support import AGE, CHROMIUM_ARGS, open_tab, start_app, stop_app  # noqa: E402

GOAL_MB = 2500
BUSY = re.compile(r"busy|try again", re.IGNORECASE)


def tree_rss_mb(root: int) -> float:
    """Resident memory of a process and all its descendants, in MB (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
        except OSError:
            continue
    return total


class PeakSampler(threading.Thread):
    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.peak, self.running = pid, 0.0, True

    def run(self) -> None:
        while self.running:
            self.peak = max(self.peak, tree_rss_mb(self.pid))
            time.sleep(0.2)


def answered(tab) -> bool:
    return tab.get_by_text(AGE).count() > 0 or tab.get_by_text(BUSY).count() > 0


def run(sessions: int) -> list[str]:
    from playwright.sync_api import sync_playwright

    from tests.fuzz.make_corpus import encode, selfie

    workdir = Path(tempfile.mkdtemp(prefix="bench_public_"))
    env = {"FACE_MODE": "public", "FACE_RUNS_DIR": str(workdir / "runs"), "FACE_CACHE_DIR": str(workdir / "cache")}
    photo, lines = encode(selfie()), []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS)
        process, url = start_app(workdir, env)
        sampler = PeakSampler(process.pid)
        sampler.start()
        try:
            lines.append(f"server tree at rest: {tree_rss_mb(process.pid):.0f} MB")
            tabs = {}
            for name in ("train", "evaluate", *[f"p{i}" for i in range(sessions)]):
                page = {"train": "train", "evaluate": "evaluate"}.get(name, "predict")
                tabs[name] = open_tab(browser, url, page.capitalize(), f"/{page}", timeout_s=600)
            started = time.perf_counter()
            tabs["train"].get_by_role("button", name="Start training").click()
            tabs["evaluate"].get_by_role("button", name="Evaluate").click()
            for name, tab in tabs.items():
                if name.startswith("p"):
                    upload_selfie(tab, photo)
            predicted = [tab for name, tab in tabs.items() if name.startswith("p")]
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline and not all(answered(tab) for tab in predicted):
                time.sleep(0.5)
            done = sum(answered(tab) for tab in predicted)
            results = sum(tab.get_by_text(AGE).count() > 0 for tab in predicted)
            lines.append(f"{done}/{sessions} upload sessions answered ({results} with a prediction, {done - results} "
                         f"told the server is busy) in {time.perf_counter() - started:.1f} s")
            evaluated = tabs["evaluate"].get_by_text(re.compile("Compare")).count() > 0
            training = tabs["train"].get_by_text(re.compile("Epoch|Finished")).count() > 0
            lines.append(f"evaluation finished: {evaluated}; training started: {training}")
            time.sleep(2)
        finally:
            sampler.running = False
            lines.append(f"peak resident memory, server + children: {sampler.peak:.0f} MB (goal ≤ {GOAL_MB} MB)")
            stop_app(process)
            browser.close()
            shutil.rmtree(workdir, ignore_errors=True)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=16)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    for line in run(args.sessions):
        print(line)


if __name__ == "__main__":
    main()
