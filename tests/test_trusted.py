"""Trusted mode: refused unless enabled on localhost; limits, errors and output of pasted code.

Each run starts a python that imports torch (2-3 s), so the cases are few and
each checks several things.
"""

from __future__ import annotations

import time

import pytest
import torch

from gradlab.core.errors import GradLabError
from gradlab.isolation.trusted import EXAMPLE, TRUSTED_ENV, Limits, run_code, start, trusted_enabled

LOCAL = "127.0.0.1"
# The code box's example, seeded, with tanh, and a line of its own output.
SEEDED = (
    EXAMPLE.replace("from torch import nn\n", "from torch import nn\n\ntorch.manual_seed(0)\n")
    .replace("torch.relu(", "torch.tanh(")
    + 'print("built", sum(p.numel() for p in model.parameters()), "parameters")\n'
)


@pytest.fixture
def enabled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TRUSTED_ENV, "1")


def test_enabled_only_with_the_flag_and_a_local_address(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TRUSTED_ENV, raising=False)
    assert not trusted_enabled(LOCAL)
    monkeypatch.setenv(TRUSTED_ENV, "1")
    assert [trusted_enabled(a) for a in (LOCAL, "::1", "localhost", "127.0.0.5")] == [True] * 4
    assert [trusted_enabled(a) for a in (None, "", "0.0.0.0", "192.168.1.5", "example.org")] == [
        False
    ] * 5
    monkeypatch.setenv(TRUSTED_ENV, "yes")
    assert not trusted_enabled(LOCAL)


def test_refused_when_not_enabled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TRUSTED_ENV, raising=False)
    with pytest.raises(GradLabError, match="gradlab app --trusted"):
        start(EXAMPLE, address=LOCAL)
    monkeypatch.setenv(TRUSTED_ENV, "1")
    with pytest.raises(GradLabError, match="every network interface"):
        start(EXAMPLE, address=None)


def test_a_valid_model_runs_and_matches_torch(enabled: None) -> None:
    result = run_code(SEEDED, address=LOCAL)
    assert result.status == "ok", result.message
    assert result.stdout == "built 49 parameters\n" and result.message == ""
    run = result.run
    assert run is not None
    # The same code in this process, with plain torch, is the oracle.
    namespace: dict[str, object] = {}
    exec(SEEDED.replace("print(", "(lambda *_: None)("), namespace)
    model, x = namespace["model"], namespace["x"]
    assert isinstance(model, torch.nn.Module) and isinstance(x, torch.Tensor)
    loss = model(x).pow(2).mean()
    loss.backward()
    assert run.loss == pytest.approx(loss.item())
    norms = {r.name: r.grad_norm for r in run.params}
    for name, p in model.named_parameters():
        assert p.grad is not None
        assert norms[name] == pytest.approx(p.grad.norm().item(), rel=1e-5)
    modules = {m for _, m in run.graph.nodes(data="module") if m}
    assert modules == {"hidden", "out"}
    assert run.saved.activation_bytes > 0


def test_an_endless_loop_is_killed_at_the_time_limit(enabled: None) -> None:
    code = "import sys\nprint('started')\nwhile True:\n    pass\n"
    began = time.monotonic()
    result = run_code(code, address=LOCAL, limits=Limits(seconds=3))
    took = time.monotonic() - began
    assert result.status == "timeout"
    assert "time limit" in result.message and result.run is None
    assert result.seconds >= 3 and took < 60  # 3 s of its own CPU; the kernel's kill at 4
    assert result.stdout == "started\n"  # output up to the kill is kept


def test_the_kill_button_stops_a_run(enabled: None) -> None:
    job = start("while True:\n    pass\n", address=LOCAL, limits=Limits(seconds=60))
    assert not job.done()
    job.cancel()
    result = job.result(timeout=10)
    assert job.done()
    assert result.status == "cancelled" and "kill button" in result.message


def test_a_memory_bomb_is_stopped_at_the_memory_limit(enabled: None) -> None:
    code = "import torch\nblocks = []\nwhile True:\n    blocks.append(torch.ones(10**7))\n"
    result = run_code(code, address=LOCAL, limits=Limits(seconds=30, memory_mb=400))
    assert result.status == "memory"
    assert "400 MiB" in result.message and result.line == 4
    assert result.seconds < 30


def test_errors_name_the_line(enabled: None) -> None:
    syntax = run_code("import torch\n\nmodel = nn.Linear(3,\nx = 1\n", address=LOCAL)
    assert syntax.status == "error"
    assert syntax.line in (3, 4) and "SyntaxError" in syntax.message
    assert syntax.message.startswith(f"Line {syntax.line}:")
    broken = run_code(SEEDED.replace("self.hidden(x))", "self.hidden(x).t())"), address=LOCAL)
    assert broken.status == "error" and broken.line == 14  # in forward, called by GradLab
    assert "Line 14: RuntimeError: mat1 and mat2 shapes cannot be multiplied" in broken.message
    assert "return self.out(torch.tanh(self.hidden(x).t()))" in broken.message
    missing = run_code(EXAMPLE.replace("model = Net()", "net = Net()"), address=LOCAL)
    assert missing.status == "error" and "must define `model`" in missing.message


def test_the_diagnose_task_sends_back_the_debugger_s_report(enabled: None) -> None:
    healthy = run_code(SEEDED, address=LOCAL, task="diagnose")
    assert healthy.status == "ok", healthy.message
    assert healthy.run is None and healthy.report is not None
    assert healthy.report.findings == () and healthy.stdout == "built 49 parameters\n"
    assert {m for _, m in healthy.report.graph.nodes(data="module") if m} == {"hidden", "out"}
    masked = SEEDED.replace(
        "loss = lambda out: out.pow(2).mean()",
        "loss = lambda out: torch.where(out > 0, out.sqrt(), torch.zeros_like(out)).sum()",
    )
    result = run_code(masked, address=LOCAL, task="diagnose")
    assert result.status == "ok" and result.report is not None
    (finding,) = result.report.findings
    assert (finding.kind, finding.cause) == ("nonfinite_backward", "sqrt")
    assert result.report.graph.nodes[finding.nodes[0]]["op"] == "SqrtBackward0"
    namespace: dict[str, object] = {}  # the premise, in plain torch: a NaN gradient
    exec(masked.replace("print(", "(lambda *_: None)("), namespace)
    model, x, loss = namespace["model"], namespace["x"], namespace["loss"]
    loss(model(x)).backward()  # type: ignore[operator]
    assert torch.isnan(model.hidden.weight.grad).any()  # type: ignore[union-attr]
    pair = (
        "import torch\nfrom torch import nn\n\n\nclass Two(nn.Module):\n"
        "    def __init__(self):\n        super().__init__()\n"
        "        self.hidden = nn.Linear(4, 8)\n        self.out = nn.Linear(8, 1)\n\n"
        "    def forward(self, x, y):\n        return self.out(self.hidden(x)) + y\n\n\n"
        "model = Two()\nx = (torch.randn(16, 4), torch.randn(16, 1))\n"
    )
    both = run_code(pair, address=LOCAL, task="diagnose")  # model(*x): two inputs
    assert both.status == "ok", both.message
    assert both.report is not None and both.report.graph is not None
    assert {m for _, m in both.report.graph.nodes(data="module") if m} == {"hidden", "out"}
