"""Distributed data parallel: each rank its own batch, gradients averaged by DDP."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from gradlab.plugins import FloatParam, IntParam, Parts, Scenario, Setup, StepContext


def build(setup: Setup) -> Parts:
    """A small regression MLP wrapped in DDP; rank r trains on its own shard of the data."""
    g = setup.generator  # the same seed on every rank: the same data, sharded below
    n = setup.integer("points")
    x = torch.randn(n, 4, generator=g)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]]) + 0.1 * torch.randn(n, 1, generator=g)
    shard = slice(setup.rank, None, setup.world_size)  # rank r takes every world_size-th point
    inner = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 1)).to(setup.device)
    device_ids = [setup.device.index] if setup.device.type == "cuda" else None
    model = DistributedDataParallel(inner, device_ids=device_ids)
    optimizer = torch.optim.SGD(model.parameters(), lr=setup.number("lr"))
    loss_fn = nn.MSELoss()

    def step(ctx: StepContext) -> torch.Tensor:
        inputs, target = ctx.batch()
        params = list(inner.parameters())
        # This rank's own gradient, before DDP averages: autograd.grad on the inner module.
        local = torch.autograd.grad(loss_fn(inner(inputs), target), params)
        optimizer.zero_grad()
        loss: torch.Tensor = loss_fn(model(inputs), target)
        ctx.backward(loss)  # DDP's hooks all-reduce and average the gradients here
        flat = torch.cat([p.grad.flatten() for p in params])  # type: ignore[union-attr]
        expected = torch.cat([g.flatten() for g in local])
        dist.all_reduce(expected)
        expected /= dist.get_world_size()
        gathered = [torch.empty_like(flat) for _ in range(dist.get_world_size())]
        dist.all_gather(gathered, flat)
        losses = [torch.empty_like(loss.detach()) for _ in range(dist.get_world_size())]
        dist.all_gather(losses, loss.detach())
        for rank, value in enumerate(losses):
            ctx.log(f"loss_rank{rank}", value)
        ctx.log("grad_diff_across_ranks", max((t - flat).abs().max() for t in gathered))
        ctx.log("grad_diff_vs_mean_of_ranks", (flat - expected).abs().max())
        optimizer.step()
        return loss

    return Parts(
        model=model,
        batches=[(x[shard], y[shard])],
        loss_fn=loss_fn,
        optimizer=optimizer,
        step=step,
    )


SCENARIO = Scenario(
    name="ddp",
    title="Distributed data parallel",
    description=(
        "`processes` workers started by `torchrun` on this machine join one process group "
        "(`gloo` on CPU, `nccl` on GPU). Each rank wraps the same MLP (same seed, same initial "
        "weights) in `DistributedDataParallel` and trains on its own shard of the data. During "
        "`backward()` DDP all-reduces the gradients, so every rank ends the step with the mean "
        "of all ranks' gradients. Each step records every rank's loss (`loss_rank<r>`), the "
        "largest difference between the ranks' gradients (`grad_diff_across_ranks`, 0) and "
        "between DDP's gradient and the mean of the ranks' own (`grad_diff_vs_mean_of_ranks`, "
        "rounding only). Across machines: run the same `gradlab train ddp` under `torchrun "
        "--nnodes=N --node-rank=I --rdzv-endpoint=HOST:PORT` on each."
    ),
    build=build,
    params=(
        IntParam("processes", 2, 1, 8, "worker processes torchrun starts"),
        IntParam("points", 256, 8, 100_000, "points, split between the ranks"),
        FloatParam("lr", 0.05, 1e-4, 1.0, "SGD learning rate", log=True),
    ),
    steps=30,
    every=5,
    distributed=True,
)
