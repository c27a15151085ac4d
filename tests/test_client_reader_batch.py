"""``SegmentReader.read_events()``: the batch form of ``read_event`` against the in-memory fake
pool and store (tests/client_fakes.py): the same events in the same order under any chunking,
copies of small events and views of large ones, ``max_events``, and the errors of
``read_event`` raised only once the events before them were returned."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pravega_wire.client.reader import EndOfSegment, SegmentReader
from pravega_wire.codec import VIEW_THRESHOLD
from pravega_wire.errors import ConnectionClosedError, InvalidMessageError, TimeoutError

from client_fakes import event_record
from test_client_reader import (SEG, cluster, read_chunked, reader_for,  # noqa: F401
                                records)


async def read_all_batched(reader: SegmentReader, max_events=None) -> tuple:
    out, calls = [], 0
    for _ in range(100_000):
        try:
            batch = await reader.read_events(max_events)
        except EndOfSegment:
            return out, calls
        assert batch and (max_events is None or len(batch) <= max_events)
        calls += 1
        out.extend(bytes(e) for e in batch)
    raise AssertionError("too many calls")


@settings(max_examples=40, deadline=None)
@given(payloads=st.lists(st.binary(max_size=40), max_size=12),
       limits=st.lists(st.integers(1, 60), min_size=1, max_size=30),
       max_events=st.one_of(st.none(), st.integers(1, 5)))
def test_any_chunking_gives_back_the_events(payloads, limits, max_events):
    async def read(reader):
        events, _ = await read_all_batched(reader, max_events)
        return events, reader.offset

    assert asyncio.run(read_chunked(payloads, limits, read)) == (payloads,
                                                                 len(records(payloads)))


@pytest.mark.asyncio
async def test_one_call_takes_every_buffered_event(cluster):
    payloads = [b"e%d" % n for n in range(500)]
    cluster.segments[SEG].data += records(payloads)
    cluster.seal(SEG)
    async with reader_for(cluster) as reader:
        events, calls = await read_all_batched(reader)
        assert events == payloads and calls == 1  # one reply of the fake store holds them all
        assert reader.buffered == 0 and reader.offset == len(records(payloads))


@pytest.mark.asyncio
async def test_large_events_are_views_and_small_ones_copies(cluster):
    big = bytes(range(256)) * (VIEW_THRESHOLD // 256)
    cluster.segments[SEG].data += records([b"one", b"two", big, b"four"])
    cluster.seal(SEG)
    cluster.store().read_limits.extend([len(event_record(b"one")) + 8 + 1])  # splits "two"
    async with reader_for(cluster) as reader:
        first = await reader.read_events()
        rest = await reader.read_events()
    assert first == [b"one"] and [bytes(e) for e in rest] == [b"two", big, b"four"]
    assert [type(e) for e in rest] == [bytes, memoryview, bytes]
    assert rest[1].obj is not None  # a view of the received data, not a new bytes


@pytest.mark.asyncio
async def test_max_events_and_mixing_with_read_event(cluster):
    payloads = [bytes([n]) * n for n in range(10)]
    cluster.segments[SEG].data += records(payloads)
    cluster.seal(SEG)
    async with reader_for(cluster) as reader:
        assert [bytes(e) for e in await reader.read_events(3)] == payloads[:3]
        assert bytes(await reader.read_event()) == payloads[3]
        assert [bytes(e) for e in await reader.read_events(1)] == payloads[4:5]
        assert [bytes(e) for e in await reader.read_events()] == payloads[5:]
        with pytest.raises(EndOfSegment):
            await reader.read_events()
        for bad in (0, -1, 1.5, "2"):
            with pytest.raises(ValueError):
                await reader.read_events(bad)


@pytest.mark.asyncio
async def test_a_bad_record_is_raised_after_the_events_before_it(cluster):
    cluster.segments[SEG].data += event_record(b"ok") + b"\0\0\0\7\0\0\0\1x"
    cluster.seal(SEG)
    async with reader_for(cluster) as reader:
        assert [bytes(e) for e in await reader.read_events()] == [b"ok"]
        for _ in range(2):  # raised, nothing consumed, raised again
            with pytest.raises(InvalidMessageError):
                await reader.read_events()
            assert reader.offset == 10
        assert bytes(await reader.read(9)) == b"\0\0\0\7\0\0\0\1x"


@pytest.mark.asyncio
async def test_timeout_at_an_empty_tail_then_the_next_events(cluster):
    async with reader_for(cluster) as reader:
        with pytest.raises(TimeoutError):
            await reader.read_events(timeout=0.05)
        assert reader.offset == 0
        cluster.append(SEG, records([b"late", b"later"]))
        events = await asyncio.wait_for(reader.read_events(), 5)
        assert [bytes(e) for e in events] == [b"late", b"later"]


@pytest.mark.asyncio
async def test_closed_reader(cluster):
    cluster.segments[SEG].data += records([b"x"])
    reader = reader_for(cluster)
    await reader.close()
    with pytest.raises(ConnectionClosedError):
        await reader.read_events()
