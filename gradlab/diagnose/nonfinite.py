"""Finding 2: the first op that made a NaN or an Inf, forward or backward, and its inputs.

Forward: the first call in the call log whose output holds a non-finite value
while every input was finite (without a log, the first op in forward order of
a recorded graph whose inputs were finite). Backward: the first node, in the
order the engine ran, that received a finite gradient and sent a non-finite one
(read from a graph with :func:`gradlab.backward`'s facts). A NaN loss gives
the forward finding; a finite loss with NaN gradients the backward one.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from gradlab.core.graph import ACCUMULATE_GRAD, Graph, TensorSummary, engine_order
from gradlab.core.walk import discover, leaf_tensors
from gradlab.diagnose.checks import check
from gradlab.diagnose.evidence import Evidence
from gradlab.diagnose.finding import Finding
from gradlab.diagnose.observe import Call
from gradlab.diagnose.received import AMBIGUOUS, first_bad_sender, not_finite

Range = tuple[float | None, float | None]  # (min, max) of an input's finite entries
_LOG = ("log", "log2", "log10", "log1p", "log_", "xlogy")
_SQRT = ("sqrt", "rsqrt", "sqrt_")
_DIV = ("div", "__truediv__", "__rtruediv__", "true_divide", "reciprocal", "__div__", "div_")
_EXP = ("exp", "exp2", "expm1", "pow", "__pow__", "__rpow__", "cosh", "sinh", "exp_")


def finite(t: torch.Tensor) -> bool:
    """Whether every entry of a float tensor is finite (other tensors count as finite)."""
    if not t.is_floating_point() and not t.is_complex():
        return True
    if t.numel() == 0 or t.device.type == "meta":
        return True
    return bool(torch.isfinite(t).all())


def summary_finite(s: TensorSummary | None) -> bool:
    """Whether a summary saw no NaN and no Inf (an unknown one counts as finite)."""
    return s is None or (s["nan"] == 0 and s["inf"] == 0)


def loss_is_finite(ev: Evidence) -> bool:
    """Whether the loss (live, or the root of the facts graph) is finite."""
    if ev.loss is not None:
        return finite(ev.loss.detach())
    G = ev.graph
    if G is None or not G.graph.get("roots"):
        return True
    return summary_finite(G.nodes[G.graph["roots"][0]].get("value"))


def grads_are_finite(ev: Evidence) -> bool:
    """Whether the checked leaves' gradients (or the graph's leaf gradients) are finite."""
    if ev.params:
        grads = [g.detach() for g in ev.grads().values() if g.is_floating_point()]
        if not grads:
            return True
        # One norm per gradient in one call: a NaN or an inf anywhere makes its norm non-finite.
        norms = torch._foreach_norm(grads)
        return bool(torch.isfinite(torch.stack(list(norms))).all())
    G = ev.graph
    if G is None:
        return True
    return all(summary_finite(a.get("grad")) for _, a in G.nodes(data=True))


# A loss that diverges explains the NaN that ends it.
@check(kinds=("nonfinite_forward", "nonfinite_backward"), family="nonfinite", order=40,
       unless=("lr_too_high",))  # fmt: skip
def find(ev: Evidence) -> list[Finding]:
    """The NaN/Inf finding, if the loss or the gradients are not finite."""
    if ev.error is not None:
        return []
    if not loss_is_finite(ev):
        found = forward_culprit(ev.calls, ev) if ev.calls else None
        if found is not None:
            return [found]
        return [f] if (f := _forward_from_graph(ev.graph)) is not None else []
    if ev.graph is not None and "backward" in ev.graph.graph:
        found = None if grads_are_finite(ev) else backward_culprit(ev.graph)
    else:
        # A watched activation whose gradient is not finite says it at once; the
        # leaves' gradients are looked at only when none is.
        region = _region(ev)
        if region is None and grads_are_finite(ev):
            return []
        found = live_backward_culprit(ev, region)
    return [found] if found is not None else []


def forward_culprit(calls: list[Call], ev: Evidence) -> Finding | None:
    """The first call that turned finite inputs into a non-finite output."""
    buffers = _buffers(ev)
    for call in calls:
        outputs = [o for o in call.outputs() if isinstance(o, torch.Tensor)]
        bad = next((o for o in outputs if not finite(o.detach())), None)
        if bad is None:
            continue
        if id(bad) in buffers or (bad is call.out and bad._version != call.version):
            # Written in place since: what it holds now is not what this call made (a
            # BatchNorm's running statistics, made by zeros() and overwritten by every
            # batch_norm, even without a version bump).
            continue
        given = call.inputs()
        inputs = [a for a in given if isinstance(a, torch.Tensor) and a is not bad]
        if not all(finite(a.detach()) for a in inputs):
            continue
        ranges = [_range(a) for a in inputs if a.is_floating_point()]
        node = ev.index.tensor(bad)
        return _forward_finding(call.name, ranges, _counts(bad), (node,) if node else ())
    return None


def _buffers(ev: Evidence) -> set[int]:
    """The ids of the buffers of the model, or of every layer the code called."""
    if ev.model is not None:
        return {id(b) for b in ev.model.buffers()}
    return {id(b) for c in ev.modules for b in c.module.buffers(recurse=False)}


def _forward_from_graph(G: Graph | None) -> Finding | None:
    if G is None:
        return None
    ops = [(a.get("seq"), n) for n, a in G.nodes(data=True) if a.get("kind") == "op"]
    for _, n in sorted((s, n) for s, n in ops if s is not None):
        value = G.nodes[n].get("value")
        if value is None or summary_finite(value):
            continue
        inputs = [_value_of(G, u) for u in G.predecessors(n)]
        if all(summary_finite(s) for s in inputs):
            ranges: list[Range] = [
                (s["min"], s["max"]) for s in inputs if s and s["min"] is not None
            ]
            name = str(G.nodes[n].get("op", "")).removesuffix("Backward0").lower()
            return _forward_finding(name, ranges, (value["nan"], value["inf"]), (n,))
    return None


def backward_culprit(G: Graph) -> Finding | None:
    """The first node in engine order that got a finite gradient and sent a non-finite one."""
    for n in engine_order(G):
        attrs = G.nodes[n]
        if attrs.get("op") == ACCUMULATE_GRAD or not summary_finite(attrs.get("grad")):
            continue
        sent = [d.get("grad") for _, _, d in G.in_edges(n, data=True) if d.get("kind") == "flow"]
        bad = next((s for s in sent if not summary_finite(s)), None)
        if bad is None:
            continue
        values = [_value_of(G, u) for u in G.predecessors(n)]
        ranges: list[Range] = [(s["min"], s["max"]) for s in values if s and s["min"] is not None]
        return _backward_finding(str(attrs.get("op")), ranges, (bad["nan"], bad["inf"]), n)
    return None


def _sender_finding(ev: Evidence, sender: tuple[Any, torch.Tensor]) -> Finding | None:
    """The backward finding for the first node that sent a non-finite gradient."""
    fn, sent = sender
    n = ev.index.fn(fn)
    if n is None:
        return None
    ranges = [_range(t) for t in _inputs_of(fn, ev.calls or [])]
    return _backward_finding(type(fn).__name__, ranges, _counts(sent), n)


class _Found(Exception):
    """Raised in a hook to stop the backward pass at the culprit."""

    def __init__(self, fn: Any, counts: tuple[int, int]) -> None:
        super().__init__()
        self.fn, self.counts = fn, counts


def live_backward_culprit(
    ev: Evidence, region: tuple[Any, Any, list[torch.Tensor], list[Any]] | None = None
) -> Finding | None:
    """Run backward again on the retained graph and find the first node that sent a NaN.

    One ``autograd.grad`` call over gradient edges, no Python hook per node
    (:mod:`gradlab.diagnose.received`); a hooked pass that stops at the
    culprit only when two nodes send to the input that went bad.

    First only between the last watched activation (a layer's output or an
    activation a layer took, in forward order) whose gradient is not finite and
    the next one, whose gradient is: in a chain of layers the node that spoiled
    the gradient is there. Then, if not found there, over the whole graph.
    ``region``: what :func:`_region` found, when the caller already asked it.

    Needs the graph kept by ``backward(retain_graph=True)``; ``None`` when it
    was freed. Gradients go to ``torch.autograd.grad``, so ``.grad`` is left as
    it was.
    """
    loss = ev.loss
    if loss is None or loss.grad_fn is None:
        return None
    if region is None:
        region = _region(ev)
    found = _pass(ev, *region) if region is not None else None
    if found is None:
        fns = list(discover([loss.grad_fn]))
        found = _pass(ev, loss, None, leaf_tensors(fns), fns)
    return found


def _pass(
    ev: Evidence, root: torch.Tensor, grad: torch.Tensor | None, inputs: list[torch.Tensor],
    fns: list[Any],
) -> Finding | None:  # fmt: skip
    """The pass from ``root`` to ``inputs``, watching ``fns``: gradient edges, else hooks."""
    try:
        sender = first_bad_sender(root, grad, inputs, fns)
    except RuntimeError:
        return None  # the graph was freed: the deep look finds it
    if sender == AMBIGUOUS:  # two nodes send to one input: only hooks tell which one
        return _hooked_pass(ev, root, grad, inputs, fns)
    return _sender_finding(ev, sender) if sender is not None else None


def _region(ev: Evidence) -> tuple[Any, Any, list[torch.Tensor], list[Any]] | None:
    """(root, its gradient, the input to stop at, the nodes to watch) around where it went bad.

    The watched activations (layer outputs and the activations layers took),
    in the order forward made them: the last one whose gradient is not finite
    and the first after it, whose gradient is. The node that spoiled the
    gradient lies between them.
    """
    if ev.loss is None:
        return None
    points: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    for call in ev.modules:
        for w in call.inputs:
            if w.grad is not None:
                points.setdefault(id(w.tensor), (w.tensor, w.grad))
        if call.tensor is not None and call.grad is not None and call.tensor.grad_fn is not None:
            points.setdefault(id(call.tensor), (call.tensor, call.grad))
    # In the order forward made them (an input may have been made long before the call).
    ordered = sorted(points.values(), key=lambda p: _made(p[0]))
    last = _last_bad([g for _, g in ordered])
    if last is None:
        return None
    low = ordered[last][0]
    high, grad = ordered[last + 1] if last + 1 < len(ordered) else (ev.loss, None)
    if high.grad_fn is None or low.grad_fn is None:
        return None
    return high, grad, [low], _made_since(high.grad_fn, low.grad_fn._sequence_nr())


def _last_bad(grads: list[torch.Tensor]) -> int | None:
    """The position of the last gradient that is not finite, or ``None``.

    On the CPU, from the end, stopping at the first bad one; elsewhere one fused
    norm for all (a check each would wait for the device each time).
    """
    if all(g.device.type == "cpu" and not g.is_sparse for g in grads):
        return next((i for i in reversed(range(len(grads))) if not finite(grads[i])), None)
    bad = not_finite(dict(enumerate(grads)))
    return max(bad) if bad else None


def _made(t: torch.Tensor) -> int:
    """The sequence number of the node that made ``t`` (it has one)."""
    return int(t.grad_fn._sequence_nr()) if t.grad_fn is not None else -1


def _made_since(start: Any, floor: int) -> list[Any]:
    """The op nodes reachable from ``start`` made at or after sequence number ``floor``.

    A node's inputs were made before it, so the walk need not go below ``floor``.
    """

    def newer(fn: Any) -> bool:
        return type(fn).__name__ != ACCUMULATE_GRAD and fn._sequence_nr() >= floor

    return [fn for fn in discover([start], through=newer) if fn is start or newer(fn)]


def _hooked_pass(
    ev: Evidence, root: torch.Tensor, grad: torch.Tensor | None, inputs: list[torch.Tensor],
    fns: list[Any],
) -> Finding | None:  # fmt: skip
    handles = [fn.register_hook(_stop_at_culprit(fn)) for fn in fns
               if type(fn).__name__ != ACCUMULATE_GRAD]  # fmt: skip
    try:
        torch.autograd.grad(root, inputs, grad, allow_unused=True, retain_graph=True)
    except _Found as found:
        n = ev.index.fn(found.fn)
        if n is None:  # a graph other than the loss's (an earlier step): not this one
            return None
        ranges = [_range(t) for t in _inputs_of(found.fn, ev.calls or [])]
        return _backward_finding(type(found.fn).__name__, ranges, found.counts, n)
    except RuntimeError:
        return None  # the graph was freed: the deep look finds it
    finally:
        for handle in handles:
            handle.remove()
    return None


def _stop_at_culprit(fn: Any) -> Any:
    def hook(
        sent: tuple[torch.Tensor | None, ...], arrived: tuple[torch.Tensor | None, ...]
    ) -> None:
        # The first node to send a non-finite gradient received finite ones: had one
        # arrived non-finite, the node that sent it would have stopped the pass first.
        for g in sent:
            if g is not None and g.is_floating_point() and not bool(torch.isfinite(g).all()):
                raise _Found(fn, _counts(g))

    return hook


def _inputs_of(fn: Any, calls: list[Call]) -> list[torch.Tensor]:
    """The forward inputs of an autograd node: the outputs of its children, from the log."""
    wanted = {(c, k) for c, k in fn.next_functions if c is not None}
    made: dict[tuple[Any, int], torch.Tensor] = {}
    for call in calls:
        for o in call.outputs():
            if isinstance(o, torch.Tensor) and o.grad_fn is not None:
                key = (o.grad_fn, o.output_nr)
                if key in wanted and key not in made:
                    made[key] = o
        if len(made) == len(wanted):
            break
    found: list[torch.Tensor] = []
    for child, k in fn.next_functions:
        if child is None:
            continue
        if type(child).__name__ == ACCUMULATE_GRAD:
            found.append(child.variable)
        elif (child, k) in made:
            found.append(made[(child, k)])
    return [t.detach()[torch.isfinite(t.detach())] for t in found if t.is_floating_point()]


def _value_of(G: Graph, u: str) -> TensorSummary | None:
    """The forward value node ``u`` feeds on: its own, or its leaf's for an AccumulateGrad."""
    if G.nodes[u].get("op") == ACCUMULATE_GRAD:
        leaves = list(G.predecessors(u))
        return G.nodes[leaves[0]].get("value") if leaves else None
    value: TensorSummary | None = G.nodes[u].get("value")
    return value


