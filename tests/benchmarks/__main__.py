"""Every benchmark, one table: `python -m tests.benchmarks [--only app,predict] [--timeout 3600]`.

Runs each tests/benchmarks/bench_*.py as its own process with its default options (each also runs alone:
`python tests/benchmarks/bench_app.py`), then prints one Markdown table of every figure each printed, ready for
the README's Benchmarks section. Prefix with `nice -n 19` on a machine that is busy training; the table notes the
load average so slow figures are not mistaken for regressions.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def scripts(only: set[str] | None) -> list[Path]:
    found = sorted(HERE.glob("bench_*.py"))
    return [s for s in found if only is None or s.stem.removeprefix("bench_") in only]


def run(script: Path, timeout: float) -> tuple[list[str], str]:
    """(figure lines printed, status) of one benchmark script."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    started = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, str(script)], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return [], f"timed out after {timeout:.0f} s"
    seconds = time.perf_counter() - started
    lines = [line.rstrip() for line in done.stdout.splitlines() if line.strip()]
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return lines, f"failed (exit {done.returncode}): {tail}"
    return lines, f"ok in {seconds:.0f} s"


def markdown_table(results: dict[str, tuple[list[str], str]]) -> str:
    rows = ["| Benchmark | Figure |", "| --- | --- |"]
    for name, (lines, status) in results.items():
        rows.append(f"| **{name}** | {status} |")
        rows += [f"| | `{line.replace('|', '/')}` |" for line in lines]
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", help="comma-separated names, e.g. app,predict (default: every bench_*.py)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per script")
    args = parser.parse_args()
    only = set(args.only.split(",")) if args.only else None
    chosen = scripts(only)
    if not chosen:
        raise SystemExit(f"no benchmark matches {args.only!r}: {[s.stem for s in scripts(None)]}")
    load = os.getloadavg()[0]
    print(f"{time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs, load average {load:.1f} at start"
          + (" — UNDER LOAD, times are pessimistic" if load > 1.5 else ""), flush=True)
    results = {}
    for script in chosen:
        print(f"running {script.name}…", file=sys.stderr, flush=True)
        results[script.stem.removeprefix("bench_")] = run(script, args.timeout)
    print(markdown_table(results))


if __name__ == "__main__":
    main()
