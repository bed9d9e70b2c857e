"""Retake the README's screenshot (docs/screenshot.png) from the real app: `streamlit run` on a free port, headless
Chromium opens the Explore page through the sidebar, waits for its charts, and saves the viewport.

    python scripts/screenshot.py [--page Explore] [--out docs/screenshot.png]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support import start_app, stop_app  # noqa: E402


def take(page_label: str, out: Path) -> None:
    from playwright.sync_api import sync_playwright

    process, url = start_app(Path(tempfile.mkdtemp()))
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(300_000)
            page.goto(url)
            page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name=page_label).click()
            page.locator(".js-plotly-plot").first.wait_for()
            page.wait_for_function("() => !document.querySelector('[data-stale=\"true\"]')")
            page.wait_for_timeout(3000)  # Plotly's first paint and the thumbnails
            out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(out))
            browser.close()
    finally:
        stop_app(process)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--page", default="Explore")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshot.png")
    args = parser.parse_args()
    take(args.page, args.out)
    print(args.out)
