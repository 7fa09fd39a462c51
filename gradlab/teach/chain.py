"""The chain-rule card of a node: its local derivative rule, with this node's numbers.

A card says how the gradient that arrived at an op (∂L/∂output) became the
gradients it sent to its inputs: the rule as a formula (``∂L/∂a = ∂L/∂z ⊙ b``),
the same formula with the node's numbers written in, and what the engine
really sent down each edge. Where the numbers are known (tensors of at most
64 elements, recorded with :func:`gradlab.record`), the card also evaluates the
rule itself, with torch, from the stored values, and says whether it agrees
with what PyTorch sent. Where two paths meet (``y * y``, or a tensor used
twice), the card shows the sum. The rules live in :mod:`gradlab.teach.derivatives`;
every other op gets a generic card.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from gradlab.core.graph import ACCUMULATE_GRAD, Graph, NodeAttrs, TensorSummary
from gradlab.core.summary import summarize
from gradlab.core.text import shape as shape_text
from gradlab.core.text import values as values_text
from gradlab.teach.derivatives import RULES, Compute, Facts, Known, Missing, Spec, Term


@dataclass(frozen=True)
class Rule:
    """How one input slot's gradient was made."""

    slot: int
    input: str  # node id of the input's producer
    name: str  # the input's symbol in the formula: its tensor name, a leaf's id, or "a"
    formula: str  # "∂L/∂x = ∂L/∂y · 2·x"
    numbers: str  # the same with the numbers in: "∂L/∂x = [1., 1.] · 2·[2., 3.] = [4., 6.]"
    result: TensorSummary | None  # what the engine sent down the edge
    computed: TensorSummary | None  # the rule evaluated from the stored numbers
    agrees: bool | None  # computed equals result (None: not both known)


@dataclass(frozen=True)
class Path:
    """One of the gradients that add up where paths meet."""

    consumer: str  # node whose backward sent it
    slot: int
    grad: TensorSummary | None


@dataclass(frozen=True)
class Sum:
    """A node whose gradient is the sum of several paths (a tensor used more than once)."""

    node: str
    name: str
    parts: tuple[Path, ...]
    total: TensorSummary | None  # the node's gradient as the engine summed it
    text: str  # "∂L/∂y = [2.25] + [2.25] = [4.5]"
    computed: TensorSummary | None  # the parts added up from their stored values


@dataclass(frozen=True)
class Card:
    """The chain-rule card of one node."""

    node: str
    op: str
    specific: bool  # False: the generic card of an op without a written-out rule
    title: str
    forward: str  # "y = x^2"
    incoming: str  # "∂L/∂y = [1., 1.]"
    grad: TensorSummary | None  # the gradient that arrived (∂L/∂output)
    rules: tuple[Rule, ...]
    sums: tuple[Sum, ...]
    note: str
    accumulated: TensorSummary | None = None  # AccumulateGrad: the leaf's .grad afterwards


def has_card(G: Graph, n: str) -> bool:
    """Whether :func:`card` works for node ``n``: an op, or a leaf held by an AccumulateGrad."""
    return no_card(G, n) is None


def no_card(G: Graph, n: str) -> str | None:
    """Why node ``n`` has no chain-rule card, for people; ``None`` when it has one."""
    if n not in G:
        return f"There is no node '{n}' in this graph."
    kind = G.nodes[n].get("kind")
    if kind == "leaf" and _accumulator(G, n) is None:
        return "This leaf needs no gradient (requires_grad=False): no chain rule reaches it."
    if kind not in ("op", "leaf"):
        return f"No chain-rule card here: this is a {kind} node; pick an op or a leaf."
    if any(d.get("count", 1) > 1 for _, _, d in G.in_edges(n, data=True)):
        return (
            "In this collapsed view several inputs of this op arrive merged in one edge: "
            "open the module they come from to see its chain-rule card."
        )
    return None


def card(G: Graph, n: str) -> Card:
    """The chain-rule card of op node ``n`` (a leaf: the card of its AccumulateGrad).

    Examples
    --------
    >>> import torch, gradlab
    >>> x = torch.tensor([2.0, 3.0], requires_grad=True)
    >>> with gradlab.record():
    ...     y = x ** 2
    ...     loss = y.sum()
    >>> G = gradlab.backward(loss, gradlab.trace(loss, params={"x": x, "y": y}))
    >>> rule = card(G, "fn1").rules[0]
    >>> rule.formula
    '∂L/∂x = ∂L/∂y · 2·x'
    >>> rule.numbers
    '∂L/∂x = [1., 1.] · 2·[2., 3.] = [4., 6.]'
    >>> rule.agrees
    True
    """
    if n not in G:
        raise KeyError(f"There is no node '{n}' in this graph.")
    reason = no_card(G, n)
    if reason is not None:
        raise ValueError(reason)
    attrs = G.nodes[n]
    if attrs.get("kind") == "leaf":
        n = _accumulator(G, n) or n
        attrs = G.nodes[n]
    if attrs.get("op") == ACCUMULATE_GRAD:
        return _accumulate_card(G, n)
    inputs = _inputs(G, n)
    build = RULES.get(str(attrs.get("op")))
    spec = None
    if build is not None:
        try:
            spec = build(_facts(G, n, inputs))
        except _UNUSUAL:  # arguments this rule was not written for: the generic card
            spec = None
    return _op_card(G, n, inputs, spec)


