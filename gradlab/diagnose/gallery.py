"""A gallery of deliberately broken programs and models, each with the finding it must give.

A case is a tensor program (run by the safe interpreter, as typed in the app),
a model with a batch (:mod:`gradlab.diagnose.broken`'s ``make_*``), or a
training function (its ``train_*``). :func:`examine_case` diagnoses one; the
tests check that each gives exactly its expected finding and nothing else
above the level of a note.
"""

from __future__ import annotations

import inspect
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from gradlab.core.errors import GradLabError
from gradlab.diagnose import Report, examine
from gradlab.diagnose import broken as b
from gradlab.diagnose.finding import Kind

Form = Literal["program", "model", "function"]


@dataclass(frozen=True)
class GalleryCase:
    """A broken program or model, and the finding it must give."""

    name: str
    title: str
    story: str  # what is wrong, in a sentence
    expect: Kind
    cause: str  # the expected finding's cause
    form: Form
    program: str = ""  # form "program": its source
    build: Callable[[], object] | None = None  # "model": returns a Case; "function": the function
    gradcheck: bool = False
    shows: tuple[object, ...] = ()  # classes and helpers the Python uses, shown with it

    @property
    def source(self) -> str:
        """The code to show: the program, or the Python that builds the case."""
        if self.form == "program":
            return self.program
        assert self.build is not None
        parts = [*self.shows, self.build]
        return "\n\n".join(textwrap.dedent(inspect.getsource(p)) for p in parts)  # type: ignore[arg-type]


def _program(
    name: str, title: str, story: str, expect: Kind, cause: str, source: str
) -> GalleryCase:
    return GalleryCase(name, title, story, expect, cause, "program", program=source)


