"""Each explanation against the exception or warning PyTorch really raises."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F

from gradlab.teach.explain import explain


def raised(action: Callable[[], object]) -> BaseException | Warning:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            action()
        except Exception as exc:
            return exc
    assert caught, "expected an error or a warning"
    return caught[0].message  # type: ignore[return-value]


def leaf() -> torch.Tensor:
    return torch.tensor([2.0, 3.0], requires_grad=True)


def twice() -> None:
    y = (leaf() * 2).sum()
    y.backward()
    y.backward()


def inplace_needed() -> None:
    y = leaf().exp()
    y.add_(1)
    y.sum().backward()


def non_leaf_grad() -> object:
    y = leaf() * 2
    y.sum().backward()
    return y.grad


CASES = [
    (lambda: (leaf() ** 2).backward(), "non_scalar_backward"),
    (twice, "backward_twice"),
    (inplace_needed, "inplace_needed_tensor"),
    (lambda: leaf().add_(1), "inplace_leaf"),
    (lambda: leaf()[0].add_(1), "inplace_leaf"),
    (lambda: torch.ones(2).sum().backward(), "no_grad_fn"),
    (non_leaf_grad, "non_leaf_grad"),
    (lambda: torch.ones(2, 2) @ torch.ones(2, 2, dtype=torch.float64), "dtype_mismatch"),
    (lambda: torch.nn.Linear(2, 2)(torch.ones(1, 2, dtype=torch.float64)), "dtype_mismatch"),
    (lambda: torch.ones(2, device="meta") + torch.ones(2), "device_mismatch"),
    (lambda: torch.ones(2, 3) @ torch.ones(2, 3), "matmul_shapes"),
    (lambda: torch.ones(3) + torch.ones(2), "broadcast_shapes"),
    (lambda: leaf().numpy(), "numpy_requires_grad"),
    (lambda: torch.optim.LBFGS([leaf()]).step(), "lbfgs_closure"),
    (lambda: torch.tensor([1, 2], requires_grad=True), "integer_requires_grad"),
    (lambda: F.mse_loss(torch.ones(4, 1), torch.ones(4)), "loss_broadcast"),
    (lambda: F.cross_entropy(torch.randn(3, 4), torch.tensor([0.0, 1.0, 2.0])), "target_dtype"),
    (lambda: torch.ones(2).register_hook(lambda g: g), "hook_without_grad"),
]


@pytest.mark.parametrize(("action", "kind"), CASES)
def test_explains_what_torch_really_says(action: Callable[[], object], kind: str) -> None:
    explanation = explain(raised(action))
    assert explanation is not None and explanation.kind == kind
    assert explanation.title and explanation.why and explanation.fixes


def test_the_in_place_explanation_names_the_node_and_versions() -> None:
    explanation = explain(raised(inplace_needed))
    assert explanation is not None and explanation.op == "ExpBackward0"
    assert "version counter is now 1" in explanation.why and "expected version 0" in explanation.why


def test_unknown_messages_are_not_explained() -> None:
    assert explain(ValueError("something else")) is None
