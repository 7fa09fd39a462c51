"""A backward step in words and numbers, for the step-through panel and ``gradlab steps``."""

from __future__ import annotations

from gradlab.core.graph import ACCUMULATE_GRAD, Graph, TensorSummary
from gradlab.core.text import values
from gradlab.teach.steps import Step


def who(G: Graph, n: str) -> str:
    """A node as a reader knows it: ``MulBackward0 (→ z)``, ``AccumulateGrad of x``, ``leaf x``."""
    attrs = G.nodes[n]
    kind = attrs["kind"]
    if kind == "output":
        return f"the output {attrs.get('name') or attrs.get('label')}"
    if kind == "leaf":
        return f"leaf {attrs.get('name') or n}"
    if kind == "module":  # a collapsed view's module call
        return f"the module {attrs.get('label')}"
    op = str(attrs.get("op"))
    if op == ACCUMULATE_GRAD:
        leaf = next((u for u in G.predecessors(n) if G.nodes[u]["kind"] == "leaf"), None)
        name = (G.nodes[leaf].get("name") or leaf) if leaf is not None else None
        return f"AccumulateGrad of {name}" if name else op
    return f"{op} (→ {attrs['name']})" if attrs.get("name") else op


def numbers(s: TensorSummary | None, limit: int = 12) -> str:
    """A gradient as text: its values when kept, else its shape, norm and range."""
    if s is None:
        return "None (no gradient)"
    if s["values"] is not None:
        return values(s["values"], limit=limit)
    shape = "×".join(str(d) for d in s["shape"]) or "scalar"
    return f"{shape} tensor, norm {s['norm']:.4g}, in [{s['min']:.4g}, {s['max']:.4g}]"


def step_lines(G: Graph, step: Step, total: int) -> list[str]:
    """The step as plain lines: what arrived (and the sum), what was sent, what .grad became.

    Examples
    --------
    >>> import torch, gradlab
    >>> from gradlab.teach.steps import steps
    >>> x = torch.tensor([2.0, 3.0], requires_grad=True)
    >>> loss = (x * x).sum()
    >>> G = gradlab.backward(loss, gradlab.trace(loss, params={"x": x}))
    >>> print("\\n".join(step_lines(G, steps(G)[2], 3)))
    Step 3 of 3: AccumulateGrad of x
    Gradient arriving along 2 edges, summed:
      from MulBackward0 (slot 0): [2., 3.]
      from MulBackward0 (slot 1): [2., 3.]
      sum: [4., 6.]
    x.grad += [4., 6.]  →  x.grad = [4., 6.]
    """
    lines = [f"Step {step.index + 1} of {total}: {who(G, step.node)}"]
    return lines + arrival_lines(G, step) + departure_lines(G, step)


def departure_lines(G: Graph, step: Step) -> list[str]:
    """What a step sent: to each input, or into a leaf's ``.grad``."""
    lines = []
    if step.leaf is not None:
        leaf = G.nodes[step.leaf].get("name") or step.leaf
        lines.append(
            f"{leaf}.grad += {numbers(step.incoming)}  →  {leaf}.grad = {numbers(step.leaf_grad)}"
        )
    for d in step.departures:
        lines.append(f"Sends down input {d.slot} to {who(G, d.receiver)}: {numbers(d.grad)}")
    if not step.departures and step.leaf is None:
        lines.append("Sends nothing on: none of its inputs needs a gradient.")
    return lines


def arrival_lines(G: Graph, step: Step) -> list[str]:
    """What reached the op's output(s): one piece, or several and their sum."""
    pieces = step.pieces()
    if not pieces:
        return [f"Gradient arriving: {numbers(step.incoming)}"]
    several = len(pieces) > 1
    lines: list[str] = []
    for output, (arrived, total) in pieces.items():
        to = f" at output {output}" if several else ""
        if len(arrived) == 1:
            a = arrived[0]
            lines.append(f"Gradient arriving{to} from {who(G, a.sender)}: {numbers(a.grad)}")
            continue
        lines.append(f"Gradient arriving{to} along {len(arrived)} edges, summed:")
        lines += [f"  from {who(G, a.sender)} (slot {a.slot}): {numbers(a.grad)}" for a in arrived]
        lines.append(f"  sum: {numbers(total)}")
    return lines
