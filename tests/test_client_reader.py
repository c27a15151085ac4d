"""The segment reader against the in-memory fake pool and store (tests/client_fakes.py): event
parsing across chunk boundaries, views, prefetch, long polls, end of segment, truncation,
WrongHost, lost connections, wrong offsets, timeouts, ``end_offset``."""

from __future__ import annotations

import asyncio
import dataclasses
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pravega_wire import commands as C
from pravega_wire.client._common import RetryPolicy
from pravega_wire.client.reader import EndOfSegment, SegmentReader
from pravega_wire.errors import (AuthenticationError, ConnectionClosedError,
                                 IncompatibleVersionError, InvalidMessageError,
                                 RetriesExhaustedError, SegmentTruncatedError, TimeoutError)

from client_fakes import (FAST_RETRY, FakeCluster, FakeLocator, FakePool, FakeTokens,
                          event_record, settle, until)

SEG = "scope/stream/0"
FAST = FAST_RETRY


def records(payloads) -> bytes:
    return b"".join(event_record(p) for p in payloads)


def reader_for(cluster: FakeCluster, pool: FakePool = None, **kwargs) -> SegmentReader:
    pool = pool or FakePool(cluster)
    kwargs.setdefault("retry", FAST)
    where = kwargs.pop("where", cluster.endpoints[0])
    return SegmentReader(pool, where, SEG, **kwargs)


async def read_all(reader: SegmentReader) -> list:
    out = []
    for _ in range(100_000):
        try:
            out.append(bytes(await reader.read_event()))
        except EndOfSegment:
            return out
    raise AssertionError("too many events")


@pytest.fixture
def cluster() -> FakeCluster:
    c = FakeCluster(stores=2)
    c.create(SEG)
    return c


# ---- parsing ---------------------------------------------------------------------------------

PAYLOADS = [b"", b"a", b"hello world", bytes(range(256)) * 3, b"z" * 7, b"tail"]


@pytest.mark.asyncio
@pytest.mark.parametrize("limit", [1, 3, 4, 8, 9, 12, 100, 10_000],
                         ids=lambda n: f"chunks_of_{n}")
async def test_events_across_chunk_boundaries(cluster, limit):
    """Chunks of 1..8 bytes split headers; larger ones split payloads or hold many events."""
    cluster.segments[SEG].data += records(PAYLOADS)
    cluster.seal(SEG)
    store = cluster.store()
    store.read_limits.extend([limit] * 10_000)
    async with reader_for(cluster) as reader:
        assert await read_all(reader) == PAYLOADS
        assert reader.offset == len(records(PAYLOADS))


@settings(max_examples=40, deadline=None)
@given(payloads=st.lists(st.binary(max_size=40), max_size=12),
       limits=st.lists(st.integers(1, 60), min_size=1, max_size=30))
def test_any_chunking_gives_back_the_events(payloads, limits):
    assert asyncio.run(read_chunked(payloads, limits, read_all)) == payloads


async def read_chunked(payloads, limits, read):
    """``await read(reader)`` on a sealed segment of ``payloads`` that the store answers in
    chunks of ``limits`` bytes (the reader buffering 64 bytes)."""
    cluster = FakeCluster()
    cluster.create(SEG, records(payloads))
    cluster.seal(SEG)
    cluster.store().read_limits.extend(limits)
    async with reader_for(cluster, buffer_size=64) as reader:
        return await read(reader)


@pytest.mark.asyncio
async def test_events_inside_one_chunk_are_views_and_spanning_ones_are_copies(cluster):
    cluster.segments[SEG].data += records([b"one", b"two", b"three"])
    cluster.seal(SEG)
    cluster.store().read_limits.extend([len(event_record(b"one")) + 8 + 1])  # splits "two"
    async with reader_for(cluster) as reader:
        first = await reader.read_event()
        second = await reader.read_event()
        third = await reader.read_event()
    assert type(first) is memoryview and bytes(first) == b"one"
    assert type(second) is bytes and second == b"two"
    assert type(third) is memoryview and bytes(third) == b"three"


