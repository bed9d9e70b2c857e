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


def _shipped_card() -> dict:
    import json
    return json.loads((ROOT / "models" / "face_insight_v1.json").read_text())


def test_readme_states_the_shipped_cards_test_figures():
    text, metrics = (ROOT / "README.md").read_text(), _shipped_card()["metrics"]
    section = text.split("**Test metrics through the app path**", 1)[1].split("\n- ", 1)[0]
    assert f"age MAE **{metrics['age_mae']:.2f}**" in section
    assert f"gender accuracy **{metrics['gender_accuracy']:.1%}**" in section
    assert f"race accuracy **{metrics['race_accuracy']:.1%}**" in section


def test_readme_group_table_is_the_shipped_cards():
    text, groups = (ROOT / "README.md").read_text(), _shipped_card()["metrics"]["by_group"]
    rows = re.findall(r"^\| (race|gender|age_group) \| (\S+) \| (\d+) \| ([\d.]+) \| ([\d.]+)% \| ([\d.]+)% \|$", text,
                      flags=re.M)
    assert len(rows) == sum(len(values) for values in groups.values())
    for dimension, value, n, age_mae, gender, race in rows:
        scores = groups[dimension][value]
        assert (int(n), age_mae, gender, race) == (scores["n"], f"{scores['age_mae']:.2f}",
                                                   f"{scores['gender_accuracy']:.1%}"[:-1],
                                                   f"{scores['race_accuracy']:.1%}"[:-1]), (dimension, value)
