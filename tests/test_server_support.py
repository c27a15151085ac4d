"""Helpers shared by the server tests (a raw wire-protocol client, event records, delegation
tokens), and the tests that keep those helpers honest.

Imported by the other ``test_server_*`` modules (``tests/`` is on ``sys.path``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import subprocess
import sys
import time
import uuid

import pytest

from pravega_wire import commands as C
from pravega_wire.codec import FrameDecoder, encode, encode_event
from pravega_wire.server.segmentstore import SegmentStore
from pravega_wire.server.tokens import verify_token

#: Every wait in these tests is bounded by this (seconds); nothing is timed.
WAIT = 10.0
SEGMENT = "scope/stream/0.#epoch.0"


class Wire:
    """A raw client connection: send commands or bytes, receive decoded replies."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader = reader
        self.writer = writer
        self.decoder = FrameDecoder()
        self.pending: list[C.Command] = []

    @classmethod
    async def open(cls, endpoint: tuple[str, int], *, hello: bool = True) -> Wire:
        reader, writer = await asyncio.open_connection(*endpoint)
        wire = cls(reader, writer)
        if hello:
            wire.send(C.Hello(C.WIRE_VERSION, C.OLDEST_COMPATIBLE_VERSION))
            assert await wire.recv() == C.Hello(17, 5)
        return wire

    def send(self, *commands: C.Command) -> None:
        self.writer.write(b"".join(encode(c) for c in commands))

    def send_raw(self, data: bytes) -> None:
        self.writer.write(data)

    async def recv(self) -> C.Command:
        """The next reply (fails if the connection closes or nothing comes)."""
        while not self.pending:
            data = await asyncio.wait_for(self.reader.read(1 << 20), WAIT)
            if not data:
                raise ConnectionError("the server closed the connection")
            self.pending.extend(self.decoder.feed(data))
        return self.pending.pop(0)

    async def recv_n(self, n: int) -> list[C.Command]:
        return [await self.recv() for _ in range(n)]

    async def closed_by_server(self) -> bool:
        """Read until EOF (or a reset); True once the server closed. Replies before the close
        are kept in :attr:`pending`."""
        while True:
            try:
                data = await asyncio.wait_for(self.reader.read(1 << 20), WAIT)
            except ConnectionResetError:
                return True
            if not data:
                return True
            self.pending.extend(self.decoder.feed(data))

    async def quiet(self, seconds: float = 0.2) -> list[C.Command]:
        """Whatever arrives within ``seconds`` (for checking that nothing does)."""
        try:
            data = await asyncio.wait_for(self.reader.read(1 << 20), seconds)
        except asyncio.TimeoutError:
            return list(self.pending)
        self.pending.extend(self.decoder.feed(data) if data else [])
        return list(self.pending)

    async def close(self) -> None:
        self.writer.close()
        try:
            await asyncio.wait_for(self.writer.wait_closed(), WAIT)
        except (ConnectionError, asyncio.TimeoutError):
            pass


@contextlib.asynccontextmanager
async def serving(*segments: str, **options):
    """A started :class:`SegmentStore` (``options`` for its constructor) holding ``segments``."""
    store = SegmentStore(**options)
    for name in segments:
        store.create_segment(name)
    await store.start()
    try:
        yield store
    finally:
        await store.stop()


def events(*payloads: bytes) -> bytes:
    """Event records (8-byte header + payload) back to back, as event writers append them."""
    return b"".join(encode_event(p) for p in payloads)


def append_end(writer_id: uuid.UUID, data: bytes, last_event: int, count: int = 1,
               request_id: int = 1) -> C.AppendBlockEnd:
    """An append carried by a lone AppendBlockEnd (how the Rust client sends every append)."""
    return C.AppendBlockEnd(writer_id, len(data), data, count, last_event, request_id)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def make_token(key: bytes, scope: str, stream: str, expires: float) -> str:
    """An HS256 delegation token for ``scope/stream`` as the embedded controller issues them."""
    header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = _b64url(json.dumps({"scope": scope, "stream": stream, "exp": int(expires)}).encode())
    signature = hmac.new(key, f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{_b64url(signature)}"


# ---- the helpers' own tests ---------------------------------------------------------------------

def test_make_token_is_what_the_stores_verify():
    key = b"k" * 32
    now = time.time()
    assert verify_token(make_token(key, "scope", "stream", now + 60), key,
                        segment=SEGMENT) == "ok"
    assert verify_token(make_token(key, "scope", "stream", now - 1), key,
                        segment=SEGMENT) == "expired"
    assert verify_token(make_token(key, "scope", "other", now + 60), key,
                        segment=SEGMENT) == "invalid"
    assert verify_token(make_token(b"x" * 32, "scope", "stream", now + 60), key,
                        segment=SEGMENT) == "invalid"


def test_the_token_code_is_its_own_module_and_the_controller_re_exports_it():
    """The stores check tokens with pravega_wire.server.tokens, which does not load gRPC; the
    names it had in the controller module stay importable from there."""
    import pravega_wire.server.controller as controller
    import pravega_wire.server.tokens as tokens
    assert controller.verify_token is tokens.verify_token
    assert controller.TokenCheck is tokens.TokenCheck
    assert controller._issue_token is tokens.issue_token
    code = ("import sys, pravega_wire.server.tokens as t; "
            "assert t.verify_token(t.issue_token(b'k', 's', 't', 60, 0), b'k', now=1) == 'ok'; "
            "print('grpc' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_events_and_append_end_frame_an_append():
    writer = uuid.UUID(int=7)
    data = events(b"ab", b"")
    assert data == bytes.fromhex("00000000" "00000002" "6162" "00000000" "00000000")
    end = append_end(writer, data, last_event=2, count=2, request_id=9)
    assert (end.size_of_whole_events, end.num_events, end.last_event_number,
            end.request_id) == (len(data), 2, 2, 9)


@pytest.mark.asyncio
async def test_wire_reports_a_server_close():
    async def serve(reader, writer):
        writer.write(encode(C.KeepAlive()))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        wire = await Wire.open(server.sockets[0].getsockname()[:2], hello=False)
        assert await wire.closed_by_server()
        assert wire.pending == [C.KeepAlive()]
        await wire.close()
    finally:
        server.close()
        await server.wait_closed()
