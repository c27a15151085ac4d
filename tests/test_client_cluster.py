"""Writers and readers through one pool against the embedded cluster (stores + controller) and its
fault hooks: every acknowledged event read back exactly once, in order per writer, no operation
past its bound, and never more pooled sockets than the per-store cap allows."""

from __future__ import annotations

import asyncio

import pytest


from pravega_wire.client import EventWriterConfig, RetryPolicy, SegmentReader, SegmentWriter  # noqa: E402
from pravega_wire.client.controller import ControllerClient  # noqa: E402
from pravega_wire.client.reader import EndOfSegment  # noqa: E402
from pravega_wire.errors import PravegaWireError, SegmentSealedError, TimeoutError  # noqa: E402
from pravega_wire.pool import ClientConfig, ConnectionPool  # noqa: E402
from pravega_wire.server import EmbeddedCluster  # noqa: E402

pytestmark = pytest.mark.asyncio

#: A store's hold of a read at the tail (Pravega's: about two minutes).
HELD = 120.0
FAST_RETRY = RetryPolicy(initial_delay=0.005, multiplier=2, max_delay=0.2, attempts=30)


def _events(tag: str, n: int) -> list:
    return [f"{tag}:{i}:".encode() + bytes([i % 251]) * (i % 97) for i in range(n)]


async def _read_all(pool, controller, segment: str, count: int, timeout: float = 10.0) -> list:
    out = []
    async with SegmentReader(pool, controller, segment, retry=FAST_RETRY) as reader:
        while len(out) < count:
            out.append(bytes(await reader.read_event(timeout=timeout)))
        with pytest.raises((TimeoutError, EndOfSegment)):
            await reader.read_event(timeout=0.2)  # nothing beyond what was acknowledged
    return out


async def _stream(controller, name: str, segments: int) -> list:
    await controller.create_scope("sc")
    await controller.create_stream("sc", name, segments)
    return await controller.get_current_segments("sc", name)


async def test_many_writers_and_readers_stay_within_the_pool_cap():
    cap = 2
    # The stores hold a read at the tail for minutes, as Pravega's does: far longer than the
    # readers' waits below, which time out and leave the held read for the next call.
    async with EmbeddedCluster(3, read_wait=HELD) as cluster, \
            ControllerClient(cluster.controller_uri) as ctl, \
            ConnectionPool(ClientConfig(max_connections_per_segment_store=cap)) as pool:
        segments = await _stream(ctl, "many", 64)
        writers = [SegmentWriter(pool, ctl, segments[i % 64].name) for i in range(200)]
        payloads = {}
        for i, writer in enumerate(writers):
            payloads[i] = _events(f"w{i}", 5)
            for event in payloads[i]:
                writer.write_nowait(event)
        await asyncio.wait_for(asyncio.gather(*(w.flush() for w in writers)), 60)
        peak = pool.stats().open_connections
        for writer in writers:
            await writer.close()
        readers = await asyncio.gather(*(
            _read_all(pool, ctl, segments[s].name, 5 * len(range(s, 200, 64)))
            for s in range(64)))
        stats = pool.stats()
        assert stats.connections_opened <= 3 * cap and peak <= 3 * cap
        for s, events in enumerate(readers):
            expected = [e for i in range(s, 200, 64) for e in payloads[i]]
            assert sorted(events) == sorted(expected)  # every event once
            for i in range(s, 200, 64):  # in order per writer
                mine = [e for e in events if e.startswith(f"w{i}:".encode())]
                assert mine == payloads[i]


async def test_writer_survives_a_store_restart_with_its_data_directory(tmp_path):
    async with EmbeddedCluster(1, data_dir=tmp_path) as cluster, \
            ControllerClient(cluster.controller_uri) as ctl, ConnectionPool() as pool:
        (segment,) = await _stream(ctl, "durable", 1)
        events = _events("d", 400)
        writer = await SegmentWriter.open(pool, ctl, segment.name,
                                          config=EventWriterConfig(retry=FAST_RETRY))
        acked = [writer.write_acked(e) for e in events[:200]]
        await asyncio.wait_for(asyncio.gather(*acked), 10)
        await cluster.restart_store(0, crash=True)
        for event in events[200:]:
            writer.write_nowait(event)
        await writer.flush(timeout=20)
        await writer.close()
        assert writer.connections >= 2
        assert await _read_all(pool, ctl, segment.name, len(events)) == events


