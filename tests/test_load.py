"""Load through one ConnectionPool against segment stores in a child process (so that the file
descriptors, tasks and tracemalloc figures are the client's alone): 100,000 flows opened and
closed, and 10,000 segments created, written and read back; afterwards sockets, tasks and memory
are back at their baseline (measured after a small warm-up run, so that first-use allocations
such as imports do not count as growth).

Sizes: ``LOAD_FLOWS`` (default 100,000), ``LOAD_SEGMENTS`` (default 10,000) and ``LOAD_EVENTS``
events per segment (default 4).
"""

from __future__ import annotations

import asyncio
import gc
import os
import tracemalloc
import uuid

import pytest

from pravega_wire import commands as C
from pravega_wire.client.raw import MetadataClient
from pravega_wire.client.reader import EndOfSegment, SegmentReader
from pravega_wire.client.writer import EventWriterConfig, SegmentWriter
from pravega_wire.pool import ClientConfig, ConnectionPool
from pravega_wire.server import EmbeddedCluster
from pravega_wire.server.placement import store_index_of

FLOWS = int(os.environ.get("LOAD_FLOWS", "100000"))
SEGMENTS = int(os.environ.get("LOAD_SEGMENTS", "10000"))
EVENTS = int(os.environ.get("LOAD_EVENTS", "4"))
STORES = 2
#: Flows open at the same time.
WIDTH = 1000
#: Segments written and read at the same time.
SEGMENT_WIDTH = 200
#: What may stay allocated after everything is closed, once a small warm-up run has made the
#: first-use allocations (imports, bounded caches such as the compiled codec's writer ids).
MEMORY_SLACK = 64 * 1024


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def traced() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


class Counter:
    """A flow listener that counts the replies it gets."""

    __slots__ = ("replies", "lost", "waiter")

    def __init__(self):
        self.replies = 0
        self.lost = None
        self.waiter = None

    def reply_received(self, reply) -> None:
        if type(reply) is not C.Hello:
            self.replies += 1
            if self.waiter is not None and not self.waiter.done():
                self.waiter.set_result(None)

    def connection_lost(self, exc) -> None:
        self.lost = exc


class Baseline:
    """fds, tasks and traced memory now, to compare with later."""

    def __init__(self):
        self.fds = open_fds()
        self.tasks = len(asyncio.all_tasks())
        self.memory = traced()

    def growth(self) -> tuple:
        return (open_fds() - self.fds, len(asyncio.all_tasks()) - self.tasks,
                traced() - self.memory)


@pytest.fixture(scope="module")
def cluster():
    with EmbeddedCluster.in_child_process(stores=STORES, controller=False) as child:
        yield child


@pytest.fixture
def memory():
    tracemalloc.start()
    try:
        yield
    finally:
        tracemalloc.stop()


async def _churn(endpoint, flows: int) -> tuple:
    """Open ``flows`` flows through one pool, WIDTH at a time, one in ten asking the store
    something, and close them; returns the pool's final stats and the replies counted."""
    config = ClientConfig(max_connections_per_segment_store=4, idle_timeout=None)
    loop = asyncio.get_running_loop()
    async with ConnectionPool(config) as pool:
        opened = answered = asked = 0
        while opened < flows:
            batch = []
            for _ in range(min(WIDTH, flows - opened)):
                listener = Counter()
                batch.append((await pool.open_flow(endpoint, listener), listener))
            opened += len(batch)
            assert pool.stats().open_flows == len(batch)
            asking = batch[::10]  # replies must reach the right flow under churn
            for flow, listener in asking:
                listener.waiter = loop.create_future()
                flow.send(C.GetSegmentAttribute(flow.flow_id << 32 | 1, "load/none/0",
                                                uuid.UUID(int=1), ""))
            await asyncio.wait_for(asyncio.gather(*(l.waiter for _, l in asking)), 30)
            answered += sum(listener.replies for _, listener in asking)
            asked += len(asking)
            for flow, listener in batch:
                flow.close()
                assert listener.lost is None
            assert pool.stats().open_flows == 0
        stats = pool.stats()
    assert answered == asked
    return stats


