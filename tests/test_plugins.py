"""Plugin discovery: built-ins, a pip-installed package, broken plugins, the environment."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

import gradlab.plugins
import gradlab.train
from gradlab.plugins import (
    BoolParam,
    ChoiceParam,
    FloatParam,
    IntParam,
    Parts,
    PluginError,
    Scenario,
    Setup,
    StepContext,
    check_scenario,
    describe_params,
    discover,
)
from gradlab.train import train
from gradlab.train.discover import builtin_files
from gradlab.train.params import param_field

BUILTINS = {
    "accumulation", "classify_2d", "custom_data", "ddp", "digits_cnn", "fine_tune",
    "linear_regression", "lr_schedules", "optimizer_race", "three_points",
}  # fmt: skip

DEMO = """
import torch
from torch import nn
from gradlab.plugins import FloatParam, Parts, Scenario, Setup


def build(setup: Setup) -> Parts:
    model = nn.Linear(1, 1).to(setup.device)
    x = torch.linspace(-1, 1, 20).unsqueeze(1)
    return Parts(model, [(x, -x)], nn.MSELoss(),
                 torch.optim.SGD(model.parameters(), lr=setup.number("lr")))


SCENARIO = Scenario("demo_line", "Demo line", "y = -x, from a pip-installed package.", build,
                    params=(FloatParam("lr", 0.3, 0.001, 1.0),), steps=40, every=10)
"""


@pytest.fixture
def fresh() -> Iterator[None]:
    """Forget cached discoveries before and after (sys.path and the environment change)."""
    discover(refresh=True)
    yield
    discover(refresh=True)


def test_builtins_are_found_with_their_sources(fresh: None) -> None:
    found = discover()
    assert set(found.scenarios) >= BUILTINS
    assert found.sources["linear_regression"] == "built-in linear_regression.py"
    assert not [e for e in found.errors if e.name in BUILTINS]
    with pytest.raises(PluginError, match=r"Unknown scenario 'nope'.*linear_regression"):
        found.get("nope")


def test_a_checkout_loads_its_own_plugins_folder_not_an_installed_copy() -> None:
    root = Path(__file__).resolve().parents[1]
    files = builtin_files()
    assert {p.parent for p in files} == {root / "plugins"}
    assert {p.stem for p in files} >= BUILTINS


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``pip install`` a throwaway plugin package into a folder of its own."""
    root = tmp_path_factory.mktemp("demo-plugin")
    source = root / "src"
    (source / "gradlab_demo_plugin").mkdir(parents=True)
    (source / "gradlab_demo_plugin" / "__init__.py").write_text(DEMO)
    (source / "pyproject.toml").write_text(
        textwrap.dedent("""
        [build-system]
        requires = ["setuptools"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "gradlab-demo-plugin"
        version = "0.1"

        [project.entry-points."gradlab.plugins"]
        demo_line = "gradlab_demo_plugin:SCENARIO"
        """)
    )
    target = root / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps",
         "--no-build-isolation", "--target", str(target), str(source)],
        check=True, capture_output=True,
    )  # fmt: skip
    return target


