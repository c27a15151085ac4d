"""The segment clients over the real connection pool and the embedded segment store, with the
store's fault hooks dropping connections before and after it applies appends: every event is
stored exactly once, in order, and read back the same way."""

from __future__ import annotations

import asyncio
import random
import uuid

import pytest

from pravega_wire.client._common import RetryPolicy
from pravega_wire.client.raw import ConditionalWriter, MetadataClient
from pravega_wire.client.reader import EndOfSegment, SegmentReader
from pravega_wire.client.writer import EventWriterConfig, SegmentWriter
from pravega_wire.pool import ClientConfig, ConnectionPool
from pravega_wire.server import EmbeddedCluster

SEG = "scope/stream/0.#epoch.0"
RETRY = RetryPolicy(initial_delay=0.001, multiplier=2.0, max_delay=0.05, attempts=20)


async def _read_all(pool, endpoint, segment, **kwargs) -> list:
    events = []
    async with SegmentReader(pool, endpoint, segment, retry=RETRY, **kwargs) as reader:
        for _ in range(1_000_000):
            try:
                events.append(bytes(await reader.read_event(timeout=30)))  # a hang guard
            except EndOfSegment:
                return events
    raise AssertionError("too many events")


@pytest.mark.asyncio
@pytest.mark.parametrize("pooling", [True, False], ids=["pooled", "dedicated"])
async def test_writer_and_reader_through_dropped_connections(pooling):
    rng = random.Random(7)
    async with EmbeddedCluster(1, controller=False) as cluster:
        endpoint = cluster.store_endpoints[0]
        plan = cluster.faults(0)
        plan.drop_before_append(nth=200, every=450, times=None)
        plan.drop_after_append(nth=300, every=700, times=None)
        async with ConnectionPool(ClientConfig()) as pool:
            meta = MetadataClient(pool, endpoint, retry=RETRY)
            assert await meta.create(SEG)
            writer = await SegmentWriter.open(
                pool, endpoint, SEG,
                config=EventWriterConfig(enable_connection_pooling=pooling, retry=RETRY))
            payloads = [f"event {i} ".encode() * rng.randint(1, 20) for i in range(3000)]
            futures = []
            i = 0
            while i < len(payloads):
                roll = rng.random()
                if roll < 0.7:
                    writer.write_nowait(payloads[i])
                    i += 1
                elif roll < 0.9:
                    futures.append(writer.write_acked(payloads[i]))
                    i += 1
                else:
                    writer.write_batch_nowait(payloads[i:i + 5])
                    i += 5
                if rng.random() < 0.05:
                    await asyncio.sleep(0)
            await writer.flush()
            await asyncio.gather(*futures)
            assert writer.connections > 2  # the faults did fire
            await writer.close()
            await meta.seal(SEG)
            plan.clear()
            assert await _read_all(pool, endpoint, SEG, buffer_size=4096) == payloads
            info = await meta.get_info(SEG)
            assert info.sealed and info.length == sum(8 + len(p) for p in payloads)
            await meta.close()


@pytest.mark.asyncio
async def test_reader_through_bad_replies_and_wrong_host():
    async with EmbeddedCluster(1, controller=False) as cluster:
        endpoint = cluster.store_endpoints[0]
        async with ConnectionPool(ClientConfig()) as pool:
            meta = MetadataClient(pool, endpoint, retry=RETRY)
            await meta.create(SEG)
            async with SegmentWriter(pool, endpoint, SEG) as writer:
                payloads = [bytes([i % 256]) * (i % 300) for i in range(500)]
                for p in payloads:
                    writer.write_nowait(p)
            await meta.seal(SEG)
            plan = cluster.faults(0)
            plan.send_garbage(commands={"SegmentRead"}, nth=2)
            plan.fail_segment(SEG, "wrong_host", commands={"ReadSegment"}, nth=4, times=2)
            assert await _read_all(pool, endpoint, SEG, buffer_size=512) == payloads
            assert all(rule.fired for rule in plan.rules)
            await meta.close()


@pytest.mark.asyncio
async def test_metadata_and_conditional_writes():
    async with EmbeddedCluster(1, controller=False) as cluster:
        endpoint = cluster.store_endpoints[0]
        async with ConnectionPool(ClientConfig()) as pool:
            async with MetadataClient(pool, endpoint, retry=RETRY) as meta:
                assert await meta.create(SEG) is True
                assert await meta.create(SEG) is False
                attribute = uuid.uuid4()
                assert await meta.compare_and_set_attribute(SEG, attribute, -2 ** 63, 1)
                assert not await meta.compare_and_set_attribute(SEG, attribute, -2 ** 63, 2)
                assert await meta.get_attribute(SEG, attribute) == 1
                async with ConditionalWriter(pool, endpoint, SEG, retry=RETRY) as conditional:
                    assert await conditional.write(b"first", 0) is True
                    assert await conditional.write(b"again", 0) is False
                    assert await conditional.write(b"second", 13) is True
                info = await meta.get_info(SEG)
                assert info.length == 27
                await meta.truncate(SEG, 13)
                await meta.truncate(SEG, 5)  # already truncated past it
                assert (await meta.get_info(SEG)).start_offset == 13
                await meta.seal(SEG)
                await meta.seal(SEG)
                assert await _read_all(pool, endpoint, SEG, offset=13) == [b"second"]
                assert await meta.delete(SEG) is True
                assert await meta.delete(SEG) is False


class _MovedLocator:
    """Answers a dead store until told its answer is stale (``invalidate``), then the live one:
    a segment whose store went away and is served elsewhere."""

    def __init__(self, dead, live):
        self.endpoint, self.live, self.invalidated = dead, live, 0

    async def get_endpoint(self, segment):
        return self.endpoint

    def invalidate(self, segment):
        self.invalidated += 1
        self.endpoint = self.live


def _dead_endpoint():
    import socket
    with socket.socket() as s:  # a port nothing listens on once this closes
        s.bind(("127.0.0.1", 0))
        return s.getsockname()


@pytest.mark.asyncio
@pytest.mark.parametrize("pooling", [True, False], ids=["pooled", "dedicated"])
async def test_writer_and_reader_ask_the_locator_again_after_a_connection_failure(pooling):
    """Only WrongHost used to refresh a location: a writer or reader whose store is gone kept
    knocking at it until its retries ran out."""
    async with EmbeddedCluster(stores=1, controller=False) as cluster:
        segment = "moved/stream/0.#epoch.0"
        await cluster.create_segment(segment)
        live = cluster.store_endpoints[0]
        retry = RetryPolicy(initial_delay=0.001, multiplier=2.0, max_delay=0.01, attempts=4)
        async with ConnectionPool(ClientConfig()) as pool:
            locator = _MovedLocator(_dead_endpoint(), live)
            config = EventWriterConfig(enable_connection_pooling=pooling, retry=retry)
            async with SegmentWriter(pool, locator, segment, config=config) as writer:
                await writer.write(b"moved")
            assert locator.invalidated >= 1
            locator = _MovedLocator(_dead_endpoint(), live)
            async with SegmentReader(pool, locator, segment, retry=retry) as reader:
                assert bytes(await reader.read_event(timeout=5)) == b"moved"
            assert locator.invalidated >= 1