@pytest.mark.asyncio
async def test_large_reads_are_not_copied(cluster):
    payload = bytes(range(256)) * 64  # 16 KiB: the store replies with a memoryview
    cluster.segments[SEG].data += records([payload])
    cluster.seal(SEG)
    async with reader_for(cluster) as reader:
        event = await reader.read_event()
    assert type(event) is memoryview and event == payload
    assert event.obj is not None  # a view of the received data, not a new bytes


@pytest.mark.asyncio
async def test_bytes_that_are_not_an_event_record(cluster):
    cluster.segments[SEG].data += b"\0\0\0\7\0\0\0\1x" + event_record(b"ok")
    cluster.seal(SEG)
    async with reader_for(cluster) as reader:
        with pytest.raises(InvalidMessageError):
            await reader.read_event()
        assert reader.offset == 0  # nothing consumed
        assert bytes(await reader.read(9)) == b"\0\0\0\7\0\0\0\1x"  # raw access still works
        assert bytes(await reader.read_event()) == b"ok"
    cluster.create("neg", b"\0\0\0\0\xff\xff\xff\xff")
    async with SegmentReader(FakePool(cluster), cluster.endpoints[0], "neg") as reader:
        with pytest.raises(InvalidMessageError):
            await reader.read_event()


@pytest.mark.asyncio
async def test_raw_reads(cluster):
    cluster.segments[SEG].data += b"0123456789"
    cluster.seal(SEG)
    async with reader_for(cluster) as reader:
        assert bytes(await reader.read(4)) == b"0123"
        assert bytes(await reader.read()) == b"456789"
        with pytest.raises(EndOfSegment):
            await reader.read()
        with pytest.raises(ValueError):
            await reader.read(0)


# ---- fetching --------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_one_read_outstanding_and_prefetch_while_there_is_room(cluster):
    cluster.segments[SEG].data += records([b"x" * 92] * 10)  # 1000 bytes
    store = cluster.store()
    store.hold(C.ReadSegment)
    pool = FakePool(cluster)
    reader = reader_for(cluster, pool, buffer_size=300)
    task = asyncio.ensure_future(reader.read_event())
    await until(lambda: len(store.held) == 1, "first read")
    await settle()
    flow = pool.last_flow
    reads = flow.sent_of(C.ReadSegment)
    assert len(reads) == 1  # one outstanding
    assert reads[0] == C.ReadSegment(SEG, 0, 300, "", flow.flow_id << 32)
    store.clear_rules()
    store.read_limits.extend([250, 250])
    store.release()
    assert bytes(await task) == b"x" * 92
    await settle()
    reads = flow.sent_of(C.ReadSegment)
    # The first reply was followed at once by the next read (prefetch), the second by none:
    # 400 bytes are buffered, more than the buffer's 300, until the caller consumes.
    assert [r.offset for r in reads] == [0, 250]
    assert reader.buffered == 500 - 100 and reader.offset == 100
    for _ in range(3):
        await reader.read_event()
    await until(lambda: len(flow.sent_of(C.ReadSegment)) == 3, "read after consuming")
    assert flow.sent_of(C.ReadSegment)[-1].offset == 500
    await reader.close()


@pytest.mark.asyncio
async def test_read_sizes_and_end_offset(cluster):
    cluster.segments[SEG].data += records([b"a" * 10, b"b" * 10, b"c" * 10])
    pool = FakePool(cluster)
    async with reader_for(cluster, pool, end_offset=36) as reader:
        assert bytes(await reader.read_event()) == b"a" * 10
        assert bytes(await reader.read_event()) == b"b" * 10
        with pytest.raises(EndOfSegment):
            await reader.read_event()
        assert reader.offset == 36
    reads = pool.last_flow.sent_of(C.ReadSegment)
    assert reads[0].suggested_length == 36  # never asks past end_offset


@pytest.mark.asyncio
async def test_end_offset_inside_an_event_and_never_past_it(cluster):
    cluster.segments[SEG].data += records([b"a" * 10, b"b" * 10])
    async with reader_for(cluster, offset=18, end_offset=22) as reader:
        # The store answers at least 8 bytes; the reader keeps only up to end_offset.
        with pytest.raises(EndOfSegment) as info:
            await reader.read_event()
        assert "incomplete event" in str(info.value)
        assert bytes(await reader.read()) == b"\0\0\0\0"
        with pytest.raises(EndOfSegment):
            await reader.read()
        assert reader.offset == 22


