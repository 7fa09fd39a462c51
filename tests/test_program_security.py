"""Escape attempts: each is refused, names its line, leaves no trace, and ends fast."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from gradlab.program import Limits, run_program

SMALL = Limits(max_elements=1 << 20, max_flops=2e8, max_steps=200_000, timeout=3.0)

# (program, kind of refusal, a word the message must contain)
ATTEMPTS: list[tuple[str, str, str]] = [
    ("().__class__.__bases__[0].__subclasses__()", "refused", "__class__"),
    ("x = torch.ones(1)\ny = x.__class__", "refused", "__class__"),
    ("getattr(torch, 'load')", "runtime", "getattr"),
    ("f = getattr\nf(torch, '_C')", "runtime", "getattr"),
    ("'{0.__class__}'.format(torch.ones(1))", "refused", "format"),
    ("s = '{0.__class__}'\nf = s.format(1)", "refused", "format field"),
    ("x = 1\ny = f'{x.__class__}'", "refused", "__class__"),
    ("x = 1\ny = f'{x!r}'", "refused", "!r"),
    ("'%r' % torch", "refused", "%r"),
    ("'{0.real}'.format(1)", "refused", "format field"),
    ("g = (y for y in [1])\ng.gi_frame.f_globals", "refused", "gi_frame"),
    ("def f():\n    yield 1\n", "refused", "yield"),
    ("x = torch.ones(1)\nx.grad_fn.__call__", "refused", "__call__"),
    ("(lambda: 0).__globals__", "refused", "__globals__"),
    ("def f(a=torch):\n    return a\nf().load('x')", "refused", "load"),
    ("torch.load('/etc/passwd')", "refused", "load"),
    ("torch.save(torch.ones(1), '/tmp/gradlab-escape.pt')", "refused", "save"),
    ("torch.ops.aten.add", "refused", "ops"),
    ("torch.utils.cpp_extension", "refused", "cpp_extension"),
    ("torch.hub.load('a', 'b')", "refused", "hub"),
    ("torch.from_file('/etc/passwd', size=10)", "refused", "from_file"),
    ("torch.classes", "refused", "classes"),
    ("torch.Tensor.__subclasses__()", "refused", "__subclasses__"),
    ("x = torch.ones(3)\nx.storage()", "refused", "storage"),
    ("x = torch.ones(3)\nx.untyped_storage()", "refused", "untyped_storage"),
    ("x = torch.ones(3)\nx.numpy().tofile('/tmp/gradlab-escape')", "refused", "numpy"),
    ("torch.set_num_threads(1)", "refused", "set_num_threads"),
    ("torch.set_default_dtype(torch.float64)", "refused", "set_default_dtype"),
    ("torch.nn.Module.__init__", "refused", "__init__"),
    ("globals()", "refused", "globals"),
    ("__import__('os')", "refused", "__import__"),
    ("import os", "refused", "import os"),
    ("from os import system", "refused", "import"),
    ("import torch.utils.cpp_extension", "refused", "import torch.utils.cpp_extension"),
    ("breakpoint()", "refused", "breakpoint"),
    ("open('/etc/passwd')", "refused", "open"),
    ("exec('1')", "refused", "exec"),
    ("eval('1')", "refused", "eval"),
    ("compile('1', 'x', 'exec')", "refused", "compile"),
    ("type(torch.ones(1))", "refused", "type"),
    ("vars(torch)", "refused", "vars"),
    ("dir(torch)", "refused", "dir"),
    ("class A(dict):\n    pass", "refused", "derived from dict"),
    ("try:\n    x = 1\nexcept Exception as e:\n    pass", "refused", "try"),
    ("torch.sys", "refused", "sys"),
    ("torch.nn.modules", "refused", "torch.nn.modules"),
    ("torch.jit.script", "refused", "jit"),
    ("torch.compile", "refused", "compile"),
    ("x = torch.ones(1)\nx.grad_fn", "ok", ""),
    ("torch.zeros(10 ** 10)", "limit", "elements"),
    ("torch.ones(100000, 100000)", "limit", "elements"),
    ("a = torch.ones(1000, 1000)\nb = a @ a", "limit", "floating-point"),
    ("torch.linalg.svd(torch.ones(1000, 1000))", "limit", "floating-point"),
    ("[0] * 10 ** 9", "limit", "items"),
    ("'a' * 10 ** 9", "limit", "items"),
    ("2 ** 10 ** 10", "limit", "bits"),
    ("list(range(10 ** 12))", "limit", "items"),
    ("sum(range(10 ** 12))", "limit", "items"),
    ("print(*range(10 ** 9))", "limit", "items"),
    ("while True:\n    pass", "limit", ""),
    ("x = 0\nwhile True:\n    x = x + 1", "limit", ""),
    ("def f(n):\n    return f(n + 1)\nf(0)", "limit", "nested"),
    ("xs = []\nfor i in range(10 ** 7):\n    xs.append(torch.ones(1000))", "limit", ""),
    ("print('x' * 900000)\nprint('x' * 900000)", "limit", "characters"),
]


@pytest.mark.parametrize(("program", "kind", "word"), ATTEMPTS)
def test_escape_attempts_are_refused(program: str, kind: str, word: str) -> None:
    result = run_program(program, SMALL)
    if kind == "ok":
        assert result.error is None
        return
    assert result.error is not None, program
    error = result.error
    if kind == "runtime":  # an unknown name: Python never sees it
        assert error.kind in ("refused", "runtime") and word in error.message
        return
    assert error.kind == kind, (program, error)
    assert word in error.message, (program, error.message)
    assert error.line >= 1
    assert f"line {error.line}" in error.describe()


def test_the_corpus_is_large_enough() -> None:
    assert sum(1 for _, kind, _ in ATTEMPTS if kind != "ok") >= 30


def test_refusals_name_every_line_before_running() -> None:
    program = "x = 1\ny = x.__class__\nimport os\nprint('never printed')"
    result = run_program(program)
    assert result.error is not None and result.error.kind == "refused"
    text = result.error.describe()
    assert text.startswith("line 2: the attribute '__class__'") and "line 3: import os" in text
    assert result.output == ""  # nothing ran


def test_no_side_effects(tmp_path: Path) -> None:
    target = tmp_path / "escape.txt"
    attempts = [
        f"open({str(target)!r}, 'w')",
        f"torch.save(torch.ones(1), {str(target)!r})",
        f"x = torch.ones(3)\nx.numpy().tofile({str(target)!r})",
    ]
    modules_before = set(sys.modules)
    settings_before = (torch.get_num_threads(), torch.get_default_dtype())
    for program in attempts:
        assert run_program(program).error is not None
    assert not target.exists()
    new_modules = set(sys.modules) - modules_before
    assert not {m for m in new_modules if m.startswith(("subprocess", "shutil", "socket"))}
    assert (torch.get_num_threads(), torch.get_default_dtype()) == settings_before


def test_grad_mode_and_rng_are_restored_after_a_run() -> None:
    torch.manual_seed(123)
    expected = torch.rand(1)
    torch.manual_seed(123)
    run_program("torch.manual_seed(0)\nwith torch.no_grad():\n    x = torch.rand(5)")
    assert torch.is_grad_enabled()
    assert torch.equal(torch.rand(1), expected)  # the program's seeding did not leak


def test_empty_never_shows_old_memory() -> None:
    result = run_program("a = torch.empty(1000)\nb = a.sum().item()\nprint(b)")
    assert result.ok and result.output.strip() == "0.0"


def test_limits_compose_with_record_and_values_are_kept() -> None:
    result = run_program("x = torch.tensor([1., 2.], requires_grad=True)\ny = (x * 3).sum()", SMALL)
    assert result.ok and result.graph is not None
    mul = next(d for _, d in result.graph.nodes(data=True) if d.get("op") == "MulBackward0")
    assert mul["value"]["values"] == [3.0, 6.0]
