"""What the sandboxed worker costs a run, and how a class of 30 fares on one server.

Run: python benchmarks/bench_worker.py [--repeat 20] [--sessions 30]

* per run: each lesson program run in this process (``gradlab.program.run_program``,
  what the app did before workers) against the same program through the warm
  worker pool (``gradlab.isolation.pool.run_program``: queue, fork, sandbox, run,
  JSON back, decode) and through a child forked from this process
  (``run_here``, the command line's way). Medians and best of interleaved runs;
  the added milliseconds are the worker's cost per run.
* a class: ``--sessions`` browser sessions (Playwright contexts in Debian's
  chromium) open the Playground on the same server at once, each with its own
  lesson program in the link; time from opening the page to the right
  gradient on screen (median and 95th percentile), and the server's memory
  before, at its peak and after the sessions closed (``--sessions 0`` skips it).
"""

from __future__ import annotations

import argparse
import statistics

from timing import compare, timed

from gradlab.isolation import pool
from gradlab.program.run import run_program
from gradlab.teach import examples

LESSONS = ("chain", "square", "linear_step")


def per_run(repeat: int) -> None:
    workers = pool.Pool(1)
    workers.wait_ready()
    print("| lesson | in process | worker pool | added | ratio | forked here | added |")
    print("|---|---|---|---|---|---|---|")
    try:
        for lesson in LESSONS:
            example = examples.get(lesson)
            assert example is not None, lesson
            source = example.source
            results = compare(
                {
                    "inline": timed(lambda s=source: run_program(s)),
                    "pool": timed(lambda s=source: pool.run_program(s, pool=workers)),
                    "here": timed(lambda s=source: pool.run_program(s, here=True)),
                },
                repeat,
            )
            inline, isolated, here = (results[k][0] * 1e3 for k in ("inline", "pool", "here"))
            cells = [f"{inline:.1f} ms", f"{isolated:.1f} ms", f"{isolated - inline:+.1f} ms",
                     f"{isolated / inline:.2f}x", f"{here:.1f} ms", f"{here - inline:+.1f} ms"]
            print(f"| {lesson} | " + " | ".join(cells) + " |")
    finally:
        workers.close()


def a_class(sessions: int) -> None:
    from class_load import run_class

    figures = run_class(sessions)
    times = sorted(figures.seconds)
    p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
    print()
    print(f"{sessions} sessions at once: {figures.correct} of {sessions} showed the right "
          f"gradient, {figures.refused} refused for time")  # fmt: skip
    print("| time to result, median | 95th percentile | server memory before | peak | after "
          "| slowest health check |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    print(f"| {statistics.median(times):.1f} s | {p95:.1f} s | {figures.before_mb:.0f} MB "
          f"| {figures.peak_mb:.0f} MB | {figures.after_mb:.0f} MB "
          f"| {figures.health_max:.2f} s |")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--sessions", type=int, default=30)
    args = parser.parse_args()
    per_run(args.repeat)
    if args.sessions:
        a_class(args.sessions)


if __name__ == "__main__":
    main()