def test_a_pip_installed_plugin_is_found_and_trains(
    installed: Path, fresh: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert list(installed.glob("gradlab_demo_plugin-0.1.dist-info/entry_points.txt"))
    monkeypatch.syspath_prepend(str(installed))
    found = discover(refresh=True)
    assert "demo_line" in found.scenarios
    assert "gradlab-demo-plugin" in found.sources["demo_line"]
    assert set(found.scenarios) >= BUILTINS
    result = train("demo_line", {"lr": 0.3}, steps=40)
    assert result.records[-1].loss < 0.01 * result.records[0].loss


def test_autoload_can_be_disabled_and_plugins_chosen(
    installed: Path, fresh: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(installed))
    monkeypatch.setenv("GRADLAB_DISABLE_PLUGIN_AUTOLOAD", "1")
    disabled = discover()
    assert "demo_line" not in disabled.scenarios and set(disabled.scenarios) >= BUILTINS
    monkeypatch.setenv("GRADLAB_PLUGINS", "demo_line,three_points")
    chosen = discover()
    assert set(chosen.scenarios) == {"demo_line", "three_points"}
    monkeypatch.setenv("GRADLAB_PLUGINS", "three_points,missing_one")
    partial = discover()
    assert set(partial.scenarios) == {"three_points"}
    assert [(e.name, e.source) for e in partial.errors] == [("missing_one", "GRADLAB_PLUGINS")]


def _dist_info(site: Path, name: str, entries: dict[str, str]) -> None:
    """A minimal installed distribution: its metadata and entry points, as pip writes them."""
    info = site / f"{name}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    lines = "".join(f"{k} = {v}\n" for k, v in entries.items())
    (info / "entry_points.txt").write_text(f"[gradlab.plugins]\n{lines}")


@pytest.fixture
def broken(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh: None) -> Path:
    site = tmp_path / "site"
    site.mkdir()
    (site / "broken_import.py").write_text("import no_such_module_anywhere\n")
    (site / "not_a_scenario.py").write_text("SCENARIO = 42\n")
    (site / "bad_protocol.py").write_text(
        "from gradlab.plugins import Scenario, IntParam\n"
        "SCENARIO = Scenario('Bad Name', '', 'x', lambda: None,"
        " params=(IntParam('depth', 50, 1, 10),))\n"
    )
    _dist_info(
        site,
        "broken_plugins",
        {
            "will_not_import": "broken_import:SCENARIO",
            "wrong_type": "not_a_scenario:SCENARIO",
            "bad_protocol": "bad_protocol:SCENARIO",
        },
    )
    monkeypatch.syspath_prepend(str(site))
    return site


def test_broken_plugins_are_reported_by_name_and_the_rest_work(broken: Path) -> None:
    found = discover(refresh=True)
    errors = {e.name: e.message for e in found.errors}
    assert "ModuleNotFoundError" in errors["will_not_import"]
    assert "no_such_module_anywhere" in errors["will_not_import"]
    assert "broken_import.py, line 1" in errors["will_not_import"]
    assert "gave a int, not a gradlab.plugins.Scenario" in errors["wrong_type"]
    message = errors["bad_protocol"]
    assert "name 'Bad Name'" in message and "title is empty" in message
    assert "build must be a function taking one argument" in message
    assert "depth must be between 1 and 10" in message
    assert set(found.scenarios) >= BUILTINS
    with pytest.raises(PluginError, match="'wrong_type' failed to load"):
        found.get("wrong_type")
    assert train("three_points", steps=2).records[-1].loss > 0


def test_gradlab_plugins_command_lists_failures(broken: Path) -> None:
    env = {"PYTHONPATH": str(broken), "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-m", "gradlab", "plugins"], capture_output=True, text=True, env=env
    )
    assert out.returncode == 1
    assert "linear_regression" in out.stdout and "3 failed to load" in out.stdout
    assert "will_not_import  [entry point broken_import:SCENARIO (broken_plugins)]" in out.stdout


def test_check_scenario_accepts_every_builtin_and_rejects_bad_params() -> None:
    for scenario in discover().scenarios.values():
        assert check_scenario(scenario, scenario.name) is scenario

    def build(setup: object) -> Parts:
        raise AssertionError("not called")

    bad = Scenario(
        "bad", "Bad", "", build,
        params=(IntParam("n", 1, 5, 2), ChoiceParam("c", "a", ()), FloatParam("n", 0.5, 0, 1)),
    )  # fmt: skip
    with pytest.raises(PluginError) as caught:
        check_scenario(bad, "bad")
    text = str(caught.value)
    assert "low 5 is above high 2" in text and "c has no choices" in text
    assert "'n' is not a unique identifier" in text


def test_typed_params_check_and_parse() -> None:
    lr = FloatParam("lr", 0.1, 1e-4, 1.0)
    assert lr.parse("0.5") == 0.5
    with pytest.raises(PluginError, match="lr must be between"):
        lr.parse("2")
    with pytest.raises(PluginError, match="lr must be a number, not 'fast'"):
        lr.parse("fast")
    depth = IntParam("depth", 2, 1, 8)
    with pytest.raises(PluginError, match="whole number"):
        depth.parse("2.5")
    with pytest.raises(PluginError, match="one of a, b"):
        ChoiceParam("c", "a", ("a", "b")).parse("z")


