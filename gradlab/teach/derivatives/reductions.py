"""Rules of reductions and of ops that mix a dim: sum, mean, max, min, softmax, log-softmax."""

from __future__ import annotations

import math

import torch

from gradlab.core.text import shape as shape_text
from gradlab.teach.derivatives import (
    Compute,
    Derived,
    Facts,
    Missing,
    Spec,
    Term,
    Values,
    dims,
    num,
    rule,
    saved,
)

UNARY = ("x",)


def _unary(title: str, forward: str, rhs: str, compute: Compute, note: str = "") -> Spec:
    return Spec(title, forward, UNARY, "y", (Term(0, rhs, compute),), note)


def _spread(g: torch.Tensor, shape: list[int], reduced: list[int], keepdim: bool) -> torch.Tensor:
    """``g`` (reduced over ``reduced``) broadcast back to ``shape``."""
    if not keepdim:
        for d in reduced:
            g = g.unsqueeze(d)
    return g.expand(shape)


def _shape(f: Facts) -> list[int]:
    shape = f.shapes.get(0) or f.args.get("self_sym_sizes")
    if not isinstance(shape, list):
        raise Missing("shape")
    return [int(s) for s in shape]


@rule("SumBackward0", "SumBackward1", "MeanBackward0", "MeanBackward1")
def _sum(f: Facts) -> Spec:
    shape = f.shapes.get(0) or f.args.get("self_sym_sizes")
    ndim = len(shape) if isinstance(shape, list) else 0
    reduced = dims(f.args.get("dim"), ndim) if ndim else []
    keep = bool(f.args.get("keepdim", False))
    mean = f.op.startswith("Mean")
    count = math.prod(int(shape[d]) for d in reduced) if isinstance(shape, list) else 0
    over = reduced if len(reduced) > 1 else reduced[0] if reduced else None
    where = "" if "dim" not in f.args else f" over dim {num(over)}"
    rhs = ("{g}" + (f" / {count}" if mean else "")
           + f", copied to every element{where} (shape {shape_text(shape)})")  # fmt: skip

    def grad(v: Values) -> torch.Tensor:
        out = _spread(v["g"], _shape(f), reduced, keep)
        return out / count if mean else out

    on = "" if "dim" not in f.args else f", dim={num(over)}"
    forward = f"{{y}} = {'mean' if mean else 'Σ'}({{x}}{on})"
    return Spec("Mean" if mean else "Sum", forward, UNARY, "y", (Term(0, rhs, grad),),
                "Every element that went into the sum gets the same gradient"
                + (f", divided by the {count} elements averaged." if mean else "."))  # fmt: skip


def _dims_text(reduced: object) -> str:
    return num(reduced[0] if isinstance(reduced, list) and len(reduced) == 1 else reduced)


@rule("MaxBackward1", "MinBackward1", "AmaxBackward0", "AminBackward0")
def _max_all(f: Facts) -> Spec:
    which = "max" if "max" in f.op.lower() else "min"
    reduced = f.args.get("dim")
    keep = bool(f.args.get("keepdim", False))

    def grad(v: Values) -> torch.Tensor:
        x = v["x"]
        d = dims(reduced, x.dim())
        y = _spread(v["y"], list(x.shape), d, keep) if reduced is not None else v["y"]
        hit = (x == y).to(x.dtype)
        count = hit.sum(d, keepdim=True) if reduced is not None else hit.sum()
        g = _spread(v["g"], list(x.shape), d, keep) if reduced is not None else v["g"]
        return g * hit / count

    return _unary(
        which.title(),
        f"{{y}} = {which}({{x}}{'' if reduced is None else ', dim=' + _dims_text(reduced)})",
        f"{{g}} at the {which} (shared equally among ties), 0 elsewhere", grad,
    )  # fmt: skip


@rule("MaxBackward0", "MinBackward0")
def _max_dim(f: Facts) -> Spec:
    which = "max" if f.op.startswith("Max") else "min"
    d = f.args.get("dim", 0)
    keep = bool(f.args.get("keepdim", False))
    assert isinstance(d, int)

    def recompute(v: Values) -> torch.Tensor:
        return (torch.max if which == "max" else torch.min)(v["x"], d, keepdim=True).indices

    kept = saved(f, "indices", "i", f"the arg{which} along dim {d}")
    derived = kept or (Derived("i", f"i: the arg{which} along dim {d}, recomputed from x",
                               recompute),)  # fmt: skip

    def grad(v: Values) -> torch.Tensor:
        x, i, g = v["x"], v["i"], v["g"]
        if not keep:
            g = g.unsqueeze(d)
            i = i if i.dim() == x.dim() else i.unsqueeze(d)
        return torch.zeros_like(x).scatter(d, i, g)

    return Spec(which.title() + " along a dim", f"{{y}}, i = {which}({{x}}, dim={d})", UNARY, "y",
                (Term(0, f"{{g}} placed at the arg{which} {{i}} along dim {d}, 0 elsewhere",
                      grad),),
                derived=derived)  # fmt: skip


@rule("SoftmaxBackward0")
def _softmax(f: Facts) -> Spec:
    d = f.args.get("dim", -1)
    assert isinstance(d, int)
    return _unary(
        "Softmax", f"{{y}} = softmax({{x}}, dim={d})", f"{{y}} ⊙ ({{g}} − Σ_{d}({{g}} ⊙ {{y}}))",
        lambda v: v["y"] * (v["g"] - (v["g"] * v["y"]).sum(d, keepdim=True)),
        "Every output depends on every input along the dim: ∂yᵢ/∂xⱼ = yᵢ(δᵢⱼ − yⱼ).",
    )  # fmt: skip


@rule("LogSoftmaxBackward0")
def _log_softmax(f: Facts) -> Spec:
    d = f.args.get("dim", -1)
    assert isinstance(d, int)
    return _unary(
        "Log-softmax", f"{{y}} = log_softmax({{x}}, dim={d})", f"{{g}} − exp({{y}}) ⊙ Σ_{d} {{g}}",
        lambda v: v["g"] - torch.exp(v["y"]) * v["g"].sum(d, keepdim=True),
        "exp(y) is softmax(x). Under a cross-entropy (nll_loss) this gives softmax − one-hot.",
    )  # fmt: skip
