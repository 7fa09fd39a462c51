"""Rules of the ops behind nn layers and losses: conv2d, max-pool, dropout, layer norm,
embedding, MSE and NLL (cross-entropy) losses."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gradlab.teach.derivatives import Derived, Facts, Missing, Spec, Term, Values, num, rule, saved

_REDUCTIONS = {0: "none", 1: "mean", 2: "sum"}  # at::Reduction, as the ops save it


def _pair(f: Facts, key: str, default: int) -> tuple[int, int]:
    value = f.args.get(key) or [default, default]
    a, b = [int(v) for v in value] if isinstance(value, list) else [int(value)] * 2
    return a, b


def _columns(x: torch.Tensor, kernel: tuple[int, int], f: Facts) -> torch.Tensor:
    """im2col: every kernel-sized patch of ``x`` as a column, (N, C·kh·kw, L)."""
    dilation, padding = _pair(f, "dilation", 1), _pair(f, "padding", 0)
    return F.unfold(x, kernel, dilation, padding, _pair(f, "stride", 1))


def _conv_input(v: Values, f: Facts) -> torch.Tensor:
    x, w, g = v["X"], v["W"], v["g"]
    groups = int(f.args.get("groups", 1))
    n = g.shape[0]
    kernel = (int(w.shape[2]), int(w.shape[3]))
    parts = []
    for wk, gk in zip(w.chunk(groups, 0), g.chunk(groups, 1), strict=True):
        cols = wk.reshape(wk.shape[0], -1).mT @ gk.reshape(n, gk.shape[1], -1)  # (N, C·k·k, L)
        size = (int(x.shape[2]), int(x.shape[3]))
        parts.append(F.fold(cols, size, kernel, _pair(f, "dilation", 1),
                            _pair(f, "padding", 0), _pair(f, "stride", 1)))  # fmt: skip
    return torch.cat(parts, 1)


def _conv_weight(v: Values, f: Facts) -> torch.Tensor:
    x, w, g = v["X"], v["W"], v["g"]
    groups = int(f.args.get("groups", 1))
    n = g.shape[0]
    parts = []
    for xk, wk, gk in zip(x.chunk(groups, 1), w.chunk(groups, 0), g.chunk(groups, 1), strict=True):
        cols = _columns(xk, (int(w.shape[2]), int(w.shape[3])), f)  # (N, C·kh·kw, L)
        grad = (gk.reshape(n, gk.shape[1], -1) @ cols.mT).sum(0)  # (O, C·kh·kw)
        parts.append(grad.reshape(wk.shape))
    return torch.cat(parts, 0)


def _conv2d_only(f: Facts) -> None:
    if f.args.get("transposed") or len(f.args.get("stride") or []) != 2:
        raise Missing("a 2-d, non-transposed convolution")


@rule("ConvolutionBackward0")
def _conv(f: Facts) -> Spec:
    def grad_input(v: Values) -> torch.Tensor:
        _conv2d_only(f)
        return _conv_input(v, f)

    def grad_weight(v: Values) -> torch.Tensor:
        _conv2d_only(f)
        return _conv_weight(v, f)

    stride, padding = f.args.get("stride"), f.args.get("padding")
    return Spec(
        "Convolution", f"{{Y}} = conv({{X}}, {{W}}, stride={num(stride)}, padding={num(padding)})"
        " + {b}", ("X", "W", "b"), "Y",
        (Term(0, "conv_transpose({g}, {W}): every patch of X gets W times the gradient of the "
                 "outputs it fed", grad_input),
         Term(1, "Σ over batch and positions of {g} ⊙ the X patch under the kernel "
                 "(correlate X with ∂L/∂Y)", grad_weight),
         Term(2, "Σ of {g} over batch, height and width",
              lambda v: v["g"].sum([0, *range(2, v["g"].dim())]))),
        "Worked out here for 2-d convolutions (the im2col form: unfold X into patches).",
    )  # fmt: skip


@rule("MaxPool2DWithIndicesBackward0")
def _max_pool(f: Facts) -> Spec:
    kernel = _pair(f, "kernel_size", 1)
    stride = f.args.get("stride") or kernel

    def recompute(v: Values) -> torch.Tensor:
        padding, dilation = _pair(f, "padding", 0), _pair(f, "dilation", 1)
        ceil = bool(f.args.get("ceil_mode", False))
        return F.max_pool2d(v["x"], kernel, stride, padding, dilation, ceil, return_indices=True)[1]

    derived = saved(f, "result1", "i", "where each window's max is") or (
        Derived("i", "i: where each window's max is, recomputed from x", recompute),
    )

    def grad(v: Values) -> torch.Tensor:
        x, g, i = v["x"], v["g"], v["i"]
        flat = torch.zeros(*x.shape[:-2], x.shape[-2] * x.shape[-1], dtype=g.dtype)
        return flat.scatter_add(-1, i.flatten(-2), g.flatten(-2)).reshape(x.shape)

    return Spec(
        "Max-pool 2-d", f"{{y}} = max_pool2d({{x}}, kernel={num(kernel)}, stride={num(stride)})",
        ("x",), "y",
        (Term(0, "{g} sent to the max of each window (0 elsewhere; overlaps add up)", grad),),
        "Only the largest element of a window affected the output.", derived,
    )  # fmt: skip


@rule("NativeDropoutBackward0")
def _dropout(f: Facts) -> Spec:
    p = f.args.get("p", 0.5)
    assert isinstance(p, float | int)
    scale = 0.0 if p == 1 else 1 / (1 - p)

    def back(v: Values) -> torch.Tensor:
        if not bool((v["x"] != 0).all()):
            raise Missing("m")
        return v["y"] != 0

    derived = saved(f, "result1", "m", "the mask of kept elements") or (
        Derived("m", "m = [y ≠ 0]: the kept elements, read back from the values", back),
    )
    return Spec(
        "Dropout", f"{{y}} = {{x}} ⊙ m / (1 − {num(p)})", ("x",), "y",
        (Term(0, f"{{g}} ⊙ {{m}} / (1 − {num(p)})", lambda v: v["g"] * v["m"] * scale),),
        "Dropped elements get no gradient; kept ones get it scaled like the forward.", derived,
    )  # fmt: skip


@rule("NativeLayerNormBackward0")
def _layer_norm(f: Facts) -> Spec:
    shape = f.args.get("normalized_shape") or []
    k = len(shape) if isinstance(shape, list) else 1
    derived = saved(f, "result1", "mu", "the mean") + saved(f, "result2", "rstd", "1/σ")

    def parts(v: Values) -> tuple[torch.Tensor, torch.Tensor]:
        x = v["x"]
        d = list(range(x.dim() - k, x.dim()))
        mu = v["mu"] if "mu" in v else x.mean(d, keepdim=True)
        if "rstd" in v:
            rstd = v["rstd"]
        else:  # eps is not kept by the op: assume the default
            rstd = torch.rsqrt(x.var(d, unbiased=False, keepdim=True) + 1e-5)
        return (x - mu) * rstd, rstd

    def grad_x(v: Values) -> torch.Tensor:
        xhat, rstd = parts(v)
        d = list(range(xhat.dim() - k, xhat.dim()))
        gh = v["g"] * v["w"] if 1 in f.slots or "w" in v else v["g"]
        return rstd * (gh - gh.mean(d, keepdim=True) - xhat * (gh * xhat).mean(d, keepdim=True))

    def batch(t: torch.Tensor) -> torch.Tensor:
        return t.sum(list(range(t.dim() - k))) if t.dim() > k else t

    return Spec(
        "Layer norm", f"{{y}} = x̂ ⊙ {{w}} + {{b}}, x̂ = ({{x}} − μ)/σ over the last {k} dim(s)",
        ("x", "w", "b"), "y",
        (Term(0, "(ĝ − mean(ĝ) − x̂ ⊙ mean(ĝ ⊙ x̂)) / σ, with ĝ = {g} ⊙ {w}", grad_x),
         Term(1, "Σ over the batch of {g} ⊙ x̂", lambda v: batch(v["g"] * parts(v)[0])),
         Term(2, "Σ over the batch of {g}", lambda v: batch(v["g"]))),
        "μ and σ depend on every element of a row, hence the two mean terms. Without the saved "
        "1/σ (show_saved=True) σ is recomputed with the default eps = 1e-5.",
        derived,
    )  # fmt: skip


@rule("EmbeddingBackward0")
def _embedding(f: Facts) -> Spec:
    rows = int(f.args.get("weight_sym_argsize_0", 0))
    pad = f.args.get("padding_idx", -1)
    derived = saved(f, "indices", "i", "the looked-up rows")

    def grad(v: Values) -> torch.Tensor:
        i, g = v["i"].flatten(), v["g"]
        out = torch.zeros(rows, g.shape[-1], dtype=g.dtype)
        weights = g.reshape(-1, g.shape[-1])
        if f.args.get("scale_grad_by_freq"):
            weights = weights / torch.bincount(i, minlength=rows)[i].unsqueeze(1)
        out.index_add_(0, i, weights)
        if isinstance(pad, int) and pad >= 0:
            out[pad] = 0
        return out

    return Spec(
        "Embedding", "{y} = {W}[i] (row i of W for every index)", ("W",), "y",
        (Term(0, "zeros, with row {i}[k] += {g}[k] for every k (repeated rows add up)", grad),),
        "Only the rows looked up get a gradient."
        + ("" if derived else " The indices are a saved tensor: trace with show_saved=True "
           "before backward() to see them."),
        derived,
    )  # fmt: skip


@rule("MseLossBackward0")
def _mse(f: Facts) -> Spec:
    how = _REDUCTIONS.get(f.args.get("reduction", 1), "mean")
    derived = () if 1 in f.slots else saved(f, "target", "t", "the target")

    def scale(v: Values) -> torch.Tensor:
        diff = 2 * (v["a"] - v["t"])
        return v["g"] * (diff / diff.numel() if how == "mean" else diff)

    per = " / N" if how == "mean" else ""
    return Spec(
        "MSE loss", f"{{L}} = {how}(({{a}} − {{t}})²)", ("a", "t"), "L",
        (Term(0, f"{{g}} · 2·({{a}} − {{t}}){per}", scale),
         Term(1, f"−{{g}} · 2·({{a}} − {{t}}){per}", lambda v: -scale(v))),
        "N is the number of elements." if how == "mean" else "",
        derived,
    )  # fmt: skip


@rule("NllLossBackward0", "NllLoss2DBackward0")
def _nll(f: Facts) -> Spec:
    how = _REDUCTIONS.get(f.args.get("reduction", 1), "mean")
    ignore = f.args.get("ignore_index", -100)
    derived = saved(f, "target", "t", "the target classes")
    derived += saved(f, "weight", "w", "class weights")

    def grad(v: Values) -> torch.Tensor:
        x, t, g = v["x"], v["t"], v["g"]
        batched = x.dim() > 1
        xs, ts = (x, t) if batched else (x.unsqueeze(0), t.unsqueeze(0))
        w = v["w"] if "w" in v else torch.ones(xs.shape[1], dtype=x.dtype)
        keep = ts != ignore
        safe = torch.where(keep, ts, torch.zeros_like(ts))
        weight = w[safe] * keep
        total = weight.sum() if how == "mean" else torch.ones((), dtype=x.dtype)
        per = -(g * weight / total if how != "none" else g * weight)
        out = torch.zeros_like(xs).scatter(1, safe.unsqueeze(1), per.unsqueeze(1))
        return out if batched else out.squeeze(0)

    after_log_softmax = f.inputs.get(0) == "LogSoftmaxBackward0"
    return Spec(
        "Cross-entropy (NLL loss)" if after_log_softmax else "NLL loss",
        f"{{L}} = {how} over i of −{{x}}[i, t_i]", ("x",), "L",
        (Term(0, "−{g}" + (" / N" if how == "mean" else "")
              + " at row i, column {t}[i]; 0 elsewhere",
              grad),),
        ("With the log_softmax before it this is cross-entropy; together they give "
         "(softmax − one-hot(t)) / N. " if after_log_softmax else "")
        + ("N counts the rows not ignored (weighted by class weights when given)."
           if how == "mean" else "")
        + ("" if derived else " The targets are a saved tensor: trace with show_saved=True "
           "before backward() to see them."),
        derived,
    )  # fmt: skip

