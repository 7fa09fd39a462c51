"""Safe tensor programs: what students type, run without handing out Python.

:mod:`~gradlab.program.syntax` refuses constructs before anything runs,
:mod:`~gradlab.program.policy` allow-lists every module, object type and
attribute, :mod:`~gradlab.program.interpret` walks the syntax tree within
:mod:`~gradlab.program.limits`, and :mod:`~gradlab.program.run` records and
traces what the program builds. This is the first wall; the operating
system's sandbox around the process is :mod:`gradlab.isolation`.
"""

from gradlab.program.limits import Limits
from gradlab.program.run import Notice, ProgramError, ProgramResult, Variable, run_program

__all__ = ["Limits", "Notice", "ProgramError", "ProgramResult", "Variable", "run_program"]
