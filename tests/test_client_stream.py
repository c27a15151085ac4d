"""StreamWriter and stream_readers over the in-memory fake pool and store, with a fake
controller (tests/client_fakes.py)."""

from __future__ import annotations

import pytest

from pravega_wire.client.controller import SegmentLocation, SegmentWithRange, segment_for_key
from pravega_wire.client.reader import EndOfSegment
from pravega_wire.client.stream import StreamWriter, stream_readers
from pravega_wire.client.writer import EventWriterConfig
from pravega_wire.errors import SegmentSealedError

from client_fakes import FakeCluster, FakeLocator, FakePool, until

SCOPE, STREAM, N = "scope", "stream", 4


class FakeController(FakeLocator):
    """The parts of ControllerClient the stream facade uses."""

    def __init__(self, cluster: FakeCluster):
        super().__init__(cluster)
        self.ranges = [SegmentWithRange(SCOPE, STREAM, i, i / N, (i + 1) / N) for i in range(N)]
        self.token_requests = 0
        for r in self.ranges:
            cluster.create(r.name)

    async def get_current_segments(self, scope, stream):
        assert (scope, stream) == (SCOPE, STREAM)
        return list(reversed(self.ranges))  # any order

    async def get_segments_at_head(self, scope, stream):
        return [SegmentLocation(SCOPE, STREAM, r.segment_id, 0) for r in self.ranges]

    async def get_delegation_token(self, scope, stream):
        self.token_requests += 1
        return "token"


@pytest.mark.asyncio
async def test_events_are_routed_by_key_and_read_back_per_segment():
    cluster = FakeCluster()
    controller = FakeController(cluster)
    pool = FakePool(cluster)
    writer = await StreamWriter.open(pool, controller, SCOPE, STREAM,
                                     config=EventWriterConfig())
    keys = [f"key-{k}" for k in range(20)]
    expected = {r.name: [] for r in controller.ranges}
    for i in range(100):
        key = keys[i % len(keys)]
        event = f"{key}:{i}".encode()
        segment = writer.write_nowait(event, key) if i % 2 else await writer.write(event, key)
        assert segment == segment_for_key(key, controller.ranges)
        expected[segment.name].append(event)
    writer.write_nowait(b"anywhere")  # no key: some segment
    await writer.flush()
    await writer.close()
    assert all(w.state == "closed" for w in writer.writers)
    got = {r.name: cluster.events(r.name) for r in controller.ranges}
    assert sum(len(v) for v in got.values()) == 101
    for name, events in expected.items():
        assert [e for e in got[name] if e != b"anywhere"] == events
    for r in controller.ranges:
        cluster.seal(r.name)
    readers = await stream_readers(pool, controller, SCOPE, STREAM)
    assert [r.segment for r in readers] == [r.name for r in controller.ranges]
    for reader in readers:
        read = []
        with pytest.raises(EndOfSegment):
            for _ in range(200):
                read.append(bytes(await reader.read_event()))
        assert read == got[reader.segment]
        await reader.close()


@pytest.mark.asyncio
async def test_auth_tokens_come_from_the_controller_and_failures_surface():
    cluster = FakeCluster()
    cluster.valid_tokens = {"token"}
    controller = FakeController(cluster)
    pool = FakePool(cluster)
    writer = StreamWriter(pool, controller, SCOPE, STREAM, controller.ranges, auth=True)
    segment = writer.write_nowait(b"a", "k")
    await writer.flush()
    assert controller.token_requests == 1
    assert cluster.events(segment.name) == [b"a"]
    cluster.seal(segment.name)
    writer.write_nowait(b"b", "k")
    with pytest.raises(SegmentSealedError) as info:
        await writer.flush()
    assert info.value.unacknowledged == [b"b"]
    await writer.close()  # the failure was reported; closing releases what is left
    assert all(w.state == "closed" for w in writer.writers)


def test_a_stream_without_segments():
    with pytest.raises(ValueError):
        StreamWriter(None, None, SCOPE, STREAM, [])


@pytest.mark.asyncio
async def test_context_manager_closes_or_abandons_the_writers():
    cluster = FakeCluster()
    controller = FakeController(cluster)
    pool = FakePool(cluster)
    async with StreamWriter(pool, controller, SCOPE, STREAM, controller.ranges) as writer:
        segment = writer.write_nowait(b"a", "k")
    assert cluster.events(segment.name) == [b"a"]
    cluster.store().ack_mode = "manual"
    with pytest.raises(RuntimeError):
        async with StreamWriter(pool, controller, SCOPE, STREAM, controller.ranges) as writer:
            future = writer.writer_for(writer.segment_for("k")).write_acked(b"b")
            await until(lambda: writer.writers[0].state == "ready", "connected")
            raise RuntimeError("the caller failed")
    assert writer.writers[0].state == "closed"  # closed without waiting for the ack
    assert future.exception().unacknowledged == [b"b"]
