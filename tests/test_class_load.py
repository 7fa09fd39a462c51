"""A class of 30 on one 2-core server: every program answered right, none refused for time.

The figures (median and 95th percentile time to result, the server's memory)
are printed; ``benchmarks/bench_worker.py`` prints them too, for the README.
"""

from __future__ import annotations

import shutil
import statistics
import sys
from pathlib import Path

import pytest

from gradlab.program import sandbox

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from class_load import run_class

SESSIONS = 30

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium"),
    pytest.mark.skipif(not sandbox.status().complete, reason="no OS sandbox here"),
]


def test_thirty_sessions_at_once_all_get_their_answer() -> None:
    figures = run_class(SESSIONS)
    times = sorted(figures.seconds)
    if times:
        p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
        print(f"\n{SESSIONS} sessions: median {statistics.median(times):.1f} s, 95th percentile "
              f"{p95:.1f} s to the right gradient; server memory {figures.before_mb:.0f} MB "
              f"before, {figures.peak_mb:.0f} MB at peak, {figures.after_mb:.0f} MB after")
    assert figures.failed == []
    assert figures.correct == SESSIONS and figures.refused == 0
    assert figures.healthy, "/_stcore/health took over 1 s to answer while the class ran"
    assert figures.after_mb - figures.before_mb < 50
