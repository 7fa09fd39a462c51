"""Chain-rule cards (:mod:`gradlab.teach.chain`) as Markdown, for the app's node details."""

from __future__ import annotations

from gradlab.teach.chain import Card, show

_AGREES = {
    True: "✓ the formula gives what PyTorch sent",
    False: "✗ differs from what PyTorch sent",
    None: "",
}


def card_markdown(c: Card) -> str:
    """The card as Markdown: formulas and numbers in code spans, so names stay literal.

    Examples
    --------
    >>> import torch, gradlab
    >>> from gradlab.teach.chain import card
    >>> x = torch.tensor([2.0, 3.0], requires_grad=True)
    >>> with gradlab.record():
    ...     loss = (x ** 2).sum()
    >>> G = gradlab.backward(loss, gradlab.trace(loss, params={"x": x}))
    >>> print(card_markdown(card(G, "fn1")).splitlines()[0])
    **Chain rule: Power** &nbsp; `y = x^2`
    """
    lines = [f"**Chain rule: {c.title}** &nbsp; `{c.forward}`", "", f"Arriving: `{c.incoming}`", ""]
    for r in c.rules:
        lines.append(f"*To {_name(r.name)}* (input {r.slot}, node `{r.input}`)  ")
        lines.append(f"`{r.formula}`  ")
        if r.numbers != r.formula:
            lines.append(f"`{r.numbers}`  ")
        check = _AGREES[r.agrees]
        lines.append(f"sent: `{show(r.result)}`" + (f" &nbsp; {check}" if check else ""))
        lines.append("")
    if c.accumulated is not None:
        lines += [f"`{c.rules[0].name}.grad` now: `{show(c.accumulated)}`", ""]
    for s in c.sums:
        lines += [
            f"*Paths meet at `{s.name}`* (node `{s.node}`): its gradient is the sum of "
            f"{len(s.parts)} edges  ",
            f"`{s.text}`",
            "",
        ]
    if c.note:
        lines.append(c.note)
    return "\n".join(lines)


def _name(name: str) -> str:
    return f"`{name}`"
