"""Autograd errors as lessons: what PyTorch said, why, and how to fix it.

:func:`explain` reads the message of an exception or a warning that PyTorch
raised and returns an :class:`Explanation` in plain words, with fixes written
as code. The patterns match PyTorch 2.13's own messages; a message GradLab
does not know gives ``None``, and callers show PyTorch's text as it is.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

Kind = Literal[
    "non_scalar_backward",
    "backward_twice",
    "inplace_needed_tensor",
    "inplace_leaf",
    "no_grad_fn",
    "non_leaf_grad",
    "dtype_mismatch",
    "device_mismatch",
    "matmul_shapes",
    "broadcast_shapes",
    "numpy_requires_grad",
    "lbfgs_closure",
    "integer_requires_grad",
    "loss_broadcast",
    "target_dtype",
    "hook_without_grad",
]


@dataclass(frozen=True)
class Explanation:
    """A known autograd mistake, explained for a student."""

    kind: Kind
    title: str
    why: str
    fixes: tuple[str, ...]
    op: str | None = None  # the autograd op the message names, e.g. "ExpBackward0"


def explain(error: BaseException | Warning | str) -> Explanation | None:
    """Explain an exception, a warning or a message from PyTorch; ``None`` if unknown.

    Examples
    --------
    >>> import torch
    >>> x = torch.tensor([2.0, 3.0], requires_grad=True)
    >>> try:
    ...     (x ** 2).backward()
    ... except RuntimeError as e:
    ...     print(explain(e).title)
    backward() needs a scalar, or a gradient to start from
    """
    message = str(error)
    for pattern, build in _RULES:
        match = pattern.search(message)
        if match:
            return build(match)
    return None


def _non_scalar(_: re.Match[str]) -> Explanation:
    return Explanation(
        "non_scalar_backward",
        "backward() needs a scalar, or a gradient to start from",
        "The chain rule starts from dL/dL = 1 for a single number L. Your tensor holds several "
        "numbers, so PyTorch does not know which one to differentiate, or how to weigh them: "
        "it can create the starting gradient implicitly only for a scalar output.",
        (
            "y.sum().backward()  # reduce to one number first",
            "y.backward(torch.ones_like(y))  # or say what gradient y receives",
        ),
    )


def _twice(_: re.Match[str]) -> Explanation:
    return Explanation(
        "backward_twice",
        "The graph was already used by a backward pass",
        "To save memory, backward() frees the tensors each op saved for its derivative as soon "
        "as it has used them. A second backward() through the same graph finds them gone.",
        (
            "loss.backward(retain_graph=True)  # keep the graph for a second pass",
            "loss = model(x).sum()  # or build a new graph: run the forward pass again",
        ),
    )


def _inplace_needed(match: re.Match[str]) -> Explanation:
    op = match.group("op")
    node = op if op.endswith(("Backward0", "Backward1")) else f"{op}Backward0"
    return Explanation(
        "inplace_needed_tensor",
        "A tensor that backward needs was changed in place",
        f"{node} saved its output (or input) {match.group('tensor')} to compute its derivative. "
        f"An in-place operation changed that tensor afterwards: its version counter is now "
        f"{match.group('now')}, but backward expected version {match.group('expected')}, "
        "so the saved value is no longer the one the derivative needs.",
        (
            "y = y + 1  # an out-of-place op makes a new tensor instead of y.add_(1)",
            "y = y.clone()  # or clone before changing it in place",
        ),
        node,
    )


def _inplace_leaf(match: re.Match[str]) -> Explanation:
    view = "a view of " if match.group("view") else ""
    return Explanation(
        "inplace_leaf",
        f"In-place change of {view}a leaf that requires grad",
        "A leaf with requires_grad=True is where gradients accumulate; changing it in place "
        "would make its history impossible to differentiate, so PyTorch refuses.",
        (
            "with torch.no_grad():\n    x.add_(1)  # updates (like an optimizer step) go here",
            "x = x + 1  # or make a new tensor (no longer a leaf)",
        ),
    )


def _no_grad_fn(_: re.Match[str]) -> Explanation:
    return Explanation(
        "no_grad_fn",
        "This tensor has no grad_fn: autograd recorded nothing for it",
        "backward() follows grad_fn links back to the leaves. This tensor has none: none of the "
        "tensors it came from required grad, or it was computed inside torch.no_grad(), or "
        "cut off with .detach() or .data.",
        (
            "x = torch.tensor([2., 3.], requires_grad=True)  # ask for gradients at the leaf",
            "# compute the loss outside `with torch.no_grad():`, without .detach()",
        ),
    )


def _non_leaf_grad(_: re.Match[str]) -> Explanation:
    return Explanation(
        "non_leaf_grad",
        ".grad of a non-leaf tensor is not kept",
        "Only leaves (tensors you created with requires_grad=True, and parameters) keep their "
        "gradient in .grad. An intermediate result's gradient flows through it during "
        "backward() and is then dropped, so its .grad is None.",
        (
            "y.retain_grad()  # before backward(): keep this intermediate's gradient",
            "x.grad  # or read the gradient of the leaf you meant",
        ),
    )


def _dtype(_: re.Match[str]) -> Explanation:
    return Explanation(
        "dtype_mismatch",
        "Two tensors of different dtypes meet in one op",
        "Matrix products and layers need both operands in the same floating type; float32 "
        "(torch.float) and float64 (torch.double) do not mix there.",
        ("x = x.float()  # or .double(), to match the other operand",),
    )


def _device(_: re.Match[str]) -> Explanation:
    return Explanation(
        "device_mismatch",
        "Two tensors on different devices meet in one op",
        "An op runs on one device; every tensor it uses must live there.",
        ('x = x.to(device)  # with device = "cuda" if torch.cuda.is_available() else "cpu"',
         "model.to(device)  # moves every parameter"),
    )  # fmt: skip


def _matmul(match: re.Match[str]) -> Explanation:
    return Explanation(
        "matmul_shapes",
        "Matrix shapes that cannot be multiplied",
        f"A matrix product (a @ b) needs the columns of a to equal the rows of b; here the "
        f"shapes are {match.group(1)} and {match.group(2)}.",
        (
            "b.T  # transpose one operand",
            "nn.Linear(in_features, ...)  # in_features = x.shape[-1]",
        ),
    )


def _broadcast(match: re.Match[str]) -> Explanation:
    return Explanation(
        "broadcast_shapes",
        "Shapes that do not broadcast",
        f"Element-wise ops line shapes up from the right; sizes must be equal or 1. Here "
        f"{match.group(1)} and {match.group(2)} clash at dimension {match.group(3)}.",
        ("b = b.view(-1, 1)  # add a dimension of size 1 where it should repeat",),
    )


def _numpy(_: re.Match[str]) -> Explanation:
    return Explanation(
        "numpy_requires_grad",
        "numpy() on a tensor that requires grad",
        "NumPy cannot record a graph, so converting would silently cut the gradient path; "
        "PyTorch makes you say so.",
        ("x.detach().numpy()  # an explicit cut: no gradient flows through the result",),
    )


def _lbfgs(_: re.Match[str]) -> Explanation:
    return Explanation(
        "lbfgs_closure",
        "LBFGS.step() needs a closure",
        "LBFGS evaluates the loss several times per step, so it needs a function that "
        "recomputes the loss and its gradient.",
        (
            "def closure():\n    opt.zero_grad()\n    loss = loss_fn(model(x), y)\n"
            "    loss.backward()\n    return loss\nopt.step(closure)",
        ),
    )


def _integer(_: re.Match[str]) -> Explanation:
    return Explanation(
        "integer_requires_grad",
        "Integer tensors cannot require gradients",
        "Gradients are real numbers; a tensor of integers has nothing to differentiate.",
        ("x = torch.tensor([1., 2.], requires_grad=True)  # a float literal makes a float tensor",),
    )


def _loss_broadcast(match: re.Match[str]) -> Explanation:
    return Explanation(
        "loss_broadcast",
        "The target's shape differs from the prediction's",
        f"The loss broadcasts {match.group(2)} against {match.group(1)}: every prediction is "
        "compared with every target, and the loss (and its gradient) is silently wrong.",
        ("loss = loss_fn(pred.squeeze(1), y)  # or y.view(-1, 1): make the shapes equal",),
    )


def _target_dtype(_: re.Match[str]) -> Explanation:
    return Explanation(
        "target_dtype",
        "Class labels must be integers",
        "cross_entropy's target holds class indices (torch.long), not floats.",
        ("y = y.long()",),
    )


def _hook(_: re.Match[str]) -> Explanation:
    return Explanation(
        "hook_without_grad",
        "A hook on a tensor that does not require grad",
        "A gradient hook runs when a gradient reaches the tensor; this one will never get one.",
        ("x.requires_grad_()  # on a leaf, before using it",),
    )


_RULES: tuple[tuple[re.Pattern[str], Callable[[re.Match[str]], Explanation]], ...] = (
    (re.compile(r"grad can be implicitly created only for scalar outputs"), _non_scalar),
    (re.compile(r"backward through the graph a second time"), _twice),
    (
        re.compile(
            r"modified by an inplace operation: \[(?P<tensor>[^\]]*\][^\]]*)\], which is output "
            r"\d+ of (?P<op>\w+), is at version (?P<now>\d+); expected version (?P<expected>\d+)"
        ),
        _inplace_needed,
    ),
    (re.compile(r"a (?P<view>view of a )?leaf Variable that requires grad"), _inplace_leaf),
    (re.compile(r"does not require grad and does not have a grad_fn"), _no_grad_fn),
    (re.compile(r"\.grad attribute of a Tensor that is not a leaf Tensor"), _non_leaf_grad),
    (re.compile(r"same dtype|expected scalar type|found dtype"), _dtype),
    (re.compile(r"expected all tensors to be on the same device|not on the expected device", re.I),
     _device),
    (re.compile(r"shapes cannot be multiplied \((\w+) and (\w+)\)"), _matmul),
    (re.compile(r"size of tensor a \((\d+)\) must match the size of tensor b \((\d+)\) at "
                r"non-singleton dimension (\d+)"), _broadcast),
    (re.compile(r"Can't call numpy\(\) on Tensor that requires grad"), _numpy),
    (re.compile(r"step\(\) missing 1 required positional argument: 'closure'"), _lbfgs),
    (re.compile(r"Only Tensors of floating point and complex dtype can require"), _integer),
    (re.compile(r"target size \((torch\.Size\([^)]*\))\) that is different to the input size "
                r"\((torch\.Size\([^)]*\))\)"), _loss_broadcast),
    (re.compile(r"expected target dtype to be Long"), _target_dtype),
    (re.compile(r"cannot register a hook on a tensor that doesn't require gradient"), _hook),
)  # fmt: skip


# -- showing a message ------------------------------------------------------------------

# What Python says, and what GradLab's program runner says, about a name that is not there.
_NO_ATTRIBUTE = (
    re.compile(r"'(?P<type>\w+)' object has no attribute '(?P<name>\w+)'"),
    re.compile(r"module '(?P<module>[\w.]+)' has no attribute '(?P<name>\w+)'"),
    re.compile(r"the attribute '(?P<name>\w+)' of an? (?P<type>\w+) object"),
    re.compile(r"'(?P<module>torch(?:\.\w+)*)\.(?P<name>\w+)' (?:\(not on the list|is not all)"),
)
_CODE_SPAN = re.compile(r"(`[^`]*`)")
_DUNDER = re.compile(r"[\w.]*__\w+__[\w.]*")
_MARKDOWN = re.compile(r"([\\*_\[\]<>#~$|])")


def did_you_mean(message: str) -> str | None:
    """The attribute a "has no attribute" message most likely meant, or ``None``.

    Examples
    --------
    >>> did_you_mean("AttributeError: 'Tensor' object has no attribute 'sigmod'")
    'sigmoid'
    >>> did_you_mean("module 'torch' has no attribute 'tanhh'")
    'tanh'
    >>> did_you_mean("the attribute 'sigmod' of a Tensor object is not allowed in programs")
    'sigmoid'
    >>> did_you_mean("'torch.sigmod' (not on the list of what programs may use) is not allowed")
    'sigmoid'
    >>> did_you_mean("'torch.sigmod' is not allowed in programs")
    'sigmoid'
    >>> did_you_mean("'torch.load' is not allowed in programs") is None
    True
    >>> did_you_mean("'Tensor' object has no attribute 'zzzz'") is None
    True
    """
    import difflib

    match = next((m for p in _NO_ATTRIBUTE if (m := p.search(message))), None)
    if match is None:
        return None
    found = match.groupdict()
    owner = _owner(found.get("type"), found.get("module"))
    if owner is None:
        return None
    names = [n for n in dir(owner) if not n.startswith("_")]
    if match["name"] in names:  # it exists, it is only not allowed: nothing was misspelt
        return None
    close = difflib.get_close_matches(match["name"], names, n=1, cutoff=0.75)
    return close[0] if close else None


def _owner(type_name: str | None, module: str | None) -> object | None:
    import torch
    import torch.nn.functional as F
    from torch import nn

    if type_name is not None:
        return {"Tensor": torch.Tensor, "Parameter": nn.Parameter, "Size": torch.Size}.get(
            type_name
        )
    return {"torch": torch, "torch.nn": nn, "torch.nn.functional": F}.get(module or "")


def as_markdown(message: str) -> str:
    """A message as Markdown that shows it literally: names with ``__`` as code, no markup.

    Examples
    --------
    >>> as_markdown("the attribute '__class__' is not allowed")
    "the attribute '`__class__`' is not allowed"
    >>> as_markdown("x * y costs $5 <b>")
    'x \\\\* y costs \\\\$5 \\\\<b\\\\>'
    >>> as_markdown("keep `a_b` as it is")
    'keep `a_b` as it is'
    """
    parts = _CODE_SPAN.split(message)
    for i in range(0, len(parts), 2):  # even parts are outside code spans
        pieces = _DUNDER.split(parts[i])
        dunders = _DUNDER.findall(parts[i])
        text = _MARKDOWN.sub(r"\\\1", pieces[0])
        for name, rest in zip(dunders, pieces[1:], strict=True):
            text += f"`{name}`" + _MARKDOWN.sub(r"\\\1", rest)
        parts[i] = text
    return "".join(parts)
