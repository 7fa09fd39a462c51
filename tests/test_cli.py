"""The gradlab command end to end, in a child process as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import free_port


def gradlab(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gradlab", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )


def test_help_lists_the_commands() -> None:
    result = gradlab("--help")
    assert result.returncode == 0
    for command in ("app", "export"):
        assert command in result.stdout
    assert gradlab("export", "--help").returncode == 0


def test_export_a_preset_to_json(tmp_path: Path) -> None:
    result = gradlab("export", "--preset", "lenet", "-o", str(tmp_path / "lenet.json"))
    assert result.returncode == 0, result.stderr
    data = json.loads((tmp_path / "lenet.json").read_text())
    ops = [n for n in data["nodes"] if n["kind"] == "op"]
    assert len(ops) == 27  # the LeNet-like CNN's autograd nodes
    assert all(n.get("step") is not None for n in ops)  # backward ran


def test_export_a_file_function_to_graphml(tmp_path: Path) -> None:
    (tmp_path / "model.py").write_text(
        textwrap.dedent(
            """
            import torch
            def loss():
                model = torch.nn.Linear(2, 1)
                return model, model(torch.ones(3, 2)).pow(2).mean()
            """
        )
    )
    out = tmp_path / "out.graphml"
    result = gradlab("export", f"{tmp_path / 'model.py'}:loss", "-o", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "weight" in out.read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--preset", "nope"], "Unknown preset 'nope'"),
        (["--preset", "mlp", "--param", "depth=0"], "out of range"),
        (["--preset", "mlp", "--param", "depth"], "NAME=VALUE"),
        (["missing.py:f"], "No such file"),
        (["--preset", "lenet", "--param", "x=1"], "has no parameter"),
    ],
)
def test_errors_exit_non_zero_with_one_clear_line(
    args: list[str], message: str, tmp_path: Path
) -> None:
    result = gradlab("export", *args, "-o", str(tmp_path / "x.json"), cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]


def test_a_target_that_raises_or_returns_the_wrong_thing(tmp_path: Path) -> None:
    (tmp_path / "bad.py").write_text(
        "def boom():\n    raise ValueError('nope')\ndef num():\n    return 3\n"
    )
    boom = gradlab("export", "bad.py:boom", "-o", "x.json", cwd=tmp_path)
    assert boom.returncode == 1 and "ValueError: nope" in boom.stderr
    num = gradlab("export", "bad.py:num", "-o", "x.json", cwd=tmp_path)
    assert num.returncode == 1 and "returned int" in num.stderr
    missing = gradlab("export", "bad.py:nothing", "-o", "x.json", cwd=tmp_path)
    assert missing.returncode == 1 and "no function 'nothing'" in missing.stderr


def test_missing_dot_binary_is_one_clear_line(tmp_path: Path) -> None:
    env_path = f"{Path(sys.executable).parent}"  # python only: no dot on this PATH
    result = subprocess.run(
        [sys.executable, "-m", "gradlab", "export", "--preset", "linear", "-o", "x.svg"],
        capture_output=True, text=True, cwd=tmp_path, env={"PATH": env_path}, timeout=120,
    )  # fmt: skip
    assert result.returncode == 1
    assert "apt-get install graphviz" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_app_command_starts_the_server(tmp_path: Path) -> None:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "gradlab", "app", "--port", str(port)],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        from tests.conftest import _wait_healthy

        _wait_healthy(f"http://127.0.0.1:{port}", server)  # type: ignore[arg-type]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as page:
            assert b'<div id="root">' in page.read() or page.status == 200
    finally:
        server.terminate()
        server.wait(10)


def test_trusted_mode_refuses_a_public_address() -> None:
    result = gradlab("app", "--trusted", "--host", "0.0.0.0")
    assert result.returncode == 1 and "127.0.0.1" in result.stderr


STEPS_PROGRAM = "x = torch.ones(2, 2, requires_grad=True)\ny = (x * x * 3).mean()\ny.backward()"


@pytest.mark.parametrize(
    "args",
    [
        ["steps", "--expr", STEPS_PROGRAM],
        ["doctor", "--gallery", "list"],
        ["doctor", "--expr", STEPS_PROGRAM],
        ["plugins"],
        ["export", "--expr", STEPS_PROGRAM, "-o", "graph.json"],
    ],
    ids=lambda args: args[0] + (f" {args[1]}" if args[1:] else ""),
)
def test_a_closed_pipe_ends_every_command_quietly(args: list[str], tmp_path: Path) -> None:
    # `gradlab steps f.py:make | head`: the reader is gone before anything is written
    child = subprocess.Popen(
        [sys.executable, "-m", "gradlab", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
    )
    assert child.stdout is not None and child.stderr is not None
    child.stdout.close()
    err = child.stderr.read().decode()
    assert child.wait(timeout=120) == 141
    assert err == ""


def test_a_target_that_exits_or_does_not_parse_is_one_line_with_its_place(tmp_path: Path) -> None:
    (tmp_path / "exits.py").write_text("import sys\ndef make():\n    sys.exit(3)\n")
    (tmp_path / "broken.py").write_text("import torch\n\ndef make():\n    x = (1,\n")
    (tmp_path / "raises.py").write_text("def make():\n    x = 1\n    raise ValueError('nope')\n")
    exits = gradlab("steps", "exits.py:make", cwd=tmp_path)
    assert exits.returncode == 1
    assert exits.stderr == "gradlab: error: exits.py:make called sys.exit(3).\n"
    broken = gradlab("export", "broken.py:make", "-o", "x.json", cwd=tmp_path)
    assert broken.returncode == 1 and broken.stderr.count("\n") == 1
    assert "broken.py, line 4: SyntaxError: " in broken.stderr
    raises = gradlab("steps", "raises.py:make", cwd=tmp_path)
    assert "raises.py:make raised ValueError: nope (line 3)" in raises.stderr


def test_a_model_with_a_padding_index_built_in_the_target(tmp_path: Path) -> None:
    (tmp_path / "emb.py").write_text(
        "import torch\nfrom torch import nn\n\ndef make():\n"
        "    emb = nn.Embedding(10, 4, padding_idx=0)\n"
        "    return emb, emb(torch.tensor([[0, 3, 5]])).pow(2).sum()\n"
    )
    steps = gradlab("steps", "emb.py:make", cwd=tmp_path)
    assert steps.returncode == 0, steps.stderr
    assert "Step 1 of 4: SumBackward0" in steps.stdout  # sum, pow, embedding, weight
    doctor = gradlab("doctor", "emb.py:make", cwd=tmp_path)
    assert doctor.returncode == 0 and "no problems found" in doctor.stdout
