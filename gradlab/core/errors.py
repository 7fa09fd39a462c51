"""Errors GradLab raises on purpose, each with a message that says what to do."""

from __future__ import annotations


class GradLabError(Exception):
    """Base class: the message is meant for a person and names the fix."""


class TraceError(GradLabError, ValueError):
    """A tensor cannot be traced, or a graph does not belong to a tensor."""


class ExportError(GradLabError):
    """A graph cannot be written to the requested file."""


def nested_tensor_error(where: str) -> TraceError:
    """The error for a nested tensor (``where``: what holds it), which has no single shape."""
    return TraceError(
        f"The graph holds a nested tensor ({where}), which has no single shape, and "
        "GradLab traces tensors of one shape each. Trace a computation without "
        "torch.nested, or start the graph after it: nt.values().detach().requires_grad_()."
    )


def out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is torch's allocator running out (a RuntimeError, not a MemoryError)."""
    text = str(exc)
    return isinstance(exc, RuntimeError) and any(
        s in text for s in ("can't allocate memory", "not enough memory", "bad_alloc")
    )