async def test_drops_before_and_after_apply_lose_and_duplicate_nothing():
    async with EmbeddedCluster(1) as cluster, ControllerClient(cluster.controller_uri) as ctl, \
            ConnectionPool() as pool:
        (segment,) = await _stream(ctl, "drops", 1)
        plan = cluster.faults(0)
        plan.drop_before_append(nth=50, every=150, times=None)
        plan.drop_after_append(nth=120, every=150, times=None)
        events = _events("x", 2000)
        writer = await SegmentWriter.open(pool, ctl, segment.name,
                                          config=EventWriterConfig(retry=FAST_RETRY))
        for i, event in enumerate(events):
            await writer.write(event)
            if i % 97 == 0:
                await asyncio.sleep(0)  # let acknowledgements (and the drops) interleave
        await writer.flush(timeout=30)
        await writer.close()
        assert writer.connections > 1
        assert await _read_all(pool, ctl, segment.name, len(events)) == events


async def test_wrong_host_and_expired_token_are_retried():
    async with EmbeddedCluster(1) as cluster, ControllerClient(cluster.controller_uri) as ctl, \
            ConnectionPool() as pool:
        (segment,) = await _stream(ctl, "moves", 1)
        plan = cluster.faults(0)
        plan.fail_segment(segment.name, "wrong_host", commands={"SetupAppend"}, times=2)
        plan.fail_segment(segment.name, "token_expired", commands={"SetupAppend"}, nth=3,
                          times=1)
        plan.fail_segment(segment.name, "wrong_host", commands={"ReadSegment"}, times=1)
        tokens = []

        async def token(seg, expired):
            tokens.append(expired)
            return ""

        events = _events("m", 50)
        writer = await SegmentWriter.open(pool, ctl, segment.name, token_provider=token,
                                          config=EventWriterConfig(retry=FAST_RETRY))
        for event in events:
            writer.write_nowait(event)
        await writer.flush(timeout=10)
        await writer.close()
        assert True in tokens  # a fresh token was asked for after the expiry
        assert await _read_all(pool, ctl, segment.name, len(events)) == events


async def test_sealed_stream_hands_back_unacknowledged_events_and_readers_end():
    async with EmbeddedCluster(1, read_wait=HELD) as cluster, \
            ControllerClient(cluster.controller_uri) as ctl, ConnectionPool() as pool:
        (segment,) = await _stream(ctl, "sealed", 1)
        events = _events("s", 30)
        writer = await SegmentWriter.open(pool, ctl, segment.name)
        for event in events:
            writer.write_nowait(event)
        await writer.flush(timeout=10)
        await ctl.seal_stream("sc", "sealed")
        late = [writer.write_acked(b"late-%d" % i) for i in range(3)]
        with pytest.raises(SegmentSealedError) as info:
            await asyncio.wait_for(writer.flush(), 10)
        assert info.value.unacknowledged == [b"late-0", b"late-1", b"late-2"]
        for future in late:
            with pytest.raises(SegmentSealedError):
                await future
        async with SegmentReader(pool, ctl, segment.name) as reader:
            got = [bytes(await reader.read_event(timeout=5)) for _ in events]
            with pytest.raises(EndOfSegment):
                await reader.read_event(timeout=5)
        assert got == events


async def test_a_stalled_store_is_detected_within_the_bounds():
    async with EmbeddedCluster(1) as cluster, ControllerClient(cluster.controller_uri) as ctl:
        (segment,) = await _stream(ctl, "stall", 1)
        cluster.faults(0).stall_connections(times=None)
        config = ClientConfig(connect_timeout=1.0, read_timeout=2.0, keepalive_interval=0.5)
        async with ConnectionPool(config) as pool:
            loop = asyncio.get_running_loop()
            started = loop.time()
            with pytest.raises(Exception) as info:
                await SegmentWriter.open(
                    pool, ctl, segment.name,
                    config=EventWriterConfig(setup_timeout=1.0, retry=RetryPolicy(
                        initial_delay=0.01, multiplier=2, max_delay=0.1, attempts=3)))
            assert loop.time() - started < 15
            assert isinstance(info.value, PravegaWireError)
