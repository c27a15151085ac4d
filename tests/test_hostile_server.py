"""A hostile segment store against a real ConnectionPool flow: the client's memory stays bounded
(measured with tracemalloc) and every protocol violation closes the connection with a typed error.

The hostile peer runs in a child process (this file run as a script: ``python
tests/test_hostile_server.py SCENARIO``), so that tracemalloc and the file-descriptor count see
the client alone. The peer answers the client's Hello, reads the flow's first request (for its
request id), then misbehaves:

- ``big``: one SegmentRead frame of the largest size a client accepts (a payload of
  16 777 215 bytes = 16 MiB − 1, the frame 8 bytes more) trickled in 16 KiB pieces;
- a frame the client must reject (over 16 MiB, negative length, unknown type, type 0, a
  top-level PartialEvent, a request type, random bytes);
- ``partial``: half of a 1 MiB frame, then silence with the socket open;
- ``trickle``: a 16 MiB frame one byte every 20 ms, for ever;
- ``flood``: 50,000 replies (SegmentRead and DataAppended), each for another flow that is not
  open, then the real reply;
- ``hellos``: 200,000 Hellos, then the real reply (``bad_hello``: an incompatible one among
  them).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import socket
import struct
import sys
import time
import tracemalloc
import uuid
from pathlib import Path

if __name__ == "__main__":  # the hostile peer: make the package importable from a clean clone
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pravega_wire import commands as C
from pravega_wire.codec import FrameDecoder, encode, encode_utf
import pravega_wire

SEGMENT = "hostile/stream/0.#epoch.0"
MAX_PAYLOAD = C.MAX_WIRECOMMAND_SIZE  # the most a client reader accepts
FLOOD = 50_000
# 3.2 MB of Hellos (decoded all at once they would take > 10 MB); the pure twin, ~40x slower to
# decode, gets a tenth of that within the same time bounds.
STORM = 200_000 if pravega_wire.IMPLEMENTATION == "compiled" else 20_000
_HEADER = struct.Struct(">ii")
_READ_MIDDLE = struct.Struct(">q??i")


# ---- the hostile peer (child process) -----------------------------------------------------------

def _segment_read_frame(request_id: int, payload_length: int) -> bytes:
    """A SegmentRead frame with exactly ``payload_length`` payload bytes (built by hand: the
    encoder refuses frames over 16 MiB − 1 in total)."""
    name = encode_utf(SEGMENT)
    data_length = payload_length - len(name) - _READ_MIDDLE.size - 8
    return b"".join((_HEADER.pack(C.SegmentRead.TYPE, payload_length), name,
                     _READ_MIDDLE.pack(0, False, False, data_length),
                     bytes(data_length), struct.pack(">q", request_id)))


BAD_FRAMES = {
    "oversized": _HEADER.pack(C.SegmentRead.TYPE, MAX_PAYLOAD + 1),
    "negative_length": _HEADER.pack(C.SegmentRead.TYPE, -1),
    "unknown_type": _HEADER.pack(13, 0),
    "event_frame": _HEADER.pack(0, 4) + b"abcd",
    "partial_event": _HEADER.pack(-2, 4) + b"abcd",
    "request_type": encode(C.SetupAppend(1, uuid.UUID(int=1), SEGMENT, "")),
    "garbage": bytes(range(7, 255, 3)) * 4,
}


def _peer(scenario: str) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    print(listener.getsockname()[1], flush=True)
    listener.settimeout(60)
    conn, _ = listener.accept()
    conn.settimeout(60)
    decoder = FrameDecoder(server=True)
    pending: list = []

    def next_request():
        while True:
            while pending:
                cmd = pending.pop(0)
                if type(cmd) not in (C.Hello, C.KeepAlive):
                    return cmd
            data = conn.recv(65536)
            if not data:
                raise SystemExit(0)
            pending.extend(decoder.feed(data))

    conn.sendall(encode(C.Hello(C.WIRE_VERSION, C.OLDEST_COMPATIBLE_VERSION)))
    request = next_request()
    rid = request.request_id
    reply = encode(C.SegmentRead(SEGMENT, 0, True, False, b"ok", rid))
    if scenario == "big":
        frame = memoryview(_segment_read_frame(rid, MAX_PAYLOAD))
        for pos in range(0, len(frame), 16384):
            conn.sendall(frame[pos:pos + 16384])
            time.sleep(0.0005)
    elif scenario in BAD_FRAMES:
        conn.sendall(BAD_FRAMES[scenario])
    elif scenario == "partial":
        conn.sendall(_segment_read_frame(rid, 1 << 20)[:1 << 19])
    elif scenario == "trickle":
        frame = _segment_read_frame(rid, MAX_PAYLOAD)
        conn.sendall(frame[:64])
        for byte in frame[64:64 + 60_000]:  # 20 minutes' worth: the client gives up first
            conn.sendall(bytes((byte,)))
            time.sleep(0.02)
    elif scenario == "flood":  # every reply for a different flow that is not open
        first = (rid >> 32) + 1
        frames = []
        for i in range(FLOOD // 2):
            frames.append(encode(C.SegmentRead(SEGMENT, 0, False, False, b"x" * 32,
                                               (first + i) << 32)))
            frames.append(encode(C.DataAppended((first + FLOOD + i) << 32, uuid.UUID(int=i), 5,
                                                4, 100)))
        for pos in range(0, len(frames), 1000):
            conn.sendall(b"".join(frames[pos:pos + 1000]))
        conn.sendall(reply)
    elif scenario in ("hellos", "bad_hello"):
        hello = encode(C.Hello(C.WIRE_VERSION, C.OLDEST_COMPATIBLE_VERSION))
        burst = hello * 1000
        for i in range(STORM // 1000):
            conn.sendall(burst)
            if scenario == "bad_hello" and i == STORM // 2000:
                conn.sendall(encode(C.Hello(4, 1)))
        conn.sendall(reply)
    else:
        raise SystemExit(f"unknown scenario {scenario!r}")
    with contextlib.suppress(OSError):  # stay until the client hangs up
        while conn.recv(65536):
            pass


if __name__ == "__main__":
    _peer(sys.argv[1])
    raise SystemExit(0)


# ---- the tests (client side) ----------------------------------------------------------------------

import pytest  # noqa: E402

from pravega_wire.errors import (ConnectionFailedError, IncompatibleVersionError,  # noqa: E402
                                 InvalidMessageError)
from pravega_wire.pool import ClientConfig, ConnectionPool  # noqa: E402
from pravega_wire.server import SegmentStore  # noqa: E402

#: Allowance over the frame itself: the asyncio read buffer (256 KiB), the decoder's objects.
SLACK = 1 << 20
CONFIG = dict(connect_timeout=5.0, read_timeout=1.0, keepalive_interval=0.3)


class Listener:
    """Records a flow's replies (sizes, not payloads) and its loss."""

    def __init__(self):
        self.kinds: list = []
        self.sizes: list = []
        self.hellos = 0
        self.lost: list = []
        self._loop = asyncio.get_running_loop()
        self.changed = asyncio.Event()

    def reply_received(self, reply) -> None:
        assert not self.lost, "a reply after connection_lost"
        if type(reply) is C.Hello:
            self.hellos += 1
        else:
            self.kinds.append(type(reply))
            self.sizes.append(len(reply.data) if type(reply) is C.SegmentRead else 0)
        self.changed.set()

    def connection_lost(self, exc) -> None:
        self.lost.append(exc)
        self.changed.set()

    async def wait(self, predicate, timeout: float = 30.0) -> None:
        async def poll():
            while not predicate():
                self.changed.clear()
                await self.changed.wait()
        await asyncio.wait_for(poll(), timeout)


