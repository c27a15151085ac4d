"""Large events (over 8 MiB) on the embedded cluster: written through a transient segment in
ConditionalBlockEnd chunks and merged into the target whole, in order with the writer's other
events; connection failures, WrongHost and expired tokens start again on a new transient
segment; a store crash between chunks leaves the target whole-or-nothing; the chunks in flight
stay within the window."""

from __future__ import annotations

import asyncio
import os
import uuid

import pytest

from pravega_wire import commands as C
from pravega_wire.client import (EventWriterConfig, MetadataClient, RetryPolicy, SegmentReader,
                                 SegmentWriter)
from pravega_wire.client import largeevents
from pravega_wire.client.largeevents import CHUNK_SIZE, _write_once, write_large_event
from pravega_wire.client.reader import EndOfSegment
from pravega_wire.errors import (ConnectionClosedError, InvalidMessageError, RetriesExhaustedError, SegmentSealedError,
                                 TimeoutError)
from pravega_wire.pool import ConnectionPool
from pravega_wire.server import EmbeddedCluster
from pravega_wire.server.storage import TRANSIENT, Storage

pytestmark = pytest.mark.asyncio

MIB = 1024 * 1024
FAST_RETRY = RetryPolicy(initial_delay=0.005, multiplier=2, max_delay=0.2, attempts=30)
SEGMENT = "sc/large/0.#epoch.0"