def _range(t: torch.Tensor) -> Range:
    if t.numel() == 0:
        return (None, None)
    low, high = torch.aminmax(t.detach())
    return (float(low), float(high))


def _counts(t: torch.Tensor) -> tuple[int, int]:
    t = t.detach()
    return int(torch.isnan(t).sum()), int(torch.isinf(t).sum())


def _show(ranges: list[Range]) -> str:
    parts = [f"[{_num(lo)}, {_num(hi)}]" for lo, hi in ranges]
    return " and ".join(parts) if parts else "no tensor inputs"


def _num(x: float | None) -> str:
    return "?" if x is None or math.isnan(x) else f"{x:.4g}"


def _why(op: str, ranges: list[Range]) -> tuple[str, str, str]:
    """(cause, why, fix) for an op that made a non-finite value from these inputs."""
    low = min((lo for lo, _ in ranges if lo is not None), default=0.0)
    high = max((hi for _, hi in ranges if hi is not None), default=0.0)
    name = op.lower().removesuffix("backward0").removesuffix("backward1")
    if name in _LOG or name.startswith("log"):
        return ("log", "log(0) is -inf and the log of a negative number is NaN; an input here "
                "reaches " + _num(low) + ".", "torch.log(x.clamp_min(1e-12)), or log_softmax "
                "instead of log(softmax(...))")  # fmt: skip
    if name in _SQRT or name.startswith("sqrt"):
        return ("sqrt", "sqrt of a negative number is NaN, and sqrt has an infinite slope at 0 "
                "(d sqrt(x)/dx = 1 / (2 sqrt(x))); an input here reaches " + _num(low) + ".",
                "torch.sqrt(x + 1e-12), or x.clamp_min(1e-12).sqrt()")  # fmt: skip
    if name in _DIV or name.startswith("div"):
        return ("divide", "division by zero: a / 0 is ±inf and 0 / 0 is NaN; a divisor here "
                "holds a zero (inputs " + _show(ranges) + ").",
                "a / (b + 1e-8), or guard the zero case before dividing")  # fmt: skip
    if name in _EXP or name.startswith(("exp", "pow")):
        return ("overflow", "exp overflows: float32 holds numbers up to about 3.4e38, so "
                "exp(x) is inf for x > 88.7; an input here reaches " + _num(high) + ".",
                "subtract the maximum first (x - x.max()), use logsumexp / log_softmax, or "
                "scale the inputs down")  # fmt: skip
    if name in ("mul", "__mul__", "mul_", "__rmul__"):
        return ("multiply", "a product overflowed, or 0 × inf made NaN (inputs "
                + _show(ranges) + ").", "keep values in range before multiplying (normalise "
                "the inputs, clamp, or lower the learning rate)")  # fmt: skip
    return ("other", f"{op} turned inputs in {_show(ranges)} into non-finite values.",
            "check this op's inputs for zeros, negatives or very large values")  # fmt: skip


