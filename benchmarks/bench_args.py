"""What reading the ops' scalar arguments (``args``) costs ``trace``, as ratios in one run.

Run: python benchmarks/bench_args.py [--depth 1000] [--repeat 61]

On the 1,000-layer MLP of ``bench_core.py``, interleaved round by round:

* a bare ``next_functions`` walk into networkx (the baseline of ``bench_core.py``);
* ``gradlab.trace(values=False)``, which reads no ``args``;
* ``gradlab.trace()`` (values and ``args``) with ``args`` replaced by an empty dict;
* ``gradlab.trace()`` as it is.

It also times :func:`gradlab.core.trace.op_args` alone over every op node. Medians;
the machine may be shared, so compare the ratios, not the times.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
from bench_core import bare_walk  # this folder is on sys.path when run
from timing import compare, timed

import gradlab
from gradlab.zoo.models import mlp

tracing = sys.modules["gradlab.core.trace"]  # the module (gradlab.trace is the function)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--depth", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=61)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = mlp(args.depth, 32, inputs=32)
    with gradlab.record():
        out = model(torch.randn(16, 32)).sum()
    real = tracing.op_args

    def without_args() -> float:
        tracing.op_args = lambda fn: {}
        try:
            return timed(lambda: gradlab.trace(out, model=model))()
        finally:
            tracing.op_args = real

    table = compare(
        {
            "bare walk": timed(lambda: bare_walk(out)),
            "trace, structure only": timed(lambda: gradlab.trace(out, model=model, values=False)),
            "trace, values, no args": without_args,
            "trace, values and args": timed(lambda: gradlab.trace(out, model=model)),
        },
        args.repeat,
    )
    fns = [fn for fn in tracing.walk([out.grad_fn])[0] if type(fn).__name__ != "AccumulateGrad"]
    alone = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        for fn in fns:
            real(fn)
        alone.append(time.perf_counter() - start)
    print(f"MLP {args.depth} layers: {len(fns)} op nodes besides AccumulateGrad, "
          f"medians of {args.repeat}\n")  # fmt: skip
    print(f"{'measure':<28} {'ms':>8} {'vs bare walk':>13} {'vs no args':>17}")
    bare, without = table["bare walk"][0], table["trace, values, no args"][0]
    for name, (seconds, _) in table.items():
        print(f"{name:<28} {seconds * 1000:8.1f} {seconds / bare:12.2f}x "
              f"{seconds / without:16.3f}x")  # fmt: skip
    per_node = statistics.median(alone) / len(fns) * 1e6
    print(f"op_args alone: {statistics.median(alone) * 1000:.1f} ms, {per_node:.2f} µs per node")


if __name__ == "__main__":
    main()
