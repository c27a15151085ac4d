"""Type stubs of the compiled per-message core of a connection (``_flowcore.pyx``); the pure
twin ``_flowcore_py`` has the same API and documents it."""

from typing import Any, Iterable, Optional

from . import commands
from ._flowcore_py import (CLOSED as CLOSED, CONNECTING as CONNECTING, OPEN as OPEN,
                           REPLY_TYPES as REPLY_TYPES)

__all__ = ["IMPLEMENTATION", "ConnectionCore", "FlowCore", "dispatch", "REPLY_TYPES",
           "CONNECTING", "OPEN", "CLOSED"]

IMPLEMENTATION: str

class ConnectionCore:
    _state: Any
    _flows: dict[int, Any]
    _single: Any
    _encoder: Any
    _flush_scheduled: bool

class FlowCore:
    flow_id: int
    _conn: Optional[ConnectionCore]
    _encoder: Any
    _listener: Any
    _on_reply: Any
    _error: Optional[BaseException]
    _sessions: Optional[list[Any]]
    def __init__(self, flow_id: int, conn: ConnectionCore, listener: Any) -> None: ...
    def send(self, cmd: commands.Command) -> None: ...
    def append(self, append: Any) -> None: ...
    def append_event(self, segment: str, writer_id: Any, event_number: int, payload: Any,
                     request_id: int) -> None: ...

def dispatch(conn: ConnectionCore, replies: Iterable[commands.Command]) -> None: ...
