"""core/ holds logic only: it must run under the CLI and in tests with no Streamlit. Checked on the source, so an
import hidden inside a function counts too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parent.parent / "core"


def streamlit_imports(source: str) -> list[int]:
    """Line numbers of every `import streamlit…` / `from streamlit… import …` in a module's source."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module or ""]
        else:
            continue
        if any(name == "streamlit" or name.startswith("streamlit.") for name in names):
            lines.append(node.lineno)
    return lines


def test_the_checker_catches_every_import_form():
    assert streamlit_imports("import streamlit as st") == [1]
    assert streamlit_imports("import os\nfrom streamlit.testing.v1 import AppTest") == [2]
    assert streamlit_imports("def f():\n    import pandas, streamlit.components.v1") == [2]
    assert streamlit_imports("import streamlit_extras\nfrom . import streamlit") == []


CORE_FILES = sorted(CORE.glob("*.py"))


@pytest.mark.parametrize("path", CORE_FILES, ids=lambda p: p.name)
def test_core_module_does_not_import_streamlit(path):
    assert streamlit_imports(path.read_text(encoding="utf-8")) == [], f"{path.name} imports streamlit"
