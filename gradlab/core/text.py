"""Short text forms of tensor summaries, for labels, hovers, tables and the CLI."""

from __future__ import annotations

from gradlab.core.graph import NestedFloats, TensorSummary


def number(x: float | int | bool | complex | None, digits: int = 4) -> str:
    """A number in at most ``digits`` significant digits: ``0.3333``, ``1.2e+05``."""
    if x is None:
        return "–"
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, int):
        return str(x)
    if isinstance(x, complex):
        return (
            f"{number(x.real, digits)}{'+' if x.imag >= 0 else '-'}{number(abs(x.imag), digits)}j"
        )
    if x != x:  # NaN
        return "nan"
    if x in (float("inf"), float("-inf")):
        return "inf" if x > 0 else "-inf"
    if x == int(x) and abs(x) < 10**digits:
        return f"{int(x)}."
    return f"{x:.{digits}g}"


def values(v: NestedFloats | None, digits: int = 4, limit: int = 12) -> str:
    """Nested values as text, eliding after ``limit`` numbers: ``[[1., 2.], [3., 4.]]``."""
    if v is None:
        return "–"
    count = 0

    def walk(x: NestedFloats) -> str:
        nonlocal count
        if isinstance(x, list):
            parts: list[str] = []
            for item in x:
                if count >= limit:
                    parts.append("…")
                    break
                parts.append(walk(item))
            return "[" + ", ".join(parts) + "]"
        count += 1
        return number(x, digits)

    return walk(v)


def shape(s: list[int] | None) -> str:
    """``[2, 3]`` -> ``"(2, 3)"``; a scalar is ``"()"``."""
    if s is None:
        return "?"
    return "(" + ", ".join(str(d) for d in s) + ("," if len(s) == 1 else "") + ")"


def short(s: TensorSummary | None, digits: int = 4, limit: int = 6) -> str:
    """One line: the values when few, else the norm and range."""
    if s is None:
        return "–"
    if s["values"] is not None and s["numel"] <= limit:
        return values(s["values"], digits, limit)
    text = f"‖·‖={number(s['norm'], 3)} ∈[{number(s['min'], 3)}, {number(s['max'], 3)}]"
    return text + _nonfinite(s)


def describe(s: TensorSummary | None, digits: int = 4) -> str:
    """A few lines: shape and dtype, statistics, and the values when kept."""
    if s is None:
        return "not recorded"
    lines = [
        f"{shape(s['shape'])} {s['dtype']}, {s['numel']} element{'s' * (s['numel'] != 1)}",
        f"norm {number(s['norm'], digits)}, mean {number(s['mean'], digits)}, "
        f"min {number(s['min'], digits)}, max {number(s['max'], digits)}{_nonfinite(s)}",
    ]
    if s["values"] is not None:
        lines.append(values(s["values"], digits, limit=64))
    return "\n".join(lines)


def _nonfinite(s: TensorSummary) -> str:
    parts = [f"{s['nan']} NaN"] * bool(s["nan"]) + [f"{s['inf']} Inf"] * bool(s["inf"])
    return (" ⚠ " + ", ".join(parts)) if parts else ""
