"""Safe tensor programs: what students type, run without handing out Python."""

from gradlab.program.limits import Limits
from gradlab.program.run import Notice, ProgramError, ProgramResult, Variable, run_program

__all__ = ["Limits", "Notice", "ProgramError", "ProgramResult", "Variable", "run_program"]
