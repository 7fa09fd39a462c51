"""Saved-tensor memory as a page shows it: totals by holder, per-node colours, sizes in words.

:class:`gradlab.core.memory.SavedMemory` holds the facts; these functions turn
them into what the Model graph page (or a notebook) puts on screen.
"""

from __future__ import annotations

import math

from gradlab.core.collapse import sum_members
from gradlab.core.graph import Graph
from gradlab.core.memory import Holder, SavedMemory

HOLDERS: tuple[Holder, ...] = ("activation", "parameter", "input")


def by_holder(memory: SavedMemory) -> dict[Holder, int]:
    """Bytes of the distinct storages saved, by what holds them: the graph alone
    (activations), the model (parameters) or the caller (inputs)."""
    return {
        h: sum(t.storage_bytes for t in memory.tensors if t.first and t.holder == h)
        for h in HOLDERS
    }


def saved_log10(memory: SavedMemory, C: Graph) -> dict[str, float]:
    """log10 of the activation bytes each node of the view ``C`` adds (modules summed);
    nodes that add nothing are left out."""
    per_node = {n: float(b) for n, b in memory.per_node().items() if b}
    return {n: math.log10(b) for n, b in sum_members(C, per_node).items() if b > 0}


def human_bytes(n: int) -> str:
    """A size in bytes as people read it.

    Examples
    --------
    >>> human_bytes(512), human_bytes(1536), human_bytes(3 * 1024**3)
    ('512 B', '1.5 KiB', '3.0 GiB')
    """
    if n < 1024:
        return f"{n} B"
    size = float(n)
    for unit in ("KiB", "MiB", "GiB"):
        size /= 1024
        if size < 1024 or unit == "GiB":
            break
    return f"{size:.1f} {unit}"