CASES: tuple[GalleryCase, ...] = (
    _program(
        "detach", "Cut by .detach()",
        "The hidden value is detached before the loss, so w never gets a gradient.",
        "no_gradient", "detach",
        "w = torch.tensor([1., 2.], requires_grad=True)\n"
        "b = torch.tensor([0.5], requires_grad=True)\n"
        "x = torch.tensor([3., 4.])\n"
        "h = (w * x).detach()  # cuts the path from the loss back to w\n"
        "loss = ((h + b) ** 2).sum()\n"
        "loss.backward()\n",
    ),
    _program(
        "data", "Cut by .data",
        "Reading w.data gives its numbers without their history.",
        "no_gradient", "data",
        "w = torch.tensor([1., 2.], requires_grad=True)\n"
        "b = torch.tensor([0.5], requires_grad=True)\n"
        "h = w.data * 3  # .data: no history\n"
        "loss = ((h + b) ** 2).sum()\n"
        "loss.backward()\n",
    ),
    _program(
        "no_grad_region", "Cut by torch.no_grad()",
        "Part of the forward pass runs inside torch.no_grad(), which records nothing.",
        "no_gradient", "no_grad",
        "w = torch.tensor([1., 2.], requires_grad=True)\n"
        "b = torch.tensor([0.5], requires_grad=True)\n"
        "with torch.no_grad():\n"
        "    h = w * 3  # recorded by nobody\n"
        "loss = ((h + b) ** 2).sum()\n"
        "loss.backward()\n",
    ),
    _program(
        "unused_input", "A leaf the loss never uses",
        "b requires grad, but the loss is computed from w alone.",
        "no_gradient", "unused",
        "w = torch.tensor([1., 2.], requires_grad=True)\n"
        "b = torch.tensor([0.5], requires_grad=True)\n"
        "loss = (w ** 2).sum()  # forgot + b\n"
        "loss.backward()\n",
    ),
    GalleryCase(
        "unused_layer", "A layer made and never called",
        "TwoHeads builds aux_head in __init__ but forward() never calls it.",
        "no_gradient", "unused", "model", build=b.make_unused_layer, shows=(b.TwoHeads,),
    ),
    GalleryCase(
        "numpy_round_trip", "A NumPy round trip",
        "The encoder's output is clipped in NumPy and turned back into a tensor.",
        "no_gradient", "numpy", "model", build=b.make_numpy, shows=(b.NumpyScaler,),
    ),
    GalleryCase(
        "all_frozen", "Every parameter frozen",
        "model.requires_grad_(False) froze everything, so the loss has no graph.",
        "no_gradient", "frozen_all", "model", build=b.make_frozen,
    ),
    _program(
        "log_zero", "log(0) in the forward pass",
        "One input is 0, and log(0) = -inf poisons the loss.",
        "nonfinite_forward", "log",
        "x = torch.tensor([1., 0., 2.], requires_grad=True)\n"
        "loss = torch.log(x).sum()\n"
        "loss.backward()\n",
    ),
    _program(
        "divide_by_zero", "Normalising a constant feature",
        "(x - mean) / std of a constant column is 0 / 0 = NaN.",
        "nonfinite_forward", "divide",
        "w = torch.tensor([2.], requires_grad=True)\n"
        "x = torch.ones(4) * w  # a feature that never varies\n"
        "z = (x - x.mean()) / x.std()  # std is 0\n"
        "loss = (z ** 2).sum()\n"
        "loss.backward()\n",
    ),
    _program(
        "exp_overflow", "A softmax written by hand overflows",
        "exp(100) is inf in float32, and inf / inf is NaN.",
        "nonfinite_forward", "overflow",
        "logits = torch.tensor([100., 101., 102.], requires_grad=True)\n"
        "p = torch.exp(logits) / torch.exp(logits).sum()  # use torch.softmax\n"
        "loss = -torch.log(p[0])\n"
        "loss.backward()\n",
    ),
    _program(
        "sqrt_negative", "sqrt of a negative number",
        "x - 1 goes below zero, and sqrt of a negative number is NaN.",
        "nonfinite_forward", "sqrt",
        "x = torch.tensor([0.5, 2., 3.], requires_grad=True)\n"
        "loss = torch.sqrt(x - 1).sum()\n"
        "loss.backward()\n",
    ),
    _program(
        "where_nan_gradient", "torch.where hides a NaN gradient",
        "where() masks log(0) in forward, but its gradient 0 × (1/0) is NaN in backward.",
        "nonfinite_backward", "log",
        "x = torch.tensor([1., 0., 2.], requires_grad=True)\n"
        "y = torch.where(x.gt(0), torch.log(x), torch.zeros(3))\n"
        "loss = y.sum()  # finite\n"
        "loss.backward()  # x.grad holds a NaN\n",
    ),
    _program(
        "sqrt_zero_gradient", "The slope of sqrt at 0",
        "A norm written as sqrt(sum of squares) is 0 at the origin, where sqrt's slope is inf.",
        "nonfinite_backward", "sqrt",
        "x = torch.tensor([0., 0.], requires_grad=True)\n"
        "norm = torch.sqrt((x ** 2).sum())  # 0, fine in forward\n"
        "norm.backward()  # d sqrt(u)/du at u = 0 is inf\n",
    ),
    GalleryCase(
        "vanishing_sigmoid", "Twelve sigmoid layers",
        "Each sigmoid passes at most a quarter of the gradient back.",
        "vanishing", "ratio", "model", build=b.make_vanishing,
    ),
    GalleryCase(
        "exploding_init", "Weights initialised too large",
        "Twelve linear layers with weights four times too large multiply the gradient up.",
        "exploding", "ratio", "model", build=b.make_exploding,
    ),
    GalleryCase(
        "saturated_tanh", "tanh fed raw inputs",
        "Inputs in the hundreds push tanh to ±1, where its slope is 0.",
        "saturated", "saturated", "model", build=b.make_saturated,
    ),
    GalleryCase(
        "dead_relu", "ReLUs that never fire",
        "A first-layer bias of -10 keeps every pre-activation negative.",
        "dead_relu", "dead", "model", build=b.make_dead_relu,
    ),
    GalleryCase(
        "missing_zero_grad", "zero_grad() forgotten",
        "Gradients add up across steps because they are never reset.",
        "missing_zero_grad", "accumulating", "function", build=b.train_without_zero_grad,
        shows=(b.train_loop,),
    ),
    GalleryCase(
        "lr_too_high", "A learning rate of 3",
        "Every SGD step overshoots the minimum further, and the loss explodes.",
        "lr_too_high", "diverging", "function", build=b.train_with_huge_lr, shows=(b.train_loop,),
    ),
    GalleryCase(
        "not_in_optimizer", "The optimizer holds only the head",
        "The first layer gets gradients, but the optimizer never updates it.",
        "not_in_optimizer", "missing", "function", build=b.train_head_only, shows=(b.train_loop,),
    ),
    GalleryCase(
        "zero_lr", "A learning rate of 0",
        "The loop runs, the gradients are there, and the loss stays where it was.",
        "loss_flat", "flat", "function", build=b.train_with_zero_lr, shows=(b.train_loop,),
    ),
    _program(
        "broadcast_mse", "MSE of (N, 1) against (N,)",
        "mse_loss broadcasts the target against the prediction and only warns.",
        "broadcast_loss", "warning",
        "torch.manual_seed(0)\n"
        "x = torch.randn(8, 1)\n"
        "y = torch.randn(8)  # (8,), the prediction is (8, 1)\n"
        "model = nn.Linear(1, 1)\n"
        "loss = F.mse_loss(model(x), y)\n"
        "loss.backward()\n",
    ),
    _program(
        "broadcast_by_hand", "A hand-written loss that broadcasts",
        "pred - y with (N, 1) and (N,) is an (N, N) matrix, with no warning at all.",
        "broadcast_loss", "subtract",
        "torch.manual_seed(0)\n"
        "x = torch.randn(8, 1)\n"
        "y = torch.randn(8)\n"
        "model = nn.Linear(1, 1)\n"
        "loss = ((model(x) - y) ** 2).mean()  # (8, 8) before the mean\n"
        "loss.backward()\n",
    ),
    _program(
        "cross_entropy_probabilities", "CrossEntropyLoss fed probabilities",
        "cross_entropy wants logits; a softmax before it is applied twice.",
        "wrong_loss_input", "probabilities",
        "logits = torch.tensor([[2., 1., 0.1], [0.5, 2.5, 0.3]], requires_grad=True)\n"
        "probs = F.softmax(logits, dim=1)\n"
        "loss = F.cross_entropy(probs, torch.tensor([0, 1]))  # wants logits\n"
        "loss.backward()\n",
    ),
    _program(
        "non_scalar_backward", "backward() on a vector",
        "y holds two numbers; backward() needs one, or a gradient to start from.",
        "autograd_error", "non_scalar_backward",
        "x = torch.tensor([2., 3.], requires_grad=True)\n"
        "y = x ** 2\n"
        "y.backward()\n",
    ),
    _program(
        "backward_twice", "backward() twice",
        "The first backward() freed the saved tensors the second one needs.",
        "autograd_error", "backward_twice",
        "x = torch.tensor([2., 3.], requires_grad=True)\n"
        "loss = (x.exp() * x).sum()\n"
        "loss.backward()\n"
        "loss.backward()  # the graph is gone\n",
    ),
    _program(
        "inplace_saved", "In place on a tensor backward needs",
        "exp() saved its output; add_ changes it, and the version counter notices.",
        "autograd_error", "inplace_needed_tensor",
        "x = torch.tensor([1., 2.], requires_grad=True)\n"
        "y = x.exp()\n"
        "y.add_(1)  # ExpBackward0 needs the old y\n"
        "y.sum().backward()\n",
    ),
    _program(
        "inplace_leaf", "In place on a leaf",
        "A leaf that requires grad may only change inside torch.no_grad().",
        "autograd_error", "inplace_leaf",
        "w = torch.tensor([1., 2.], requires_grad=True)\n"
        "w.mul_(2)\n",
    ),
    _program(
        "no_grad_fn", "Nothing requires grad",
        "None of the tensors asked for gradients, so there is no graph to run backward on.",
        "autograd_error", "no_grad_fn",
        "x = torch.tensor([2., 3.])  # no requires_grad=True\n"
        "loss = (x ** 2).sum()\n"
        "loss.backward()\n",
    ),
    _program(
        "non_leaf_grad", ".grad of an intermediate",
        "Only leaves keep .grad; h.grad is None unless h.retain_grad() was called.",
        "autograd_error", "non_leaf_grad",
        "x = torch.tensor([1., 2.], requires_grad=True)\n"
        "h = x * 2\n"
        "loss = (h ** 2).sum()\n"
        "loss.backward()\n"
        "print(h.grad)  # None, with a warning\n",
    ),
    _program(
        "dtype_mismatch", "float32 meets float64",
        "A matrix product needs both operands in the same dtype.",
        "autograd_error", "dtype_mismatch",
        "w = torch.ones(2, 2, requires_grad=True)\n"
        "x = torch.ones(2, 2, dtype=torch.float64)\n"
        "loss = (w @ x).sum()\n"
        "loss.backward()\n",
    ),
    _program(
        "device_mismatch", "Tensors on two devices",
        "An op needs all its tensors on one device (here the meta device and the CPU).",
        "autograd_error", "device_mismatch",
        "x = torch.ones(2, device='meta', requires_grad=True)\n"
        "loss = (x + torch.ones(2)).sum()\n"
        "loss.backward()\n",
    ),
    GalleryCase(
        "wrong_backward", "A custom backward that is wrong",
        "Cube's backward returns 2x instead of 3x²: finite differences disagree.",
        "gradcheck", "mismatch", "model", build=b.make_wrong_backward, gradcheck=True,
        shows=(b.Cube, b.CubeLayer),
    ),
)  # fmt: skip

BY_NAME = {c.name: c for c in CASES}


def get(name: str) -> GalleryCase:
    """The case called ``name``; an unknown name lists the known ones."""
    case = BY_NAME.get(name)
    if case is None:
        raise GradLabError(f"No gallery case '{name}'. Known cases: {', '.join(BY_NAME)}.")
    return case


def examine_case(case: GalleryCase, graph: bool = False) -> Report:
    """Diagnose a gallery case (``graph=True``: with values and gradients on its graph)."""
    if case.form == "program":
        return examine(case.program, graph=graph)
    assert case.build is not None
    subject = case.build() if case.form == "model" else case.build
    return examine(subject, gradcheck=case.gradcheck, graph=graph)