def _forward_finding(
    op: str, ranges: list[Range], counts: tuple[int, int],
    nodes: tuple[str, ...],
) -> Finding:  # fmt: skip
    cause, why, fix = _why(op, ranges)
    nan, inf = counts
    return Finding(
        kind="nonfinite_forward",
        severity="error",
        nodes=nodes,
        title=f"The first NaN/Inf of the forward pass comes from {op}",
        explanation=f"`{op}` is the first op, in forward order, whose output is not finite "
        f"({nan} NaN, {inf} inf) although its inputs were (ranges {_show(ranges)}). {why} "
        "Everything computed from it, the loss and every gradient, is poisoned.",
        fix=fix,
        where=op,
        cause=cause,
    )


def _backward_finding(op: str, ranges: list[Range], counts: tuple[int, int], n: str) -> Finding:
    cause, why, fix = _why(op, ranges)
    nan, inf = counts
    return Finding(
        kind="nonfinite_backward",
        severity="error",
        nodes=(n,) if n else (),
        title=f"The first NaN/Inf of the backward pass comes from {op}",
        explanation=f"The loss is finite, but {op} is the first node, in the order backward ran, "
        f"that received a finite gradient and sent a non-finite one ({nan} NaN, {inf} inf); its "
        f"inputs in forward were in {_show(ranges)}. {why} A value masked out in forward "
        "(torch.where, indexing) still sends its gradient through this op: 0 × inf = NaN.",
        fix=fix + "; mask the input before the op, not only its output",
        where=op,
        cause=cause,
    )
