"""A scripted segment store that answers with the REAL segment store's recorded reply frames
(``tests/data/realstore/public.json``, recorded from Pravega's own segment store; the segment
names carry the scope token ``scope-00``), for the client tests (no tests of its own).

:func:`answer` takes the store's recorded answer to one request of a scenario (its reply frames,
or the connection close that was recorded instead). :class:`ScriptedStore` is a TCP server:
it answers Hello with the store's Hello and echoes KeepAlive, as the real store does, and answers
every other request with the next entry of its script, after checking that the request is of the
recorded type: the recorded frames with the request's own request id put in, a close of the
connection (no frame), or nothing (a held request, answered later by :meth:`ScriptedStore.answer`).
"""

from __future__ import annotations

import asyncio
import collections
from typing import Any, Deque, List, Optional, Tuple

from pravega_wire import commands as C
from pravega_wire.codec import FrameDecoder, decode, encode
from realstore import load_scenarios

SCENARIOS = {s["name"]: s for s in load_scenarios()}

#: A script entry's answer: the connection is closed without a frame.
CLOSE = "close"
#: A script entry's answer: nothing now (the store holds the request).
HOLD = "hold"


def answer(scenario: str, request_type: str, nth: int = 0) -> Tuple[str, Any]:
    """The real store's answer to the ``nth`` ``request_type`` request of ``scenario``:
    ``(request_type, [reply commands])``, or ``(request_type, CLOSE)`` if the store closed the
    connection instead, or ``(request_type, HOLD)`` if it stayed silent."""
    steps = SCENARIOS[scenario]["steps"]
    seen = -1
    for index, step in enumerate(steps):
        send = step.get("send")
        if send is None or send["type"] != request_type:
            continue
        seen += 1
        if seen != nth:
            continue
        conn = step["conn"]
        replies: List[Any] = []
        for later in steps[index + 1:]:
            if later["conn"] != conn:
                continue
            if "send" in later:
                break
            if "expect" in later:
                replies += [decode(bytes.fromhex(e["wire_hex"])) for e in later["expect"]]
                if later.get("closed"):
                    return request_type, CLOSE if not replies else replies
        return request_type, replies if replies else HOLD
    raise KeyError(f"{scenario} has no request #{nth} of type {request_type}")


def with_request_id(reply: Any, request_id: int) -> Any:
    return reply._replace(request_id=request_id) if "request_id" in reply._fields else reply


class ScriptedStore:
    """A store answering from a script of ``(request type, answer)`` entries, in order, over all
    its connections. ``received`` lists every request (not Hello or KeepAlive) with the index of
    its connection; ``held`` the requests answered with HOLD, ``(request, writer)``."""

    def __init__(self, *script: Tuple[str, Any]):
        self.script: Deque[Tuple[str, Any]] = collections.deque(script)
        self.received: List[Tuple[int, Any]] = []
        self.held: List[Tuple[Any, asyncio.StreamWriter]] = []
        self.errors: List[str] = []
        self.connections = 0
        self.keepalives = 0
        #: False: KeepAlive is not echoed (a store that went silent).
        self.keepalive_echo = True
        self._server: Optional[asyncio.AbstractServer] = None
        self._writers: List[asyncio.StreamWriter] = []

    @property
    def endpoint(self) -> Tuple[str, int]:
        return self._server.sockets[0].getsockname()[:2]

    def add(self, *script: Tuple[str, Any]) -> None:
        self.script.extend(script)

    async def __aenter__(self) -> "ScriptedStore":
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        self._server.close()
        for writer in self._writers:
            writer.close()
        await self._server.wait_closed()

    def answer(self, replies: List[Any]) -> None:
        """Answer the oldest held request with ``replies`` (its request id put in)."""
        request, writer = self.held.pop(0)
        for reply in replies:
            writer.write(encode(with_request_id(reply, request.request_id)))

    def request_types(self) -> List[str]:
        return [type(cmd).__name__ for _, cmd in self.received]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        index = self.connections
        self.connections += 1
        self._writers.append(writer)
        decoder = FrameDecoder()
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    return
                for cmd in decoder.feed(data):
                    if not self._handle(index, cmd, writer):
                        return
        except ConnectionError:
            return
        finally:
            writer.close()

    def _handle(self, index: int, cmd: Any, writer: asyncio.StreamWriter) -> bool:
        kind = type(cmd)
        if kind is C.Hello:
            writer.write(encode(C.Hello(C.WIRE_VERSION, C.OLDEST_COMPATIBLE_VERSION)))
            return True
        if kind is C.KeepAlive:
            self.keepalives += 1
            if self.keepalive_echo:
                writer.write(encode(C.KeepAlive()))
            return True
        self.received.append((index, cmd))
        if not self.script:
            self.errors.append(f"unscripted {cmd!r}")
            return False
        expected, reply = self.script.popleft()
        if kind.__name__ != expected:
            self.errors.append(f"expected a {expected}, got {cmd!r}")
            return False
        if reply == CLOSE:
            return False
        if reply == HOLD:
            self.held.append((cmd, writer))
            return True
        for frame in reply:
            writer.write(encode(with_request_id(frame, cmd.request_id)))
        return True
