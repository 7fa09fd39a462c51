"""Links carry programs and view state, and damaged links are harmless."""

import pytest

from gradlab.app.share import MAX_PROGRAM_CHARS, ViewState, from_params, pack, to_params, unpack


def test_a_state_survives_the_round_trip() -> None:
    program = "x = torch.tensor([2., 3.], requires_grad=True)\ny = (x ** 2).sum()\ny.backward()\n"
    state = ViewState(
        program=program, view="graphviz", node="fn1", step=2, presenter=True, predict=True
    )
    assert from_params(to_params(state)) == state


def test_an_example_link_carries_only_its_id() -> None:
    params = to_params(ViewState(program="long text", example="chain"))
    assert params == {"example": "chain"}


def test_defaults_are_left_out() -> None:
    assert to_params(ViewState()) == {}


@pytest.mark.parametrize(
    "params",
    [
        {"p": "!!!not base64!!!"},
        {"p": pack("x") + "garbage"},
        {"step": "-3", "node": "fn0; drop", "view": "javascript:"},
        {"p": "eJwrySxKLVJIzs8rSc0r0U"},  # truncated
    ],
)
def test_damaged_parameters_fall_back_to_defaults(params: dict[str, str]) -> None:
    state = from_params(params)
    assert state.step is None and state.node is None and state.view == "plotly"
    assert state.program is None or isinstance(state.program, str)


def test_a_decompression_bomb_is_refused() -> None:
    assert unpack(pack("x" * (MAX_PROGRAM_CHARS * 10))) is None