@pytest.mark.slow
def test_the_wheel_carries_the_builtins_as_gradlab_plugins(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[1]
    pip = [sys.executable, "-m", "pip"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"), str(root)],
        check=True, capture_output=True, timeout=600,
    )  # fmt: skip
    (wheel,) = (tmp_path / "dist").glob("gradlab-*.whl")
    site = tmp_path / "site"
    subprocess.run(
        [*pip, "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
        check=True, capture_output=True, timeout=600,
    )  # fmt: skip
    assert (site / "gradlab_plugins" / "linear_regression.py").is_file()
    code = (
        "import gradlab, json; from gradlab.plugins import discover; d = discover()\n"
        "print(json.dumps([gradlab.__file__, sorted(d.scenarios), d.sources['ddp'],"
        " [e.name for e in d.errors]]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"}, check=True,
    )  # fmt: skip
    where, names, source, errors = json.loads(out.stdout)
    assert where.startswith(str(site))  # the wheel's copy, not the checkout
    assert set(names) == BUILTINS and source == "built-in ddp.py" and errors == []


def test_the_contract_is_one_file_that_imports_nothing_of_the_loop() -> None:
    """gradlab/train/scenario.py holds the whole contract; the door re-exports it."""
    from gradlab.train import scenario

    tree = ast.parse(Path(scenario.__file__).read_text())
    ours = {
        node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("gradlab")
    }
    assert ours == {"gradlab.train.params"}
    for name in ("Scenario", "Parts", "Setup", "Picture", "StepContext", "IntParam", "BoolParam"):
        assert getattr(gradlab.plugins, name) is getattr(scenario, name), name
    assert gradlab.plugins.StepContext is gradlab.train.StepContext


def test_a_step_gets_everything_the_step_context_names() -> None:
    members = {n for n in vars(StepContext) if not n.startswith("_")}
    assert members == {
        "parts", "device", "step", "captured", "samples", "batch", "loss", "backward", "log",
    }  # fmt: skip
    seen: dict[str, object] = {}

    def build(setup: Setup) -> Parts:
        model = nn.Linear(1, 1).to(setup.device)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

        def step(ctx: StepContext) -> torch.Tensor:
            loss = ctx.loss(ctx.batch())
            ctx.backward(loss)
            ctx.log("twice", 2 * loss)
            optimizer.step()
            seen.update((n, getattr(ctx, n)) for n in members)
            return loss

        x = torch.ones(4, 1)
        return Parts(model, [(x, 2 * x)], nn.MSELoss(), optimizer, step=step)

    probe = Scenario("ctx_probe", "Probe", "", build, steps=1)
    (record,) = train(probe, steps=1, every=1).records
    assert (seen["step"], seen["captured"], seen["samples"]) == (0, True, 4)
    assert seen["device"] == torch.device("cpu") and isinstance(seen["parts"], Parts)
    assert record.metrics["twice"] == pytest.approx(2 * record.loss)
    assert record.nodes is not None  # ctx.backward went through the core's capture


def test_each_param_kind_is_one_field_for_the_form_and_the_flag() -> None:
    params = (
        IntParam("batch_size", 8, 1, 64, "rows per batch"),
        FloatParam("lr", 0, 0, 1),
        ChoiceParam("act", "relu", ("relu", "tanh")),
        BoolParam("shuffle", True),
    )
    fields = [param_field(p) for p in params]
    assert [(f.kind, f.label, f.flag, f.metavar) for f in fields] == [
        ("int", "batch size", "--batch-size", "INT"),
        ("float", "lr", "--lr", "NUMBER"),
        ("choice", "act", "--act", "{relu,tanh}"),
        ("bool", "shuffle", "--shuffle", "{true,false}"),
    ]
    assert (fields[0].low, fields[0].high, fields[0].step, fields[0].format) == (1, 64, 1, None)
    assert (fields[1].default, fields[1].step, fields[1].format) == (0.0, 0.1, "%g")
    assert fields[2].choices == ("relu", "tanh") and fields[3].default is True
    assert [f.summary for f in fields] == describe_params(params)
    assert fields[0].summary == "batch_size (int, 1..64, default 8): rows per batch"
