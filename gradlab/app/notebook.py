"""``gradlab.show(x)``: the viewer inline in Jupyter, VS Code and Colab notebooks.

The object it returns displays itself (``_repr_mimebundle_``) as the
interactive viewer in an ``<iframe srcdoc>`` (self-contained: no kernel
connection and no network needed to step through the captured backward
pass), as an SVG picture for places that run no JavaScript (GitHub's
preview, ``nbconvert``), and as a line of text.
"""

from __future__ import annotations

import inspect
from typing import Any

import networkx as nx
import torch

from gradlab.core.backward import backward
from gradlab.core.errors import GradLabError
from gradlab.core.graph import Graph
from gradlab.core.summary import summarize
from gradlab.core.trace import trace
from gradlab.render.viewer.html import frame, page
from gradlab.render.viewer.payload import payload
from gradlab.render.viewer.svg import TEXT_UP_TO, to_svg


class Shown:
    """A graph ready to display: the payload and how to show it."""

    def __init__(self, data: dict[str, Any], options: dict[str, Any], height: int) -> None:
        self.data = data
        self.options = options
        self.height = height

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return {
            "text/html": self.html(),
            "image/svg+xml": self.svg(),
            "text/plain": self.text(),
        }

    def _repr_html_(self) -> str:  # for front ends that ask for HTML alone
        return self.html()

    def html(self) -> str:
        """The interactive viewer in an iframe, as a notebook shows it."""
        # the still picture inside the HTML too, while it stays small (it is there twice)
        small = len(self.data["nodes"]) <= TEXT_UP_TO
        still = self.svg() if small else None
        return frame(self.data, height=self.height, options=self.options, still=still)

    def page(self) -> str:
        """The viewer as a whole HTML document."""
        return page(self.data, options=self.options)

    def svg(self) -> str:
        """The still picture."""
        return to_svg(self.data)

    def text(self) -> str:
        """One line for plain-text displays."""
        ops = sum(1 for n in self.data["nodes"] if n["kind"] == "op")
        steps = len(self.data["steps"])
        told = f", {steps} backward steps" if steps else ""
        return f"<GradLab graph: {len(self.data['nodes'])} nodes, {ops} autograd ops{told}>"

    def __repr__(self) -> str:
        return self.text()


def show(
    x: Graph | torch.Tensor,
    *,
    backward: bool | None = None,
    names: dict[str, Any] | None = None,
    predict: bool = False,
    color: str = "kind",
    step: int | str = "end",
    height: int = 680,
    findings: Any = (),
    title: str | None = None,
    caption: str | None = None,
    printed: str | None = None,
) -> Shown:
    """Show a graph in a notebook: a traced graph, a collapsed view, or a tensor.

    A tensor with a ``grad_fn`` is traced for you, its leaves and results
    named after the variables of the calling scope (tensors, and modules for
    their parameters: ``model.0.weight``) unless ``names`` gives them. For a
    scalar tensor (a loss), ``backward`` (the default) runs the real
    ``backward()`` once, with ``retain_graph=True``, so the steps can be
    stepped through: the leaves' ``.grad`` get the gradient, as after
    ``loss.backward()``. ``step`` is where the stepping starts: ``"end"``
    (every gradient shown) or ``-1`` (before backward).

    Examples
    --------
    >>> import torch, gradlab
    >>> x = torch.tensor([2.0, 3.0], requires_grad=True)
    >>> shown = gradlab.show((x ** 2).sum())
    >>> shown
    <GradLab graph: 5 nodes, 3 autograd ops, 3 backward steps>
    >>> x.grad
    tensor([4., 6.])
    >>> sorted(shown._repr_mimebundle_())
    ['image/svg+xml', 'text/html', 'text/plain']
    """
    if isinstance(x, torch.Tensor):
        if names is None:
            frame_ = inspect.currentframe()
            caller = frame_.f_back if frame_ is not None else None
            names = _scope(caller.f_globals, caller.f_locals) if caller is not None else {}
        G = _traced(x, names, backward)
    elif isinstance(x, nx.MultiDiGraph):
        G = x
    else:
        raise GradLabError(
            f"gradlab.show() takes a graph from gradlab.trace, a collapsed view or a tensor "
            f"with a grad_fn; got {type(x).__name__}."
        )
    data = payload(G, findings=findings, title=title, caption=caption, printed=printed)
    options: dict[str, Any] = {"predict": predict, "color": color, "step": step}
    return Shown(data, options, height)


def _scope(*namespaces: dict[str, Any]) -> dict[str, Any]:
    """The tensors and modules of a scope, by name (later scopes win)."""
    found: dict[str, Any] = {}
    for ns in namespaces:
        for name, value in ns.items():
            if name.startswith("_"):
                continue
            if isinstance(value, torch.Tensor | torch.nn.Module):
                found[name] = value
    return found


def _traced(x: torch.Tensor, names: dict[str, Any], run_backward: bool | None) -> Graph:
    if x.grad_fn is None and not x.requires_grad:
        raise GradLabError(
            "This tensor has no grad_fn and does not require grad: autograd recorded no graph "
            "for it. Compute it from a tensor made with requires_grad=True."
        )
    G = trace(x, params=names)
    _named_values(G, names)
    if run_backward is False or x.grad_fn is None:
        return G
    if x.numel() != 1:
        if run_backward:
            raise GradLabError(
                f"backward needs a scalar, and this tensor has shape {tuple(x.shape)}: "
                "show a loss, e.g. gradlab.show(y.sum())."
            )
        return G
    try:
        backward(x, G, retain_graph=True)
    except RuntimeError as exc:
        if run_backward:
            raise GradLabError(f"backward() failed: {str(exc).splitlines()[0]}") from None
        G = trace(x, params=names)  # e.g. the graph was freed by an earlier backward()
        _named_values(G, names)
    return G


def _named_values(G: Graph, names: dict[str, Any]) -> None:
    """Forward values of named results that no ``record()`` kept: the variables still hold them.

    ``y = x + 2`` in a notebook: the AddBackward0 node gets ``y``'s value, as
    it is now (the variable is the op's output itself, unless it was changed in
    place since).
    """
    for attrs in G.nodes.values():
        name = attrs.get("name")
        if attrs.get("kind") != "op" or attrs.get("value") is not None or name is None:
            continue
        t = names.get(name)
        if isinstance(t, torch.Tensor) and t.grad_fn is not None and t.layout == torch.strided:
            attrs["value"] = summarize(t.detach())