@pytest.mark.asyncio
async def test_an_event_larger_than_the_buffer(cluster):
    big = b"q" * 1000
    cluster.segments[SEG].data += records([big, b"s"])
    cluster.seal(SEG)
    async with reader_for(cluster, buffer_size=64) as reader:
        assert await reader.read_event() == big
        assert bytes(await reader.read_event()) == b"s"
        assert reader.buffer_size == 64


# ---- the tail --------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_long_poll_at_the_tail(cluster):
    store = cluster.store()
    async with reader_for(cluster) as reader:
        task = asyncio.ensure_future(reader.read_event())
        await until(lambda: store.parked, "parked read")
        assert not task.done()
        cluster.append(SEG, event_record(b"late"))
        assert bytes(await task) == b"late"


@pytest.mark.asyncio
async def test_empty_replies_just_trigger_the_next_read(cluster):
    store = cluster.store()
    pool = FakePool(cluster)
    async with reader_for(cluster, pool) as reader:
        task = asyncio.ensure_future(reader.read_event())
        for _ in range(3):
            await until(lambda: store.parked, "parked read")
            store.cancel_parked()  # empty SegmentRead, atTail
        await until(lambda: store.parked, "parked read")
        cluster.append(SEG, event_record(b"x"))
        assert bytes(await task) == b"x"
        assert [r.offset for r in pool.last_flow.sent_of(C.ReadSegment)][:4] == [0, 0, 0, 0]
        assert len(pool.flows) == 1


@pytest.mark.asyncio
async def test_timeout_at_an_empty_tail_consumes_nothing(cluster):
    record = event_record(b"0123456789")
    cluster.append(SEG, record[:12])  # the header and part of the payload
    async with reader_for(cluster) as reader:
        with pytest.raises(TimeoutError):
            await reader.read_event(timeout=0.01)
        assert reader.offset == 0 and reader.buffered == 12
        cluster.append(SEG, record[12:])
        assert bytes(await reader.read_event(timeout=5)) == b"0123456789"
        with pytest.raises(TimeoutError):
            await reader.read(timeout=0.01)


@pytest.mark.asyncio
async def test_only_one_coroutine_reads_at_a_time(cluster):
    async with reader_for(cluster) as reader:
        first = asyncio.ensure_future(reader.read_event())
        await settle()
        with pytest.raises(RuntimeError):
            await reader.read_event()
        first.cancel()


# ---- end of segment --------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_end_of_segment_from_the_sealed_flag(cluster):
    cluster.segments[SEG].data += records([b"a", b"b"])
    cluster.seal(SEG)
    pool = FakePool(cluster)
    async with reader_for(cluster, pool) as reader:
        assert await read_all(reader) == [b"a", b"b"]
        with pytest.raises(EndOfSegment):
            await reader.read_event()
    replies = [r for _, r in pool.delivered if type(r) is C.SegmentRead]
    assert replies[-1].end_of_segment


@pytest.mark.asyncio
async def test_segment_is_sealed_reply_means_end_of_segment(cluster):
    cluster.segments[SEG].data += records([b"a"])
    pool = FakePool(cluster)
    async with reader_for(cluster, pool) as reader:
        assert bytes(await reader.read_event()) == b"a"
        task = asyncio.ensure_future(reader.read_event())
        await until(lambda: cluster.store().parked, "parked read")
        cluster.seal(SEG)  # the waiting read is answered SegmentIsSealed
        with pytest.raises(EndOfSegment):
            await task
    assert any(type(r) is C.SegmentIsSealed for _, r in pool.delivered)


@pytest.mark.asyncio
async def test_segment_is_sealed_for_another_offset_is_ignored(cluster):
    pool = FakePool(cluster)
    store = cluster.store()
    store.hold(C.ReadSegment)
    async with reader_for(cluster, pool) as reader:
        task = asyncio.ensure_future(reader.read_event())
        await until(lambda: store.held, "read")
        flow = pool.last_flow
        flow.deliver(C.SegmentIsSealed(flow.flow_id << 32, SEG, "", 99))
        await settle()
        assert not task.done()
        flow.deliver(C.SegmentIsSealed(flow.flow_id << 32, SEG, "", 0))
        with pytest.raises(EndOfSegment):
            await task


