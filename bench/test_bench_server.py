"""Server-side throughput of the embedded segment store over loopback.

Appends: a client stream encoded before timing (SetupAppend for a fresh writer, then the
appends) is written to one connection; a round ends when every acknowledgement has arrived (the
client only counts reply bytes, so the figure is the store's). Shapes: one 100-byte event per
append (the Rust client's lone AppendBlockEnd), Java-style batched blocks of 100-byte events cut
by ``CommandEncoder`` (AppendBlock + PartialEvent + AppendBlockEnd), 64 KiB and 1 MiB appends,
64 KiB appends on durable storage (fsync per group commit), and, as the ceiling, a plain asyncio
sink that swallows the same 64 KiB stream.

Reads: one reader reads a 32 MiB segment from start to end, one ReadSegment in flight, with
256 KiB and 2 MiB suggested lengths.

Run: ``python -m pytest bench/test_bench_server.py -p no:cacheprovider --benchmark-only``.
Medians, and blocks/s and MB/s derived from them, are in each benchmark's ``extra_info``.
"""

from __future__ import annotations

import asyncio
import importlib
import tempfile
import uuid

import pytest

from pravega_wire import commands as C
from pravega_wire.appends import CommandEncoder
from pravega_wire.codec import FrameDecoder, encode, encode_event
from pravega_wire.codec import pure_requested
from pravega_wire.server import segmentstore
from pravega_wire.server.segmentstore import SegmentStore
from pravega_wire.server.storage import Storage

SEGMENT = "bench/stream/0.#epoch.0"
READ_SEGMENT_SIZE = 32 * 1024 * 1024
ROUNDS = 5


@pytest.fixture(params=["compiled", "pure"])
def twin(request, monkeypatch):
    """Run the store on the compiled or the pure-Python codec and append decoder."""
    if request.param == "pure":
        codec, appends = (importlib.import_module("pravega_wire._codec_py"),
                          importlib.import_module("pravega_wire._appends_py"))
    else:
        if pure_requested():
            pytest.skip("PRAVEGA_WIRE_NO_EXTENSIONS is set")
        try:
            codec, appends = (importlib.import_module("pravega_wire._codec"),
                              importlib.import_module("pravega_wire._appends"))
        except ImportError as exc:
            pytest.skip(f"the compiled twins are not built: {exc}")
    for name in ("FrameDecoder", "encode", "encode_parts"):
        monkeypatch.setattr(segmentstore, name, getattr(codec, name))
    monkeypatch.setattr(segmentstore, "AppendDecoder", appends.AppendDecoder)
    return request.param


class _Harness:
    """A store (or a sink) on its own event loop, and one client connection to it."""

    def __init__(self, store: SegmentStore | None):
        self.loop = asyncio.new_event_loop()
        self.store = store
        self.sink_server: asyncio.AbstractServer | None = None
        if store is not None:
            self.loop.run_until_complete(store.start())
            endpoint = store.endpoint
        else:
            self.sink_server = self.loop.run_until_complete(
                self.loop.create_server(_Sink, "127.0.0.1", 0))
            endpoint = self.sink_server.sockets[0].getsockname()[:2]
        self.reader, self.writer = self.loop.run_until_complete(
            asyncio.open_connection(*endpoint, limit=1 << 22))

    def fresh_segment(self) -> None:
        assert self.store is not None
        self.store.delete_segment(SEGMENT)
        self.store.create_segment(SEGMENT)

    async def _push(self, stream: bytes, reply_bytes: int) -> None:
        self.writer.write(stream)
        received = 0
        while received < reply_bytes:
            chunk = await asyncio.wait_for(self.reader.read(1 << 20), 60)
            if not chunk:
                raise ConnectionError("the server closed the connection")
            received += len(chunk)

    def push(self, stream: bytes, reply_bytes: int) -> None:
        self.loop.run_until_complete(self._push(stream, reply_bytes))

    async def _read_all(self, suggested: int) -> int:
        decoder = FrameDecoder()
        offset = 0
        while offset < READ_SEGMENT_SIZE:
            self.writer.write(encode(C.ReadSegment(SEGMENT, offset, suggested, "", 1)))
            replies: list = []
            while not replies:
                chunk = await asyncio.wait_for(self.reader.read(1 << 22), 60)
                replies = decoder.feed(chunk)
            (reply,) = replies
            offset += len(reply.data)
        return offset

    def read_all(self, suggested: int) -> int:
        return self.loop.run_until_complete(self._read_all(suggested))

    def close(self) -> None:
        self.writer.close()
        if self.store is not None:
            self.loop.run_until_complete(self.store.stop())
            self.store.storage.close()
        if self.sink_server is not None:
            self.sink_server.close()
            self.loop.run_until_complete(self.sink_server.wait_closed())
        self.loop.close()


