"""Every benchmark script runs to its table at a tiny size (its timings are not checked)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

RATIO = r"\d\.\d\dx"  # "1.23x"
# script -> (its arguments for a tiny run, what a row of its table looks like)
RUNS = {
    "bench_core.py": (["--depth", "10", "--repeat", "1"], RATIO),
    "bench_args.py": (["--depth", "10", "--repeat", "1"], RATIO),
    "bench_diagnose.py": (["--layers", "2", "--repeat", "1"], RATIO),
    "bench_train.py": (["--rounds", "1", "--block", "1"], RATIO),
    "bench_model_graph.py": (["--repeat", "1"], r"\| \*\*\d+\*\* \|"),  # click to figure, ms
    "bench_real.py": (["--sizes", "small", "--repeat", "1", "--no-peers"], RATIO),
    "bench_worker.py": (["--repeat", "1", "--sessions", "0"], RATIO),
    "bench_viewer.py": (
        ["--depth", "3", "--layers", "1", "--repeat", "2", "--seconds", "0.2"],
        r"\| Next → step drawn \(svg\) \| classic chain \| 7 \| \*\*[\d.]+ ms\*\*",
    ),
}


def test_every_benchmark_script_is_run_here() -> None:
    scripts = {p.name for p in (ROOT / "benchmarks").glob("bench_*.py")}
    assert scripts == set(RUNS)


@pytest.mark.parametrize("script", sorted(RUNS))
def test_a_benchmark_prints_its_table(script: str) -> None:
    arguments, row = RUNS[script]
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *arguments],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert re.search(row, done.stdout), done.stdout[-2000:]
