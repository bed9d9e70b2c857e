"""The README's two commands are the contract with newcomers; CI must run exactly the documented test command."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _bash_blocks(text: str) -> list[str]:
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S)]


def test_ci_runs_the_readme_test_command():
    readme_blocks = _bash_blocks((ROOT / "README.md").read_text())
    test_command = next(b for b in readme_blocks if "pytest" in b)
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert test_command in ci_lines


def test_readme_run_command_starts_the_router():
    run_command = next(b for b in _bash_blocks((ROOT / "README.md").read_text()) if "streamlit run" in b)
    assert "pip install -r requirements.txt" in run_command
    assert run_command.endswith("streamlit run streamlit_app.py")