class _Sink(asyncio.Protocol):
    """The ceiling: swallow the stream; answer one byte each time ``expected`` bytes came."""

    expected = 0

    def connection_made(self, transport):
        self.transport = transport
        self.received = 0

    def data_received(self, data):
        self.received += len(data)
        if self.received >= self.expected:
            self.received -= self.expected
            self.transport.write(b"\x01")


def _lone_block_ends(writer: uuid.UUID, payload_size: int, events_per_append: int,
                     appends: int) -> bytes:
    """SetupAppend, then ``appends`` lone AppendBlockEnds (the Rust client's framing)."""
    data = encode_event(bytes(payload_size)) * events_per_append
    frames = [encode(C.SetupAppend(1, writer, SEGMENT, ""))]
    for number in range(1, appends + 1):
        frames.append(encode(C.AppendBlockEnd(writer, len(data), data, events_per_append,
                                              number * events_per_append, 1)))
    return b"".join(frames)


def _java_blocks(writer: uuid.UUID, payload_size: int, events: int, block: int) -> bytes:
    """SetupAppend, then ``events`` events through Java's encoder with fixed ``block`` size."""
    encoder = CommandEncoder(block_size=lambda flow: block)
    encoder.write_command(C.SetupAppend(1 << 32, writer, SEGMENT, ""))
    payload = bytes(payload_size)
    for number in range(1, events + 1):
        encoder.append_event(SEGMENT, writer, number, payload, request_id=1 << 32)
    encoder.write_command(C.KeepAlive())
    return encoder.data_to_send()


def _reply_bytes(writer: uuid.UUID, appends: int, keep_alive: bool = False) -> int:
    setup = len(encode(C.AppendSetup(1, SEGMENT, writer, 0)))
    ack = len(encode(C.DataAppended(1, writer, 1, 0, 0)))
    return setup + appends * ack + (8 if keep_alive else 0)


APPEND_SHAPES = {
    # name: (payload bytes per event, events per append, appends per round)
    "unbatched-100B": (100, 1, 20_000),
    "append-64KiB": (64 * 1024 - 8, 1, 400),
    "append-1MiB": (1024 * 1024 - 8, 1, 32),
}


def _throughput(benchmark, blocks: int, stream_bytes: int, events: int | None = None) -> None:
    """Record blocks/s (appends, each one acknowledged), events/s and MB/s of the median."""
    if benchmark.stats is None:  # --benchmark-disable: the body ran once, as a plain test
        return
    median = benchmark.stats.stats.median
    events = blocks if events is None else events
    benchmark.extra_info.update({
        "blocks_per_round": blocks, "events_per_round": events,
        "bytes_per_round": stream_bytes, "median_s": median,
        "blocks_per_s": round(blocks / median), "events_per_s": round(events / median),
        "MB_per_s": round(stream_bytes / median / 1e6, 1)})


