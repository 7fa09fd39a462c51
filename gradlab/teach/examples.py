"""The Playground's examples: the lessons of introductory PyTorch courses, as programs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from gradlab.teach.explain import Kind


@dataclass(frozen=True)
class Example:
    """A program to load into the Playground, with what it teaches."""

    id: str
    title: str
    lesson: str
    source: str
    expect_error: Kind | None = None  # the autograd mistake the example shows on purpose
    level: Literal["tensors", "autograd", "models"] = "autograd"


EXAMPLES: tuple[Example, ...] = (
    Example(
        "square",
        "Square, then backward",
        "x ** 2 makes a PowBackward0 node. backward() needs a scalar, so we sum first; "
        "x.grad is 2x. Delete `.sum()` to see why.",
        """x = torch.tensor([2., 3.], requires_grad=True)
y = x ** 2
y.sum().backward()
print(x.grad)  # 2 * x
""",
    ),
    Example(
        "non_scalar",
        "backward() on a non-scalar",
        "y holds two numbers, so PyTorch cannot start the chain rule from dy/dy = 1. "
        "The fixes: reduce first, or pass the gradient y receives.",
        """x = torch.tensor([2., 3.], requires_grad=True)
y = x ** 2
y.backward()  # fails: y is not a scalar
""",
        expect_error="non_scalar_backward",
    ),
    Example(
        "gradient_argument",
        "backward(gradient)",
        "Passing torch.ones_like(y) says how much each element of y matters; "
        "it gives the same x.grad as y.sum().backward().",
        """x = torch.tensor([2., 3.], requires_grad=True)
y = x ** 2
y.backward(torch.ones_like(y))
print(x.grad)
""",
    ),
    Example(
        "chain",
        "The classic chain",
        "y feeds both inputs of one multiply, so its gradient arrives along two edges and "
        "is summed: 2.25 + 2.25 = 4.5.",
        """x = torch.ones(2, 2, requires_grad=True)
y = x + 2
z = y * y * 3
out = z.mean()
out.backward()
print(out, x.grad)
""",
    ),
    Example(
        "leaf",
        "A leaf that tracks gradients",
        "A tensor you create with requires_grad=True is a leaf: it has no grad_fn, and "
        "backward() accumulates into its .grad.",
        """x = torch.tensor([[1., 2., 3.], [4., 5., 6.]], requires_grad=True)
print(x.shape, x.dtype, x.requires_grad, x.grad_fn)
""",
        level="tensors",
    ),
    Example(
        "creating",
        "Creating tensors",
        "torch.empty, rand, zeros, ones, randn, tensor, new_ones and randn_like; "
        "and the attributes shape, dtype and device. (GradLab fills torch.empty with zeros.)",
        """a = torch.empty(5, 3)
b = torch.rand(5, 3)
c = torch.zeros(5, 3, dtype=torch.long)
d = torch.tensor([5.5, 3])
e = d.new_ones(5, 3, dtype=torch.double)
f = torch.randn_like(e, dtype=torch.float)
print(f.shape, f.dtype, f.device)
""",
        level="tensors",
    ),
    Example(
        "operations",
        "Operations",
        "Addition three ways, concatenation along rows and columns, and element-wise "
        "versus matrix products.",
        """y = torch.rand(5, 3)
z = torch.rand(5, 3)
s1 = y + z
s2 = torch.add(y, z)
z.add_(y)  # in place: z changes
rows = torch.cat([y, z], dim=0)  # (10, 3)
cols = torch.cat([y, z], dim=1)  # (5, 6)
t = torch.rand(2, 3)
elementwise = t * t  # same as t.mul(t)
matrix = t @ t.T  # same as t.matmul(t.T)
print(rows.shape, cols.shape, matrix.shape)
""",
        level="tensors",
    ),
    Example(
        "inplace_leaf",
        "In place on a leaf",
        "A leaf that requires grad may not change in place: updates belong in torch.no_grad().",
        """w = torch.tensor([1., 2.], requires_grad=True)
w.add_(1)
""",
        expect_error="inplace_leaf",
    ),
    Example(
        "inplace_needed",
        "In place on a tensor backward needs",
        "ExpBackward0 saved its output to compute its derivative (d exp(x)/dx = exp(x)). "
        "Changing it in place breaks backward, which the version counter detects.",
        """x = torch.tensor([1., 2.], requires_grad=True)
