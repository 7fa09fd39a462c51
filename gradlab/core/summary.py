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
from torch._utils import _flatten_dense_tensors

from gradlab.core._gc import paused_gc
from gradlab.core.graph import HIST_BINS, MAX_VALUES, NestedFloats, TensorSummary

# Concatenate at most this many elements at once (256 MiB of float32).
_CHUNK_ELEMENTS = 1 << 26
_ALONE = 1 << 16  # tensors of this many elements or more are reduced one by one
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
    # (device, dtype, numel) -> positions whose rows are stacked and reduced together
    groups: dict[tuple[int, torch.dtype, int], list[int]] = {}
    rows: dict[int, torch.Tensor] = {}
    blocks: dict[tuple[int, int, torch.dtype, bool], int] = {}  # memory block -> first on it
    same: list[tuple[int, int]] = []  # (position, the position whose statistics it shares)
    repeated = False
    fast, strided = _FAST_DTYPES, torch.strided
    # One tight pass: a real model's trace summarises thousands of tensors.
    with paused_gc(), torch.no_grad():
        for i, t in enumerate(tensors):
            if t is None:
                continue
            if id(t) in first:
                repeated = True
                continue
            first[id(t)] = i
            n = t.numel()
            if not (n and t.dtype in fast and t.layout is strided) or t.is_meta:
                out[i] = _summarize_one(t, histograms)
                continue
            if n > MAX_VALUES:
                contiguous = t.is_contiguous()
                if contiguous or _dense(t):
                    # A view that covers the same block of memory as another tensor (a
                    # reshape, a transpose, a permute) has the same elements.
                    block = (t.data_ptr(), n, t.dtype, t.is_neg())
                    shared = blocks.get(block)
                    if shared is not None:
                        same.append((i, shared))
                        continue
                    blocks[block] = i
                    # its memory, in memory order
                    rows[i] = t.view(-1) if contiguous else t.as_strided((n,), (1,))
                else:
                    rows[i] = t.reshape(-1)  # strided or expanded: a copy, in logical order
            else:  # values kept: flattened all at once, in logical order, below
                groups.setdefault((t.get_device(), t.dtype, 0), []).append(i)
                continue
            # A big tensor is reduced on its own: stacking would copy it for nothing.
            key = (t.get_device(), t.dtype, n if n < _ALONE else -1 - i)
            groups.setdefault(key, []).append(i)
        by_device: dict[int, list[tuple[torch.dtype, int, list[int]]]] = {}
        for (device, dtype, n), members in groups.items():
            size = n if n >= 0 else tensors[members[0]].numel()  # type: ignore[union-attr]
            by_device.setdefault(device, []).append((dtype, size, members))
        for device_groups in by_device.values():
            _summarize_device(tensors, rows, device_groups, histograms, out)  # type: ignore[arg-type]
    for i, shared in same:
        summary, t = out[shared], tensors[i]
        assert summary is not None and t is not None
        copied = summary.copy()
        copied["shape"] = list(t.shape)
        out[i] = copied
    if repeated:
        for i, t in enumerate(tensors):
            if t is not None and out[i] is None:
                out[i] = out[first[id(t)]]
    return out


