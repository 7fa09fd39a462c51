"""Rules of matrix products and of ops that move elements: mm ... addmm, view, cat, index."""

from __future__ import annotations

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
    num,
    rule,
    saved,
)

MATRICES = ("A", "B")


@rule("MmBackward0")
def _mm(f: Facts) -> Spec:
    return Spec(
        "Matrix product", "{Z} = {A}·{B}", MATRICES, "Z",
        (Term(0, "{g}·{B}ᵀ", lambda v: v["g"] @ v["B"].mT),
         Term(1, "{A}ᵀ·{g}", lambda v: v["A"].mT @ v["g"])),
        "Shapes decide the order: ∂L/∂A has A's shape, so ∂L/∂Z (n×m) times Bᵀ (m×k).",
    )  # fmt: skip


@rule("BmmBackward0")
def _bmm(f: Facts) -> Spec:
    return Spec(
        "Batched matrix product", "{Z}[i] = {A}[i]·{B}[i] for every batch i", MATRICES, "Z",
        (Term(0, "{g}·{B}ᵀ (per batch)", lambda v: v["g"] @ v["B"].mT),
         Term(1, "{A}ᵀ·{g} (per batch)", lambda v: v["A"].mT @ v["g"])),
    )  # fmt: skip


@rule("MvBackward0")
def _mv(f: Facts) -> Spec:
    return Spec(
        "Matrix times vector", "{z} = {A}·{v}", ("A", "v"), "z",
        (Term(0, "{g} ⊗ {v} (outer product)", lambda v: torch.outer(v["g"], v["v"])),
         Term(1, "{A}ᵀ·{g}", lambda v: v["A"].mT @ v["g"])),
    )  # fmt: skip


@rule("DotBackward0")
def _dot(f: Facts) -> Spec:
    return Spec(
        "Dot product", "{z} = Σ {a} ⊙ {b}", ("a", "b"), "z",
        (Term(0, "{g} · {b}", lambda v: v["g"] * v["b"]),
         Term(1, "{g} · {a}", lambda v: v["g"] * v["a"])),
    )  # fmt: skip


@rule("AddmmBackward0")
def _addmm(f: Facts) -> Spec:
    alpha, beta = f.args.get("alpha", 1), f.args.get("beta", 1)
    a = "" if alpha == 1 else f"{num(alpha)}·"
    b = "" if beta == 1 else f"{num(beta)}·"
    linear = f.module_type == "Linear" or f.inputs.get(2) == "TBackward0"
    roles, symbols = ("C", "A", "B"), {}
    if linear:
        roles, symbols = ("b", "x", "Wt"), {"Wt": "Wᵀ"}
    c, x, w = (f"{{{r}}}" for r in roles)
    out, bias = f.out_shape, f.shapes.get(0)
    rows = out is not None and bias is not None and len(bias) < len(out)
    wt = "{W}" if linear else f"{w}ᵀ"  # (Wᵀ)ᵀ is W: written as W, with W's numbers
    derived = (Derived("W", "W = (Wᵀ)ᵀ, the layer's weight", lambda v: v["Wt"].mT),)
    return Spec(
        "Linear layer (addmm)" if linear else "addmm",
        f"{{Z}} = {b}{c} + {a}{x}·{w}", roles, "Z",
        (Term(0, ("Σ over the rows of " if rows else "") + f"{b}{{g}}",
              lambda v: (v["g"] * beta).sum(0) if rows else v["g"] * beta),
         Term(1, f"{a}{{g}}·{wt}", lambda v: v["g"] @ v[roles[2]].mT * alpha),
         Term(2, f"{a}{x}ᵀ·{{g}}", lambda v: v[roles[1]].mT @ v["g"] * alpha)),
        ("nn.Linear computes x·Wᵀ + b as one addmm; Wᵀ comes from a TBackward0 of W. "
         if linear else "") + ("The bias was added to every row: its gradient sums them."
                               if rows else ""),
        derived if linear else (),
        symbols=symbols,
    )  # fmt: skip