y = x.exp()
y.add_(1)  # changes what ExpBackward0 saved
y.sum().backward()
""",
        expect_error="inplace_needed_tensor",
    ),
    Example(
        "device",
        "Device",
        "Put tensors and models on the GPU when there is one; an op needs all its tensors "
        "on one device.",
        """device = "cuda" if torch.cuda.is_available() else "cpu"
x = torch.ones(3, requires_grad=True).to(device)
model = nn.Linear(3, 1).to(device)
loss = model(x).sum()
loss.backward()
print(device, model.weight.grad)
""",
        level="tensors",
    ),
    Example(
        "linear_step",
        "A linear layer, MSE, one SGD step",
        "forward, loss, zero_grad, backward, step: the training step, once. The weight's "
        "gradient is what SGD subtracts (times the learning rate).",
        """torch.manual_seed(0)
x = torch.tensor([[1.], [2.], [3.]])
y = torch.tensor([[2.], [4.], [6.]])
model = nn.Linear(1, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.05)
loss = F.mse_loss(model(x), y, reduction="sum")
opt.zero_grad()
loss.backward()
opt.step()
print(loss.item(), model.weight.grad)
""",
        level="models",
    ),
    Example(
        "cross_entropy",
        "Softmax and cross-entropy",
        "F.cross_entropy is log_softmax then nll_loss: two autograd nodes. The gradient "
        "of the logits is softmax minus the one-hot target, divided by the batch size.",
        """logits = torch.tensor([[2., 1., 0.1], [0.5, 2.5, 0.3]], requires_grad=True)
target = torch.tensor([0, 1])
loss = F.cross_entropy(logits, target)
loss.backward()
print(logits.grad)
print((F.softmax(logits, dim=1) - F.one_hot(target, 3)) / 2)
""",
        level="models",
    ),
    Example(
        "backward_twice",
        "backward() twice",
        "The first backward() frees what each op saved for its derivative, so a second one "
        "through the same graph fails. Keep the graph with retain_graph=True, or run the "
        "forward pass again.",
        """x = torch.tensor([1., 2.], requires_grad=True)
y = (x.exp() * 3).sum()
y.backward()
y.backward()  # fails: the saved tensors were freed
""",
        expect_error="backward_twice",
    ),
    Example(
        "no_grad_fn",
        "A tensor with no grad_fn",
        "Nothing in y's history requires a gradient, so there is no graph to go back "
        "through. Create x with requires_grad=True.",
        """x = torch.tensor([1., 2.])  # requires_grad is False
y = (x * 2).sum()
y.backward()  # fails: y has no grad_fn
""",
        expect_error="no_grad_fn",
    ),
    Example(
        "non_leaf_grad",
        ".grad of a non-leaf",
        "Only leaves keep .grad: h is computed from x, so h.grad stays None and PyTorch "
        "warns. The next example shows the fix, retain_grad().",
        """x = torch.tensor([1., 2.], requires_grad=True)
h = x * 2
out = (h ** 2).sum()
out.backward()
print(h.grad)  # None, with a warning
""",
    ),
    Example(
        "retain_grad",
        "Gradients of intermediate results",
        "Only leaves keep .grad. retain_grad() asks an intermediate result to keep its own.",
        """x = torch.tensor([1., 2., 3.], requires_grad=True)
h = x * 2
h.retain_grad()
out = (h ** 2).sum()
out.backward()
print(h.grad, x.grad)
""",
    ),
    Example(
        "detach",
        "Cutting the graph: detach() and no_grad()",
        "Whatever is computed from a detached tensor, or inside torch.no_grad(), has no "
        "path back to x: only the first term contributes to x.grad.",
        """x = torch.tensor([1., 2.], requires_grad=True)
a = x * 3
b = x.detach() * 5
with torch.no_grad():
    c = x * 7
out = (a + b + c).sum()
out.backward()
print(x.grad)  # 3 from a; nothing from b or c
""",
    ),
    Example(
        "jacobian",
        "Jacobian and Hessian",
        "torch.autograd.functional computes whole Jacobians and Hessians of a function.",
        """def f(x):
    return (x ** 3).sum()

x = torch.tensor([1., 2.])
print(torch.autograd.functional.jacobian(f, x))  # 3 x^2
print(torch.autograd.functional.hessian(f, x))  # diag(6 x)
""",
    ),
)


def get(example_id: str) -> Example | None:
    """The example with this id, if there is one."""
    return next((e for e in EXAMPLES if e.id == example_id), None)
