"""Rules of element-wise ops: add, sub, mul, div, pow, neg, exp, log, ..., relu, gelu."""

from __future__ import annotations

import math

import torch

from gradlab.teach.derivatives import (
    Builder,
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

UNARY = ("x",)
BINARY = ("a", "b")


@rule("AddBackward0", "AddBackward1")
def _add(f: Facts) -> Spec:
    alpha = f.args.get("alpha", 1)
    scaled = "" if alpha == 1 else f"{num(alpha)}·"
    return Spec(
        "Add", f"{{z}} = {{a}} + {scaled}{{b}}", BINARY, "z",
        (Term(0, "{g}", lambda v: v["g"]),
         Term(1, f"{scaled}{{g}}", lambda v: v["g"] * alpha)),
        "Addition passes the gradient through unchanged (times α for the second input).",
    )  # fmt: skip


@rule("SubBackward0", "SubBackward1")
def _sub(f: Facts) -> Spec:
    alpha = f.args.get("alpha", 1)
    scaled = "" if alpha == 1 else f"{num(alpha)}·"
    return Spec(
        "Subtract", f"{{z}} = {{a}} − {scaled}{{b}}", BINARY, "z",
        (Term(0, "{g}", lambda v: v["g"]),
         Term(1, f"−{scaled}{{g}}", lambda v: -v["g"] * alpha)),
    )  # fmt: skip


@rule("RsubBackward0", "RsubBackward1")
def _rsub(f: Facts) -> Spec:
    alpha = f.args.get("alpha", 1)
    scaled = "" if alpha == 1 else f"{num(alpha)}·"
    return Spec(
        "Subtract from", f"{{z}} = {{b}} − {scaled}{{a}}", BINARY, "z",
        (Term(0, f"−{scaled}{{g}}", lambda v: -v["g"] * alpha),
         Term(1, "{g}", lambda v: v["g"])),
    )  # fmt: skip


def _constant(
    f: Facts, role: str, other: str, attr: str, how: str, read: Compute
) -> tuple[Derived, ...]:
    """A factor that needs no gradient: saved by the op, or read back from the values
    (``how``), which needs ``other`` free of zeros."""
    slot = BINARY.index(role)
    if slot in f.slots:
        return ()
    kept = saved(f, attr, role, "the constant factor")
    if kept:
        return kept

    def back(v: Values) -> torch.Tensor:
        if not bool((v[other] != 0).all()):
            raise Missing(role)
        return read(v)

    return (Derived(role, f"{role} = {how}: a constant the graph does not keep, read back", back),)


@rule("MulBackward0")
def _mul(f: Facts) -> Spec:
    dropout = f.module_type == "Dropout"
    derived = _constant(f, "b", "a", "other", "z ⊘ a", lambda v: v["z"] / v["a"]) + _constant(
        f, "a", "b", "self", "z ⊘ b", lambda v: v["z"] / v["b"]
    )
    return Spec(
        "Dropout (a multiply by mask / (1 − p))" if dropout else "Multiply",
        "{z} = {a} ⊙ {b}", BINARY, "z",
        (Term(0, "{g} ⊙ {b}", lambda v: v["g"] * v["b"]),
         Term(1, "{g} ⊙ {a}", lambda v: v["g"] * v["a"])),
        "Each input gets the incoming gradient times the other input."
        + (" Here b is dropout's mask scaled by 1/(1 − p): 0 where dropped." if dropout else ""),
        derived,
    )  # fmt: skip


@rule("MulBackward1")
def _mul_scalar(f: Facts) -> Spec:
    c = f.args.get("other", 1)
    return Spec("Multiply by a number", f"{{z}} = {num(c)}·{{a}}", ("a",), "z",
                (Term(0, f"{num(c)}·{{g}}", lambda v: v["g"] * c),))  # fmt: skip


@rule("DivBackward0")
def _div(f: Facts) -> Spec:
    derived = _constant(f, "b", "z", "other", "a ⊘ z", lambda v: v["a"] / v["z"]) + _constant(
        f, "a", "b", "self", "z ⊙ b", lambda v: v["z"] * v["b"]
    )
    return Spec(
        "Divide", "{z} = {a} ⊘ {b}", BINARY, "z",
        (Term(0, "{g} ⊘ {b}", lambda v: v["g"] / v["b"]),
         Term(1, "−{g} ⊙ {a} ⊘ {b}²", lambda v: -v["g"] * v["a"] / (v["b"] * v["b"]))),
        derived=derived,
    )  # fmt: skip


@rule("DivBackward1")
def _div_scalar(f: Facts) -> Spec:
    c = f.args.get("other", 1)
    return Spec("Divide by a number", f"{{z}} = {{a}} / {num(c)}", ("a",), "z",
                (Term(0, f"{{g}} / {num(c)}", lambda v: v["g"] / c),))  # fmt: skip


@rule("PowBackward0")
def _pow(f: Facts) -> Spec:
    n = f.args.get("exponent", 1)
    assert isinstance(n, int | float)
    power = num(n) if n in (0, 1) else f"{num(n)}·{{x}}" + ("" if n == 2 else f"^{num(n - 1)}")
    return Spec(
        "Power", f"{{y}} = {{x}}^{num(n)}", UNARY, "y",
        (Term(0, f"{{g}} · {power}",
              lambda v: v["g"] * 0 if n == 0 else v["g"] * n * v["x"] ** (n - 1)),),
        "The power rule: d(xⁿ)/dx = n·xⁿ⁻¹.",
    )  # fmt: skip


def _log_unless_zero(
    base: torch.Tensor, exponent: torch.Tensor, factor: torch.Tensor
) -> torch.Tensor:
    # PyTorch takes 0·log 0 as 0 where the base is 0 and the exponent >= 0.
    zero = (base == 0) & (exponent >= 0)
    return torch.where(zero, torch.zeros_like(factor), factor * torch.log(base))


@rule("PowBackward1")
def _pow_tensor(f: Facts) -> Spec:
    return Spec(
        "Power (tensor exponent)", "{z} = {a}^{b}", BINARY, "z",
        (Term(0, "{g} ⊙ {b} ⊙ {a}^({b} − 1)", lambda v: v["g"] * v["b"] * v["a"] ** (v["b"] - 1)),
         Term(1, "{g} ⊙ {a}^{b} ⊙ ln {a}",
              lambda v: _log_unless_zero(v["a"], v["b"], v["g"] * v["a"] ** v["b"]))),
    )  # fmt: skip


@rule("PowBackward2")
def _pow_base(f: Facts) -> Spec:
    c = f.args.get("self", 1)
    assert isinstance(c, int | float)
    base = torch.tensor(float(c))
    return Spec(
        "Power of a number", f"{{y}} = {num(c)}^{{x}}", UNARY, "y",
        (Term(0, f"{{g}} ⊙ {num(c)}^{{x}} · ln {num(c)}",
              lambda v: _log_unless_zero(base, v["x"], v["g"] * base ** v["x"])),),
    )  # fmt: skip


def _unary(title: str, forward: str, rhs: str, compute: Compute, note: str = "") -> Spec:
    return Spec(title, forward, UNARY, "y", (Term(0, rhs, compute),), note)


_SQRT_2PI = math.sqrt(2 * math.pi)
UNARIES = {
    "NegBackward0": ("Negate", "{y} = −{x}", "−{g}", lambda v: -v["g"]),
    "ExpBackward0": ("Exponential", "{y} = exp({x})", "{g} ⊙ exp({x})",
                     lambda v: v["g"] * torch.exp(v["x"])),
    "LogBackward0": ("Natural log", "{y} = ln {x}", "{g} ⊘ {x}", lambda v: v["g"] / v["x"]),
    "SqrtBackward0": ("Square root", "{y} = √{x}", "{g} ⊘ (2·√{x})",
                      lambda v: v["g"] / (2 * torch.sqrt(v["x"]))),
    "AbsBackward0": ("Absolute value", "{y} = |{x}|", "{g} ⊙ sign({x})",
                     lambda v: v["g"] * torch.sign(v["x"])),
    "SinBackward0": ("Sine", "{y} = sin {x}", "{g} ⊙ cos {x}",
                     lambda v: v["g"] * torch.cos(v["x"])),
    "CosBackward0": ("Cosine", "{y} = cos {x}", "−{g} ⊙ sin {x}",
                     lambda v: -v["g"] * torch.sin(v["x"])),
    "TanhBackward0": ("tanh", "{y} = tanh {x}", "{g} ⊙ (1 − {y}²)",
                      lambda v: v["g"] * (1 - v["y"] * v["y"])),
    "SigmoidBackward0": ("Sigmoid", "{y} = σ({x}) = 1 / (1 + e^−{x})", "{g} ⊙ {y} ⊙ (1 − {y})",
                         lambda v: v["g"] * v["y"] * (1 - v["y"])),
    "ReluBackward0": ("ReLU", "{y} = max({x}, 0)", "{g} ⊙ [{y} > 0]",
                      lambda v: v["g"] * (v["y"] > 0)),
    "CloneBackward0": ("Clone", "{y} = clone({x})", "{g}", lambda v: v["g"]),
}  # fmt: skip


def _unary_builder(title: str, forward: str, rhs: str, compute: Compute) -> Builder:
    def build(f: Facts) -> Spec:
        return _unary(title, forward, rhs, compute)

    return build


def _register_unaries() -> None:
    for op, (title, forward, rhs, compute) in UNARIES.items():
        rule(op)(_unary_builder(title, forward, rhs, compute))


_register_unaries()


@rule("ThresholdBackward0")
def _threshold(f: Facts) -> Spec:
    t = f.args.get("threshold", 0)
    return _unary("Threshold", f"{{y}} = {{x}} if {{x}} > {num(t)} else the fill value",
                  f"{{g}} ⊙ [{{x}} > {num(t)}]", lambda v: v["g"] * (v["x"] > t))  # fmt: skip


@rule("LeakyReluBackward0")
def _leaky(f: Facts) -> Spec:
    s = f.args.get("negative_slope", 0.01)
    assert isinstance(s, float | int)
    return _unary(
        "Leaky ReLU", f"{{y}} = {{x}} if {{x}} > 0 else {num(s)}·{{x}}",
        f"{{g}} ⊙ (1 where {{x}} > 0, else {num(s)})",
        lambda v: torch.where(v["x"] > 0, v["g"], v["g"] * s),
    )  # fmt: skip


def _gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    k = math.sqrt(2 / math.pi)
    u = k * (x + 0.044715 * x**3)
    t = torch.tanh(u)
    return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * k * (1 + 3 * 0.044715 * x * x)


@rule("GeluBackward0")
def _gelu(f: Facts) -> Spec:
    if f.args.get("approximate") == "tanh":
        return _unary(
            "GELU (tanh approximation)", "{y} = ½{x}(1 + tanh u), u = √(2/π)({x} + 0.044715{x}³)",
            "{g} ⊙ (½(1 + tanh u) + ½{x}(1 − tanh² u)·u′)",
            lambda v: v["g"] * _gelu_tanh(v["x"]),
        )  # fmt: skip
    return _unary(
        "GELU", "{y} = {x}·Φ({x})", "{g} ⊙ (Φ({x}) + {x}·φ({x}))",
        lambda v: v["g"] * (0.5 * (1 + torch.erf(v["x"] / math.sqrt(2)))
                            + v["x"] * torch.exp(-v["x"] ** 2 / 2) / _SQRT_2PI),
        "Φ is the standard normal CDF, φ its density.",
    )  # fmt: skip
