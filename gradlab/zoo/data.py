"""Small data sets for the training scenarios, made in torch or bundled: nothing downloads.

The 2-D sets follow scikit-learn's ``make_moons`` and ``make_circles`` and
the classic two-arm spiral and XOR pictures; every random draw comes from
the generator given, so a seed gives the same points. :func:`digits` reads
scikit-learn's bundled 8x8 handwritten digits (1,797 images).
"""

from __future__ import annotations

import math
from typing import Literal, TypeAlias

import torch

Points: TypeAlias = Literal["moons", "circles", "spiral", "xor"]
POINTS: tuple[Points, ...] = ("moons", "circles", "spiral", "xor")


def points(
    kind: Points, n: int = 200, noise: float = 0.1, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` labelled 2-D points: inputs ``(n, 2)`` float32 and labels ``(n,)`` int64 in {0, 1}.

    Examples
    --------
    >>> x, y = points("moons", 10, generator=torch.Generator().manual_seed(0))
    >>> x.shape, y.tolist()
    (torch.Size([10, 2]), [0, 0, 0, 0, 0, 1, 1, 1, 1, 1])
    """
    if n < 2:
        raise ValueError(f"points() needs n >= 2, got {n}.")
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    first, second = (n + 1) // 2, n // 2
    if kind == "moons":
        t0, t1 = torch.linspace(0, math.pi, first), torch.linspace(0, math.pi, second)
        a = torch.stack([t0.cos(), t0.sin()], 1)
        b = torch.stack([1 - t1.cos(), 0.5 - t1.sin()], 1)
    elif kind == "circles":
        t0 = torch.linspace(0, 2 * math.pi, first + 1)[:-1]
        t1 = torch.linspace(0, 2 * math.pi, second + 1)[:-1]
        a = torch.stack([t0.cos(), t0.sin()], 1)
        b = 0.5 * torch.stack([t1.cos(), t1.sin()], 1)
    elif kind == "spiral":
        a, b = _arm(first, 0.0), _arm(second, math.pi)
    elif kind == "xor":
        x = torch.rand(n, 2, generator=g) * 2 - 1
        y = ((x[:, 0] > 0) ^ (x[:, 1] > 0)).long()
        return x + noise * torch.randn(n, 2, generator=g), y
    else:
        raise ValueError(f"Unknown point set '{kind}'. Known: {', '.join(POINTS)}.")
    x = torch.cat([a, b]) + noise * torch.randn(n, 2, generator=g)
    y = torch.cat([torch.zeros(first), torch.ones(second)]).long()
    return x, y


def _arm(n: int, phase: float) -> torch.Tensor:
    """One arm of a two-arm spiral: radius grows from 0.1 to 1 over one and a half turns."""
    r = torch.linspace(0.1, 1.0, n)
    t = r * 3 * math.pi + phase
    return torch.stack([r * t.cos(), r * t.sin()], 1)


def digits() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's bundled 8x8 digits: images ``(1797, 1, 8, 8)`` in [0, 1], labels."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    return images, torch.tensor(bunch.target, dtype=torch.long)


def split(
    x: torch.Tensor, y: torch.Tensor, test: float, generator: torch.Generator
) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """Shuffle and split into ``(train, test)`` pairs, ``test`` being the held-out fraction."""
    order = torch.randperm(len(x), generator=generator)
    cut = len(x) - max(1, round(test * len(x)))
    head, tail = order[:cut], order[cut:]
    return (x[head], y[head]), (x[tail], y[tail])