# -- what the graph knows -------------------------------------------------------------


@dataclass(frozen=True)
class _Input:
    slot: int
    node: str
    name: str | None  # tensor name
    leaf: str | None  # the leaf's node id, when the input is a leaf
    op: str
    value: TensorSummary | None
    shape: list[int] | None
    sent: TensorSummary | None


def _accumulator(G: Graph, leaf: str) -> str | None:
    return next((v for v in G.successors(leaf) if G.nodes[v].get("op") == ACCUMULATE_GRAD), None)


def _inputs(G: Graph, n: str) -> dict[int, _Input]:
    found: dict[int, _Input] = {}
    for u, _, data in G.in_edges(n, data=True):
        if data.get("kind") != "flow":
            continue
        p: NodeAttrs = G.nodes[u]
        op = str(p.get("op") or "")
        source, leaf = p, None
        if op == ACCUMULATE_GRAD:
            leaf = next(iter(G.predecessors(u)), None)
            source = G.nodes[leaf] if leaf is not None else p
        own = op == ACCUMULATE_GRAD or data.get("output", 0) == 0
        value = source.get("value") if own else None
        found[data["slot"]] = _Input(
            data["slot"], u, source.get("name"), leaf, op, value,
            (value["shape"] if value else source.get("shape")) if own else None, data.get("grad"),
        )  # fmt: skip
    return found


def _facts(G: Graph, n: str, inputs: dict[int, _Input]) -> Facts:
    attrs = G.nodes[n]
    saved: dict[str, torch.Tensor] = {}
    for u, _, data in G.in_edges(n, data=True):
        if data.get("kind") == "saved":
            t = tensor(G.nodes[u].get("value"))
            if t is not None:
                saved[str(G.nodes[u].get("attr"))] = t
    return Facts(
        str(attrs.get("op")), attrs.get("args") or {}, frozenset(inputs),
        {s: i.shape for s, i in inputs.items() if i.shape is not None}, attrs.get("shape"),
        attrs.get("module_type"), saved, {s: i.op for s, i in inputs.items()},
    )  # fmt: skip


def tensor(s: TensorSummary | None) -> torch.Tensor | None:
    """The tensor a summary kept the values of (``None`` for a bigger one)."""
    if s is None or s.get("values") is None:
        return None
    dtype = getattr(torch, s["dtype"], None)
    kind = dtype if isinstance(dtype, torch.dtype) else None
    return torch.tensor(s["values"], dtype=kind).reshape(s["shape"])


def show(s: TensorSummary | None) -> str:
    """A tensor as card text: small ones whole, bigger ones as shape and statistics."""
    if s is None:
        return "?"
    if s["values"] is not None:
        return values_text(s["values"], limit=64)
    stats = f"mean {values_text(s['mean'])}, ‖·‖ {values_text(s['norm'])}"
    return f"⟨{shape_text(s['shape'])}, {stats}⟩"


def _operand(s: TensorSummary) -> str:
    """``show``, with a negative number in parentheses: ``−(-2.)``, not ``−-2.``."""
    text = show(s)
    return f"({text})" if text.startswith("-") else text


# -- op cards -------------------------------------------------------------------------

# What a rule may raise on values or arguments it cannot handle (shapes, dtypes, kinds).
_UNUSUAL = (Missing, AssertionError, TypeError, ValueError, KeyError, IndexError, RuntimeError)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,11}$")


