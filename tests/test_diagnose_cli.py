"""``gradlab doctor``: findings on stdout, exit status 0, 1 or 2, one-line errors."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gradlab.app.cli import main

HEALTHY = """
import torch
def loss():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    x, y = torch.randn(8, 3), torch.randn(8, 1)
    return model, torch.nn.functional.mse_loss(model(x), y)
"""

UNUSED = """
import torch
class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.body = torch.nn.Linear(3, 4)
        self.extra = torch.nn.Linear(4, 4)  # never called
    def forward(self, x):
        return self.body(x).sum()

def loss():
    model = Net()
    return model, model(torch.randn(2, 3))
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "model.py"
    path.write_text(textwrap.dedent(text))
    return path


def doctor(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gradlab", "doctor", *args],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_a_healthy_function_exits_0_and_a_broken_one_exits_1(tmp_path: Path) -> None:
    ok = doctor(f"{write(tmp_path, HEALTHY)}:loss")
    assert ok.returncode == 0, ok.stderr
    assert "no problems found" in ok.stdout
    bad = doctor(f"{write(tmp_path, UNUSED)}:loss")
    assert bad.returncode == 1, bad.stderr
    assert "error    no_gradient: Parameters the loss never used" in bad.stdout
    assert "`extra.weight`, `extra.bias`" in " ".join(bad.stdout.split())


def test_a_bad_target_is_one_clear_line_and_exit_2(tmp_path: Path) -> None:
    result = doctor(str(tmp_path / "missing.py:loss"))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "No such file" in result.stderr


@pytest.mark.parametrize(
    ("text", "spec", "message"),
    [
        ("def loss():\n    return 3\n", "loss", "returned int; it must return the loss tensor"),
        ("def loss():\n    return 3\n", "nope", "has no function 'nope'"),
        ("import no_such_module\n", "loss", "Importing"),
        ("def loss():\n    return 3\n", "", "is not of the form path/to/file.py:function"),
    ],
)
def test_bad_targets_in_process(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, spec: str, message: str
) -> None:
    path = write(tmp_path, text)
    assert main(["doctor", f"{path}:{spec}" if spec else str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("gradlab doctor: ") and err.count("\n") == 1


def test_code_that_raises_an_autograd_error_gets_the_lesson(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = "import torch\ndef loss():\n    x = torch.ones(2, requires_grad=True)\n"
    text += "    y = x * 2\n    y.backward()\n    return y\n"
    assert main(["doctor", f"{write(tmp_path, text)}:loss"]) == 1
    out = capsys.readouterr().out
    assert "backward() needs a scalar" in out and "y.sum().backward()" in out


def test_gallery_presets_and_programs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor", "--gallery", "saturated_tanh"]) == 0  # a warning, not an error
    assert "warning  saturated:" in capsys.readouterr().out
    assert main(["doctor", "--gallery", "wrong_backward"]) == 1
    assert "gradcheck: Autograd disagrees with finite differences" in capsys.readouterr().out
    assert main(["doctor", "--gallery", "list"]) == 0
    listing = capsys.readouterr().out
    assert "where_nan_gradient" in listing and "nonfinite_backward" in listing
    assert main(["doctor", "--preset", "linear", "--gradcheck"]) == 0
    assert "no problems found" in capsys.readouterr().out
    program = "x = torch.tensor([1., 0.], requires_grad=True)\ntorch.log(x).sum().backward()"
    assert main(["doctor", "--expr", program]) == 1
    assert "nonfinite_forward" in capsys.readouterr().out
    assert main(["doctor", "--gallery", "nope"]) == 2
    assert "No gallery case 'nope'" in capsys.readouterr().err
    assert main(["doctor", "--expr", "x = (", "--gradcheck"]) == 2
    assert "--gradcheck needs a model" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("import sys\ndef loss():\n    sys.exit(3)\n", "called sys.exit(3)."),
        ("def loss():\n    raise ValueError('nope')\n", "raised ValueError: nope"),
        ("def loss(:\n    pass\n", "model.py, line 1: SyntaxError: "),
    ],
    ids=["sys.exit", "raises", "syntax"],
)
def test_a_target_that_cannot_run_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    path = write(tmp_path, text)
    assert main(["doctor", f"{path}:loss"]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("gradlab doctor: ") and captured.err.count("\n") == 1
    assert message in captured.err and captured.out == ""