def _summarize_device(
    tensors: Sequence[torch.Tensor],
    rows: dict[int, torch.Tensor],
    groups: list[tuple[torch.dtype, int, list[int]]],
    histograms: bool,
    out: list[TensorSummary | None],
) -> None:
    """Summarise the real floating, non-empty tensors of one device, by their rows.

    The small tensors (values kept) of one dtype are flattened in one call, in
    logical order, and their statistics computed from the values. A bigger
    tensor's row is its block of memory in memory order (no copy) when it is
    dense and does not overlap itself, else its elements in logical order. Rows of one dtype
    and length are stacked into a ``(k, n)`` matrix and reduced along ``dim=1``:
    five kernels for every distinct size, whatever the shapes and memory
    layouts (``_foreach`` reductions over the list measured slower on the CPU).
    Every group's statistics and the small tensors' values then come back in
    one transfer.
    """
    parts: list[torch.Tensor] = []
    layout: list[tuple[list[int], int, str]] = []
    for dtype, n, members in groups:
        if n == 0:  # small tensors: their values in one call; statistics from the values
            parts.append(_flatten_dense_tensors([tensors[j] for j in members]))  # type: ignore[no-untyped-call]
            layout.append((members, 0, dtype_name(dtype)))
            continue
        for chunk in _chunks(members, n) if len(members) * n > _CHUNK_ELEMENTS else (members,):
            if len(chunk) == 1:
                x = rows[chunk[0]].unsqueeze(0)
            else:
                x = torch.stack([rows[j] for j in chunk])
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
            layout.append((chunk, n, dtype_name(dtype)))
    flat = torch.cat(parts).to(torch.float64).tolist()  # the one device-to-host transfer
    offset = 0
    for chunk, n, dname in layout:
        k = len(chunk)
        if n == 0:
            offset = _from_values(tensors, chunk, dname, flat, offset, out)
            continue
        sums, norms, mins, maxs = (flat[offset + r * k : offset + (r + 1) * k] for r in range(4))
        offset += 4 * k
        width = n if n <= MAX_VALUES else HIST_BINS if histograms else 0
        small, hist = n <= MAX_VALUES, width == HIST_BINS
        for r, j in enumerate(chunk):
            total, norm = sums[r], norms[r]
            if total - total != 0 or norm - norm != 0:  # a NaN or an Inf (or an overflow)
                out[j] = _summarize_one(tensors[j], histograms)  # count them exactly
                continue
            shape = list(tensors[j].shape)
            part: list[float] = flat[offset + r * width : offset + (r + 1) * width]
            out[j] = {
                "shape": shape,
                "dtype": dname,
                "numel": n,
                "norm": norm,
                "mean": total / n,
                "min": mins[r],
                "max": maxs[r],
                "nan": 0,
                "inf": 0,
                "values": _nest(part, shape) if small else None,
                "hist": [int(c) for c in part] if hist else None,
            }
        offset += k * width


def _from_values(
    tensors: Sequence[torch.Tensor],
    chunk: list[int],
    dname: str,
    flat: list[float],
    offset: int,
    out: list[TensorSummary | None],
) -> int:
    """Summaries of small tensors from their values at ``flat[offset:]``; the new offset.

    Python's float64 sums over at most MAX_VALUES floats cost less than a kernel each.
    """
    for j in chunk:
        t = tensors[j]
        n = t.numel()
        values = flat[offset : offset + n]
        offset += n
        total = sum(values)
        if total - total != 0:  # a NaN or an Inf: count them exactly
            out[j] = _summarize_one(t, False)
            continue
        shape = list(t.shape)
        out[j] = {
            "shape": shape,
            "dtype": dname,
            "numel": n,
            "norm": math.hypot(*values),
            "mean": total / n,
            "min": min(values),
            "max": max(values),
            "nan": 0,
            "inf": 0,
            "values": _nest(values, shape),
            "hist": None,
        }
    return offset


def _dense(t: torch.Tensor) -> bool:
    """Whether ``t`` covers a block of memory exactly: every element once, no gaps."""
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
    kept = magnitude.where(finite, 0.0)
    # every count and statistic in one transfer (a sync each would cost more than them)
    counts = torch.stack([torch.isnan(magnitude).sum(), finite.sum()]).to(torch.float64)
    low = magnitude.where(finite, math.inf).amin()
    high = magnitude.where(finite, -math.inf).amax()
    nan, count, norm, total, lo, hi = torch.cat(
        [counts, torch.stack([torch.linalg.vector_norm(kept), kept.sum(), low, high])]
    ).tolist()
    summary["nan"] = int(nan)
    summary["inf"] = t.numel() - int(count) - summary["nan"]
    if count:
        summary["norm"], summary["mean"] = norm, total / count
        summary["min"], summary["max"] = lo, hi
        if histograms and t.numel() > MAX_VALUES:
            hist = _histograms(magnitude[finite][None, :], low[None], high[None])
            summary["hist"] = [int(c) for c in hist[0].tolist()]
    return summary


def _nest(flat: list[float], shape: list[int]) -> NestedFloats:
    """Reshape a flat list into nested lists of ``shape`` (a scalar for ``[]``)."""
    if not shape:
        return flat[0]
    nested: list[NestedFloats] = list(flat)
    for size in reversed(shape[1:]):
        nested = [nested[i : i + size] for i in range(0, len(nested), size)]
    return nested
