"""Every Playground example runs, and those that show a mistake show exactly it."""

import pytest

from gradlab.program import run_program
from gradlab.teach import examples


@pytest.mark.parametrize("example", examples.EXAMPLES, ids=lambda e: e.id)
def test_example_runs_as_intended(example: examples.Example) -> None:
    result = run_program(example.source)
    if example.expect_error is None:
        assert result.ok, result.error
    else:
        assert result.error is not None and result.error.explanation is not None
        assert result.error.explanation.kind == example.expect_error


def test_ids_are_unique_and_the_first_is_the_square() -> None:
    ids = [e.id for e in examples.EXAMPLES]
    assert len(ids) == len(set(ids)) and ids[0] == "square"
    assert examples.get("chain") is not None and examples.get("nope") is None


def test_reading_grad_of_a_non_leaf_is_explained_as_a_notice() -> None:
    example = examples.get("non_leaf_grad")
    assert example is not None
    result = run_program(example.source)
    assert result.ok and result.graph is not None
    kinds = [n.explanation.kind for n in result.notices if n.explanation is not None]
    assert kinds == ["non_leaf_grad"]
    assert "None" in result.output
