"""The router opens, every page it lists runs without an exception, and Home links to all the others."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "streamlit_app.py"
ROUTED_PAGES = re.findall(r'st\.Page\("([^"]+)"', APP.read_text(encoding="utf-8"))


def test_router_is_small_and_lists_the_six_pages():
    expected = [f"pages/{name}.py" for name in ("home", "explore", "train", "predict", "saliency", "evaluate")]
    assert expected == ROUTED_PAGES
    assert all((ROOT / page).is_file() for page in ROUTED_PAGES)
    assert len(APP.read_text(encoding="utf-8").splitlines()) <= 40  # a router, nothing else


@pytest.fixture
def app(monkeypatch) -> AppTest:
    monkeypatch.delenv("FACE_DATA_DIR", raising=False)
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.run()
    return at


def test_home_opens_with_links_to_every_other_page(app):
    assert not app.exception
    assert app.title[0].value == "Face Insight Studio"
    linked = {link.proto.page for link in app.get("page_link")}
    assert linked == {Path(page).stem for page in ROUTED_PAGES if not page.endswith("home.py")}
    text = " ".join(md.value for md in app.markdown)
    assert "non-commercial research" in text and "CC BY 4.0" in text and "data/sample/utkface" in text


@pytest.mark.parametrize("page", ROUTED_PAGES)
def test_every_page_runs_without_an_exception(app, page):
    app.switch_page(page)
    app.run()
    assert not app.exception, f"{page}: {[e.value for e in app.exception]}"


def test_home_and_explore_never_load_tensorflow():
    # TensorFlow costs seconds to import: the first pages a visitor sees must paint without it. A fresh
    # interpreter, because this test process may already hold TensorFlow from other tests.
    result = _fresh_process("import runpy\n"
                            "for page in ('pages/home.py', 'pages/explore.py'):\n"
                            "    runpy.run_path(page, run_name='__main__')\n")
    assert result.stdout.strip().splitlines()[-1] == "[]"


def _fresh_process(script: str) -> subprocess.CompletedProcess:
    """`script` run in a fresh interpreter from the project root, then the TensorFlow modules it left loaded
    printed as its last line; asserts that it succeeded."""
    script += ("import sys\n"
               "print(sorted({m.split('.')[0] for m in sys.modules} & {'tensorflow', 'keras', 'tf_keras'}))\n")
    env = {k: v for k, v in os.environ.items() if k != "FACE_DATA_DIR"}
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


IMPORTABLE_PAGES = ("explore", "train", "predict", "saliency", "evaluate")


def test_pages_import_for_their_keys_without_running():
    # Tests take widget keys from these modules: importing one must run none of its script (outside a run every
    # Streamlit command logs a missing ScriptRunContext) and load no TensorFlow. A fresh interpreter, as above.
    result = _fresh_process("import importlib\n"
                            f"for name in {IMPORTABLE_PAGES!r}:\n"
                            "    importlib.import_module('pages.' + name)\n")
    assert result.stdout.strip().splitlines()[-1] == "[]"
    assert "ScriptRunContext" not in result.stderr and "Session state" not in result.stderr, result.stderr[-2000:]
