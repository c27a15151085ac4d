"""Shared helpers of the connection and pool tests (no tests of its own): a scripted segment
store written with the codec, a recording flow listener, bounded waits and a fixture that runs a
test with one codec twin on both sides of the wire.

The scripted server answers Hello (with a configurable version, or not at all), echoes
KeepAlives, answers requests with replies carrying the same request id (optionally in random
order), acknowledges appends through an ``AppendDecoder``, and can stall, drop a connection or
send arbitrary bytes.
"""

from __future__ import annotations

import asyncio
import random
from typing import List, Optional

import pytest
from conftest import load_twin, wait_until  # noqa: F401 - re-exported

from pravega_wire import commands as C
from pravega_wire.appends import AppendDecoder

HELLO = C.Hello(C.WIRE_VERSION, C.OLDEST_COMPATIBLE_VERSION)


@pytest.fixture
def wire(codec, monkeypatch):
    """The codec twin under test, on both sides of the wire: the client decodes with it (passed
    as ``codec=``) and encodes with the matching append-encoder twin (the pure encoder framing
    commands with the pure codec, or the compiled encoder), and the scripted server decodes and
    encodes with it."""
    from pravega_wire import _appends_py
    from pravega_wire import connection as connection_module
    if codec.IMPLEMENTATION == "pure":
        monkeypatch.setattr(_appends_py, "_encode_command", codec.encode)
        encoder = _appends_py.CommandEncoder
    else:
        encoder = load_twin("_appends", "compiled").CommandEncoder
    monkeypatch.setattr(connection_module, "CommandEncoder", encoder)
    return codec


def default_reply(cmd) -> Optional[list]:
    """A plausible reply to a request, carrying its request id (None: no reply)."""
    kind = type(cmd)
    if kind is C.GetStreamSegmentInfo:
        return [C.StreamSegmentInfo(cmd.request_id, cmd.segment_name, True, False, False, 0,
                                    len(cmd.segment_name), 0)]
    if kind is C.GetSegmentAttribute:
        return [C.SegmentAttribute(cmd.request_id, cmd.request_id & 0xFFFFFFFF)]
    if kind is C.ReadSegment:
        return [C.SegmentRead(cmd.segment, cmd.offset, True, False, b"", cmd.request_id)]
    if kind is C.SetupAppend:
        return [C.AppendSetup(cmd.request_id, cmd.segment, cmd.writer_id, -1)]
    if kind is C.SealSegment:
        return [C.SegmentSealed(cmd.request_id, cmd.segment)]
    return None


class Recorder:
    """A flow listener that records what it hears."""

    def __init__(self, name: str = ""):
        self.name = name
        self.replies: List[C.Command] = []
        self.lost: List[BaseException] = []

    def reply_received(self, reply) -> None:
        if self.lost:
            raise AssertionError(f"{self.name}: reply {reply!r} after connection_lost")
        self.replies.append(reply)

    def connection_lost(self, exc) -> None:
        self.lost.append(exc)

    def of_type(self, kind) -> list:
        return [r for r in self.replies if type(r) is kind]

    def __repr__(self):
        return f"<Recorder {self.name}>"


class ServerConnection(asyncio.Protocol):
    """One accepted connection of :class:`ScriptedServer`."""

    def __init__(self, server: "ScriptedServer"):
        self.server = server
        self.decoder = server.codec.FrameDecoder(server=True)
        self.appends = AppendDecoder()
        self.received: List[C.Command] = []
        self.transport: Optional[asyncio.Transport] = None
        self.closed = False
        self.eof = False
        self.stalled = False
        self.error: Optional[BaseException] = None
        self.writes = 0

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.server.connections.append(self)
        if self.server.hello_first:
            self.send(self.server.hello)

    def data_received(self, data) -> None:
        if self.stalled:
            return
        try:
            commands = self.decoder.feed(data)
        except Exception as e:  # a client bug: remember it, the test asserts on it
            self.error = e
            self.transport.abort()
            return
        replies = []
        for cmd in commands:
            self.received.append(cmd)
            for decoded in self.appends.process(cmd):
                replies.extend(self.server.respond(self, decoded) or ())
        if not replies:
            return
        if self.server.random_order:
            self.server.rng.shuffle(replies)
        self.send_raw(b"".join(self.server.codec.encode(r) for r in replies))

    def eof_received(self):
        self.eof = True
        return False

    def connection_lost(self, exc) -> None:
        self.closed = True

    # -- scripting -------------------------------------------------------------------------

    def send(self, *replies) -> None:
        self.send_raw(b"".join(self.server.codec.encode(r) for r in replies))

    def send_raw(self, data: bytes) -> None:
        if not self.transport.is_closing():
            self.writes += 1
            self.transport.write(data)

    def stall(self) -> None:
        """Stop reading and answering (a half-open peer)."""
        self.stalled = True
        self.transport.pause_reading()

    def unstall(self) -> None:
        self.stalled = False
        self.transport.resume_reading()

    def drop(self) -> None:
        """Reset the connection."""
        self.transport.abort()

    def of_type(self, kind) -> list:
        return [c for c in self.received if type(c) is kind]


class ScriptedServer:
    """A scripted segment store on 127.0.0.1 (or ``host``) for tests.

    ``hello``: the Hello to answer with (None: never answer). ``random_order``: shuffle the
    replies to the requests of each received chunk. ``reply``: ``cmd -> list | None`` for
    requests (default :func:`default_reply`). ``echo_keepalive``: answer KeepAlive.
    ``ssl``: a server ``ssl.SSLContext``. ``hello_first``: send the Hello on accepting instead
    of in answer to the client's.
    """

    def __init__(self, codec, *, hello=HELLO, random_order: bool = False, reply=default_reply,
                 echo_keepalive: bool = True, ssl=None, host: str = "127.0.0.1", seed: int = 0,
                 hello_first: bool = False):
        self.codec = codec
        self.hello_first = hello_first
        self.hello = hello
        self.random_order = random_order
        self.reply = reply
        self.echo_keepalive = echo_keepalive
        self.ssl = ssl
        self.host = host
        self.rng = random.Random(seed)
        self.connections: List[ServerConnection] = []
        self.event_numbers = {}  # writer id -> last acknowledged event number
        self._server: Optional[asyncio.AbstractServer] = None
        self.endpoint = None

    async def __aenter__(self) -> "ScriptedServer":
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: ServerConnection(self), self.host, 0,
                                                ssl=self.ssl)
        self.endpoint = (self.host, self._server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(self, *exc_info) -> None:
        self._server.close()
        for conn in self.connections:
            if conn.transport is not None:
                conn.transport.abort()
        await self._server.wait_closed()

    def respond(self, conn: ServerConnection, cmd) -> Optional[list]:
        kind = type(cmd)
        if kind is C.Hello:
            return None if self.hello is None or self.hello_first else [self.hello]
        if kind is C.KeepAlive:
            return [cmd] if self.echo_keepalive else None
        if kind.__name__ == "Append":
            previous = self.event_numbers.get(cmd.writer_id, -1)
            self.event_numbers[cmd.writer_id] = cmd.event_number
            return [C.DataAppended(cmd.request_id, cmd.writer_id, cmd.event_number, previous, 0)]
        return self.reply(cmd)

    @property
    def open_connections(self) -> List[ServerConnection]:
        return [c for c in self.connections if not c.closed]