@pytest.mark.parametrize("shape", APPEND_SHAPES)
def test_append_throughput(benchmark, shape, twin):
    payload, per_append, appends = APPEND_SHAPES[shape]
    harness = _Harness(SegmentStore())
    try:
        streams: list[tuple[bytes, int]] = []

        def setup():
            harness.fresh_segment()
            writer = uuid.uuid4()
            stream = _lone_block_ends(writer, payload, per_append, appends)
            streams.append((stream, _reply_bytes(writer, appends)))
            return (stream, streams[-1][1]), {}

        benchmark.pedantic(harness.push, setup=setup, rounds=ROUNDS, iterations=1)
        _throughput(benchmark, appends, len(streams[-1][0]), appends * per_append)
        assert harness.store.storage.get(SEGMENT).length == appends * per_append * (payload + 8)
    finally:
        harness.close()


def test_append_throughput_java_batched_100B_in_64KiB_blocks(benchmark, twin):
    events, block = 100_000, 64 * 1024
    harness = _Harness(SegmentStore())
    try:
        rounds: list[tuple[int, int]] = []

        def setup():
            harness.fresh_segment()
            writer = uuid.uuid4()
            stream = _java_blocks(writer, 100, events, block)
            blocks = stream.count(writer.bytes) // 2  # SetupAppend, then AppendBlock + end
            rounds.append((blocks, len(stream)))
            return (stream, _reply_bytes(writer, blocks, keep_alive=True)), {}

        benchmark.pedantic(harness.push, setup=setup, rounds=ROUNDS, iterations=1)
        _throughput(benchmark, rounds[-1][0], rounds[-1][1], events)
        assert harness.store.storage.get(SEGMENT).length == events * 108
    finally:
        harness.close()


def test_append_throughput_durable_64KiB(benchmark):
    payload, appends = 64 * 1024 - 8, 400
    with tempfile.TemporaryDirectory(prefix="pravega-wire-bench-") as directory:
        harness = _Harness(SegmentStore(Storage(directory)))
        try:
            sizes: list[int] = []

            def setup():
                harness.fresh_segment()
                writer = uuid.uuid4()
                stream = _lone_block_ends(writer, payload, 1, appends)
                sizes.append(len(stream))
                return (stream, _reply_bytes(writer, appends)), {}

            benchmark.pedantic(harness.push, setup=setup, rounds=ROUNDS, iterations=1)
            _throughput(benchmark, appends, sizes[-1])
        finally:
            harness.close()


def test_loopback_sink_ceiling_64KiB(benchmark):
    """The same 64 KiB stream into a protocol that only counts bytes: the transport's ceiling."""
    payload, appends = 64 * 1024 - 8, 400
    harness = _Harness(None)
    try:
        stream = _lone_block_ends(uuid.uuid4(), payload, 1, appends)
        _Sink.expected = len(stream)
        benchmark.pedantic(harness.push, args=(stream, 1), rounds=ROUNDS, iterations=1)
        _throughput(benchmark, appends, len(stream))
    finally:
        harness.close()


@pytest.mark.parametrize("suggested", [256 * 1024, 2 * 1024 * 1024], ids=["256KiB", "2MiB"])
def test_read_throughput(benchmark, suggested, twin):
    store = SegmentStore()
    store.create_segment(SEGMENT)
    segment = store.storage.get(SEGMENT)
    chunk = bytes(range(256)) * 4096
    for _ in range(READ_SEGMENT_SIZE // len(chunk)):
        store.storage.append(segment, chunk)
    harness = _Harness(store)
    try:
        result = benchmark.pedantic(harness.read_all, args=(suggested,), rounds=ROUNDS,
                                    iterations=1)
        assert result == READ_SEGMENT_SIZE
        if benchmark.stats is None:
            return
        median = benchmark.stats.stats.median
        benchmark.extra_info.update({"bytes_per_round": READ_SEGMENT_SIZE, "median_s": median,
                                     "MB_per_s": round(READ_SEGMENT_SIZE / median / 1e6, 1)})
    finally:
        harness.close()
