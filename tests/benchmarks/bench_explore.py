"""The Explore page's first visit on a fresh server, in headless Chromium: seconds from the sidebar click until
each part shows (the counts, the face grid, the first chart). Prints figures, asserts nothing.

    nice -n 19 python tests/benchmarks/bench_explore.py [--root OTHER_CHECKOUT] [--rounds 2]

`--root` serves another checkout of the project (e.g. an exported older commit) with this same measurement, for a
before/after comparison. Each round is a fresh `streamlit run`, so nothing is cached yet (a first visit)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.support import CHROMIUM_ARGS, free_port  # noqa: E402

PARTS = {"counts": '[data-testid="stMetric"]', "faces": '[data-testid="stImage"] img',
         "chart": ".js-plotly-plot"}


def serve(root: Path, workdir: Path):
    port = free_port()
    log = (workdir / "streamlit.log").open("w")
    env = {**os.environ, "FACE_RUNS_DIR": str(workdir / "runs"), "FACE_CACHE_DIR": str(workdir / "cache")}
    env.pop("FACE_DATA_DIR", None)
    process = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.port",
                                str(port), "--server.headless", "true", "--server.fileWatcherType", "none"],
                               cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2):
                return process, url
        except OSError:
            time.sleep(0.25)
    raise TimeoutError("streamlit did not start")


def first_visit(browser, url: str) -> dict[str, float]:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(url)
    page.locator("h1").filter(has_text="Face Insight Studio").wait_for(timeout=300_000)
    page.wait_for_timeout(1000)
    clicked = time.perf_counter()
    page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name="Explore").click()
    seen: dict[str, float] = {}
    while len(seen) < len(PARTS) and time.perf_counter() - clicked < 300:
        for part, selector in PARTS.items():
            if part not in seen and page.locator(selector).first.is_visible():
                seen[part] = time.perf_counter() - clicked
        page.wait_for_timeout(10)
    page.close()
    return seen


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=ROOT)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        for round_ in range(args.rounds):
            with tempfile.TemporaryDirectory() as workdir:
                process, url = serve(args.root, Path(workdir))
                try:
                    seen = first_visit(browser, url)
                finally:
                    os.killpg(process.pid, 15)
                    process.wait(timeout=30)
            print(f"{args.root.name} round {round_ + 1}: " + ", ".join(f"{k} {v:.2f} s" for k, v in seen.items()))
        browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