# ---- failures --------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_truncated_segment(cluster):
    cluster.segments[SEG].data += records([b"a", b"b", b"c"])
    cluster.segments[SEG].start_offset = 18
    async with reader_for(cluster) as reader:
        with pytest.raises(SegmentTruncatedError) as info:
            await reader.read_event()
        assert info.value.start_offset == 18
        with pytest.raises(SegmentTruncatedError):
            await reader.read_event()  # sticky
    async with reader_for(cluster, offset=18) as reader:
        assert bytes(await reader.read_event()) == b"c"


@pytest.mark.asyncio
async def test_missing_segment_is_reported_as_truncated(cluster):
    del cluster.segments[SEG]
    pool = FakePool(cluster)
    async with reader_for(cluster, pool) as reader:
        with pytest.raises(SegmentTruncatedError) as info:
            await reader.read_event()
        assert info.value.start_offset == -1
    assert pool.last_flow.closed


@pytest.mark.asyncio
async def test_data_buffered_before_a_truncation_is_still_returned(cluster):
    cluster.segments[SEG].data += records([b"a", b"b", b"c"])
    store = cluster.store()
    store.read_limits.append(18)

    def truncate_then_read(flow, cmd):
        cluster.segments[SEG].start_offset = 27
        store.process(flow, cmd)

    store.on(C.ReadSegment, store.process)  # the first read: "a" and "b"
    store.on(C.ReadSegment, truncate_then_read)  # the next one (at 18) is refused
    async with reader_for(cluster, buffer_size=18) as reader:
        assert bytes(await reader.read_event()) == b"a"
        assert bytes(await reader.read_event()) == b"b"
        with pytest.raises(SegmentTruncatedError):
            await reader.read_event()


@pytest.mark.asyncio
async def test_wrong_host_reresolves_and_retries_from_the_same_offset(cluster):
    cluster.segments[SEG].data += records([b"a", b"b"])
    cluster.seal(SEG)
    cluster.move(SEG, 1)
    locator = FakeLocator(cluster)
    locator.cache[SEG] = cluster.endpoints[0]
    pool = FakePool(cluster)
    async with reader_for(cluster, pool, where=locator) as reader:
        assert await read_all(reader) == [b"a", b"b"]
    assert locator.invalidations == [SEG]
    first, second = pool.flows
    assert first.endpoint == cluster.endpoints[0] and first.closed
    assert second.endpoint == cluster.endpoints[1]
    assert first.sent_of(C.ReadSegment)[0].offset == second.sent_of(C.ReadSegment)[0].offset == 0


@pytest.mark.asyncio
async def test_lost_connection_reissues_the_read(cluster):
    cluster.segments[SEG].data += records([b"a", b"b"])
    store = cluster.store()
    pool = FakePool(cluster)
    async with reader_for(cluster, pool) as reader:
        assert bytes(await reader.read_event()) == b"a"
        await until(lambda: store.parked, "parked read")
        pool.last_flow.drop()
        await until(lambda: len(pool.flows) == 2 and store.parked and
                    store.parked[-1][0] is pool.last_flow, "read re-issued")
        assert pool.last_flow.sent_of(C.ReadSegment)[0].offset == 18
        cluster.append(SEG, event_record(b"c"))
        assert bytes(await reader.read_event()) == b"b"
        assert bytes(await reader.read_event()) == b"c"


@pytest.mark.asyncio
async def test_reply_for_the_wrong_offset_reconnects(cluster):
    cluster.segments[SEG].data += records([b"a"])
    store = cluster.store()
    store.hold(C.ReadSegment, times=1)
    pool = FakePool(cluster)
    async with reader_for(cluster, pool) as reader:
        task = asyncio.ensure_future(reader.read_event())
        await until(lambda: store.held, "read")
        first = pool.last_flow
        first.deliver(C.SegmentRead(SEG, 5, False, False, b"garbage!", first.flow_id << 32))
        assert bytes(await task) == b"a"
    assert first.closed and len(pool.flows) == 2
    assert pool.last_flow.sent_of(C.ReadSegment)[0].offset == 0


