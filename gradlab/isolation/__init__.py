"""Where untrusted work runs: sandboxed worker processes that send back facts only.

A warm parent (:mod:`~gradlab.isolation.worker`, torch already imported)
forks a fresh child per run; the child confines itself
(:mod:`~gradlab.isolation.sandbox`: namespaces, limits, Landlock, seccomp),
runs a typed program (:mod:`gradlab.program`) or trusted-mode model code
(:mod:`~gradlab.isolation.trusted`), and replies in JSON that
:mod:`~gradlab.isolation.wire` decodes into GradLab's own records only.
:mod:`~gradlab.isolation.pool` shares the workers fairly between sessions.
"""

from gradlab.isolation.pool import Job, Outcome, Pool, diagnose_program, run_program, shared

__all__ = ["Job", "Outcome", "Pool", "diagnose_program", "run_program", "shared"]
