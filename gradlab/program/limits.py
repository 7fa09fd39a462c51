"""Limits on what a program's tensor ops may cost, checked before each op runs.

:class:`Guard` sees every ATen op (a ``TorchDispatchMode``). Before running
one it runs it on the meta device, which computes output shapes without
allocating, and refuses an op whose output is too big, whose arithmetic is
too heavy (``torch.utils.flop_counter``'s formulas, and a cubic estimate for
the ``linalg`` factorisations), or that comes after the time, the op count or
the total allocation ran out. ``torch.empty`` and friends are filled with
zeros, so a program never reads memory the server used before.

Time is the CPU time of the thread that runs the program
(``time.thread_time``), not the wall clock: a program that waits for its turn
among a class's other programs does not spend its budget waiting. Code the
program wrote that PyTorch calls back (tensor and module hooks, a custom
``autograd.Function``'s backward, a ``DataLoader``'s dataset) runs under
:meth:`Guard.active`, with every limit on, even inside GradLab's own paused
work such as the captured backward pass.
"""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode, _get_current_dispatch_mode
from torch.utils.flop_counter import flop_registry

# Factorisations and solves, by whole name: "det" must not match "detach".
_CUBIC = re.compile(
    r"linalg_\w+|cholesky\w*|svd|qr|eig\w*|lu(_\w+)?|inverse|det|logdet|"
    r"slogdet|\w*solve\w*|lstsq|matrix_exp|pinverse|ormqr|geqrf|orgqr"
)
_EMPTY = ("empty", "empty_like", "new_empty", "empty_strided", "new_empty_strided")


@dataclass(frozen=True)
class Limits:
    """What one program run may spend."""

    max_elements: int = 1 << 24  # per tensor: 16.7M (64 MiB of float32)
    max_total_bytes: int = 2 << 30  # all outputs together, over the whole run
    max_flops: float = 4e9  # per op (about a second on one core)
    max_ops: int = 200_000  # ATen ops
    max_steps: int = 2_000_000  # interpreter steps
    max_depth: int = 40  # nested calls of program functions
    max_sequence: int = 1_000_000  # elements of a Python list, tuple, range or string
    max_output: int = 100_000  # characters printed
    # seconds of CPU time of the thread running the program (GRADLAB_PROGRAM_SECONDS, else 5)
    timeout: float = field(default_factory=lambda: default_seconds())


def default_seconds() -> float:
    """A program's CPU seconds: ``GRADLAB_PROGRAM_SECONDS`` when it is a positive number, else 5."""
    try:
        seconds = float(os.environ.get("GRADLAB_PROGRAM_SECONDS", "5"))
    except ValueError:
        return 5.0
    return seconds if 0 < seconds < 1e6 else 5.0


class LimitExceeded(Exception):
    """A limit ran out; the message says which, and how to stay within it."""