def _big(size: int, seed: int = 0) -> bytes:
    """``size`` bytes that differ from chunk to chunk (a misplaced chunk shows)."""
    block = os.urandom(4096) if seed == 0 else bytes([seed % 256]) * 4096
    return (block * (size // 4096 + 1))[:size - 8] + size.to_bytes(8, "big")


async def _read_all(pool, endpoint, segment: str, count: int) -> list:
    out = []
    async with SegmentReader(pool, endpoint, segment, retry=FAST_RETRY) as reader:
        while len(out) < count:
            out.append(bytes(await reader.read_event(timeout=20)))
        with pytest.raises((TimeoutError, EndOfSegment)):
            await reader.read_event(timeout=0.2)  # nothing beyond what was written
    return out


async def _setup(cluster, pool) -> tuple:
    endpoint = cluster.stores[0].endpoint
    async with MetadataClient(pool, endpoint) as meta:
        await meta.create(SEGMENT)
    return endpoint


def _transients(cluster) -> list:
    return [n for n in cluster.stores[0].storage.names() if "#transient." in n]


async def test_large_event_between_small_events_keeps_the_order():
    async with EmbeddedCluster(1, controller=False) as cluster, ConnectionPool() as pool:
        endpoint = await _setup(cluster, pool)
        big, bigger = _big(20 * MIB + 3), _big(3 * CHUNK_SIZE)  # a partial and whole chunks
        writer = SegmentWriter(pool, endpoint, SEGMENT,
                               config=EventWriterConfig(retry=FAST_RETRY))
        before = [b"before-%d" % i for i in range(50)]
        after = [b"after-%d" % i for i in range(50)]
        for event in before:
            writer.write_nowait(event)
        merged = writer.write_acked(big)
        for event in after[:25]:
            writer.write_nowait(event)
        writer.write_batch_nowait(after[25:40])
        acked = writer.write_acked(after[40])
        await writer.write(bigger)  # waits for the first large event and what followed it
        assert merged.done()  # write() waited for the large event before it
        for event in after[41:]:
            await writer.write(event)
        await writer.flush(timeout=60)
        assert merged.result() is None and acked.result() is None
        assert writer.acked_events == len(before) + len(after) + 2
        await writer.close()
        events = await _read_all(pool, endpoint, SEGMENT, len(before) + len(after) + 2)
        expected = before + [big] + after[:41] + [bigger] + after[41:]
        assert [len(e) for e in events] == [len(e) for e in expected]
        assert events == expected
        assert _transients(cluster) == []  # merged, none left behind


async def test_close_writes_the_large_events_still_queued():
    async with EmbeddedCluster(1, controller=False) as cluster, ConnectionPool() as pool:
        endpoint = await _setup(cluster, pool)
        big = _big(9 * MIB)
        writer = SegmentWriter(pool, endpoint, SEGMENT)
        writer.write_nowait(big)
        writer.write_nowait(b"after")
        await writer.close()
        assert writer.acked_events == 2
        assert await _read_all(pool, endpoint, SEGMENT, 2) == [big, b"after"]


async def test_close_without_flush_hands_back_the_large_event():
    async with EmbeddedCluster(1, controller=False) as cluster, ConnectionPool() as pool:
        endpoint = await _setup(cluster, pool)
        big = _big(9 * MIB)
        writer = SegmentWriter(pool, endpoint, SEGMENT)
        merged = writer.write_acked(big)
        writer.write_nowait(b"after")
        await writer.close(flush=False)
        with pytest.raises(ConnectionClosedError) as closed:
            merged.result()
        assert closed.value.unacknowledged == [big, b"after"]


async def test_the_sequence_on_the_wire():
    async with EmbeddedCluster(1, controller=False) as cluster, ConnectionPool() as pool:
        endpoint = await _setup(cluster, pool)
        stats = cluster.stores[0].stats
        length = await write_large_event(pool, endpoint, SEGMENT, _big(17 * MIB),
                                         writer_id=uuid.uuid4(), token_provider=_no_token)
        assert length == 17 * MIB + 8
        assert stats["CreateTransientSegment"] == 1
        assert stats["ConditionalBlockEnd"] == 3  # 8 MiB, 8 MiB, the rest
        assert stats["MergeSegments"] == 1
        assert stats["> SegmentsMerged"] == 1


async def _no_token(segment: str, expired: bool) -> str:
    return ""


async def test_connection_drop_between_chunks_starts_again_on_a_new_transient_segment():
    async with EmbeddedCluster(1, controller=False) as cluster, ConnectionPool() as pool:
        endpoint = await _setup(cluster, pool)
        plan = cluster.faults(0)
        plan.drop_before_append(nth=2)  # the second chunk: the connection drops
        plan.drop_after_append(nth=4)  # the second attempt's second chunk, applied, no ack
        big = _big(20 * MIB)
        writer = SegmentWriter(pool, endpoint, SEGMENT, config=EventWriterConfig(retry=FAST_RETRY))
        writer.write_nowait(b"x")
        writer.write_nowait(big)
        writer.write_nowait(b"y")
        await writer.flush(timeout=60)
        await writer.close()
        stats = cluster.stores[0].stats
        assert stats["CreateTransientSegment"] == 3
        assert stats["fault drop_before_append"] == 1 and stats["fault drop_after_append"] == 1
        assert await _read_all(pool, endpoint, SEGMENT, 3) == [b"x", big, b"y"]
        assert _transients(cluster) == []  # the abandoned ones went with their connections


async def test_wrong_host_and_expired_token_start_again():
    async with EmbeddedCluster(1, controller=False) as cluster, ConnectionPool() as pool:
        endpoint = await _setup(cluster, pool)
        plan = cluster.faults(0)
        plan.fail_segment(SEGMENT, "wrong_host", commands={"CreateTransientSegment"}, times=1)
        plan.fail_segment(SEGMENT, "token_expired", commands={"CreateTransientSegment"},
                          nth=2, times=1)
        asked = []

        async def tokens(segment: str, expired: bool) -> str:
            asked.append(expired)
            return ""

        big = _big(9 * MIB)
        await write_large_event(pool, endpoint, SEGMENT, big, writer_id=uuid.uuid4(),
                                token_provider=tokens, retry=FAST_RETRY)
        assert asked == [False, False, True]  # a fresh token after the expired one
        assert await _read_all(pool, endpoint, SEGMENT, 1) == [big]


async def test_sealed_target_fails_the_writer_with_every_event_unwritten():
    async with EmbeddedCluster(1, controller=False) as cluster, ConnectionPool() as pool:
        endpoint = await _setup(cluster, pool)
        writer = await SegmentWriter.open(pool, endpoint, SEGMENT)
        await writer.write(b"stored")
        await writer.flush()
        async with MetadataClient(pool, endpoint) as meta:
            await meta.seal(SEGMENT)
        big = _big(10 * MIB)
        merged = writer.write_acked(big)
        writer.write_nowait(b"held-1")
        held = writer.write_acked(b"held-2")
        with pytest.raises(SegmentSealedError) as failure:
            await writer.flush(timeout=30)
        assert failure.value.unacknowledged == [big, b"held-1", b"held-2"]
        for future in (merged, held):
            with pytest.raises(SegmentSealedError):
                future.result()
        with pytest.raises(SegmentSealedError):
            writer.write_nowait(big)
        await writer.close()
        assert await _read_all(pool, endpoint, SEGMENT, 1) == [b"stored"]
        assert _transients(cluster) == []  # deleted when its merge was refused


async def test_a_store_crash_between_chunks_leaves_the_event_whole_or_absent(tmp_path):
    async with EmbeddedCluster(1, controller=False, data_dir=tmp_path) as cluster, \
            ConnectionPool() as pool:
        endpoint = await _setup(cluster, pool)
        writer = SegmentWriter(pool, endpoint, SEGMENT, config=EventWriterConfig(retry=FAST_RETRY))
        await writer.write(b"first")
        await writer.flush()
        length = writer.segment_length
        store = cluster.stores[0]
        chunk_applied = asyncio.Event()
        storage = store.storage
        append = storage.append
        written_to: list = []

        def watching_append(segment, *args, **kwargs):
            result = append(segment, *args, **kwargs)
            if segment.kind == TRANSIENT:
                written_to.append(segment.name)
                chunk_applied.set()
            return result

        storage.append = watching_append  # this Storage object dies with the crash
        big = _big(40 * MIB)  # 6 chunks: the merge needs more than the window's acks
        merged = writer.write_acked(big)
        writer.write_nowait(b"last")
        await asyncio.wait_for(chunk_applied.wait(), 30)
        await cluster.restart_store(0, crash=True)
        recovered = cluster.stores[0].storage
        assert recovered is not storage
        # Whole or not at all: the target lost nothing and gained no chunk; the transient
        # segment written to before the crash is gone (its connection is).
        assert recovered.get(SEGMENT).length == length
        assert written_to and written_to[0] not in recovered.names()
        await asyncio.wait_for(merged, 60)
        await writer.flush(timeout=30)
        await writer.close()
        assert await _read_all(pool, endpoint, SEGMENT, 3) == [b"first", big, b"last"]
        await cluster.restart_store(0, crash=True)  # the merge was durable before its ack
        assert await _read_all(pool, endpoint, SEGMENT, 3) == [b"first", big, b"last"]


async def test_recovery_drops_transient_segments_and_keeps_merged_data(tmp_path):
    storage = Storage(tmp_path)
    parent = storage.create("p")
    storage.append(parent, b"\x00\x00\x00\x00\x00\x00\x00\x01z")
    merged = storage.create("p#transient.a.1", TRANSIENT)
    storage.append(merged, b"merged-bytes")
    storage.merge(parent, merged)
    orphan = storage.create("p#transient.a.2", TRANSIENT)
    storage.append(orphan, b"orphan")
    storage.commit()
    storage.close()  # a crash: the orphan's connection is gone
    recovered = Storage(tmp_path)
    assert recovered.names() == ["p"]
    assert recovered.get("p").read(0, 100) == b"\x00\x00\x00\x00\x00\x00\x00\x01z" \
        b"merged-bytes"
    recovered.close()


class _FakeClient:
    """A RawClient stand-in that answers each request on the next loop iterations and counts
    the ConditionalBlockEnds unanswered at once."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.peak = 0
        self.offsets: list = []
        self._rid = 0

    async def request(self, kind, **fields):
        await asyncio.sleep(0)
        if kind is C.CreateTransientSegment:
            return C.SegmentCreated(1, fields["parent_segment"] + "#transient.x.y")
        if kind is C.SetupAppend:
            return C.AppendSetup(2, fields["segment"], fields["writer_id"],
                                 C.NULL_ATTRIBUTE_VALUE)
        assert kind is C.MergeSegments
        return C.SegmentsMerged(3, fields["target"], fields["source"], sum(self.offsets))

    async def send_request(self, make):
        self._rid += 1
        cmd = make(self._rid)
        assert type(cmd) is C.ConditionalBlockEnd
        self.offsets.append(len(cmd.data))
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        for _ in range(3):
            await asyncio.sleep(0)
        self.in_flight -= 1
        return C.DataAppended(cmd.request_id, cmd.writer_id, cmd.event_number, -1, 0)


async def test_chunks_in_flight_stay_within_the_window():
    chunks = largeevents._chunks
    event = bytes(10 * CHUNK_SIZE + 1)
    for window in (1, 3):
        client = _FakeClient()
        length = await _write_once(client, "s", chunks(event), uuid.uuid4(), "", window)
        assert length == len(event) + 8
        assert client.peak == window
        assert client.offsets == [CHUNK_SIZE] * 10 + [9]


async def test_event_size_limits(monkeypatch):
    monkeypatch.setattr(largeevents, "MAX_LARGE_EVENT_SIZE", 9 * MIB)  # not 1 GiB in a test
    async with EmbeddedCluster(1, controller=False) as cluster, ConnectionPool() as pool:
        endpoint = await _setup(cluster, pool)
        writer = SegmentWriter(pool, endpoint, SEGMENT)
        with pytest.raises(InvalidMessageError):
            writer.write_nowait(bytes(9 * MIB + 1))
        with pytest.raises(InvalidMessageError):
            writer.write_acked(bytearray(9 * MIB + 1))
        with pytest.raises(InvalidMessageError):  # a batch still carries at most 8 MiB
            writer.write_batch_nowait([bytes(CHUNK_SIZE + 1)])
        with pytest.raises(TypeError):
            writer.write_nowait([1] * (CHUNK_SIZE + 1))
        writer.write_nowait(memoryview(bytes(9 * MIB)))  # at the limit: written
        await writer.flush(timeout=30)
        await writer.close()
        assert await _read_all(pool, endpoint, SEGMENT, 1) == [bytes(9 * MIB)]


async def test_retries_exhausted_when_the_store_keeps_answering_wrong_host():
    async with EmbeddedCluster(1, controller=False) as cluster, ConnectionPool() as pool:
        endpoint = await _setup(cluster, pool)
        cluster.faults(0).fail_segment(SEGMENT, "wrong_host",
                                       commands={"CreateTransientSegment"})
        retry = RetryPolicy(initial_delay=0.001, multiplier=1, max_delay=0.001, attempts=3)
        with pytest.raises(RetriesExhaustedError):
            await write_large_event(pool, endpoint, SEGMENT, _big(9 * MIB),
                                    writer_id=uuid.uuid4(), token_provider=_no_token,
                                    retry=retry)
        assert cluster.stores[0].stats["CreateTransientSegment"] == 3
        assert cluster.stores[0].storage.get(SEGMENT).length == 0
