"""Tensor summaries: the facts GradLab keeps of a tensor.

:func:`summarize_many` does the work for many tensors at once. Real floating
tensors of one device, dtype and shape are stacked and reduced along one
dimension, and the statistics and the small tensors' values come
back in one device-to-host transfer. So summarising every node of a
5,000-node backward costs a handful of kernels, and no per-node
synchronisation on a GPU.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import torch

from gradlab._gc import paused_gc
from gradlab.graph import HIST_BINS, MAX_VALUES, NestedFloats, TensorSummary

# Concatenate at most this many elements at once (256 MiB of float32).
_CHUNK_ELEMENTS = 1 << 26
_FAST_DTYPES = {torch.float16, torch.bfloat16, torch.float32, torch.float64}


@functools.cache
def dtype_name(dtype: torch.dtype) -> str:
    """``torch.float32`` -> ``"float32"``."""
    return str(dtype).removeprefix("torch.")


def summarize(t: torch.Tensor, histograms: bool = False) -> TensorSummary:
    """Summarise one tensor.

    Examples
    --------
    >>> s = summarize(torch.tensor([3.0, -4.0, float("nan")]))
    >>> s["norm"], s["min"], s["max"], s["nan"], s["values"]
    (5.0, -4.0, 3.0, 1, [3.0, -4.0, nan])
    """
    summary = summarize_many([t], histograms)[0]
    assert summary is not None
    return summary


def summarize_many(
    tensors: Sequence[torch.Tensor | None], histograms: bool = False
) -> list[TensorSummary | None]:
    """Summarise many tensors in one batch; ``None`` stays ``None``.

    A tensor object that appears several times is summarised once (the same
    summary object is returned for each place). ``histograms`` adds ``hist``
    to tensors of more than ``MAX_VALUES`` elements (it costs a few passes
    over the data).
    """
    out: list[TensorSummary | None] = [None] * len(tensors)
    first: dict[int, int] = {}  # id(tensor) -> position of its first appearance
    by_device: dict[torch.device, list[int]] = {}
    for i, t in enumerate(tensors):
        if t is None or id(t) in first:
            continue
        first[id(t)] = i
        if t.dtype in _FAST_DTYPES and t.layout == torch.strided and t.numel() > 0:
            by_device.setdefault(t.device, []).append(i)
        else:
            out[i] = _summarize_one(t, histograms)
    with paused_gc():
        for device, indices in by_device.items():
            if device.type == "meta":
                for i in indices:
                    out[i] = _summarize_one(tensors[i], histograms)  # type: ignore[arg-type]
                continue
            real = [tensors[i] for i in indices]
            for i, summary in zip(indices, _summarize_device(real, histograms), strict=True):  # type: ignore[arg-type]
                out[i] = summary
        for i, t in enumerate(tensors):
            if t is not None and out[i] is None:
                out[i] = out[first[id(t)]]
    return out


@torch.no_grad()
def _summarize_device(tensors: Sequence[torch.Tensor], histograms: bool) -> list[TensorSummary]:
    """Real floating, non-empty tensors of one device.

    Each tensor becomes a row: a small one (values kept) its elements in
    logical order; a bigger one, when it is dense and does not overlap itself,
    the block of memory it covers, in memory order (no copy), else its
    elements in logical order. Rows of one dtype and length are stacked into
    a ``(k, n)`` matrix and reduced along ``dim=1``: a few kernels for every
    distinct size, whatever the shapes and memory layouts. A view that covers
    the same block as another tensor (a reshape, a transpose, a permute: most
    of a transformer's view ops) has the same elements, so its statistics are
    the other's, computed once. Every group's statistics and the small
    tensors' values then come back in one transfer.
    """
    groups: dict[tuple[torch.dtype, int], list[int]] = {}
    rows: list[torch.Tensor | None] = [None] * len(tensors)
    blocks: dict[tuple[int, int, torch.dtype, bool], int] = {}  # memory block -> first tensor on it
    same: list[tuple[int, int]] = []  # (tensor, the tensor whose statistics it shares)
    for j, t in enumerate(tensors):
        n = t.numel()
        if n > MAX_VALUES and _dense(t):
            block = (t.data_ptr(), n, t.dtype, t.is_neg())
            first = blocks.get(block)
            if first is not None:
                same.append((j, first))
                continue
            blocks[block] = j
            rows[j] = t.as_strided((n,), (1,))  # its memory, in memory order
        else:
            # reshape copies a strided, expanded or channels-last tensor, in logical order
            rows[j] = t.reshape(-1)
        groups.setdefault((t.dtype, n), []).append(j)
    parts: list[torch.Tensor] = []
    layout: list[tuple[list[int], int]] = []
    for (dtype, n), members in groups.items():
        for chunk in _chunks(members, n) if len(members) * n > _CHUNK_ELEMENTS else (members,):
            if len(chunk) == 1:
                x = rows[chunk[0]].unsqueeze(0)  # type: ignore[union-attr]
            else:
                x = torch.stack([rows[j] for j in chunk])  # type: ignore[misc]
            if dtype in (torch.float16, torch.bfloat16):
                x = x.float()  # their squares overflow at 65504
            # separate amin and amax outrun aminmax along rows on the CPU
            low, high = torch.amin(x, dim=1), torch.amax(x, dim=1)
            # 4 x (k,), then the values; the one cat below widens them all to float64
            parts += [x.sum(1), torch.linalg.vector_norm(x, dim=1), low, high]
            if n <= MAX_VALUES:
                parts.append(x.reshape(-1))  # widening is exact
            elif histograms:
                parts.append(_histograms(x, low, high).reshape(-1))
            layout.append((chunk, n))
    flat = torch.cat(parts).to(torch.float64).tolist()  # the one device-to-host transfer
    out: list[TensorSummary | None] = [None] * len(tensors)
    offset = 0
    for chunk, n in layout:
        k = len(chunk)
        sums, norms, mins, maxs = (flat[offset + r * k : offset + (r + 1) * k] for r in range(4))
        offset += 4 * k
        width = n if n <= MAX_VALUES else HIST_BINS if histograms else 0
        for r, j in enumerate(chunk):
            t = tensors[j]
            shape = list(t.shape)
            part = flat[offset + r * width : offset + (r + 1) * width]
            if math.isfinite(sums[r]) and math.isfinite(norms[r]):
                out[j] = {
                    "shape": shape,
                    "dtype": dtype_name(t.dtype),
                    "numel": n,
                    "norm": norms[r],
                    "mean": sums[r] / n,
                    "min": mins[r],
                    "max": maxs[r],
                    "nan": 0,
                    "inf": 0,
                    "values": _nest(part, shape) if n <= MAX_VALUES else None,
                    "hist": [int(c) for c in part] if width == HIST_BINS else None,
                }
            else:  # a NaN or an Inf inside (or an overflow): count them exactly
                out[j] = _summarize_one(t, histograms)
        offset += k * width
    for j, first in same:
        shared = out[first]
        assert shared is not None
        out[j] = {**shared, "shape": list(tensors[j].shape)}
    return [s for s in out if s is not None]


def _dense(t: torch.Tensor) -> bool:
    """Whether ``t`` covers a block of memory exactly: every element once, no gaps."""
    if t.is_contiguous():
        return True
    expected = 1
    for stride, size in sorted(zip(t.stride(), t.shape, strict=True)):
        if size != 1:
            if stride != expected:
                return False
            expected *= size
    return True


def _histograms(x: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """Per row of ``x`` (k, n): counts in HIST_BINS equal bins over [low, high], float64."""
    span = (high - low).clamp_min(torch.finfo(x.dtype).tiny)[:, None]
    bins = ((x - low[:, None]) / span * HIST_BINS).long().clamp_(0, HIST_BINS - 1)
    counts = torch.zeros(x.shape[0], HIST_BINS, dtype=torch.float64, device=x.device)
    return counts.scatter_add_(1, bins, torch.ones_like(bins, dtype=torch.float64))


def _chunks(members: list[int], n: int) -> list[list[int]]:
    """Split a group so that no stacked matrix exceeds the element budget."""
    per = max(1, _CHUNK_ELEMENTS // n)
    return [members[i : i + per] for i in range(0, len(members), per)]


@torch.no_grad()
def _summarize_one(t: torch.Tensor, histograms: bool) -> TensorSummary:
    """The slow path: complex, integer, boolean, empty, sparse or meta tensors."""
    t = t.detach()
    summary = TensorSummary(
        shape=list(t.shape),
        dtype=dtype_name(t.dtype),
        numel=t.numel(),
        norm=None,
        mean=None,
        min=None,
        max=None,
        nan=0,
        inf=0,
        values=None,
        hist=None,
    )
    if t.device.type == "meta" or t.numel() == 0:
        return summary
    if t.layout != torch.strided:
        t = t.to_dense()
    if t.is_complex():
        magnitude = t.abs().double()
    else:
        magnitude = t.double()
        if t.numel() <= MAX_VALUES:
            summary["values"] = t.tolist()
    finite = torch.isfinite(magnitude)
    summary["nan"] = int(torch.isnan(magnitude).sum())
    summary["inf"] = t.numel() - int(finite.sum()) - summary["nan"]
    kept = magnitude[finite]
    if kept.numel():
        summary["norm"] = float(torch.linalg.vector_norm(kept))
        summary["mean"] = float(kept.mean())
        low, high = torch.aminmax(kept)
        summary["min"], summary["max"] = float(low), float(high)
        if histograms and t.numel() > MAX_VALUES:
            counts = _histograms(kept[None, :], low[None], high[None])
            summary["hist"] = [int(c) for c in counts[0].tolist()]
    return summary


def _nest(flat: list[float], shape: list[int]) -> NestedFloats:
    """Reshape a flat list into nested lists of ``shape`` (a scalar for ``[]``)."""
    if not shape:
        return flat[0]
    nested: list[NestedFloats] = list(flat)
    for size in reversed(shape[1:]):
        nested = [nested[i : i + size] for i in range(0, len(nested), size)]
    return nested