class Guard(TorchDispatchMode):  # type: ignore[no-untyped-call]
    """Check every op against the limits before it runs."""

    def __init__(self, limits: Limits) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.limits = limits
        self.deadline = time.thread_time() + limits.timeout
        self.ops = 0
        self.bytes = 0
        self.paused = False

    def __torch_dispatch__(
        self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None
    ) -> Any:
        kwargs = kwargs or {}
        if self.paused:
            return func(*args, **kwargs)
        self.check_time()
        self.ops += 1
        if self.ops > self.limits.max_ops:
            raise LimitExceeded(f"more than {self.limits.max_ops:,} tensor operations")
        self._check_cost(func, args, kwargs)
        out = func(*args, **kwargs)
        if func._overloadpacket.__name__ in _EMPTY:
            for t in _tensors(out):
                t.zero_()  # never show memory the process used before
        return out

    def check_time(self) -> None:
        """Raise when the run's time is up."""
        if time.thread_time() > self.deadline:
            raise LimitExceeded(f"more than {self.limits.timeout:g} s of running time")

    @contextmanager
    def pause(self) -> Iterator[None]:
        """Let GradLab's own work (tracing, summaries) run unchecked."""
        was, self.paused = self.paused, True
        try:
            yield
        finally:
            self.paused = was

    @contextmanager
    def active(self) -> Iterator[None]:
        """Check every op again: the program's own code runs (a hook, a callback)."""
        if not self.paused and _get_current_dispatch_mode() is self:
            yield
            return
        was, self.paused = self.paused, False
        try:
            with self:
                yield
        finally:
            self.paused = was

    def _check_cost(self, func: Any, args: tuple[Any, ...], kwargs: Any) -> None:
        inputs = _tensors((args, kwargs))
        outputs = _meta_outputs(func, args, kwargs)
        if outputs is None:  # no meta kernel (data-dependent): bounded by the inputs
            outputs = [t.to("meta") if t.device.type != "meta" else t for t in inputs]
        for t in outputs:
            if t.numel() > self.limits.max_elements:
                raise LimitExceeded(
                    f"a tensor of shape {tuple(t.shape)} ({t.numel():,} elements; the limit is "
                    f"{self.limits.max_elements:,})"
                )
        new = sum(t.numel() * t.element_size() for t in outputs)
        self.bytes += new
        if self.bytes > self.limits.max_total_bytes:
            raise LimitExceeded(f"more than {self.limits.max_total_bytes >> 20:,} MiB of tensors")
        flops = _flops(func, args, kwargs, outputs, inputs)
        if flops > self.limits.max_flops:
            raise LimitExceeded(
                f"an operation ({func._overloadpacket.__name__.lstrip('_')}) of about {flops:.2g} "
                f"floating-point operations (the limit is {self.limits.max_flops:.2g})"
            )


def _tensors(tree: Any) -> list[torch.Tensor]:
    """The tensors in an op's arguments or outputs (tensors, lists, tuples, dicts)."""
    if isinstance(tree, torch.Tensor):
        return [tree]
    if isinstance(tree, list | tuple):
        return [t for item in tree for t in _tensors(item)]
    if isinstance(tree, dict):
        return [t for item in tree.values() for t in _tensors(item)]
    return []


def _to_meta(x: Any) -> Any:
    """The same structure with every tensor replaced by a meta tensor of its layout."""
    if isinstance(x, torch.Tensor):
        if x.device.type == "meta":
            return x
        return torch.empty_strided(x.shape, x.stride(), dtype=x.dtype, device="meta")
    if isinstance(x, list | tuple):
        return type(x)(_to_meta(item) for item in x)
    if isinstance(x, dict):
        return {k: _to_meta(v) for k, v in x.items()}
    return x


def _meta_outputs(func: Any, args: tuple[Any, ...], kwargs: Any) -> list[torch.Tensor] | None:
    """The op's outputs on the meta device (shapes only); None without a meta kernel."""
    meta_kwargs = _to_meta(kwargs)
    if "device" in meta_kwargs:
        meta_kwargs["device"] = torch.device("meta")  # factories: torch.zeros(n) and friends
    elif not _tensors(args):
        return None  # nothing would run on the meta device: never allocate for real here
    try:
        with torch._C._DisableTorchDispatch():
            out = func(*_to_meta(args), **meta_kwargs)
    except Exception:
        return None
    return _tensors(out)


def _flops(
    func: Any,
    args: tuple[Any, ...],
    kwargs: Any,
    outputs: list[torch.Tensor],
    inputs: list[torch.Tensor],
) -> float:
    packet = func._overloadpacket
    formula = flop_registry.get(packet)
    if formula is not None:
        try:
            meta_out = outputs[0] if len(outputs) == 1 else tuple(outputs)
            return float(formula(*_to_meta(args), out_val=meta_out, **_to_meta(kwargs)))
        except (TypeError, ValueError, RuntimeError, IndexError):
            pass  # a formula that does not fit these arguments: estimate as below
    name = packet.__name__
    if _CUBIC.fullmatch(name.lstrip("_")):
        side = max((max(t.shape[-2:], default=1) for t in inputs if t.dim() >= 2), default=1)
        batch = max((math.prod(t.shape[:-2]) for t in inputs if t.dim() > 2), default=1)
        return float(batch * side**3)
    # Element-wise and reductions: a few operations per element touched.
    return float(4 * (sum(t.numel() for t in inputs) + sum(t.numel() for t in outputs)))
