"""Programs and view state in a URL: a shared link opens the same example at the same step.

A program travels compressed (zlib, then URL-safe base64) in one query
parameter; a link to an unmodified example carries only its id. Everything
read back from a URL is checked: a damaged parameter gives ``None``, never an
exception.
"""

from __future__ import annotations

import base64
import binascii
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

MAX_PROGRAM_CHARS = 20_000
#: The longest token :func:`unpack` reads: a program of MAX_PROGRAM_CHARS characters
#: of 4 UTF-8 bytes each that zlib could not shrink, in base64.
MAX_TOKEN_CHARS = (MAX_PROGRAM_CHARS * 4 + 64) * 4 // 3 + 4
MAX_ID_CHARS = 100  # node and example ids in a link
View = Literal["plotly", "graphviz"]


@dataclass(frozen=True)
class ViewState:
    """What a link restores: the program (or an example id), the view, a node, a step."""

    program: str | None = None
    example: str | None = None
    view: View = "plotly"
    node: str | None = None
    step: int | None = None  # a position in the backward step-through (0: the start)
    presenter: bool = False
    predict: bool = False  # the step-through hides what each op sends until revealed


def pack(program: str) -> str:
    """Compress a program into a URL-safe token.

    Examples
    --------
    >>> unpack(pack("y = x ** 2"))
    'y = x ** 2'
    """
    return base64.urlsafe_b64encode(zlib.compress(program.encode(), 9)).decode().rstrip("=")


def unpack(token: str) -> str | None:
    """The program in a token from :func:`pack`; ``None`` when the token is damaged,
    cut short, too long, or inflates to more than a program may hold (a zlib bomb
    stops there).

    Examples
    --------
    >>> unpack(pack("y = x ** 2")[:-3]), unpack("%%%"), unpack(pack("x = 1" * 5000))
    (None, None, None)
    """
    if len(token) > MAX_TOKEN_CHARS:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        inflater = zlib.decompressobj()
        data = inflater.decompress(raw, MAX_PROGRAM_CHARS * 4)
        if not inflater.eof or inflater.unconsumed_tail:
            return None  # cut short, or more than a program may hold
        text = data.decode()
    except (binascii.Error, zlib.error, UnicodeDecodeError, ValueError):
        return None
    return text if len(text) <= MAX_PROGRAM_CHARS else None


def whole_number(text: str, low: int = 0, high: int = 10**9) -> int | None:
    """A whole number read from a link, when it is plain ASCII digits within [low, high].

    Examples
    --------
    >>> whole_number("12"), whole_number("²"), whole_number("9" * 5000), whole_number("-1")
    (12, None, None, None)
    """
    if not (text.isascii() and text.isdigit()) or len(text) > len(str(high)):
        return None
    value = int(text)
    return value if low <= value <= high else None


def to_params(state: ViewState) -> dict[str, str]:
    """Query parameters for a state (defaults left out, so links stay short)."""
    params: dict[str, str] = {}
    if state.example is not None:
        params["example"] = state.example
    elif state.program is not None:
        params["p"] = pack(state.program)
    if state.view != "plotly":
        params["view"] = state.view
    if state.node:
        params["node"] = state.node
    if state.step is not None:
        params["step"] = str(state.step)
    if state.presenter:
        params["present"] = "1"
    if state.predict:
        params["predict"] = "1"
    return params


def from_params(params: Mapping[str, str]) -> ViewState:
    """The state in query parameters; anything unreadable falls back to its default."""
    program = unpack(params["p"]) if "p" in params else None
    view: View = "graphviz" if params.get("view") == "graphviz" else "plotly"
    step = params.get("step", "")
    node = params.get("node", "")
    example = params.get("example", "")
    return ViewState(
        program=program,
        example=example if example and len(example) <= MAX_ID_CHARS else None,
        view=view,
        node=node if node.isidentifier() and len(node) <= MAX_ID_CHARS else None,
        step=whole_number(step),  # ASCII digits only: "²".isdigit() is true, int() refuses it
        presenter=params.get("present") == "1",
        predict=params.get("predict") == "1",
    )
