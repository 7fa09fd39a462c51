"""The process-wide module hooks (gradlab.core.hooks): installed once while anyone holds them."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import torch
from torch import nn
from torch.nn.modules import module as nn_module

from gradlab.core.hooks import GlobalHooks


def _installed() -> tuple[int, int, int, int]:
    return (
        len(nn_module._global_forward_pre_hooks),
        len(nn_module._global_forward_hooks),
        len(nn_module._global_forward_hooks_always_called),
        len(nn_module._global_parameter_registration_hooks),
    )


def test_hooks_exist_only_while_someone_holds_them() -> None:
    calls: list[str] = []
    hooks = GlobalHooks(
        forward_pre=lambda m, a: calls.append("pre"),
        forward=lambda m, a, o: calls.append("done"),
        parameter=lambda m, n, p: calls.append(f"param {n}"),
    )
    before = _installed()
    layer = nn.Linear(2, 2)
    hooks.acquire()
    hooks.acquire()  # a second user: nothing more is installed
    assert _installed() == (before[0] + 1, before[1] + 1, before[2], before[3] + 1)
    layer(torch.ones(2))
    layer.extra = nn.Parameter(torch.ones(1))
    assert calls == ["pre", "done", "param extra"]
    hooks.release()
    layer(torch.ones(2))  # one user left: still there
    assert calls[-1] == "done" and len(calls) == 5
    hooks.release()
    assert _installed() == before
    layer(torch.ones(2))
    assert len(calls) == 5


class _Raises(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise ValueError("no")


@pytest.mark.parametrize("always", [True, False])
def test_always_call_runs_the_forward_hook_when_forward_raises(always: bool) -> None:
    seen: list[Any] = []
    hooks = GlobalHooks(forward=lambda m, a, o: seen.append(m), always_call=always)
    module = _Raises()
    hooks.acquire()
    try:
        with pytest.raises(ValueError):
            module(torch.ones(1))
    finally:
        hooks.release()
    assert seen == ([module] if always else [])


def test_users_on_many_threads_leave_nothing_behind() -> None:
    hooks = GlobalHooks(forward=lambda m, a, o: None)
    before = _installed()
    start = threading.Barrier(8)

    def use() -> None:
        start.wait()
        for _ in range(50):
            hooks.acquire()
            nn.Identity()(torch.ones(1))
            hooks.release()

    threads = [threading.Thread(target=use) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert _installed() == before