class _Text(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return key


def _symbols(
    spec: Spec, inputs: dict[int, _Input], out_name: str | None, taken: set[str]
) -> dict[str, str]:
    """Role -> the symbol the formula uses: the tensor's name when short; an unnamed leaf's
    node id (as the graph labels it); else the role's symbol, primed if a tensor of the
    graph has that name."""

    def pick(name: str | None, default: str, other: str) -> str:
        if name and _NAME.match(name):
            return name
        return other if default in taken else default

    symbols: dict[str, str] = {}
    by_node: dict[str, str] = {}
    for slot, role in enumerate(spec.roles):
        inp = inputs.get(slot)
        if inp is not None and inp.node in by_node:  # the same tensor in two slots: y * y
            symbols[role] = by_node[inp.node]
            continue
        default = spec.symbols.get(role, role)
        if inp is None:
            chosen = default
        else:
            chosen = pick(inp.name or inp.leaf, default, default + "′")
            by_node[inp.node] = chosen
        symbols[role] = chosen if chosen not in symbols.values() else f"{default}{slot}"
        if inp is not None:
            by_node[inp.node] = symbols[role]
    default = spec.symbols.get(spec.out, spec.out)
    out = pick(out_name, default, default + "′")
    symbols[spec.out] = out if out not in symbols.values() else out + "′"
    return symbols


def _op_card(G: Graph, n: str, inputs: dict[int, _Input], spec: Spec | None) -> Card:
    attrs = G.nodes[n]
    op = str(attrs.get("op"))
    generic = spec is None
    if spec is None:
        spec = _generic(op, inputs)
    taken = {name for _, name in G.nodes(data="name") if name}
    symbols = _symbols(spec, inputs, attrs.get("name"), taken)
    g_sym = f"∂L/∂{symbols[spec.out]}"
    grad = attrs.get("grad")
    text = _Text({**symbols, "g": g_sym})
    known, shown, notes = _values(spec, inputs, attrs, symbols, g_sym)
    terms = {t.slot: t for t in spec.terms}
    rules = tuple(
        _rule(inputs[slot], terms.get(slot), spec, symbols, text, shown, known, g_sym)
        for slot in sorted(inputs)
    )
    unknown = f"{g_sym}: not known (run backward())"
    incoming = f"{g_sym} = {show(grad)}" if grad is not None else unknown
    return Card(
        n, op, not generic, spec.title, spec.forward.format_map(text), incoming, grad, rules,
        _sums(G, n, inputs, symbols, spec), " ".join(notes),
    )  # fmt: skip


def _values(
    spec: Spec, inputs: dict[int, _Input], attrs: NodeAttrs, symbols: dict[str, str], g_sym: str
) -> tuple[Known, _Text, list[str]]:
    """The stored values by role, their text for the numbers, and the notes they call for."""
    known, shown = Known(), _Text(symbols)
    for role, s in [("g", attrs.get("grad")), (spec.out, attrs.get("value"))] + [
        (spec.roles[i], inp.value) for i, inp in inputs.items() if i < len(spec.roles)
    ]:
        t = tensor(s)
        if t is not None:
            known[role] = t
        if s is not None:
            shown[role] = _operand(s)
    shown.setdefault("g", g_sym)
    notes = [spec.note] if spec.note else []
    for d in spec.derived:
        try:
            known[d.role] = d.compute(known)
        except _UNUSUAL:
            continue
        shown[d.role] = _operand(summarize(known[d.role]))
        if any("{" + d.role + "}" in t.rhs for t in spec.terms if t.slot in inputs):
            notes.append(d.how + ".")
    for slot, role in enumerate(spec.roles):
        if slot not in inputs and role in symbols:
            notes.append(f"{symbols[role]} needs no gradient (a constant): nothing is sent to it.")
            if role not in known and any("{" + role + "}" in t.rhs for t in spec.terms):
                notes.append(
                    f"Its numbers are not in this graph (trace with show_saved=True before "
                    f"backward() to keep the tensors the op saved, {symbols[role]} among them)."
                )
    return known, shown, notes


def _rule(
    inp: _Input, term: Term | None, spec: Spec, symbols: dict[str, str], text: _Text,
    shown: _Text, known: Known, g_sym: str,
) -> Rule:  # fmt: skip
    role = spec.roles[inp.slot] if inp.slot < len(spec.roles) else f"x{inp.slot}"
    lhs = f"∂L/∂{symbols.get(role, role)}"
    if term is None:
        rhs = f"PyTorch's {spec.title} derivative applied to {g_sym}"
        return Rule(inp.slot, inp.node, symbols.get(role, role), f"{lhs} = {rhs}",
                    f"{lhs} = {show(inp.sent)}", inp.sent, None, None)  # fmt: skip
    computed, summed = _evaluate(term.compute, known, inp.shape)
    numbers = f"{lhs} = {term.rhs.format_map(shown)}"
    broadcast = f", summed to shape {shape_text(inp.shape)}" if summed else ""
    if computed is not None:
        numbers += f"{broadcast} = {show(computed)}"
    return Rule(
        inp.slot, inp.node, symbols.get(role, role),
        f"{lhs} = {term.rhs.format_map(text)}"
        + (" (summed over the broadcast dims)" if summed else ""),
        numbers, inp.sent, computed, _agrees(computed, inp.sent),
    )  # fmt: skip


def _evaluate(
    compute: Compute | None, known: Known, shape: list[int] | None
) -> tuple[TensorSummary | None, bool]:
    if compute is None or "g" not in known:
        return None, False
    try:
        t = compute(known)
    except _UNUSUAL:
        return None, False
    if shape is None or list(t.shape) == shape:
        return summarize(t), False
    try:  # an input that was broadcast: its gradient sums over the copies
        return summarize(t.sum_to_size(shape)), True
    except RuntimeError:
        return None, False


def _agrees(a: TensorSummary | None, b: TensorSummary | None) -> bool | None:
    ta, tb = tensor(a), tensor(b)
    if ta is None or tb is None:
        return None
    if ta.shape != tb.shape:
        return False
    return bool(torch.allclose(ta.double(), tb.double(), rtol=1e-4, atol=1e-6, equal_nan=True))


def _generic(op: str, inputs: dict[int, _Input]) -> Spec:
    arity = max(inputs, default=-1) + 1
    roles = tuple("abcdefgh"[i] if i < 8 else f"x{i}" for i in range(arity))
    name = re.sub(r"Backward\d*$", "", op)
    return Spec(
        op, f"{{y}} = {name}({', '.join('{' + r + '}' for r in roles)})", roles, "y", (),
        f"No formula is written out for this op here: the rule is PyTorch's `{op}`'s "
        "derivative (tools/autograd/derivatives.yaml). The numbers are what it sent.",
    )  # fmt: skip


# -- sums and AccumulateGrad ------------------------------------------------------------


def _sum_at(G: Graph, u: str, name: str) -> Sum | None:
    paths = [
        Path(v, int(k), data.get("grad"))
        for _, v, k, data in G.out_edges(u, keys=True, data=True)
        if data.get("kind") == "flow"
    ]
    if len(paths) < 2:
        return None
    attrs = G.nodes[u]
    total = attrs.get("grad")
    parts = [tensor(p.grad) for p in paths]
    computed = None
    if all(t is not None for t in parts):
        computed = summarize(torch.stack([t for t in parts if t is not None]).sum(0))
    text = f"∂L/∂{name} = " + " + ".join(show(p.grad) for p in paths) + f" = {show(total)}"
    return Sum(u, name, tuple(paths), total, text, computed)


def _sums(
    G: Graph, n: str, inputs: dict[int, _Input], symbols: dict[str, str], spec: Spec
) -> tuple[Sum, ...]:
    found = [_sum_at(G, n, symbols[spec.out])]
    slots_of: dict[str, list[int]] = {}
    for slot, inp in inputs.items():
        slots_of.setdefault(inp.node, []).append(slot)
    for node, slots in slots_of.items():
        if len(slots) > 1:
            role = spec.roles[slots[0]] if slots[0] < len(spec.roles) else node
            found.append(_sum_at(G, node, symbols.get(role, role)))
    return tuple(s for s in found if s is not None)


def _accumulate_card(G: Graph, n: str) -> Card:
    leaf = next(iter(G.predecessors(n)), None)
    attrs = G.nodes[n]
    la: NodeAttrs = G.nodes[leaf] if leaf is not None else {}
    name = la.get("name") or str(leaf)
    grad, accumulated = attrs.get("grad"), la.get("grad")
    sent = G.edges[leaf, n, 0].get("grad") if leaf is not None else None
    incoming = grad or sent
    rule = Rule(
        0, str(leaf), name, f"{name}.grad += ∂L/∂{name}", f"{name}.grad += {show(incoming)}",
        sent, incoming, _agrees(incoming, sent),
    )  # fmt: skip
    note = "Backward ends here: the gradient that reached the leaf is added to its .grad."
    now, arrived = tensor(accumulated), tensor(incoming)
    if now is not None and arrived is not None and not torch.equal(now, arrived):
        note += (
            f" {name}.grad already held a gradient before this backward(), so it now holds the "
            "sum: zero it (optimizer.zero_grad() or x.grad = None) between steps."
        )
    sums = tuple(s for s in [_sum_at(G, n, name)] if s is not None)
    return Card(
        n, ACCUMULATE_GRAD, True, f"AccumulateGrad: into {name}.grad",
        f"{name}: a leaf tensor, shape {shape_text(la.get('shape'))}",
        f"∂L/∂{name} = {show(incoming)}" if incoming else f"∂L/∂{name}: not known (run backward())",
        incoming, (rule,), sums, note, accumulated,
    )  # fmt: skip
