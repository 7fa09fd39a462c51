"""Finding 1: a parameter or input that received no gradient, and where its path broke.

After ``backward()``, a leaf that requires grad and still has ``.grad is
None`` was never reached from the loss. The call log says why: the leaf was
never used (``unused``), or something it flowed through gave an output that no
longer requires grad while grad mode was on (``detach``, ``data``, then maybe
``numpy``), or while it was off (``no_grad``). The break is the first such
call on the leaf's way; the node shown is the op of the loss's graph where the
cut value joined it again.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from gradlab.core.walk import walk
from gradlab.diagnose.checks import check
from gradlab.diagnose.evidence import Evidence
from gradlab.diagnose.finding import Finding, Severity
from gradlab.diagnose.observe import Call
from gradlab.teach.explain import explain

_NUMPY = ("numpy", "tolist", "item")
_FROM_NUMPY = ("tensor", "as_tensor", "from_numpy", "asarray")

_TEXT: dict[str, tuple[str, str, str]] = {
    # cause -> (title, why, fix)
    "unused": (
        "Parameters the loss never used",
        "These parameters took no part in computing the loss, so backward() never reaches "
        "them: their .grad stays None and the optimizer never changes them.",
        "Use the layer in forward(), or delete it from __init__ (a layer made but never called "
        "is a classic slip).",
    ),
    "detach": (
        "The gradient path is cut by .detach()",
        "detach() returns the same numbers without their history: everything computed from it "
        "is a constant to autograd, so no gradient flows back past it.",
        "Drop the .detach() on the way from the parameter to the loss (keep it only where you "
        "mean to stop gradients).",
    ),
    "data": (
        "The gradient path is cut by .data",
        ".data gives the tensor's values with no history and no version checks; autograd cannot "
        "see through it, so nothing before it gets a gradient.",
        "Use the tensor itself instead of .data (and .detach() where you really want a cut).",
    ),
    "numpy": (
        "The gradient path is cut by a NumPy round trip",
        "The values went to NumPy (.detach().numpy()) and came back with torch.tensor(...): "
        "NumPy records no graph, so the tensor that comes back has no history.",
        "Do the computation with torch functions (torch.exp, torch.clamp, ...) so that "
        "autograd records it.",
    ),
    "no_grad": (
        "The gradient path is cut by torch.no_grad()",
        "Ops run inside torch.no_grad() (or with grad mode off) record nothing, so their "
        "outputs have no grad_fn and the parameters before them get no gradient.",
        "Run the forward pass that the loss depends on outside `with torch.no_grad():` "
        "(keep no_grad for evaluation and for parameter updates).",
    ),
    "unreached": (
        "Leaves the loss never reached",
        "backward() did not reach these leaves, so their .grad stays None. The code made "
        "more torch calls than GradLab keeps, so it cannot say where the path broke.",
        "Check that the loss is computed from them, outside torch.no_grad(), without "
        ".detach() or .data; diagnose a shorter run (one step) to see the place.",
    ),
    "checkpoint": (
        "The gradient path is cut inside a reentrant checkpoint",
        "These parameters are used inside torch.utils.checkpoint with use_reentrant=True: its "
        "forward runs under no_grad and is run again during backward(), and that second run "
        "gave them no gradient, so something inside the checkpointed function cuts their path "
        "(.detach(), .data, torch.no_grad()).",
        "Look for the cut inside the checkpointed function; call it once without checkpoint "
        "(or with use_reentrant=False) and GradLab shows where the path breaks.",
    ),
    "other": (
        "The gradient path is cut",
        "An op on the way from these leaves to the loss returned a result without history "
        "(it does not require grad), so no gradient flows back past it.",
        "Compute the loss from the leaf with differentiable torch ops all the way.",
    ),
    "frozen": (
        "Parameters with requires_grad=False",
        "These parameters are frozen: autograd does not compute gradients for them. That is "
        "right when fine-tuning on purpose.",
        "If they should learn: p.requires_grad_(True) for each (model.requires_grad_(True) "
        "for all).",
    ),
    "frozen_all": (
        "Nothing requires grad: every parameter is frozen",
        "No parameter and no input requires grad, so autograd recorded no graph: the loss has "
        "no grad_fn and backward() has nothing to do.",
        "model.requires_grad_(True), or create the input with requires_grad=True.",
    ),
}


@dataclass(frozen=True)
class Cut:
    """Where a leaf's path to the loss broke."""

    cause: str  # "unused", "detach", "data", "numpy", "no_grad"
    at: int  # index of the call that cut it (-1: unused)
    op: str  # the name of that call
    rejoin: str | None  # the op node of the loss's graph the cut value flowed into