@rule("TBackward0")
def _t(f: Facts) -> Spec:
    return Spec("Transpose", "{y} = {x}ᵀ", ("x",), "y", (Term(0, "{g}ᵀ", lambda v: v["g"].t()),))


@rule("TransposeBackward0")
def _transpose(f: Facts) -> Spec:
    d0, d1 = f.args.get("dim0", 0), f.args.get("dim1", 1)
    assert isinstance(d0, int) and isinstance(d1, int)
    return Spec(
        "Transpose", f"{{y}} = {{x}}.transpose({d0}, {d1})", ("x",), "y",
        (Term(0, f"{{g}}.transpose({d0}, {d1})", lambda v: v["g"].transpose(d0, d1)),),
    )  # fmt: skip


@rule("PermuteBackward0")
def _permute(f: Facts) -> Spec:
    order = [int(d) for d in f.args.get("dims", [])]
    ndim = len(order)
    order = [d % ndim for d in order]
    inverse = [order.index(i) for i in range(ndim)]
    return Spec(
        "Permute", f"{{y}} = {{x}}.permute{num(order)}", ("x",), "y",
        (Term(0, f"{{g}}.permute{num(inverse)}", lambda v: v["g"].permute(inverse)),),
        "The inverse permutation puts every element back.",
    )  # fmt: skip


def _in_shape(f: Facts) -> list[int]:
    shape = f.shapes.get(0) or f.args.get("self_sym_sizes")
    if not isinstance(shape, list):
        raise Missing("shape")
    return [int(s) for s in shape]


@rule(
    "ViewBackward0", "UnsafeViewBackward0", "ReshapeAliasBackward0", "SqueezeBackward0",
    "SqueezeBackward1", "SqueezeBackward2", "UnsqueezeBackward0",
)  # fmt: skip
def _view(f: Facts) -> Spec:
    shape = f.shapes.get(0) or f.args.get("self_sym_sizes")
    text = num(shape) if isinstance(shape, list) else "x's shape"
    name = f.op.removesuffix("Backward0").removesuffix("Backward1").removesuffix("Backward2")
    return Spec(
        "Reshape (" + name[0].lower() + name[1:] + ")", f"{{y}} = {{x}}.view{num(f.out_shape)}"
        if f.out_shape is not None else "{y} = {x}.view(…)", ("x",), "y",
        (Term(0, f"{{g}}.reshape{text}", lambda v: v["g"].reshape(_in_shape(f))),),
        "A reshape moves no numbers: the gradient is reshaped back.",
    )  # fmt: skip


@rule("ExpandBackward0")
def _expand(f: Facts) -> Spec:
    shape = f.shapes.get(0) or f.args.get("self_sym_sizes")
    text = shape_text(shape) if isinstance(shape, list) else "x's shape"
    return Spec(
        "Expand (broadcast)", f"{{y}} = {{x}}.expand{num(f.out_shape)}", ("x",), "y",
        (Term(0, f"{{g}} summed over the copied dims, to shape {text}",
              lambda v: v["g"].sum_to_size(_in_shape(f))),),
        "Each element of x was copied to many places, so the gradients of the copies add up.",
    )  # fmt: skip


def _letters(n: int) -> tuple[str, ...]:
    return tuple("abcdefghijklmnopqrstuvw"[i] if i < 23 else f"t{i}" for i in range(n))


def _narrow(d: int, start: int, size: int) -> Compute:
    return lambda v: v["g"].narrow(d, start, size)


def _pick(d: int, i: int) -> Compute:
    return lambda v: v["g"].select(d, i)