@pytest.mark.asyncio
async def test_100k_flows_opened_and_closed_leave_nothing_behind(cluster, memory):
    endpoint = cluster.store_endpoints[0]
    await _churn(endpoint, WIDTH)  # warm-up: first-use allocations are not growth
    base = Baseline()
    stats = await _churn(endpoint, FLOWS)
    assert stats.connections_opened == 4 and stats.connections_closed == 0
    assert stats.connect_failures == 0 and stats.replies_dropped == 0
    fds, tasks, memory = base.growth()
    print(f"\nload: {FLOWS} flows opened and closed over {stats.connections_opened} connections; "
          f"afterwards fds {fds:+d}, tasks {tasks:+d}, traced memory {memory:+d} bytes")
    assert (fds, tasks) == (0, 0)
    assert memory < MEMORY_SLACK


async def _write_and_read(pool, where, segment: str, payloads: list, config) -> int:
    async with SegmentWriter(pool, where, segment, config=config) as writer:
        for payload in payloads:
            writer.write_nowait(payload)
        await writer.flush(timeout=60)
    got = []
    async with SegmentReader(pool, where, segment, end_offset=sum(8 + len(p) for p in payloads),
                             buffer_size=4096) as reader:
        while True:
            try:
                got.append(bytes(await reader.read_event(timeout=60)))
            except EndOfSegment:
                break
    assert got == payloads, segment
    return len(got)


def _payloads(i: int, name: str) -> list:
    return [f"{name}:{k}:".encode() + bytes(i % 50) for k in range(EVENTS)]


async def _segments(endpoints, names: list) -> tuple:
    """Create, write and read back ``names`` through one pool, SEGMENT_WIDTH at a time; returns
    the pool's final stats."""
    def where(segment: str):
        return endpoints[store_index_of(segment, STORES)]

    config = ClientConfig(max_connections_per_segment_store=4, idle_timeout=None)
    writer_config = EventWriterConfig(enable_connection_pooling=True)
    async with ConnectionPool(config) as pool:
        async with MetadataClient(pool, where) as metadata:
            for start in range(0, len(names), SEGMENT_WIDTH):
                created = await asyncio.gather(*(
                    metadata.create(name) for name in names[start:start + SEGMENT_WIDTH]))
                assert all(created)

        work = iter(enumerate(names))

        async def worker() -> int:
            return sum([await _write_and_read(pool, where, name, _payloads(i, name),
                                              writer_config) for i, name in work])

        counts = await asyncio.gather(*(worker() for _ in range(SEGMENT_WIDTH)))
        assert sum(counts) == len(names) * EVENTS
        async with MetadataClient(pool, where) as metadata:
            infos = [await metadata.get_info(name) for name in names[:50]]
        assert [info.length for info in infos] == [
            sum(8 + len(p) for p in _payloads(i, name)) for i, name in enumerate(names[:50])]
        stats = pool.stats()
    assert stats.open_flows == 0 and stats.replies_dropped == 0
    assert stats.connections_closed == 0 and stats.connect_failures == 0
    return stats


@pytest.mark.asyncio
async def test_10k_segments_written_and_read_through_one_pool_leave_nothing_behind(cluster, memory):
    # warm-up, as wide as the run: asyncio's task set keeps the size its peak needed
    await _segments(cluster.store_endpoints,
                    [f"load/warm/{i}.#epoch.0" for i in range(SEGMENT_WIDTH)])
    names = [f"load/s{i % 97}/{i}.#epoch.0" for i in range(SEGMENTS)]
    base = Baseline()
    stats = await _segments(cluster.store_endpoints, names)
    fds, tasks, memory = base.growth()
    print(f"\nload: {SEGMENTS} segments x {EVENTS} events written and read over "
          f"{stats.connections_opened} connections; afterwards fds {fds:+d}, tasks {tasks:+d}, "
          f"traced memory {memory:+d} bytes")
    assert (fds, tasks) == (0, 0)
    assert memory < MEMORY_SLACK