@pytest.mark.asyncio
async def test_reply_for_another_segment_reconnects(cluster):
    cluster.segments[SEG].data += records([b"a"])
    store = cluster.store()
    store.hold(C.ReadSegment, times=1)
    pool = FakePool(cluster)
    async with reader_for(cluster, pool) as reader:
        task = asyncio.ensure_future(reader.read_event())
        await until(lambda: store.held, "read")
        flow = pool.last_flow
        flow.deliver(C.SegmentRead("other/segment/0", 0, False, False, b"x" * 9,
                                   flow.flow_id << 32))
        assert bytes(await task) == b"a"
    assert len(pool.flows) == 2


@pytest.mark.asyncio
async def test_expired_token_is_refreshed(cluster):
    cluster.segments[SEG].data += records([b"a"])
    tokens = FakeTokens("t1", "t2")
    store = cluster.store()
    store.hold(C.ReadSegment, times=1)
    pool = FakePool(cluster)
    async with reader_for(cluster, pool, token_provider=tokens) as reader:
        task = asyncio.ensure_future(reader.read_event())
        await until(lambda: store.held, "read")
        flow = pool.last_flow
        flow.deliver(C.AuthTokenCheckFailed(flow.flow_id << 32, "",
                                            C.AuthTokenCheckFailed.TOKEN_EXPIRED))
        assert bytes(await task) == b"a"
    # Then one question per read (the prefetch at the tail may have asked already).
    assert tokens.calls[:2] == [(SEG, False), (SEG, True)]
    assert all(not expired for _, expired in tokens.calls[2:])
    assert pool.last_flow.sent_of(C.ReadSegment)[0].delegation_token == "t2"


@pytest.mark.asyncio
async def test_rejected_token(cluster):
    store = cluster.store()
    store.hold(C.ReadSegment, times=1)
    pool = FakePool(cluster)
    async with reader_for(cluster, pool) as reader:
        task = asyncio.ensure_future(reader.read_event())
        await until(lambda: store.held, "read")
        flow = pool.last_flow
        flow.deliver(C.AuthTokenCheckFailed(flow.flow_id << 32, "",
                                            C.AuthTokenCheckFailed.TOKEN_CHECK_FAILED))
        with pytest.raises(AuthenticationError):
            await task


@pytest.mark.asyncio
async def test_the_stores_read_token_quirk_is_dropped_by_the_pool(cluster):
    """A real store puts the read offset where the request id of AuthTokenCheckFailed
    belongs, so a pool cannot route it (docs/protocol.md §3.8): the read just gets no answer."""
    cluster.valid_tokens = {"good"}
    pool = FakePool(cluster)
    async with reader_for(cluster, pool, token_provider=FakeTokens("bad")) as reader:
        with pytest.raises(TimeoutError):
            await reader.read_event(timeout=0.02)
    assert [type(r) for r in pool.unrouted] == [C.AuthTokenCheckFailed]
    assert pool.unrouted[0].request_id == 0  # the offset


@pytest.mark.asyncio
@pytest.mark.parametrize("reply", [
    C.ErrorMessage(0, SEG, "boom", C.ErrorMessage.UNSPECIFIED),
    C.OperationUnsupported(0, "read", ""),
    C.DataAppended(0, __import__("uuid").UUID(int=1), 1, 0, 0),
], ids=lambda r: type(r).__name__)
async def test_other_replies_reconnect(cluster, reply):
    cluster.segments[SEG].data += records([b"a"])
    store = cluster.store()
    store.hold(C.ReadSegment, times=1)
    pool = FakePool(cluster)
    async with reader_for(cluster, pool) as reader:
        task = asyncio.ensure_future(reader.read_event())
        await until(lambda: store.held, "read")
        flow = pool.last_flow
        flow.deliver(reply._replace(request_id=flow.flow_id << 32))
        assert bytes(await task) == b"a"
    assert len(pool.flows) == 2


@pytest.mark.asyncio
async def test_retries_exhausted(cluster, monkeypatch):
    slept = []
    real_sleep = asyncio.sleep

    async def recording_sleep(delay, *args):
        if delay:
            slept.append(delay)
        return await real_sleep(delay, *args)

    monkeypatch.setattr(asyncio, "sleep", recording_sleep)
    draws = [0.1, 0.3, 0.6, 0.8]  # the injected random source: one draw per wait
    policy = dataclasses.replace(FAST, jitter="full", random_source=iter(draws).__next__)
    pool = FakePool(cluster)
    pool.refuse()
    async with reader_for(cluster, pool, retry=policy) as reader:
        with pytest.raises(RetriesExhaustedError):
            await reader.read_event()
    assert len(pool.connects) == FAST.attempts
    # Between attempts, the policy's backoff (full jitter: the draw's share of the ceiling).
    assert slept == pytest.approx([FAST.delay(n) * r for n, r in enumerate(draws)])