@rule("CatBackward0")
def _cat(f: Facts) -> Spec:
    d = f.args.get("dim", 0)
    assert isinstance(d, int)
    arity = max(f.slots, default=-1) + 1
    roles = _letters(arity)
    terms: list[Term] = []
    start: int | None = 0
    for slot in range(arity):
        shape = f.shapes.get(slot)
        if shape is None or start is None:
            terms.append(Term(slot, f"the part of {{g}} along dim {d} that came from this input"))
            start = None
            continue
        size = shape[d]
        lo, hi = start, start + size
        terms.append(Term(slot, f"{{g}}[{lo}:{hi}] along dim {d}", _narrow(d, lo, size)))
        start = hi
    return Spec("Concatenate", f"{{y}} = cat([{', '.join('{' + r + '}' for r in roles)}], dim={d})",
                roles, "y", tuple(terms),
                "Each input gets back its own slice of the gradient.")  # fmt: skip


@rule("StackBackward0")
def _stack(f: Facts) -> Spec:
    d = f.args.get("dim", 0)
    assert isinstance(d, int)
    roles = _letters(max(f.slots, default=-1) + 1)
    terms = tuple(
        Term(i, f"{{g}}.select({d}, {i})", _pick(d, i))
        for i in range(len(roles))
    )
    return Spec("Stack", f"{{y}} = stack([{', '.join('{' + r + '}' for r in roles)}], dim={d})",
                roles, "y", terms)  # fmt: skip


@rule("SelectBackward0")
def _select(f: Facts) -> Spec:
    d, i = f.args.get("dim", 0), f.args.get("index", 0)
    assert isinstance(d, int) and isinstance(i, int)
    return Spec(
        "Select", f"{{y}} = {{x}}.select({d}, {i})", ("x",), "y",
        (Term(0, f"zeros of x's shape with {{g}} at index {i} of dim {d}",
              lambda v: torch.select_scatter(torch.zeros(_in_shape(f), dtype=v["g"].dtype),
                                             v["g"], d, i)),),
        "Only the selected elements affected the output; the others get 0.",
    )  # fmt: skip


@rule("SliceBackward0")
def _slice(f: Facts) -> Spec:
    d, lo, hi, step = (f.args.get(k, v) for k, v in (("dim", 0), ("start", 0), ("end", None),
                                                     ("step", 1)))  # fmt: skip
    assert isinstance(d, int) and isinstance(lo, int) and isinstance(step, int)
    end = "" if not isinstance(hi, int) or hi >= 1 << 62 else str(hi)
    where = f"[{lo}:{end}{'' if step == 1 else ':' + str(step)}]"

    def grad(v: Values) -> torch.Tensor:
        zeros = torch.zeros(_in_shape(f), dtype=v["g"].dtype)
        stop = zeros.shape[d] if not end else int(end)
        return torch.slice_scatter(zeros, v["g"], d, lo, stop, step)

    return Spec("Slice", f"{{y}} = {{x}}{where} along dim {d}", ("x",), "y",
                (Term(0, f"zeros of x's shape with {{g}} in {where} of dim {d}",
                      grad),))  # fmt: skip


@rule("IndexBackward0")
def _index(f: Facts) -> Spec:
    # saved as "indices[k]" for the k-th index; a ":" in its place saves nothing
    places = sorted(int(k[8:-1]) for k in f.saved if k.startswith("indices["))
    derived = tuple(
        d for k in places for d in saved(f, f"indices[{k}]", f"i{k}", f"index tensor {k}")
    )

    def grad(v: Values) -> torch.Tensor:
        if not places:
            raise Missing("indices")
        index = [v[f"i{k}"] if k in places else None for k in range(places[-1] + 1)]
        zeros = torch.zeros(_in_shape(f), dtype=v["g"].dtype)
        out: torch.Tensor = torch.ops.aten.index_put.default(zeros, index, v["g"], True)
        return out  # the aten op takes None for a ":"

    return Spec(
        "Index", "{y} = {x}[indices]", ("x",), "y",
        (Term(0, "zeros of x's shape, with {g} added at the indexed places (repeats add up)",
              grad),),
        "" if places else "The indices are kept only as saved tensors: trace with "
        "show_saved=True before backward() to see them.",
        derived,
    )  # fmt: skip
