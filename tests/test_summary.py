"""Tensor summaries against torch's own reductions."""

import math

import pytest
import torch

from gradlab.core.graph import MAX_VALUES
from gradlab.core.summary import summarize, summarize_many


def finite_stats(t: torch.Tensor) -> tuple[float, float, float, float]:
    kept = t.detach().double()[torch.isfinite(t.detach())]
    return (
        float(torch.linalg.vector_norm(kept)),
        float(kept.mean()),
        float(kept.min()),
        float(kept.max()),
    )


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_statistics_match_torch(dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    t = torch.randn(7, 9).to(dtype)
    s = summarize(t)
    norm, mean, low, high = finite_stats(t)
    rel = 1e-2 if dtype in (torch.float16, torch.bfloat16) else 1e-6
    assert s["norm"] == pytest.approx(norm, rel=rel)
    assert s["mean"] == pytest.approx(mean, rel=rel, abs=1e-6)
    assert s["min"] == low  # min and max are exact: no arithmetic
    assert s["max"] == high
    assert (s["shape"], s["numel"], s["nan"], s["inf"]) == ([7, 9], 63, 0, 0)
    assert s["dtype"] == str(dtype).removeprefix("torch.")


def test_small_values_are_torchs_own_bits() -> None:
    t = torch.tensor([[1 / 3, -2.5], [1e-30, 7.0]], dtype=torch.float32)
    assert summarize(t)["values"] == t.tolist()
    assert summarize(torch.tensor(4.0))["values"] == 4.0  # a 0-d tensor is a scalar


def test_values_kept_only_up_to_the_limit() -> None:
    assert summarize(torch.zeros(MAX_VALUES))["values"] is not None
    assert summarize(torch.zeros(MAX_VALUES + 1))["values"] is None


def test_nan_and_inf_are_counted_and_statistics_use_finite_entries() -> None:
    t = torch.tensor([3.0, float("nan"), -4.0, float("inf"), float("-inf")])
    s = summarize(t)
    assert (s["nan"], s["inf"]) == (1, 2)
    assert s["norm"] == 5.0 and s["min"] == -4.0 and s["max"] == 3.0 and s["mean"] == -0.5
    assert math.isnan(s["values"][1]) and s["values"][3] == math.inf


def test_all_nonfinite_has_no_statistics() -> None:
    s = summarize(torch.full((3,), float("nan")))
    assert s["nan"] == 3 and s["norm"] is None and s["min"] is None


def test_batch_equals_one_by_one_and_keeps_order_and_none() -> None:
    torch.manual_seed(1)
    ts = [
        torch.randn(4),
        None,
        torch.randn(2, 3, dtype=torch.float64),
        torch.randn(100),
        torch.ones(4),
    ]
    batch = summarize_many(ts)
    assert batch[1] is None
    for t, s in zip(ts, batch, strict=True):
        if t is not None:
            assert s == summarize(t)


def test_the_same_tensor_twice_is_summarised_once() -> None:
    t = torch.randn(5)
    a, b = summarize_many([t, t])
    assert a is b


def test_empty_integer_bool_and_complex_tensors() -> None:
    assert summarize(torch.zeros(0))["norm"] is None
    ints = summarize(torch.tensor([1, 2, 2]))
    assert ints["values"] == [1, 2, 2] and ints["max"] == 2.0
    assert summarize(torch.tensor([True, False]))["values"] == [True, False]
    z = summarize(torch.tensor([3 + 4j]))
    assert z["norm"] == 5.0 and z["values"] is None  # JSON has no complex numbers


def test_a_float32_overflow_in_the_square_falls_back_to_exact_counting() -> None:
    t = torch.tensor([3e30, -3e30], dtype=torch.float32)  # squares overflow float32
    s = summarize(t)
    assert s["inf"] == 0 and s["norm"] == pytest.approx(math.hypot(3e30, 3e30), rel=1e-6)


def test_bigger_tensors_get_a_histogram_of_their_finite_entries() -> None:
    t = torch.cat([torch.zeros(60), torch.ones(40), torch.tensor([float("nan")])])
    for s in (summarize(t, histograms=True), summarize(t[:100], histograms=True)):  # slow, batch
        assert s["values"] is None and sum(s["hist"]) == 100
        assert s["hist"][0] == 60 and s["hist"][-1] == 40
    assert summarize(torch.zeros(3), histograms=True)["hist"] is None  # small: values instead
    assert summarize_many([t[:100]])[0]["hist"] is None  # only when asked
    torch.manual_seed(0)
    x = torch.randn(1000)
    want = torch.histc(x, bins=16, min=float(x.min()), max=float(x.max()))
    assert summarize(x, histograms=True)["hist"] == [int(c) for c in want]


def _layouts() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    base = torch.randn(2, 8, 4, 4)
    return {
        "channels_last": base.to(memory_format=torch.channels_last),
        "channels_last_3d": torch.randn(2, 3, 2, 2, 2).to(memory_format=torch.channels_last_3d),
        "transposed": base[0, 0].t(),
        "permuted_bfloat16": base.bfloat16().permute(0, 2, 3, 1),
        "channels_last_half": base.half().to(memory_format=torch.channels_last),
        "expanded": torch.randn(3, 1).expand(3, 5),
        "zero_stride": torch.randn(()).expand(4, 4),
        "strided_slice": base[:, ::2, :, 1::2],
        "overlapping": torch.randn(10).as_strided((4, 4), (1, 1)),
        "negative_view": torch._neg_view(base),
        "small_channels_last": torch.randn(1, 2, 2, 2).to(memory_format=torch.channels_last),
        "with_inf": torch.tensor([[1.0, float("inf")], [2.0, 3.0]]).t(),
    }


def _same(a: object, b: object) -> bool:
    """Equal summaries, the sum and the norm up to the order of the additions (a dense
    tensor is reduced in memory order, its contiguous copy in logical order)."""
    assert isinstance(a, dict) and isinstance(b, dict)
    exact = {k for k in a if k not in ("norm", "mean")}
    close = all(a[k] == pytest.approx(b[k], rel=1e-6) for k in ("norm", "mean"))
    return close and all(a[k] == b[k] for k in exact) and a.keys() == b.keys()


@pytest.mark.parametrize("name", list(_layouts()))
def test_every_memory_layout_summarises_as_its_contiguous_copy(name: str) -> None:
    t = _layouts()[name]
    assert not t.is_contiguous() or name in ("small_channels_last", "negative_view")
    assert _same(summarize(t), summarize(t.contiguous()))
    # batched with tensors of the same shape in other layouts: the same summaries (a
    # row's sum may round differently with the number of rows reduced beside it)
    got = summarize_many([t.contiguous(), t * 2, t, t.contiguous() * 2])
    assert _same(got[2], summarize(t)) and _same(got[0], summarize(t.contiguous()))
    assert _same(got[1], got[3])


def test_views_of_one_block_share_its_statistics_and_keep_their_shapes() -> None:
    torch.manual_seed(0)
    x = torch.randn(4, 8, 16)
    views = [x, x.transpose(0, 2), x.reshape(32, 16), x.permute(2, 0, 1), x[:, :4]]
    got = summarize_many(views)
    assert [s["shape"] for s in got] == [list(v.shape) for v in views]
    for s in got[1:4]:
        assert {k: v for k, v in s.items() if k != "shape"} == {
            k: v for k, v in got[0].items() if k != "shape"
        }
    assert got[4] == summarize(x[:, :4].contiguous())  # a part of the block: its own
    assert summarize_many([x, torch._neg_view(x)])[1]["max"] == -got[0]["min"]
