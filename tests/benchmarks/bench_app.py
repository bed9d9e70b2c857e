"""The running app as a visitor meets it, in headless Chromium. Prints figures, asserts nothing.

    nice -n 19 python tests/benchmarks/bench_app.py [--sessions 8] [--rounds 2]

  - cold start: `streamlit run` launched → health check answers → the Home page painted in a fresh browser tab
    (goal: first paint ≤ 3 s after the server answers);
  - page switch: sidebar click → the page painted (title and main control) and idle, first visit and warm
    (goals: Train painted ≤ 1.5 s on a first visit, any warm switch ≤ 1 s);
  - memory: the server's resident set (VmRSS) and peak (VmHWM) from /proc at each stage, with the default model
    predicting a selfie, then SESSIONS browser tabs uploading at once (goal: resident ≤ 400 MB).

The default model is the shipped one (models/face_insight_v1.keras) when present; otherwise a tiny fake run stands
in, and the table says so. Figures on a shared CPU (e.g. beside a training run) are slow: label them as such.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tests.support import (  # noqa: E402
    AGE,
    CHROMIUM_ARGS,
    PAGE_S,
    PAGES,
    finished_runs,
    open_page,
    open_tab,
    start_app,
    stop_app,
    title,
    wait_idle,
    watch,
    write_run,
)

GOALS = {"first paint": "≤ 3 s", "warm switch": "≤ 1 s", "resident": "≤ 400 MB", "train paint": "painted ≤ 1.5 s"}
# What a visitor came to the page for: once it shows, the page is painted (fragments may still be settling).
PAINTED = {"Train": "Start training"}


def memory_mb(pid: int) -> dict[str, float]:
    """VmRSS (resident now) and VmHWM (peak resident) of a process, in MB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return fields


def switch_timed(page, label: str) -> tuple[float, float, float]:
    """Seconds from the sidebar click until the server has finished the page's script, until the browser shows
    it painted (its title and main control) and until the page is idle (every fragment, e.g. Train's device
    probe, has settled). Script done but not painted is time spent in the browser (e.g. loading widget code)."""
    since = finished_runs(page)
    clicked = time.perf_counter()
    page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name=label).click()
    shown = [title(page, label)] + ([page.get_by_text(PAINTED[label]).first] if label in PAINTED else [])
    script = painted = None
    while script is None or painted is None:
        now = time.perf_counter() - clicked
        assert now < PAGE_S, f"{label} was not painted after {PAGE_S} s"
        if script is None and finished_runs(page) > since:
            script = now
        if painted is None and all(locator.is_visible() for locator in shown):
            painted = now
        page.wait_for_timeout(10)
    wait_idle(page, since)
    return script, painted, time.perf_counter() - clicked


def model_setup(workdir: Path) -> tuple[dict, str]:
    """Environment for the server and a description of the model it will use by default."""
    from core.registry import default_model

    env = {"FACE_RUNS_DIR": str(workdir / "runs"), "FACE_CACHE_DIR": str(workdir / "cache")}
    shipped = default_model()
    if shipped is not None:
        return env, f"shipped {shipped.name} ({shipped.card.get('arch')}, {shipped.img_size} px)"
    from core.models import ModelConfig, build_model
    model, _ = build_model(ModelConfig.tiny("residual_cnn", age_head="distribution"))
    model.save(workdir / "tiny.keras")
    write_run(workdir / "runs", model=workdir / "tiny.keras")
    return env, "NO SHIPPED MODEL YET: tiny fake run (residual_cnn, 32 px)"


def upload_selfie(page, photo: bytes) -> None:
    page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(
        [{"name": "selfie.jpg", "mimeType": "image/jpeg", "buffer": photo}])


def run(sessions: int, rounds: int) -> list[tuple[str, str, str]]:
    from playwright.sync_api import sync_playwright

    from tests.fuzz.make_corpus import encode, selfie

    rows: list[tuple[str, str, str]] = []
    workdir = Path(tempfile.mkdtemp(prefix="bench_app_"))
    env, model_note = model_setup(workdir)
    rows.append(("default model", model_note, ""))
    photo = encode(selfie())
    chromium = shutil.which("chromium")
    if chromium is None:
        raise SystemExit("Chromium is not installed (Debian package `chromium`)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)  # not part of the app's time
        started = time.perf_counter()
        process, url = start_app(workdir, env)
        healthy = time.perf_counter()
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(600_000)
            watch(page)
            page.goto(url)
            title(page, "Home").wait_for()
            painted = time.perf_counter()
            rows += [("cold start: launch → server answers", f"{healthy - started:.2f} s", ""),
                     ("cold start: first paint of Home (fresh server)", f"{painted - healthy:.2f} s",
                      GOALS["first paint"]),
                     ("cold start: launch → first paint", f"{painted - started:.2f} s", "")]
            wait_idle(page, 0)
            rows.append(("memory after first paint", _memory(process.pid), ""))

            for round_number in range(1, rounds + 1):
                for label in [*list(PAGES)[1:], "Home"]:
                    kind = "first visit" if round_number == 1 else "warm switch"
                    script, painted, idle = switch_timed(page, label)
                    rows.append((f"page switch → {label} ({kind}): script done / painted / idle",
                                 f"{script:.2f} / {painted:.2f} / {idle:.2f} s",
                                 GOALS["warm switch"] if kind == "warm switch" else
                                 GOALS["train paint"] if label == "Train" else ""))
            rows.append(("memory after visiting every page", _memory(process.pid), ""))

            open_page(page, "Predict")
            clicked, since = time.perf_counter(), finished_runs(page)
            upload_selfie(page, photo)
            page.get_by_text(AGE).first.wait_for()
            wait_idle(page, since)
            rows.append(("predict a selfie (first, loads the model)", f"{time.perf_counter() - clicked:.2f} s", ""))
            rows.append(("memory with the default model predicting", _memory(process.pid), GOALS["resident"]))

            tabs = [open_tab(browser, url, "Predict", "/predict", timeout_s=600) for _ in range(sessions)]
            clicked = time.perf_counter()
            for tab in tabs:  # uploads go out back to back; the server works on all sessions at once
                upload_selfie(tab, photo)
            for tab in tabs:
                tab.get_by_text(AGE).first.wait_for()
                wait_idle(tab, 1)
            answered = time.perf_counter() - clicked
            rows.append((f"{sessions} sessions predicting at once: all answered", f"{answered:.2f} s", ""))
            rows.append((f"memory after {sessions} concurrent sessions", _memory(process.pid), GOALS["resident"]))
        finally:
            stop_app(process)
            browser.close()
            shutil.rmtree(workdir, ignore_errors=True)
    return rows


def _memory(pid: int) -> str:
    m = memory_mb(pid)
    return f"resident {m['VmRSS']:.0f} MB, peak {m['VmHWM']:.0f} MB"


def print_table(rows: list[tuple[str, str, str]]) -> None:
    width = max(len(r[0]) for r in rows)
    value_width = max(len(r[1]) for r in rows)
    for name, value, goal in rows:
        print(f"{name:<{width}}  {value:<{value_width}}  {('goal ' + goal) if goal else ''}".rstrip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=8, help="browser tabs predicting at once")
    parser.add_argument("--rounds", type=int, default=2, help="passes over every page (the first imports TF)")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    print(f"load average {load:.1f} on {os.cpu_count()} CPUs" + (" (UNDER LOAD: times are slow)" if load > 1.5
                                                                 else ""))
    print_table(run(args.sessions, args.rounds))


if __name__ == "__main__":
    main()
