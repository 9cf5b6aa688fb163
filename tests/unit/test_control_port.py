"""The node provides the control server's port (p2pd/control/ports.py), member by member:
the control modules import the port, never the node."""

import inspect
from pathlib import Path

from p2pd.config import Config
from p2pd.control.ports import ControlNode
from p2pd.identity import new_ed25519
from p2pd.node import Node


def _members(proto) -> set[str]:
    return {name for name, _ in inspect.getmembers(proto)
            if not name.startswith("_")} | set(getattr(proto, "__annotations__", {}))


def test_the_node_has_every_member_of_the_control_port():
    node = Node(Config(), new_ed25519())
    missing = sorted(m for m in _members(ControlNode) if not hasattr(node, m))
    assert missing == []
    for name in ("connect", "disconnect", "open_stream", "trim"):
        assert inspect.iscoroutinefunction(getattr(node, name)), name


def test_the_control_modules_do_not_import_the_node():
    control = Path(__file__).resolve().parents[2] / "p2pd" / "control"
    for path in control.glob("*.py"):
        text = path.read_text()
        assert "from ..node import" not in text and "import p2pd.node" not in text, path.name