@contextlib.asynccontextmanager
async def hostile(scenario: str):
    """The hostile peer in a child process; yields its endpoint."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, scenario, stdout=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL)
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        yield ("127.0.0.1", int(line))
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


async def open_reading_flow(pool, endpoint) -> tuple:
    listener = Listener()
    flow = await pool.open_flow(endpoint, listener)
    flow.send(C.ReadSegment(SEGMENT, 0, 1024, "", flow.flow_id << 32))
    return flow, listener


def traced() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


@pytest.fixture
def memory():
    tracemalloc.start()
    try:
        yield
    finally:
        tracemalloc.stop()


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.asyncio
async def test_a_16_mib_frame_trickled_in_is_delivered_within_its_size_in_memory(memory):
    async with hostile("big") as endpoint, ConnectionPool(ClientConfig(**CONFIG)) as pool:
        flow, listener = await open_reading_flow(pool, endpoint)
        baseline = traced()
        tracemalloc.reset_peak()
        await listener.wait(lambda: listener.kinds or listener.lost)
        peak = tracemalloc.get_traced_memory()[1] - baseline
        after = traced() - baseline
        print(f"\nhostile big frame: peak {peak} bytes for a {MAX_PAYLOAD}-byte payload, "
              f"{after:+d} bytes after")
        assert listener.kinds == [C.SegmentRead] and not listener.lost
        assert listener.sizes[0] == MAX_PAYLOAD - len(encode_utf(SEGMENT)) - 22
        assert MAX_PAYLOAD <= peak <= MAX_PAYLOAD + SLACK, peak
        assert after < SLACK  # the frame's buffer is gone with the reply
        assert flow.connection.is_open


@pytest.mark.asyncio
@pytest.mark.parametrize("scenario", sorted(BAD_FRAMES))
async def test_a_frame_the_protocol_forbids_closes_only_its_connection(memory, scenario):
    async with SegmentStore() as store, hostile(scenario) as endpoint, \
            ConnectionPool(ClientConfig(**CONFIG)) as pool:
        store.create_segment(SEGMENT)
        # Data to read: a read at the tail of an empty segment would be held (for a minute).
        store.storage.append(store.storage.get(SEGMENT), b"data")
        good, good_listener = await open_reading_flow(pool, store.endpoint)
        await good_listener.wait(lambda: good_listener.kinds)
        flow, listener = await open_reading_flow(pool, endpoint)
        conn = flow.connection
        baseline = traced()
        tracemalloc.reset_peak()
        await listener.wait(lambda: listener.lost)
        assert tracemalloc.get_traced_memory()[1] - baseline < SLACK
        (error,) = listener.lost
        assert isinstance(error, ConnectionFailedError)
        assert isinstance(error.__cause__, InvalidMessageError), repr(error.__cause__)
        assert conn.is_closed and flow.is_closed and not listener.kinds
        assert list(pool.stats().endpoints) == [store.endpoint]
        assert good.connection.is_open and not good_listener.lost  # no other connection touched
        good.send(C.ReadSegment(SEGMENT, 0, 1024, "", good.flow_id << 32))
        await good_listener.wait(lambda: len(good_listener.kinds) == 2)


@pytest.mark.asyncio
async def test_a_partial_frame_then_silence_is_cut_off_by_the_read_timeout(memory):
    fds = open_fds()
    async with hostile("partial") as endpoint:
        async with ConnectionPool(ClientConfig(**CONFIG)) as pool:
            flow, listener = await open_reading_flow(pool, endpoint)
            baseline = traced()
            tracemalloc.reset_peak()
            await listener.wait(lambda: listener.lost, timeout=CONFIG["read_timeout"] * 10)
            (error,) = listener.lost
            assert type(error) is ConnectionFailedError and "read timeout" in str(error)
            peak = tracemalloc.get_traced_memory()[1] - baseline
            after = traced() - baseline
            print(f"\nhostile partial frame: peak {peak} bytes, {after:+d} bytes after")
            assert peak < (1 << 20) + SLACK
            assert after < SLACK
            assert pool.stats().open_connections == 0
    assert open_fds() == fds


@pytest.mark.asyncio
async def test_a_frame_trickled_in_for_ever_is_cut_off(memory):
    """Bytes keep arriving, but the frame never completes: after the read timeout the connection
    is closed, as if the server were silent."""
    async with hostile("trickle") as endpoint, ConnectionPool(ClientConfig(**CONFIG)) as pool:
        flow, listener = await open_reading_flow(pool, endpoint)
        baseline = traced()
        tracemalloc.reset_peak()
        try:
            await listener.wait(lambda: listener.lost, timeout=CONFIG["read_timeout"] * 4)
        finally:
            assert tracemalloc.get_traced_memory()[1] - baseline < MAX_PAYLOAD + SLACK
        assert isinstance(listener.lost[0], ConnectionFailedError)


@pytest.mark.asyncio
async def test_a_flood_of_replies_for_unknown_flows_is_dropped_in_bounded_memory(memory, caplog):
    caplog.set_level(logging.ERROR, logger="pravega_wire.connection")  # one warning per reply
    async with hostile("flood") as endpoint, ConnectionPool(ClientConfig(**CONFIG)) as pool:
        flow, listener = await open_reading_flow(pool, endpoint)
        baseline = traced()
        tracemalloc.reset_peak()
        await listener.wait(lambda: listener.kinds or listener.lost)
        assert listener.kinds == [C.SegmentRead] and not listener.lost
        assert flow.connection.replies_dropped == FLOOD
        assert pool.stats().replies_dropped == FLOOD
        # One read (at most 256 KiB, ~4,000 of these replies) is decoded at a time: the peak is
        # that batch's objects, not the flood's (50,000 decoded replies would take ~15 MiB).
        peak = tracemalloc.get_traced_memory()[1] - baseline
        after = traced() - baseline
        print(f"\nhostile flood of {FLOOD} replies: peak {peak} bytes, {after:+d} bytes after")
        assert peak < 4 * SLACK
        assert after < 64 * 1024
        assert flow.connection.is_open


@pytest.mark.asyncio
async def test_a_hello_storm_keeps_the_connection_in_bounded_memory(memory):
    async with hostile("hellos") as endpoint, ConnectionPool(ClientConfig(**CONFIG)) as pool:
        flow, listener = await open_reading_flow(pool, endpoint)
        baseline = traced()
        tracemalloc.reset_peak()
        await listener.wait(lambda: listener.kinds or listener.lost)
        assert listener.kinds == [C.SegmentRead] and not listener.lost
        assert listener.hellos == 1 + STORM  # the handshake's, then every one of the storm
        peak = tracemalloc.get_traced_memory()[1] - baseline
        after = traced() - baseline
        print(f"\nhostile storm of {STORM} Hellos: peak {peak} bytes, {after:+d} bytes after")
        assert peak < 4 * SLACK  # about one read's worth of decoded Hellos, never the storm's
        assert after < 64 * 1024
        assert flow.connection.is_open


@pytest.mark.asyncio
async def test_an_incompatible_hello_in_a_storm_closes_with_a_typed_error(memory):
    async with hostile("bad_hello") as endpoint, ConnectionPool(ClientConfig(**CONFIG)) as pool:
        flow, listener = await open_reading_flow(pool, endpoint)
        await listener.wait(lambda: listener.lost)
        (error,) = listener.lost
        assert isinstance(error, IncompatibleVersionError)
        assert not listener.kinds and flow.is_closed
        assert pool.stats().open_connections == 0