# The cut path explains the missing grad_fn that the autograd error lesson would report.
@check(kinds=("no_gradient", "frozen"), family="no_gradient", order=20, explains=("no_grad_fn",))
def find(ev: Evidence) -> list[Finding]:
    """No-gradient findings: one per cause and place, listing the leaves it concerns."""
    if ev.error is not None and not _no_graph_error(ev):
        return []
    frozen = [n for n, p in ev.params.items() if not p.requires_grad]
    findings: list[Finding] = []
    if frozen and len(frozen) == len(ev.params) and _no_graph_error(ev):
        findings.append(_finding("frozen_all", frozen, (), "error"))
    elif frozen:
        findings.append(_finding("frozen", frozen, (), "info"))
    if not ev.backward_ran and not _no_graph_error(ev):
        return findings
    missing = [n for n, p in ev.params.items() if p.requires_grad and p.grad is None]
    groups: dict[tuple[str, int], list[str]] = {}
    rejoin: dict[tuple[str, int], str | None] = {}
    for name in missing:
        cut = find_cut(ev.calls, ev.params[name], ev) if ev.calls is not None else None
        if cut is not None and cut.cause == "no_grad" and _reentrant_checkpoint(ev):
            cut = Cut("checkpoint", -2, cut.op, None)
        unsure = "unused" if ev.calls_complete else "unreached"
        key = (cut.cause, cut.at) if cut else (unsure, -1)
        groups.setdefault(key, []).append(name)
        rejoin[key] = cut.rejoin if cut else None
    for (cause, _), names in groups.items():
        where = rejoin[(cause, _)]
        nodes = (where,) if where else ()
        findings.append(_finding(cause, names, nodes, "error"))
    return findings


def _reentrant_checkpoint(ev: Evidence) -> bool:
    """Whether the loss's graph holds a reentrant checkpoint, whose forward ran under no_grad."""
    if ev.loss is None or ev.loss.grad_fn is None:
        return False
    fns, _ = walk([ev.loss.grad_fn])
    return any(type(fn).__name__ == "CheckpointFunctionBackward" for fn in fns)


def _no_graph_error(ev: Evidence) -> bool:
    if ev.error is None:
        return False
    lesson = explain(ev.error)
    return lesson is not None and lesson.kind == "no_grad_fn"


def find_cut(calls: list[Call] | None, leaf: torch.Tensor, ev: Evidence) -> Cut | None:
    """Follow ``leaf`` through the call log to the first call that cut its history."""
    if not calls:
        return None
    tainted = {id(leaf)}
    first: Cut | None = None
    for i, call in enumerate(calls):
        inputs = call.inputs()
        if not any(id(a) in tainted for a in inputs):
            continue
        outputs = call.outputs()
        tainted.update(id(o) for o in outputs)
        if _cuts(call, inputs, outputs, tainted):
            cut = Cut(_cause(call, calls, i), i, call.name, _rejoin(calls, i, ev))
            if cut.rejoin is not None:
                return cut
            # A cut value that never joins the loss's graph is not the break on the way
            # to it (model.to(memory_format=...) copies each weight under no_grad): keep
            # looking, and fall back on it.
            first = first or cut
    return first


def _cuts(call: Call, inputs: list[object], outputs: list[object], tainted: set[int]) -> bool:
    """A float output that lost the history a tainted input carried."""
    carried = any(
        isinstance(a, torch.Tensor) and id(a) in tainted and a.requires_grad for a in inputs
    )
    if not carried or not outputs:
        return False
    if call.name in _NUMPY:
        return True
    floats = [o for o in outputs if isinstance(o, torch.Tensor) and o.is_floating_point()]
    return bool(floats) and not any(o.requires_grad for o in floats)


def _cause(call: Call, calls: list[Call], i: int) -> str:
    if call.name in _NUMPY:
        return "numpy"
    if not call.grad_enabled:
        return "no_grad"
    if call.name == "data":
        return "data"
    cut = {id(o) for o in call.outputs()}
    for later in calls[i + 1 :]:  # a detach whose result goes to NumPy: a round trip
        if later.name in _NUMPY and any(id(a) in cut for a in later.inputs()):
            return "numpy"
        if any(id(a) in cut for a in later.inputs()):
            cut.update(id(o) for o in later.outputs())
    return "detach" if call.name == "detach" else "other"


def _rejoin(calls: list[Call], i: int, ev: Evidence) -> str | None:
    """The op of the loss's graph where the value cut at call ``i`` joined it again."""
    after = {id(o) for o in calls[i].outputs()}
    numpy = False
    for call in calls[i + 1 :]:
        inputs = call.inputs()
        if call.name in _NUMPY and any(id(a) in after for a in inputs):
            numpy = True
        # Back from NumPy: a tensor made from an array carries the cut value on.
        back = numpy and call.name in _FROM_NUMPY and any(isinstance(a, np.ndarray) for a in inputs)
        if not back and not any(id(a) in after for a in inputs):
            continue
        for o in call.outputs():
            after.add(id(o))
            if isinstance(o, torch.Tensor) and o.grad_fn is not None:
                n = ev.index.fn(o.grad_fn)
                if n is not None:
                    return n
    return None


def _finding(cause: str, names: list[str], nodes: tuple[str, ...], severity: Severity) -> Finding:
    title, why, fix = _TEXT[cause]
    more = f" and {len(names) - 6} more" if len(names) > 6 else ""
    shown = ", ".join(f"`{n}`" for n in names[:6]) + more
    if nodes:
        why += f" The cut value joins the loss's graph again at {nodes[0]}, outlined in red."
    return Finding(
        kind="frozen" if cause == "frozen" else "no_gradient",
        severity=severity,
        nodes=nodes,
        title=title,
        explanation=f"{shown}: {why}",
        fix=fix,
        where=", ".join(names),
        cause=cause,
    )