@pytest.mark.asyncio
async def test_repeated_wrong_host_exhausts_the_retries(cluster):
    cluster.move(SEG, 1)
    pool = FakePool(cluster)
    async with reader_for(cluster, pool) as reader:  # a static endpoint: always the wrong one
        with pytest.raises(RetriesExhaustedError):
            await reader.read_event()
    assert len(pool.flows) == FAST.attempts


@pytest.mark.asyncio
async def test_close_fails_a_waiting_read_and_releases_the_flow(cluster):
    pool = FakePool(cluster)
    reader = reader_for(cluster, pool)
    task = asyncio.ensure_future(reader.read_event())
    await until(lambda: cluster.store().parked, "parked read")
    await reader.close()
    with pytest.raises(ConnectionClosedError):
        await task
    assert pool.last_flow.closed
    await reader.close()  # idempotent
    with pytest.raises(ConnectionClosedError):
        await reader.read()
    with pytest.raises(ConnectionClosedError):
        await reader.read_event()


@pytest.mark.asyncio
async def test_close_while_connecting(cluster):
    pool = FakePool(cluster)
    pool.gate = asyncio.Event()
    reader = reader_for(cluster, pool)
    task = asyncio.ensure_future(reader.read_event())
    await until(lambda: pool.connects, "connect")
    await reader.close()
    with pytest.raises(ConnectionClosedError):
        await task
    pool.gate.set()
    await settle()
    assert pool.open_flows() == []


@pytest.mark.asyncio
async def test_constructor_validation(cluster):
    pool = FakePool(cluster)
    with pytest.raises(ValueError):
        SegmentReader(pool, cluster.endpoints[0], SEG, offset=-1)
    with pytest.raises(ValueError):
        SegmentReader(pool, cluster.endpoints[0], SEG, offset=10, end_offset=5)
    with pytest.raises(ValueError):
        SegmentReader(pool, cluster.endpoints[0], SEG, buffer_size=4)
    with pytest.raises(TypeError):
        SegmentReader(pool, cluster.endpoints[0], SEG, offset="0")


@pytest.mark.asyncio
async def test_more_constructor_validation(cluster):
    pool = FakePool(cluster)
    with pytest.raises(TypeError):
        SegmentReader(pool, cluster.endpoints[0], "")
    with pytest.raises(TypeError):
        SegmentReader(pool, cluster.endpoints[0], SEG, end_offset=1.5)
    with pytest.raises(TypeError):
        SegmentReader(pool, cluster.endpoints[0], SEG, retry=3)
    reader = SegmentReader(pool, cluster.endpoints[0], SEG)
    assert SEG in repr(reader) and "offset=0" in repr(reader)


@pytest.mark.asyncio
async def test_zero_timeout_returns_only_what_is_buffered(cluster):
    cluster.segments[SEG].data += records([b"a"])
    async with reader_for(cluster) as reader:
        with pytest.raises(TimeoutError):
            await reader.read_event(timeout=0)  # nothing buffered yet: no wait at all
        await until(lambda: reader.buffered == 9, "prefetch")
        assert bytes(await reader.read_event(timeout=0)) == b"a"


@pytest.mark.asyncio
async def test_a_read_that_cannot_be_sent_reconnects(cluster):
    cluster.segments[SEG].data += records([b"a", b"b"])
    cluster.store().read_limits.append(9)
    pool = FakePool(cluster)
    async with reader_for(cluster, pool, buffer_size=9) as reader:
        assert bytes(await reader.read_event()) == b"a"
        # The prefetch at 9 went out with the reply; the connection then dies silently.
        await until(lambda: reader.buffered == 9, "prefetch")
        pool.last_flow.dying = True
        assert bytes(await reader.read_event()) == b"b"  # consuming sends the next read: fails
        await until(lambda: len(pool.flows) == 2, "reconnect")
        assert pool.flows[0].closed
        assert pool.last_flow.sent_of(C.ReadSegment)[0].offset == 18


