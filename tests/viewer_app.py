"""AppTest helpers for pages that show graphs through the viewer component.

The component is pages/widgets/graph_view.py.

AppTest runs no JavaScript: it sees the component's data (what the browser
would mount) and can send what the browser sends after a click on a node.
"""

from __future__ import annotations

import json
from typing import Any

from streamlit.components.v2.bidi_component.main import _make_trigger_id
from streamlit.proto.WidgetStates_pb2 import WidgetStates


def viewers(at: Any) -> list[Any]:
    """The viewer components on the page, in order."""
    return [e for e in at.get("bidi_component") if e.proto.component_name == "gradlab_viewer"]


def viewer_data(at: Any, index: int = 0) -> dict[str, Any]:
    """The data the ``index``-th viewer on the page was mounted with."""
    proto = viewers(at)[index].proto
    text = proto.json if proto.WhichOneof("data") == "json" else proto.mixed.json
    data: dict[str, Any] = json.loads(text)
    return data


def node_ids(at: Any, index: int = 0) -> list[str]:
    """The node ids the viewer draws."""
    return [n["id"] for n in viewer_data(at, index)["payload"]["nodes"]]


def click_viewer_node(at: Any, node: str, index: int = 0) -> Any:
    """Rerun as the browser does after a click on ``node`` (pages that asked for clicks)."""
    proto = viewers(at)[index].proto
    assert viewer_data(at, index)["send"], "this viewer does not send clicks to the page"
    states: WidgetStates = at._tree.get_widget_states()
    state = states.widgets.add()
    state.id = _make_trigger_id(proto.id, "events")
    state.json_trigger_value = json.dumps([{"event": "selected", "value": node}])
    return at._run(states)
