"""The Python in README.md and docs/ runs as written, with the import paths it names.

Each document's ```python blocks run in order in one namespace, the way a
reader pastes them into one session; what they print is checked against the
numbers the README quotes, and torch stays the oracle for the graph they make.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent


def blocks(document: str) -> list[str]:
    """The ```python blocks of a Markdown file under the repository root, in order."""
    return re.findall(r"```python\n(.*?)```", (ROOT / document).read_text(), re.S)


def run(code: str, namespace: dict[str, Any]) -> dict[str, Any]:
    exec(compile(code, "<readme>", "exec"), namespace)
    return namespace


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # the README saves files where it stands
    return tmp_path


def test_the_python_api_runs_as_the_readme_writes_it(
    in_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    api, show, stepping, card, diagnose, training, _plugin = blocks("README.md")
    ns = run(api, {})
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == "0 MeanBackward0 1.0"
    assert printed[3] == "3 AddBackward0 [[4.5, 4.5], [4.5, 4.5]]"
    x = ns["x"].detach().clone().requires_grad_()
    ((x + 2) * (x + 2) * 3).mean().backward()  # torch's own gradient of the same expression
    assert ns["G"].nodes["leaf0"]["grad"]["values"] == x.grad.tolist()
    assert (in_tmp / "chain.svg").read_text().lstrip().startswith(("<?xml", "<svg"))
    assert "GradLabViewer" in (in_tmp / "lesson.html").read_text()

    run(show, ns)
    run(stepping, ns)
    assert ns["s"].summed and ns["H"] is not ns["G"]
    run(card, ns)
    assert ns["rule"].agrees
    run(diagnose, ns)
    run(training, ns)
    assert len(ns["result"].records) == 100
    assert ns["result"].records[0].nodes.as_dict()


def test_the_plugin_example_is_a_scenario_that_trains() -> None:
    *_, plugin = blocks("README.md")
    ns = run(plugin, {"__name__": "my_scenarios.line"})
    from gradlab.plugins import check_scenario
    from gradlab.train import train

    check_scenario(ns["SCENARIO"], "my_line")  # the checks discovery makes
    result = train(ns["SCENARIO"], {"lr": 0.5}, steps=60, seed=0)
    assert result.records[-1].loss < result.records[0].loss


@pytest.mark.parametrize("document", ["docs/chain_rule.md", "docs/training.md"])
def test_a_guide_s_first_example_runs(document: str) -> None:
    run(blocks(document)[0], {})


def test_the_debugger_guide_s_example_runs() -> None:
    ns = run(blocks("docs/debugger.md")[0], {})
    # as the guide says, the model's .grad are left holding the batch's gradients
    assert all(p.grad is not None for p in ns["model"].parameters())


class Stack(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layers = torch.nn.Sequential(*[torch.nn.Linear(4, 4) for _ in range(5)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def test_the_model_graph_guide_s_library_example_runs() -> None:
    model, x = Stack(), torch.randn(16, 4)
    ns = run(blocks("docs/model_graph.md")[1], {"model": model, "x": x})
    model.zero_grad()
    model(x).pow(2).mean().backward()  # torch's own gradient, for the table's norm
    first = model.layers[0].weight.grad.norm().item()
    assert ns["run"].params[0].grad_norm == pytest.approx(first, rel=1e-5)
    assert "layers.3" in {ns["C"].nodes[n].get("module") for n in ns["C"]}
