"""Benchmarks of the connection layer and the pool (pytest-benchmark; medians are what count).

* Request/reply round trips per second through pooled flows (64 requests in flight per flow;
  1 flow on 1 connection, and 16 flows on 4 connections), side by side with, over the same
  number of loopback connections:
  - the ceiling: a bare asyncio Protocol request/reply client without the library, doing the
    least any such client does per message (split frames with ``struct``, read the request id,
    frame the next request: the same bytes) and writing once per loop iteration;
  - the transport bound, for reference: no per-message work at all (it multiplies a ready
    request by the number of 24-byte replies that arrived).
  All talk to the same minimal segment-store stand-in running in its own process (it parses
  frame headers with ``struct`` and answers each GetSegmentAttribute with a SegmentAttribute of
  the same request id). The pooled client runs with the pure and with the compiled twins (codec
  and append encoder); its listener builds a GetSegmentAttribute per reply, as a raw client
  would. ``test_round_trip_ratio_interleaved`` alternates bare and pooled rounds so both see
  the same machine load, and records the median of the per-pair ratios.
* Flow open + close per second on an open pooled connection.
* Memory per idle open flow (tracemalloc), recorded in ``extra_info``.

Run: ``/tmp/venv/bin/python -m pytest bench/test_bench_pool.py -p no:cacheprovider
--benchmark-columns=median,mean,stddev,rounds`` (``extra_info`` holds the derived rates; add
``--benchmark-json=FILE`` to keep them).
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import statistics
import struct
import subprocess
import sys
import time
import tracemalloc
import uuid

import pytest

from pravega_wire import _appends_py, _codec_py
from pravega_wire import commands as C
from pravega_wire import connection as connection_module
from pravega_wire.flow import pack_request_id
from pravega_wire.pool import ClientConfig, ConnectionPool

ROUND_TRIPS = 60_000
IN_FLIGHT = 64
ATTRIBUTE = uuid.UUID(int=0x1234)

SERVER = r"""
import asyncio, struct, sys
HEADER = struct.Struct(">ii")
RID = struct.Struct(">q")
REPLY = struct.Struct(">iiqq")
HELLO = HEADER.pack(-127, 8) + struct.pack(">ii", 17, 5)

