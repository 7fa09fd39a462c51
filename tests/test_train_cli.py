"""``gradlab train``, ``gradlab plugins`` and ``gradlab runs`` end to end."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from gradlab.app.cli import main


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GRADLAB_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_train_writes_the_run_as_json(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run.json"
    code = main(
        ["train", "linear_regression", "--lr", "0.2", "--noise", "0.5", "--steps", "30",
         "--every", "10", "--seed", "3", "--out", str(out)]
    )  # fmt: skip
    assert code == 0
    data = json.loads(out.read_text())
    assert data["scenario"] == "linear_regression" and data["seed"] == 3
    assert data["params"] == {"points": 100, "noise": 0.5, "lr": 0.2}
    assert [r["step"] for r in data["records"]] == list(range(30))
    captured = [r["step"] for r in data["records"] if "nodes" in r]
    assert captured == [0, 10, 20]
    assert set(data["records"][10]["nodes"]) <= set(n["id"] for n in data["graph"]["nodes"])
    assert all(isinstance(r["loss"], float) for r in data["records"])
    err = capsys.readouterr()
    assert "30/30" in err.err and "wrote" in err.err
    assert "linear_regression: 30 steps, final loss" in err.out
    assert f"  weight {data['records'][-1]['metrics']['weight']:.6g}" in err.out
    # The same run is kept in the store, and the command reads it back.
    assert main(["runs"]) == 0
    listing = capsys.readouterr().out
    assert "linear_regression" in listing and "finished" in listing and "30/30" in listing
    assert main(["runs", "export", "1", "-o", str(tmp_path / "run.csv")]) == 0
    rows = list(csv.DictReader((tmp_path / "run.csv").open()))
    assert [float(r["loss"]) for r in rows] == [r["loss"] for r in data["records"]]
    assert main(["runs", "export", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["records"] == data["records"]
    assert main(["runs", "delete", "1"]) == 0
    assert main(["runs", "list"]) == 0
    assert "No runs" in capsys.readouterr().out


def test_same_seed_same_json_records(home: Path, tmp_path: Path) -> None:
    losses = []
    for name in ("a", "b"):
        out = tmp_path / f"{name}.json"
        args = ["train", "custom_data", "--steps", "10", "--quiet", "--no-store"]
        assert main([*args, "--out", str(out)]) == 0
        losses.append([r["loss"] for r in json.loads(out.read_text())["records"]])
    assert losses[0] == losses[1]
    assert not (home / "runs.sqlite").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "nope"], "Unknown scenario 'nope'. Installed scenarios: accumulation"),
        (["train", "linear_regression", "--lr", "fast"], "lr must be a number, not 'fast'"),
        (["train", "linear_regression", "--lr", "9"], "lr must be between 0.0001 and 2.0"),
        (["train", "three_points", "--reduction", "max"], "reduction must be one of sum"),
        (["train", "linear_regression", "--depth", "2"], "unrecognized arguments: --depth 2"),
        (["train", "linear_regression", "--steps", "0"], "steps must be between 1"),
        (
            ["train", "linear_regression", "--device", "mps"],
            "GradLab trains on cpu or cuda, not mps",
        ),
        (["train"], "name a scenario"),
        (["runs", "export", "99"], "There is no stored run 99"),
        (["train", "linear_regression", "--device", "gpu"], "'gpu' is not a device"),
    ],
)
def test_bad_input_is_one_clear_line(
    home: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert main(args) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("gradlab: error: ")
    assert message in err


def test_scenario_help_lists_its_typed_flags(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "classify_2d", "--help"]) == 0
    text = capsys.readouterr().out
    assert "--dataset {moons,circles,spiral,xor}" in text
    assert "--depth INT" in text and "(int, 1..8, default 2)" in text
    assert "--every EVERY" in text and "--device DEVICE" in text


def test_gradlab_train_as_a_command(home: Path, tmp_path: Path) -> None:
    out = tmp_path / "three.json"
    done = subprocess.run(
        [sys.executable, "-m", "gradlab", "train", "three_points", "--steps", "100",
         "--every", "50", "--out", str(out)],
        capture_output=True, text=True,
        env={"GRADLAB_HOME": str(home), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    data = json.loads(out.read_text())
    last = data["records"][-1]["metrics"]
    assert last["weight"] == pytest.approx(2.0, abs=0.05)
    assert [r["step"] for r in data["records"] if "nodes" in r] == [0, 50]


def test_plugins_as_json_and_runs_in_another_store(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["plugins", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    names = {s["name"] for s in listed["scenarios"]}
    assert {"linear_regression", "ddp", "digits_cnn"} <= names and listed["failed"] == []
    db = tmp_path / "elsewhere.sqlite"
    assert main(["runs", "--db", str(db), "list"]) == 0
    assert f"No runs in {db}" in capsys.readouterr().out
    assert main(["runs", "--db", str(db), "delete", "7"]) == 1
    assert "There is no stored run 7" in capsys.readouterr().err
