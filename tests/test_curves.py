"""Charts of a run, from its records: the numbers drawn are the numbers recorded."""

from __future__ import annotations

import math

import pytest

from gradlab.render import curves
from gradlab.train import train

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def run() -> object:
    return train("classify_2d", steps=12, every=4)


def test_series_and_groups(run: object) -> None:
    records = run.records  # type: ignore[attr-defined]
    steps, losses = curves.series(records, "loss")
    assert steps == list(range(12)) and losses == [r.loss for r in records]
    assert curves.series(records, "accuracy")[0] == [0, 10, 11]  # evaluated every 10 and last
    race = train("optimizer_race", steps=2, every=0).records
    groups = curves.metric_groups(race)
    assert list(groups) == ["Loss of each optimizer"] and len(groups["Loss of each optimizer"]) == 9
    line = train("linear_regression", steps=2, every=0).records
    assert curves.metric_groups(line) == {
        "Weight and bias": ["weight", "bias"], "Prediction at 4": ["prediction_at_4"],
    }  # fmt: skip


def test_node_and_layer_norms_are_the_recorded_ones(run: object) -> None:
    records, G = run.records, run.graph  # type: ignore[attr-defined]
    steps, labels, matrix = curves.node_norms(records, G)
    assert steps == [0, 4, 8]
    first = records[0].nodes.as_dict()
    assert [row[0] for row in matrix] == [first[label.split()[0]] for label in labels]
    assert labels[0] == "fn0 NllLossBackward0"
    steps, layers, rows = curves.layer_norms(records)
    assert steps == [0, 4, 8] and layers == ["0", "2", "4"]
    stats = {p.name: p.grad_norm for p in records[4].params}
    assert rows[1][1] == pytest.approx(math.hypot(stats["2.weight"], stats["2.bias"]))
    history = curves.node_history(records, "leaf0")
    assert history[0] == [0, 4, 8]
    assert history[1] == [r.nodes.as_dict()["leaf0"] for r in records if r.nodes]


def test_a_frozen_layer_has_no_norm() -> None:
    records = train("fine_tune", {"pretrain_steps": 1}, steps=2, every=1).records
    _, layers, rows = curves.layer_norms(records)
    assert layers == ["0", "2", "4"]
    assert all(math.isnan(v) for v in rows[0]) and all(v > 0 for v in rows[2])


def test_thin_keeps_the_ends_and_the_limit() -> None:
    assert curves.thin(5, 10) == [0, 1, 2, 3, 4]
    kept = curves.thin(100_000, 2000)
    assert len(kept) == 2000 and kept[0] == 0 and kept[-1] == 99_999
    assert kept == sorted(set(kept))
