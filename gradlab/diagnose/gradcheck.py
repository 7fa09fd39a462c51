"""Finding 7: autograd's gradient against finite differences, in float64, per leaf.

For a function ``f() -> loss`` of some leaf tensors, each leaf's analytic
gradient (``torch.autograd.grad``) is compared with central differences
``(f(x + h) - f(x - h)) / 2h`` at up to ``samples`` of its entries, spread
evenly. Everything runs in float64 so that the differences are accurate to
about 1e-7; the random state is reset before each evaluation so that dropout
draws the same mask. An entry agrees when
``|autograd - numeric| <= atol + rtol * |numeric|``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping

import torch
from torch import nn

from gradlab.diagnose import checks
from gradlab.diagnose.evidence import Evidence
from gradlab.diagnose.finding import Finding
from gradlab.diagnose.measures import Agreement

EPS, ATOL, RTOL = 1e-6, 1e-5, 1e-3


def check(
    f: Callable[[], torch.Tensor],
    leaves: Mapping[str, torch.Tensor],
    nodes: Mapping[str, str | None] | None = None,
    samples: int = 6,
    seed: int = 0,
) -> list[Agreement]:
    """Compare autograd with central differences for each float64 leaf of ``f``.

    Examples
    --------
    >>> import torch
    >>> x = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
    >>> [a.ok for a in check(lambda: (x ** 3).sum(), {"x": x})]
    [True]
    """
    names = [n for n, t in leaves.items() if t.requires_grad]
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        loss = f()
        grads = torch.autograd.grad(loss, [leaves[n] for n in names], allow_unused=True)
    out = []
    for name, grad in zip(names, grads, strict=True):
        t = leaves[name]
        analytic = torch.zeros_like(t) if grad is None else grad.detach()
        out.append(_leaf(f, name, t, analytic, (nodes or {}).get(name), samples, seed))
    return out


def _leaf(
    f: Callable[[], torch.Tensor], name: str, t: torch.Tensor, analytic: torch.Tensor,
    node: str | None, samples: int, seed: int,
) -> Agreement:  # fmt: skip
    # Elements by their index, not through a flat view: a channels-last, transposed or
    # otherwise strided parameter has no flat view, and a copy would not be perturbed.
    values = t.detach()
    numel = values.numel()
    picks = sorted({round(i * (numel - 1) / max(samples - 1, 1)) for i in range(samples)})
    worst, at_a, at_n = 0.0, 0.0, 0.0
    for i in picks[:numel]:
        numeric = _difference(f, values, _unravel(i, values.shape), seed)
        a = float(analytic[_unravel(i, analytic.shape)])
        error = abs(a - numeric) / (ATOL + RTOL * abs(numeric))
        if error > worst or i == picks[0]:
            worst, at_a, at_n = max(worst, error), a, numeric
    return Agreement(name, node, len(picks), worst, at_a, at_n)


def _unravel(i: int, shape: torch.Size) -> tuple[int, ...]:
    """The index of the ``i``-th element in row-major order."""
    index: list[int] = []
    for size in reversed(shape):
        i, r = divmod(i, size)
        index.append(r)
    return tuple(reversed(index))


def _difference(
    f: Callable[[], torch.Tensor], t: torch.Tensor, i: tuple[int, ...], seed: int
) -> float:
    values = []
    with torch.no_grad():
        original = float(t[i])
        for sign in (1.0, -1.0):
            t[i] = original + sign * EPS
            with torch.random.fork_rng():
                torch.manual_seed(seed)
                values.append(float(f()))
        t[i] = original
    return (values[0] - values[1]) / (2 * EPS)


def check_model(
    model: nn.Module,
    inputs: torch.Tensor,
    target: torch.Tensor | None,
    loss_fn: Callable[..., torch.Tensor] | None,
    nodes: Mapping[str, str | None] | None = None,
    samples: int = 6,
) -> list[Agreement]:
    """Gradient check of a model's parameters on a batch, on a float64 copy of the model."""
    model64 = copy.deepcopy(model).double()
    x = inputs.double() if inputs.is_floating_point() else inputs
    y = target.double() if target is not None and target.is_floating_point() else target

    def f() -> torch.Tensor:
        out = model64(x)
        if loss_fn is None:
            return out  # type: ignore[no-any-return]
        return loss_fn(out, y) if y is not None else loss_fn(out)

    return check(f, dict(model64.named_parameters()), nodes, samples)


@checks.check(kinds=("gradcheck",), family="gradcheck", order=70)
def find(ev: Evidence) -> list[Finding]:
    """One error finding for the leaves whose gradients disagree with finite differences.

    It reads ``ev.agreements``, empty until :func:`gradlab.diagnose.examine` has made the
    comparison (``gradcheck=True``), after the last look.
    """
    bad = [a for a in ev.agreements if not a.ok]
    if not bad:
        return []
    worst = max(bad, key=lambda a: a.worst)
    return [Finding(
        "gradcheck", "error", tuple(a.node for a in bad if a.node)[:8],
        "Autograd disagrees with finite differences",
        f"For {', '.join(f'`{a.name}`' for a in bad[:6])}, the gradient backward() computes "
        f"is not the slope of the loss: at the worst entry of `{worst.name}` autograd says "
        f"{worst.autograd:.6g}, the finite difference (f(x+h) - f(x-h)) / 2h in float64 says "
        f"{worst.numeric:.6g}. A hand-written backward (torch.autograd.Function) is the usual "
        "culprit.",
        "Check the backward() of your custom autograd.Function against the derivative of its "
        "forward (torch.autograd.gradcheck(fn, inputs) tests it alone).",
        worst.name, "mismatch",
    )]  # fmt: skip