@pytest.mark.asyncio
async def test_connection_lost_while_the_flow_is_handed_over(cluster):
    cluster.segments[SEG].data += records([b"a"])
    pool = FakePool(cluster)
    pool.lose_next_open = True
    async with reader_for(cluster, pool) as reader:
        assert bytes(await reader.read_event()) == b"a"
    assert len(pool.flows) == 2 and pool.flows[0].closed
    assert pool.flows[0].sent == []


@pytest.mark.asyncio
async def test_data_as_a_view_of_another_format(cluster):
    store = cluster.store()
    store.hold(C.ReadSegment, times=1)
    pool = FakePool(cluster)
    async with reader_for(cluster, pool) as reader:
        task = asyncio.ensure_future(reader.read(100))
        await until(lambda: store.held, "read")
        flow = pool.last_flow
        data = memoryview(bytearray(b"\1\0\0\0\2\0\0\0")).cast("I")
        flow.deliver(C.SegmentRead(SEG, 0, True, False, data, flow.flow_id << 32))
        assert bytes(await task) == b"\1\0\0\0\2\0\0\0"
        assert reader.offset == 8


# ---- every event read once, in order, whatever happens -------------------------------------


async def _chaos(seed: int) -> None:
    rng = random.Random(seed)
    cluster = FakeCluster(stores=2)
    cluster.create(SEG)
    for store in cluster.stores.values():
        store.read_limits.extend(rng.randint(1, 40) for _ in range(5000))
    locator = FakeLocator(cluster)
    pool = FakePool(cluster)
    payloads = [f"{seed}/{i}".encode() * rng.randint(0, 5) for i in range(100)]
    reader = SegmentReader(pool, locator, SEG, buffer_size=rng.choice([8, 16, 64, 4096]),
                           retry=RetryPolicy(initial_delay=0, attempts=1000))
    written, got = 0, []
    while len(got) < len(payloads):
        if written < len(payloads) and rng.random() < 0.5:
            n = rng.randint(1, 5)
            cluster.append(SEG, records(payloads[written:written + n]))
            written = min(written + n, len(payloads))
        action = rng.random()
        if action < 0.08:
            flows = pool.open_flows()
            if flows:
                flows[-1].drop()
        elif action < 0.12:
            cluster.move(SEG, rng.randrange(2))
        elif action < 0.18:
            for store in cluster.stores.values():
                store.cancel_parked()  # empty replies
        elif action < 0.22:
            cluster.stores[cluster.owner_of(SEG)].hold(C.ReadSegment, times=rng.randint(1, 3))
        elif action < 0.28:
            for store in cluster.stores.values():
                store.clear_rules()
                store.release()
        if written > len(got) and rng.random() < 0.7:
            for store in cluster.stores.values():
                store.clear_rules()
                store.release()
            got.append(bytes(await asyncio.wait_for(reader.read_event(), 10)))  # hang guard
        elif rng.random() < 0.3:
            await settle(rng.randint(1, 4))
    cluster.seal(SEG)
    with pytest.raises(EndOfSegment):
        await asyncio.wait_for(reader.read_event(), 10)
    assert got == payloads
    await reader.close()


@pytest.mark.asyncio
@pytest.mark.parametrize("seed", range(30))
async def test_chaos_every_event_once_in_order(seed):
    await _chaos(seed)


@pytest.mark.asyncio
async def test_an_incompatible_store_is_not_retried(cluster):
    pool = FakePool(cluster)
    pool.refuse(error=IncompatibleVersionError)
    async with reader_for(cluster, pool) as reader:
        with pytest.raises(IncompatibleVersionError):
            await reader.read_event()
    assert len(pool.connects) == 1
    pool = FakePool(cluster)
    async with reader_for(cluster, pool) as reader:
        task = asyncio.ensure_future(reader.read_event())
        await until(lambda: cluster.store().parked, "parked read")
        pool.last_flow.drop(IncompatibleVersionError("Hello(4, 1)"))
        with pytest.raises(IncompatibleVersionError):
            await task
    assert len(pool.connects) == 1
