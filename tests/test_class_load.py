"""A class of 30 on one 2-core server: every program answered right, none refused for time.

Thirty sessions open the Playground at once through Streamlit's websocket
protocol (see ``benchmarks/class_load.py``), each with its own program.

The figures (median and 95th percentile time to result, the server's memory)
are printed; ``benchmarks/bench_worker.py`` prints them too, for the README.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import pytest

from gradlab.isolation import sandbox

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from class_load import run_class

SESSIONS = 30

pytestmark = [
    pytest.mark.slow,
    pytest.mark.xdist_group("browser"),  # with the other server tests: one at a time
    pytest.mark.skipif(not sandbox.status().complete, reason="no OS sandbox here"),
]


def test_thirty_sessions_at_once_all_get_their_answer() -> None:
    figures = run_class(SESSIONS)
    times = sorted(figures.seconds)
    if times:
        p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
        print(f"\n{SESSIONS} sessions: median {statistics.median(times):.1f} s, 95th percentile "
              f"{p95:.1f} s to the right gradient; server memory {figures.before_mb:.0f} MB "
              f"before, {figures.peak_mb:.0f} MB at peak, {figures.after_mb:.0f} MB after; "
              f"/_stcore/health answered within {figures.health_max:.2f} s")
    assert figures.failed == [], figures.failed
    assert figures.correct == SESSIONS and figures.refused == 0
    assert figures.health_max < 30, "the server stopped answering while the class ran"
    assert figures.after_mb - figures.before_mb < 50