class Store(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport
        self.rest = b""

    def data_received(self, data):
        buf = self.rest + data if self.rest else data
        out = []
        pos, n = 0, len(buf)
        while n - pos >= 8:
            kind, length = HEADER.unpack_from(buf, pos)
            end = pos + 8 + length
            if end > n:
                break
            if kind == 34:  # GetSegmentAttribute -> SegmentAttribute(requestId, 0)
                out.append(REPLY.pack(35, 16, RID.unpack_from(buf, pos + 8)[0], 0))
            elif kind == -127:
                out.append(HELLO)
            elif kind == 100:
                out.append(buf[pos:end])
            pos = end
        self.rest = buf[pos:]
        if out:
            self.transport.write(b"".join(out))

async def main():
    server = await asyncio.get_running_loop().create_server(Store, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until EOF

asyncio.run(main())
"""


@pytest.fixture(scope="module")
def endpoint():
    """The segment-store stand-in, in its own process; it exits when its stdin closes."""
    proc = subprocess.Popen([sys.executable, "-c", SERVER], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        port = int(proc.stdout.readline())
        yield ("127.0.0.1", port)
    finally:
        proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def loop():
    loop = asyncio.new_event_loop()
    yield loop
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()


def _twin(name: str):
    """(codec module, CommandEncoder class) of one twin; skip if the compiled one is absent."""
    if name == "pure":
        return _codec_py, _appends_py.CommandEncoder
    try:
        codec = importlib.import_module("pravega_wire._codec")
        appends = importlib.import_module("pravega_wire._appends")
    except ImportError as e:
        pytest.skip(f"the compiled twins are not built: {e}")
    return codec, appends.CommandEncoder


@pytest.fixture(params=["pure", "compiled"])
def twin(request, monkeypatch):
    codec, encoder = _twin(request.param)
    monkeypatch.setattr(connection_module, "CommandEncoder", encoder)
    monkeypatch.setattr(_appends_py, "_encode_command", codec.encode)
    return codec


def _request(rid: int) -> C.GetSegmentAttribute:
    return C.GetSegmentAttribute(rid, "s", ATTRIBUTE, "")


# -- the ceiling: a bare asyncio client ----------------------------------------------------------


class _Run:
    __slots__ = ("target", "sent", "received", "done")

    def __init__(self, loop, target):
        self.target, self.sent, self.received = target, 0, 0
        self.done = loop.create_future()


class TransportClient(asyncio.Protocol):
    """The transport bound: sends ``k`` copies of a pre-encoded request for ``k`` replies'
    worth of bytes (fixed 24-byte replies), one write per data_received, no per-message work."""

    REPLY_SIZE = 24

    def __init__(self, request: bytes):
        self.request = request
        self.transport = None
        self.partial = 0
        self.run = None

    def connection_made(self, transport):
        self.transport = transport

    def start(self, run: _Run, n: int):
        self.run = run
        run.sent += n
        self.transport.write(self.request * n)

    def data_received(self, data):
        run = self.run
        if run is None:  # the Hello
            return
        total = self.partial + len(data)
        k, self.partial = divmod(total, self.REPLY_SIZE)
        run.received += k
        more = min(k, run.target - run.sent)
        if more > 0:
            run.sent += more
            self.transport.write(self.request * more)
        elif run.received == run.target:
            run.done.set_result(None)


_HEADER = struct.Struct(">ii")
_RID = struct.Struct(">q")


class BareClient(TransportClient):
    """The ceiling: a bare asyncio request/reply client doing the least per message that such
    a client must: split the frames (``struct``), read each reply's request id, frame the next
    request (same bytes as the pooled client's) and write everything once per data_received."""

    def __init__(self, request: bytes):
        super().__init__(request)
        self.head, self.tail = request[:8], request[16:]  # the request id sits at 8..16
        self.rest = b""

    def start(self, run: _Run, n: int):
        self.run = run
        run.sent += n
        head, tail, pack = self.head, self.tail, _RID.pack
        self.transport.write(b"".join(head + pack(i) + tail for i in range(n)))

    def data_received(self, data):
        run = self.run
        if run is None:  # the Hello
            return
        buf = self.rest + data if self.rest else data
        pos, n = 0, len(buf)
        out = []
        head, tail, pack, unpack_header, unpack_rid = (
            self.head, self.tail, _RID.pack, _HEADER.unpack_from, _RID.unpack_from)
        while n - pos >= 8:
            kind, length = unpack_header(buf, pos)
            end = pos + 8 + length
            if end > n:
                break
            if kind == 35:
                run.received += 1
                if run.sent < run.target:
                    run.sent += 1
                    out.append(head + pack(unpack_rid(buf, pos + 8)[0] + 1) + tail)
            pos = end
        self.rest = buf[pos:]
        if out:
            self.transport.write(b"".join(out))
        elif run.received == run.target:
            run.done.set_result(None)


async def _bare_clients(endpoint, connections, kind=BareClient):
    loop = asyncio.get_running_loop()
    request = _codec_py.encode(_request(pack_request_id(1, 1)))
    clients = []
    for _ in range(connections):
        _, client = await loop.create_connection(lambda: kind(request), *endpoint)
        client.transport.write(_codec_py.encode(C.Hello(17, 5)))
        clients.append(client)
    await asyncio.sleep(0.05)  # the Hellos come back (ignored)
    return clients


async def _bare_round(clients, per_connection):
    run = _Run(asyncio.get_running_loop(), ROUND_TRIPS)
    for client in clients:
        client.start(run, per_connection)
    await run.done


# -- pooled flows --------------------------------------------------------------------------------


_SegmentAttribute, _GetSegmentAttribute = C.SegmentAttribute, C.GetSegmentAttribute


class Pinger:
    """A flow's listener keeping ``IN_FLIGHT`` requests outstanding. Like the bare client, it
    does the least a user of the library must per reply: check the reply's type, count it,
    build the next request (a new command record with the next request id of the flow) and
    send it on the flow; names it uses per reply are bound once, as the bare client binds its
    own."""

    __slots__ = ("flow", "send", "base", "run", "seq")

    def __init__(self):
        self.flow = self.send = self.run = None
        self.base = self.seq = 0

    def reply_received(self, reply):
        if type(reply) is not _SegmentAttribute:
            return
        run = self.run
        run.received += 1
        if run.sent < run.target:
            run.sent += 1
            seq = self.seq = self.seq + 1
            self.send(_GetSegmentAttribute(self.base | seq, "s", ATTRIBUTE, ""))
        elif run.received == run.target:
            run.done.set_result(None)

    def connection_lost(self, exc):
        if self.run is not None and not self.run.done.done():
            self.run.done.set_exception(exc)

    def attach(self, flow):
        self.flow, self.send, self.base = flow, flow.send, pack_request_id(flow.flow_id, 0)

    def start(self, run):
        self.run = run
        run.sent += IN_FLIGHT
        for _ in range(IN_FLIGHT):
            self.seq += 1
            self.send(_request(pack_request_id(self.flow.flow_id, self.seq)))


async def _pooled_flows(endpoint, codec, flows, connections):
    pool = ConnectionPool(ClientConfig(max_connections_per_segment_store=connections),
                          codec=codec)
    pingers = []
    for _ in range(flows):
        pinger = Pinger()
        pinger.attach(await pool.open_flow(endpoint, pinger))
        pingers.append(pinger)
    assert len(pool.stats().endpoints[endpoint]) == connections
    return pool, pingers


async def _pooled_round(pingers):
    run = _Run(asyncio.get_running_loop(), ROUND_TRIPS)
    for pinger in pingers:
        pinger.start(run)
    await run.done


SHAPES = {"1flow-1conn": (1, 1), "16flows-4conns": (16, 4)}


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("client", ["bare_asyncio_ceiling", "transport_bound"])
def test_round_trips_without_the_library(benchmark, endpoint, loop, shape, client):
    flows, connections = SHAPES[shape]
    benchmark.group = f"round trips {shape} ({IN_FLIGHT} in flight per flow)"
    kind = BareClient if client == "bare_asyncio_ceiling" else TransportClient
    clients = loop.run_until_complete(_bare_clients(endpoint, connections, kind))
    per_connection = IN_FLIGHT * flows // connections
    benchmark.pedantic(lambda: loop.run_until_complete(_bare_round(clients, per_connection)),
                       rounds=9, warmup_rounds=1)
    benchmark.extra_info["round_trips_per_second"] = ROUND_TRIPS / benchmark.stats.stats.median
    for client in clients:
        client.transport.close()


@pytest.mark.parametrize("shape", SHAPES)
def test_round_trips_pooled_flows(benchmark, endpoint, loop, twin, shape):
    flows, connections = SHAPES[shape]
    benchmark.group = f"round trips {shape} ({IN_FLIGHT} in flight per flow)"
    pool, pingers = loop.run_until_complete(_pooled_flows(endpoint, twin, flows, connections))
    benchmark.pedantic(lambda: loop.run_until_complete(_pooled_round(pingers)),
                       rounds=9, warmup_rounds=1)
    benchmark.extra_info["round_trips_per_second"] = ROUND_TRIPS / benchmark.stats.stats.median
    assert pool.stats().replies_dropped == 0
    loop.run_until_complete(pool.close())


# -- flow open/close and memory ------------------------------------------------------------------

OPEN_CLOSE = 20_000


class Idle:
    __slots__ = ()

    def reply_received(self, reply):
        pass

    def connection_lost(self, exc):
        pass


def test_flow_open_close(benchmark, endpoint, loop):
    benchmark.group = "flows"
    pool = ConnectionPool()
    listener = Idle()

    async def churn():
        open_flow = pool.open_flow
        for _ in range(OPEN_CLOSE):
            (await open_flow(endpoint, listener)).close()

    loop.run_until_complete(churn())  # the connection is open from here on
    benchmark.pedantic(lambda: loop.run_until_complete(churn()), rounds=9, warmup_rounds=1)
    benchmark.extra_info["open_close_per_second"] = OPEN_CLOSE / benchmark.stats.stats.median
    loop.run_until_complete(pool.close())


IDLE_FLOWS = 10_000


def test_memory_per_idle_flow(benchmark, endpoint, loop):
    """Opens 10,000 idle flows (one shared listener, so only the pool's own memory counts) on
    10 connections; the time is that of opening them, the bytes per flow are in extra_info."""
    benchmark.group = "flows"
    listener = Idle()
    per_flow = []

    def open_many():
        pool = ConnectionPool()

        async def go():
            for _ in range(10):  # the connections first: their buffers are not per flow
                await pool.open_flow(endpoint, listener)
            gc.collect()
            tracemalloc.start()
            before = tracemalloc.take_snapshot()
            flows = [await pool.open_flow(endpoint, listener) for _ in range(IDLE_FLOWS)]
            gc.collect()
            after = tracemalloc.take_snapshot()
            tracemalloc.stop()
            per_flow.append(sum(s.size_diff for s in after.compare_to(before, "filename"))
                            / IDLE_FLOWS)
            assert len(flows) == IDLE_FLOWS
            await pool.close()

        loop.run_until_complete(go())

    benchmark.pedantic(open_many, rounds=3)
    per_flow.sort()
    benchmark.extra_info["bytes_per_idle_flow"] = per_flow[len(per_flow) // 2]


PAIRS = 15


@pytest.mark.parametrize("shape", SHAPES)
def test_round_trip_ratio_interleaved(benchmark, endpoint, loop, twin, shape):
    """Pooled flows against the bare ceiling in alternating rounds (``PAIRS`` pairs), so that
    both see the same machine load: ``extra_info`` holds each side's median round trips per
    second, the ratio of those medians, and ``pooled_over_bare``: the median of the per-pair
    ratios, which a load that drifts between pairs does not skew (the figure to quote). The
    timed function is the whole alternation."""
    flows, connections = SHAPES[shape]
    benchmark.group = "pooled / bare ratio (interleaved rounds)"
    clients = loop.run_until_complete(_bare_clients(endpoint, connections))
    pool, pingers = loop.run_until_complete(_pooled_flows(endpoint, twin, flows, connections))
    per_connection = IN_FLIGHT * flows // connections
    bare, pooled = [], []

    def alternate():
        for _ in range(PAIRS):
            start = time.perf_counter()
            loop.run_until_complete(_bare_round(clients, per_connection))
            bare.append(time.perf_counter() - start)
            start = time.perf_counter()
            loop.run_until_complete(_pooled_round(pingers))
            pooled.append(time.perf_counter() - start)

    loop.run_until_complete(_pooled_round(pingers))  # warm up both
    loop.run_until_complete(_bare_round(clients, per_connection))
    benchmark.pedantic(alternate, rounds=1)
    bare_rate = ROUND_TRIPS / statistics.median(bare)
    pooled_rate = ROUND_TRIPS / statistics.median(pooled)
    benchmark.extra_info.update(
        bare_round_trips_per_second=bare_rate, pooled_round_trips_per_second=pooled_rate,
        ratio_of_medians=pooled_rate / bare_rate,
        pooled_over_bare=statistics.median(b / p for b, p in zip(bare, pooled)))
    for client in clients:
        client.transport.close()
    loop.run_until_complete(pool.close())
