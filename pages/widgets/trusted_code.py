"""Pasted nn.Module code in trusted mode: the code box and its runner. Not a page.

Pages import it as ``from trusted_code import code_box, run_code``. The code
runs in a sandboxed worker (:mod:`gradlab.isolation.trusted`) with a CPU-time and a
memory limit; while it waits or runs the page stays usable and offers a Kill
button. Widget and state keys start with the page's ``key``: ``{key}.code``,
``{key}.run``, ``{key}.kill``, ``{key}.seconds``, ``{key}.memory``, and the
running job and its result in ``{key}.job`` and ``{key}.result``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import streamlit as st

from gradlab.core.errors import GradLabError
from gradlab.isolation import trusted

from widgets.isolated import session_id

LABEL = (
    "Your model code: define `model` (an nn.Module) and `x` (the input batch); "
    "`loss` (a function of the output) is optional"
)


def code_box(key: str, *, height: int = 320) -> tuple[str, bool]:
    """The code area (read-only, with how to enable trusted mode, when it is off).

    Returns the code and whether trusted mode is on.
    """
    address = st.get_option("server.address")
    enabled = trusted.trusted_enabled(address)
    st.session_state.setdefault(f"{key}.code", trusted.EXAMPLE)
    code = st.text_area(LABEL, key=f"{key}.code", height=height, disabled=not enabled)
    if not enabled:
        st.info(trusted.how_to_enable(address))
    return code, enabled


def run_code(
    code: str,
    key: str,
    *,
    task: trusted.Task = "inspect",
    done: str = "Ran",
    on_start: Callable[[], None] | None = None,
) -> trusted.TrustedResult | None:
    """Limits, Run, Kill while it runs, and how the last run ended (``None`` before one)."""
    seconds_column, memory_column, run_column = st.columns([1, 1, 1], vertical_alignment="bottom")
    seconds = seconds_column.number_input("CPU time limit (s)", 1, 600, 30, key=f"{key}.seconds")
    memory = memory_column.number_input("Memory limit (MiB)", 256, 65536, 2048, key=f"{key}.memory")
    busy = f"{key}.job" in st.session_state
    if run_column.button("Run", type="primary", key=f"{key}.run", disabled=busy, width="stretch"):
        if on_start is not None:
            on_start()
        _start(code, key, task, trusted.Limits(float(seconds), int(memory)))
    if f"{key}.job" in st.session_state:
        _watch(key)
    result: trusted.TrustedResult | None = st.session_state.get(f"{key}.result")
    if result is None:
        st.caption("Press Run: the code runs in a sandboxed process, with these limits.")
        return None
    _outcome(result, done)
    return result


def _start(code: str, key: str, task: trusted.Task, limits: trusted.Limits) -> None:
    st.session_state.pop(f"{key}.result", None)
    address = st.get_option("server.address")
    try:
        st.session_state[f"{key}.job"] = trusted.start(
            code, address=address, limits=limits, task=task, session=session_id()
        )
    except GradLabError as exc:
        st.error(str(exc))


@st.fragment(run_every=0.5)
def _watch(key: str) -> None:
    """While the code runs: elapsed time and the kill button; the page stays usable."""
    job: trusted.TrustedRun | None = st.session_state.get(f"{key}.job")
    if job is None:
        return
    if st.button("Kill", key=f"{key}.kill", icon=":material/stop_circle:"):
        job.cancel()
        with contextlib.suppress(TimeoutError):  # a killed process ends at once
            job.result(timeout=5)
    if job.done():
        st.session_state[f"{key}.result"] = job.result()
        del st.session_state[f"{key}.job"]
        st.rerun()
    ahead = job.ahead()
    if ahead:
        st.info(f"Waiting for a free worker: {ahead} ahead of you…", icon="⏳")
    else:
        st.info(f"Running your code… {job.elapsed():.0f} s (limit {job.limits.seconds:g} s)")


def _outcome(result: trusted.TrustedResult, done: str) -> None:
    """How the run ended, and what the code printed."""
    if result.status == "ok":
        st.success(f"{done} in {result.seconds:g} s.")
    else:
        st.error(result.message)
    if result.stdout or result.stderr:
        with st.expander("Output of your code"):
            if result.stdout:
                st.code(result.stdout, language=None)
            if result.stderr:
                st.code(result.stderr, language=None)
