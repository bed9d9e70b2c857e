"""Retake the README's screenshots from the real app: `streamlit run` on a free port (runs and caches in a temp
folder), headless Chromium opens each page through the sidebar, does what a user would, and saves the viewport.

    python scripts/screenshot.py            # docs/screenshot.png: Explore on the bundled sample
    python scripts/screenshot.py --all      # and docs/screenshot-{predict,train,evaluate}.png

Predict gets two sample faces side by side; Train runs a tiny training on the bundled sample and is shot while its
curves have an epoch point; Evaluate scores the shipped model on the bundled sample and is shot on its Fairness tab.
The sidebar's page icons are emoji: without a colour-emoji font (Debian: fonts-noto-color-emoji) headless
Chromium draws them as empty boxes.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.photos import edge_faces, encode, side_by_side  # noqa: E402
from tests.support import (  # noqa: E402
    CHROMIUM_ARGS,
    finished_runs,
    open_page,
    open_tab,
    start_app,
    stop_app,
    wait_idle,
)

DOCS = ROOT / "docs"
SAMPLE = ROOT / "data" / "sample" / "utkface"
WORK_MS = 900_000  # a first prediction, evaluation or training epoch on a busy 2-core machine
VIEWPORT = {"width": 1400, "height": 1000}
MAX_PNG_BYTES = 400_000  # README images: above this, the shot is saved with a 256-colour palette


def save(page, out: Path) -> None:
    """The viewport as a PNG, palette-reduced when photos make it too heavy for the README."""
    from PIL import Image

    page.screenshot(path=str(out))
    if out.stat().st_size > MAX_PNG_BYTES:
        Image.open(out).convert("RGB").quantize(256).save(out, optimize=True)


def scroll_to_top(locator) -> None:
    """Put an element at the top of the viewport (Streamlit scrolls inside its own container, not the page)."""
    locator.evaluate("element => element.scrollIntoView({block: 'start'})")


def settle(page, ms: int = 3000) -> None:
    """Plotly's first paint and the images, then a check that the page shows no error box."""
    page.mouse.move(5, 5)  # off the charts: no hover labels or Plotly toolbars in the shot
    page.wait_for_timeout(ms)
    errors = page.locator('[data-testid="stException"], [data-testid="stAlertContentError"]')
    if errors.count():
        raise RuntimeError(f"the page shows an error: {errors.first.inner_text()[:500]}")


def explore(page, out: Path) -> None:
    open_page(page, "Explore")
    page.locator(".js-plotly-plot").first.wait_for()
    settle(page)
    save(page, out)


def predict(page, out: Path) -> None:
    open_page(page, "Predict")
    faces = edge_faces(SAMPLE)
    photo = encode(side_by_side([faces[1], faces[3]], size=(1200, 500), side=300)[0])
    since = finished_runs(page)
    page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(
        [{"name": "two-faces.jpg", "mimeType": "image/jpeg", "buffer": photo}])
    page.get_by_text("Face 2").first.wait_for(timeout=WORK_MS)
    wait_idle(page, since, WORK_MS / 1000)
    page.locator(".js-plotly-plot").nth(1).wait_for()
    scroll_to_top(page.get_by_role("heading", name="two-faces.jpg"))  # the annotated photo and the face cards
    settle(page)
    save(page, out)


def train(page, out: Path) -> None:
    open_page(page, "Train")
    for label in ("Image size", "Batch size"):  # the smallest of each: a training that takes minutes, not hours
        slider = page.locator('[data-testid="stSlider"]').filter(has_text=label).get_by_role("slider")
        slider.focus()
        slider.press("Home")
    page.get_by_label("Epochs", exact=True).fill("5")  # more than the shot needs: it is taken mid-training
    page.get_by_label("Use at most N images (0 = all)", exact=True).fill("0")
    page.get_by_role("button", name="Start training").click()
    # the live chart once a validation point (an epoch's end) is drawn, while the next epoch runs
    page.wait_for_function("""() => [...document.querySelectorAll('.js-plotly-plot')].some(plot =>
        (plot.data || []).some(trace => trace.name === 'validation' && trace.x && trace.x.length > 0))""",
                           timeout=WORK_MS)
    main = page.locator('[data-testid="stMain"]')  # not the header's own Stop (of a running script)
    stop = main.get_by_role("button", name="Stop", exact=True)
    scroll_to_top(page.get_by_text("Current job").first)  # the progress bar, Stop and the curves below them
    settle(page, 1500)
    if not stop.is_visible():
        raise RuntimeError("training ended before the shot: give it more epochs or images")
    save(page, out)
    stop.click()
    # "Stop", then "Stopping…", then neither once the job has ended: no training outlives the script
    main.get_by_role("button", name=re.compile("^Stop")).wait_for(state="detached", timeout=WORK_MS)


def evaluate(page, out: Path) -> None:
    open_page(page, "Evaluate")
    since = finished_runs(page)
    page.get_by_role("button", name="Evaluate", exact=True).click()
    page.get_by_role("tab", name="Fairness").wait_for(timeout=WORK_MS)
    wait_idle(page, since, WORK_MS / 1000)
    page.get_by_role("tab", name="Fairness").click()
    page.locator('[data-testid="stPlotlyChart"]').filter(has=page.locator(".js-plotly-plot")).last.wait_for()
    scroll_to_top(page.get_by_role("tab", name="Fairness"))
    settle(page)
    save(page, out)


SHOTS = {"Explore": (explore, DOCS / "screenshot.png"), "Predict": (predict, DOCS / "screenshot-predict.png"),
         "Train": (train, DOCS / "screenshot-train.png"), "Evaluate": (evaluate, DOCS / "screenshot-evaluate.png")}


def take(labels: list[str]) -> list[Path]:
    """One app and one browser for all the shots; each page in a fresh tab, so one shot's state is not the next's."""
    from playwright.sync_api import sync_playwright

    workdir = Path(tempfile.mkdtemp(prefix="screenshots-"))
    # runs and caches in the temp folder: only the shipped model is listed, and nothing is left in the project;
    # the bundled sample as every page's dataset, whatever FACE_DATA_DIR this shell has
    process, url = start_app(workdir, {"FACE_RUNS_DIR": str(workdir / "runs"), "FACE_CACHE_DIR": str(workdir / "cache"),
                                       "FACE_DATA_DIR": str(SAMPLE)})
    taken = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS)
            try:
                for label in labels:
                    shoot, out = SHOTS[label]
                    page = open_tab(browser, url, viewport=VIEWPORT, timeout_s=WORK_MS / 1000)
                    out.parent.mkdir(parents=True, exist_ok=True)
                    shoot(page, out)
                    page.close()
                    taken.append(out)
                    print(out, flush=True)
            finally:
                browser.close()
    finally:
        stop_app(process)
        shutil.rmtree(workdir, ignore_errors=True)
    return taken


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--page", choices=list(SHOTS), default="Explore", help="the one page to retake")
    parser.add_argument("--all", action="store_true", help="every page in SHOTS")
    args = parser.parse_args()
    take(list(SHOTS) if args.all else [args.page])
