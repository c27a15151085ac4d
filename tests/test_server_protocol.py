"""The embedded segment store over real sockets, driven with the codec: every command and its
error replies, the long poll, WrongHost, delegation tokens, and malformed input.

Waits are bounded (``WAIT``); nothing here measures time.
"""

from __future__ import annotations

import asyncio
import struct
import time
import uuid

import pytest

from pravega_wire import commands as C
from pravega_wire.appends import CommandEncoder
from pravega_wire.codec import encode
from pravega_wire.server.placement import store_index_of
from pravega_wire.server import segmentstore
from pravega_wire.server.segmentstore import DEFAULT_READ_WAIT, MAX_READ_SIZE, SegmentStore
from pravega_wire.server.storage import EVENT_COUNT, NULL_ATTRIBUTE_VALUE, TABLE
from test_server_support import (SEGMENT, WAIT, Wire, append_end, events, make_token,
                                 serving)

pytestmark = pytest.mark.asyncio

MIN = NULL_ATTRIBUTE_VALUE
W1, W2 = uuid.UUID(int=0x11), uuid.UUID(int=0x22)


async def setup_writer(wire: Wire, writer: uuid.UUID = W1, segment: str = SEGMENT,
                       request_id: int = 1) -> int:
    wire.send(C.SetupAppend(request_id, writer, segment, ""))
    reply = await wire.recv()
    assert type(reply) is C.AppendSetup, reply
    return reply.last_event_number


def stored(store: SegmentStore, segment: str = SEGMENT) -> bytes:
    found = store.storage.get(segment)
    return b"".join(bytes(c) for c in found.iter_data())


# ---- connection control -------------------------------------------------------------------------

async def test_hello_is_answered_and_keep_alive_echoed():
    async with serving() as store:
        wire = await Wire.open(store.endpoint)  # asserts Hello(17, 5)
        wire.send(C.KeepAlive(), C.KeepAlive())
        assert await wire.recv_n(2) == [C.KeepAlive(), C.KeepAlive()]
        await wire.close()


@pytest.mark.parametrize("high, low", [(4, 1), (30, 20)])
async def test_an_incompatible_client_gets_hello_then_the_connection_closes(high, low):
    async with serving() as store:
        wire = await Wire.open(store.endpoint, hello=False)
        wire.send(C.Hello(high, low))
        assert await wire.closed_by_server()
        assert wire.pending == [C.Hello(17, 5)]


async def test_requests_do_not_need_a_hello_first():
    async with serving(SEGMENT) as store:
        wire = await Wire.open(store.endpoint, hello=False)
        wire.send(C.GetSegmentAttribute(3, SEGMENT, W1, ""))
        assert await wire.recv() == C.SegmentAttribute(3, MIN)
        await wire.close()


# ---- appends ------------------------------------------------------------------------------------

async def test_setup_append_reports_the_writers_last_event_number():
    async with serving(SEGMENT) as store:
        wire = await Wire.open(store.endpoint)
        wire.send(C.SetupAppend(5, W1, "missing", ""))
        assert await wire.recv() == C.NoSuchSegment(5, "missing", "", -1)
        assert await setup_writer(wire) == MIN
        wire.send(append_end(W1, events(b"a"), last_event=4))
        await wire.recv()
        wire.send(C.SetupAppend(6, W1, SEGMENT, ""))
        assert await wire.recv() == C.AppendSetup(6, SEGMENT, W1, 4)
        await wire.close()


async def test_each_append_gets_one_cumulative_ack_with_the_write_offset():
    async with serving(SEGMENT) as store:
        wire = await Wire.open(store.endpoint)
        await setup_writer(wire)
        first, second = events(b"hello", b"world"), events(b"!")
        wire.send(append_end(W1, first, last_event=2, count=2, request_id=77),
                  append_end(W1, second, last_event=3, request_id=77))
        assert await wire.recv_n(2) == [
            C.DataAppended(77, W1, 2, MIN, len(first)),
            C.DataAppended(77, W1, 3, 2, len(first) + len(second))]
        assert stored(store) == first + second
        assert store.storage.get(SEGMENT).attribute(W1) == 3
        await wire.close()


async def test_batched_blocks_with_partial_events_are_reassembled():
    """Blocks as Java's encoder cuts them (PartialEvent splits, Padding), two writers."""
    async with serving(SEGMENT, "other") as store:
        wire = await Wire.open(store.endpoint)
        encoder = CommandEncoder(block_size=lambda flow: 100)
        encoder.write_command(C.SetupAppend(1 << 32, W1, SEGMENT, ""))
        encoder.write_command(C.SetupAppend(2 << 32, W2, "other", ""))
        wire.send_raw(encoder.data_to_send())
        assert {type(r) for r in await wire.recv_n(2)} == {C.AppendSetup}
        payloads = [bytes([i]) * (10 + 7 * i) for i in range(1, 12)]
        for i, payload in enumerate(payloads, start=1):
            encoder.append_event(SEGMENT, W1, i, payload, request_id=1 << 32)
            encoder.append_event("other", W2, i, payload[:3], request_id=2 << 32)
        encoder.write_command(C.KeepAlive())  # closes the open block (Padding) and flushes
        wire.send_raw(encoder.data_to_send())
        replies = []
        while not replies or type(replies[-1]) is not C.KeepAlive:
            replies.append(await wire.recv())
        acks = [r for r in replies if type(r) is C.DataAppended]
        for writer in (W1, W2):
            numbers = [a.event_number for a in acks if a.writer_id == writer]
            assert numbers == sorted(numbers) and numbers[-1] == len(payloads)
            previous = [a.previous_event_number for a in acks if a.writer_id == writer]
            assert previous == [MIN] + numbers[:-1]
        assert stored(store) == events(*payloads)
        assert stored(store, "other") == events(*(p[:3] for p in payloads))
        await wire.close()


async def test_a_retransmission_is_acknowledged_without_being_applied():
    async with serving(SEGMENT) as store:
        a, b = await Wire.open(store.endpoint), await Wire.open(store.endpoint)
        await setup_writer(a)
        await setup_writer(b)  # both see MIN: a reconnecting writer racing its old connection
        a.send(append_end(W1, events(b"one"), 1), append_end(W1, events(b"two"), 2))
        await a.recv_n(2)
        b.send(append_end(W1, events(b"two"), 2, request_id=9))  # resent after a reconnect
        assert await b.recv() == C.DataAppended(9, W1, 2, MIN, len(events(b"one", b"two")))
        b.send(append_end(W1, events(b"three"), 3, request_id=9))
        assert await b.recv() == C.DataAppended(9, W1, 3, 2, len(events(b"one", b"two",
                                                                         b"three")))
        assert stored(store) == events(b"one", b"two", b"three")
        assert store.stats["appends deduplicated"] == 1
        await a.close()
        await b.close()


async def test_a_writer_whose_attribute_moved_gets_invalid_event_number_and_is_closed():
    async with serving(SEGMENT) as store:
        a, b = await Wire.open(store.endpoint), await Wire.open(store.endpoint)
        await setup_writer(a)
        await setup_writer(b)
        a.send(append_end(W1, events(b"x"), 5))
        await a.recv()
        b.send(append_end(W1, events(b"y"), 7, request_id=4))
        assert await b.closed_by_server()
        assert b.pending == [C.InvalidEventNumber(W1, 4, "", 7)]
        a.send(append_end(W1, events(b"z"), 6))
        assert (await a.recv()).event_number == 6  # the other connection is untouched
        assert stored(store) == events(b"x", b"z")
        await a.close()


async def test_conditional_appends_fail_on_a_wrong_offset_and_keep_the_connection():
    async with serving(SEGMENT) as store:
        wire = await Wire.open(store.endpoint)
        await setup_writer(wire)
        wire.send(C.ConditionalAppend(W1, 1, 0, C.Event(b"first"), 11))
        assert await wire.recv() == C.DataAppended(11, W1, 1, MIN, 13)
        wire.send(C.ConditionalAppend(W1, 2, 0, C.Event(b"stale"), 12))
        assert await wire.recv() == C.ConditionalCheckFailed(W1, 2, 12)
        wire.send(C.ConditionalBlockEnd(W1, 2, 13, b"raw", 13))
        assert await wire.recv() == C.DataAppended(13, W1, 2, 1, 16)
        assert stored(store) == events(b"first") + b"raw"
        await wire.close()


async def test_an_append_to_a_sealed_segment_fails_once_then_the_writer_is_forgotten():
    async with serving(SEGMENT) as store:
        wire = await Wire.open(store.endpoint)
        await setup_writer(wire)
        wire.send(append_end(W1, events(b"a"), 1), C.SealSegment(2, SEGMENT, ""))
        assert [type(r) for r in await wire.recv_n(2)] == [C.DataAppended, C.SegmentSealed]
        wire.send(append_end(W1, events(b"b"), 2, request_id=3))
        assert await wire.recv() == C.SegmentIsSealed(3, SEGMENT, "", 2)  # the event number
        wire.send(append_end(W1, events(b"c"), 3))
        assert await wire.closed_by_server()  # data from an unexpected connection


async def test_an_append_to_a_deleted_segment_gets_no_such_segment():
    async with serving(SEGMENT) as store:
        wire = await Wire.open(store.endpoint)
        await setup_writer(wire)
        store.delete_segment(SEGMENT)
        wire.send(append_end(W1, events(b"a"), 1, request_id=8))
        assert await wire.recv() == C.NoSuchSegment(8, SEGMENT, "", -1)
        await wire.close()


# ---- reads --------------------------------------------------------------------------------------

async def test_reads_are_clamped_as_java_clamps_them():
    async with serving(SEGMENT) as store:
        segment = store.storage.get(SEGMENT)
        data = bytes(range(256)) * (3 * 4096 + 1)
        store.storage.append(segment, data)
        wire = await Wire.open(store.endpoint)
        wire.send(C.ReadSegment(SEGMENT, 0, 100 * 1024 * 1024, "", 1),
                  C.ReadSegment(SEGMENT, 5, 1, "", 2),
                  C.ReadSegment(SEGMENT, 10, -4, "", 3))
        big, small, negative = await wire.recv_n(3)
        assert 0 < len(big.data) <= MAX_READ_SIZE and bytes(big.data) == data[:len(big.data)]
        assert (big.offset, big.at_tail, big.end_of_segment, big.request_id) == (0, False,
                                                                                False, 1)
        assert bytes(small.data) == data[5:13] and bytes(negative.data) == data[10:18]
        wire.send(C.ReadSegment(SEGMENT, len(data) - 3, 1000, "", 4))
        assert await wire.recv() == C.SegmentRead(SEGMENT, len(data) - 3, True, False,
                                                  data[-3:], 4)
        await wire.close()


async def test_a_held_read_is_answered_at_once_by_an_append_on_another_connection():
    """Scenario read_at_tail_then_append: held by default (the real store's one-minute read
    timeout), answered with the new bytes as soon as any connection appends."""
    async with serving(SEGMENT) as store:
        assert store.read_wait == DEFAULT_READ_WAIT == 60.0
        reader, writer = await Wire.open(store.endpoint), await Wire.open(store.endpoint)
        reader.send(C.ReadSegment(SEGMENT, 0, 1000, "", 21))
        assert await reader.quiet() == []  # held at the tail
        await setup_writer(writer)
        writer.send(append_end(W1, events(b"wake"), 1))
        assert await reader.recv() == C.SegmentRead(SEGMENT, 0, True, False, events(b"wake"),
                                                    21)
        assert store.storage.get(SEGMENT).watchers == []
        await reader.close()
        await writer.close()


async def test_a_read_past_the_end_of_an_open_segment_is_held_until_data_reaches_it():
    """Scenario read_past_end: no reply while the segment is shorter than the read offset."""
    async with serving(SEGMENT) as store:
        wire = await Wire.open(store.endpoint)
        await setup_writer(wire)
        wire.send(C.ReadSegment(SEGMENT, 20, 100, "", 7))
        wire.send(append_end(W1, b"0123456789", 1))
        assert await wire.recv() == C.DataAppended(1, W1, 1, MIN, 10)
        assert await wire.quiet() == []  # still short of offset 20
        wire.send(append_end(W1, b"abcdefghijklmno", 2))
        replies = await wire.recv_n(2)  # (the read is answered within the append)
        assert C.DataAppended(1, W1, 2, 1, 25) in replies
        assert C.SegmentRead(SEGMENT, 20, True, False, b"klmno", 7) in replies
        await wire.close()


async def test_a_held_read_is_answered_sealed_when_the_segment_is_sealed():
    async with serving(SEGMENT) as store:
        store.storage.append(store.storage.get(SEGMENT), b"0123456789")
        reader, admin = await Wire.open(store.endpoint), await Wire.open(store.endpoint)
        reader.send(C.ReadSegment(SEGMENT, 10, 100, "", 1), C.ReadSegment(SEGMENT, 12, 100, "", 2))
        assert await reader.quiet() == []
        admin.send(C.SealSegment(3, SEGMENT, ""))
        assert await admin.recv() == C.SegmentSealed(3, SEGMENT)
        assert await reader.recv_n(2) == [C.SegmentIsSealed(1, SEGMENT, "", 10),
                                          C.SegmentIsSealed(2, SEGMENT, "", 12)]
        await reader.close()
        await admin.close()


async def test_a_read_at_the_tail_ends_empty_with_at_tail_after_the_bound():
    async with serving(SEGMENT, read_wait=0.05) as store:
        wire = await Wire.open(store.endpoint)
        wire.send(C.ReadSegment(SEGMENT, 0, 1000, "", 5), C.ReadSegment(SEGMENT, 9, 1000, "", 6))
        assert await wire.recv_n(2) == [C.SegmentRead(SEGMENT, 0, True, False, b"", 5),
                                        C.SegmentRead(SEGMENT, 9, True, False, b"", 6)]
        assert store.storage.get(SEGMENT).watchers == []
        await wire.close()


async def test_held_reads_end_unanswered_with_their_connection():
    """The held-read half of scenario close_drops_pending_flows: a request that closes the
    connection (here FlushToStorage) drops the other flow's held read, and nothing of it stays
    in the store."""
    async with serving(SEGMENT, "other") as store:
        wire, idle = await Wire.open(store.endpoint), await Wire.open(store.endpoint)
        wire.send(C.ReadSegment(SEGMENT, 0, 100, "", 1 << 32 | 1),
                  C.ReadSegment("other", 0, 100, "", 2 << 32 | 1))
        idle.send(C.ReadSegment("other", 0, 100, "", 3 << 32 | 1))
        assert await wire.quiet() == [] and await idle.quiet() == []
        closing, staying = server_side(store, wire), server_side(store, idle)
        wire.send(C.FlushToStorage(0, "", 3 << 32 | 2))
        assert await wire.closed_by_server()
        assert wire.pending == []  # neither held read was answered
        await asyncio.wait_for(closing.lost, WAIT)
        assert closing.reads == {} and store.storage.get(SEGMENT).watchers == []
        assert len(store.storage.get("other").watchers) == 1  # the other connection's read
        await idle.close()
        await asyncio.wait_for(staying.lost, WAIT)
        assert store.storage.get("other").watchers == []
        await wire.close()


def server_side(store: SegmentStore, wire: Wire):
    """The store's end of ``wire``'s connection."""
    address = wire.writer.get_extra_info("sockname")
    return next(c for c in store._connections if c.peer == address)


async def test_held_reads_per_connection_are_bounded(monkeypatch):
    monkeypatch.setattr(segmentstore, "MAX_HELD_READS", 3)
    async with serving(SEGMENT) as store:
        wire = await Wire.open(store.endpoint)
        wire.send(*(C.ReadSegment(SEGMENT, 0, 100, "", rid) for rid in range(1, 6)))
        # The oldest reads are answered as their timeout would answer them.
        assert await wire.recv_n(2) == [C.SegmentRead(SEGMENT, 0, True, False, b"", 1),
                                        C.SegmentRead(SEGMENT, 0, True, False, b"", 2)]
        assert await wire.quiet() == []
        assert len(store.storage.get(SEGMENT).watchers) == 3
        store.storage.append(store.storage.get(SEGMENT), b"data")
        assert await wire.recv_n(3) == [C.SegmentRead(SEGMENT, 0, True, False, b"data", rid)
                                        for rid in (3, 4, 5)]
        await wire.close()


async def test_stopping_answers_waiting_reads_empty():
    store = SegmentStore()
    store.create_segment(SEGMENT)
    await store.start()
    wire = await Wire.open(store.endpoint)
    wire.send(C.ReadSegment(SEGMENT, 0, 10, "", 6))
    assert await wire.quiet() == []
    await store.stop()
    assert await wire.closed_by_server()
    assert wire.pending == [C.SegmentRead(SEGMENT, 0, True, False, b"", 6)]


async def test_sealed_segments_read_to_their_end():
    async with serving(SEGMENT) as store:
        segment = store.storage.get(SEGMENT)
        store.storage.append(segment, b"0123456789")
        store.seal_segment(SEGMENT)
        wire = await Wire.open(store.endpoint)
        wire.send(C.ReadSegment(SEGMENT, 10, 100, "", 1), C.ReadSegment(SEGMENT, 4, 100, "", 2),
                  C.ReadSegment(SEGMENT, 1, 8, "", 3))
        assert await wire.recv_n(3) == [
            C.SegmentRead(SEGMENT, 10, False, True, b"", 1),
            C.SegmentRead(SEGMENT, 4, False, True, b"456789", 2),
            C.SegmentRead(SEGMENT, 1, False, False, b"12345678", 3)]
        await wire.close()


async def test_a_read_past_the_end_of_a_sealed_segment_closes_only_that_connection():
    """As the real store (its read index rejects the offset): the connection is closed, no
    reply; the replies before it are sent, other connections are not affected."""
    async with serving(SEGMENT) as store:
        store.storage.append(store.storage.get(SEGMENT), b"0123456789")
        store.seal_segment(SEGMENT)
        wire, other = await Wire.open(store.endpoint), await Wire.open(store.endpoint)
        wire.send(C.ReadSegment(SEGMENT, 8, 100, "", 1), C.ReadSegment(SEGMENT, 11, 100, "", 2),
                  C.GetStreamSegmentInfo(3, SEGMENT, ""))
        assert await wire.closed_by_server()
        assert wire.pending == [C.SegmentRead(SEGMENT, 8, False, True, b"89", 1)]
        other.send(C.ReadSegment(SEGMENT, 10, 100, "", 4))
        assert await other.recv() == C.SegmentRead(SEGMENT, 10, False, True, b"", 4)
        await other.close()
        await wire.close()


async def test_truncated_and_missing_segments_answer_reads_with_the_offset():
    async with serving(SEGMENT) as store:
        segment = store.storage.get(SEGMENT)
        store.storage.append(segment, b"0123456789")
        store.truncate_segment(SEGMENT, 6)
        wire = await Wire.open(store.endpoint)
        wire.send(C.ReadSegment(SEGMENT, 2, 100, "", 1), C.ReadSegment("nope", 7, 100, "", 2),
                  C.ReadSegment(SEGMENT, 10, 100, "", 3))
        assert await wire.recv_n(2) == [C.SegmentIsTruncated(1, SEGMENT, 6, "", 2),
                                        C.NoSuchSegment(2, "nope", "", 7)]
        store.delete_segment(SEGMENT)  # wakes the waiting read
        assert await wire.recv() == C.NoSuchSegment(3, SEGMENT, "", 10)
        await wire.close()


# ---- segment metadata and management ------------------------------------------------------------

async def test_segment_info_and_attributes():
    async with serving(SEGMENT) as store:
        wire = await Wire.open(store.endpoint)
        wire.send(C.GetStreamSegmentInfo(1, "missing", ""))
        assert await wire.recv() == C.NoSuchSegment(1, "missing", "", -1)
        segment = store.storage.get(SEGMENT)
        store.storage.append(segment, b"abcdef")
        store.truncate_segment(SEGMENT, 2)
        wire.send(C.GetStreamSegmentInfo(2, SEGMENT, ""))
        info = await wire.recv()
        assert (info.exists, info.is_sealed, info.is_deleted, info.write_offset,
                info.start_offset) == (True, False, False, 6, 2)
        assert abs(info.last_modified - time.time() * 1000) < 600_000
        attribute = uuid.UUID(int=99)
        wire.send(C.GetSegmentAttribute(3, SEGMENT, attribute, ""),
                  C.UpdateSegmentAttribute(4, SEGMENT, attribute, 10, MIN, ""),
                  C.UpdateSegmentAttribute(5, SEGMENT, attribute, 11, MIN, ""),
                  C.UpdateSegmentAttribute(6, SEGMENT, attribute, 12, 10, ""),
                  C.GetSegmentAttribute(7, SEGMENT, attribute, ""),
                  C.GetSegmentAttribute(8, "missing", attribute, ""),
                  C.UpdateSegmentAttribute(9, "missing", attribute, 1, MIN, ""))
        assert await wire.recv_n(7) == [
            C.SegmentAttribute(3, MIN), C.SegmentAttributeUpdated(4, True),
            C.SegmentAttributeUpdated(5, False), C.SegmentAttributeUpdated(6, True),
            C.SegmentAttribute(7, 12), C.NoSuchSegment(8, "missing", "", -1),
            C.NoSuchSegment(9, "missing", "", -1)]
        await wire.close()


async def test_info_of_a_deleted_or_merged_segment_is_no_such_segment():
    """Scenarios info_deleted and merge_segments: never StreamSegmentInfo(exists=false); the
    source of a merge need not be sealed and is gone afterwards."""
    async with serving("gone", "target", "source") as store:
        store.storage.append(store.storage.get("target"), b"T" * 18)
        store.storage.append(store.storage.get("source"), b"S" * 36)
        wire = await Wire.open(store.endpoint)
        wire.send(C.DeleteSegment(1, "gone", ""), C.GetStreamSegmentInfo(2, "gone", ""),
                  C.MergeSegments(3, "target", "source", ""),
                  C.GetStreamSegmentInfo(4, "source", ""))
        assert await wire.recv_n(4) == [
            C.SegmentDeleted(1, "gone"), C.NoSuchSegment(2, "gone", "", -1),
            C.SegmentsMerged(3, "target", "source", 54), C.NoSuchSegment(4, "source", "", -1)]
        await wire.close()


async def test_attributes_of_a_sealed_segment_cannot_be_updated():
    """Scenario update_attribute_sealed."""
    async with serving(SEGMENT) as store:
        store.seal_segment(SEGMENT)
        attribute = uuid.UUID(int=99)
        wire = await Wire.open(store.endpoint)
        wire.send(C.UpdateSegmentAttribute(1, SEGMENT, attribute, 1, MIN, ""),
                  C.GetSegmentAttribute(2, SEGMENT, attribute, ""))
        assert await wire.recv_n(2) == [C.SegmentIsSealed(1, SEGMENT, "", -1),
                                        C.SegmentAttribute(2, MIN)]
        await wire.close()


async def test_appends_count_their_events_in_the_event_count_attribute():
    """Scenario event_count_attribute, plus what no scenario shows: a block whose end carries
    the rest of a partial event and more whole events counts them all, a retransmission
    nothing, a conditional append one."""
    async with serving(SEGMENT) as store:
        wire = await Wire.open(store.endpoint)
        wire.send(C.GetSegmentAttribute(1, SEGMENT, EVENT_COUNT, ""))
        assert await wire.recv() == C.SegmentAttribute(1, MIN)
        await setup_writer(wire)
        wire.send(append_end(W1, events(b"a", b"b", b"c"), 3, count=3),
                  append_end(W1, events(b"d", b"e", b"f", b"g"), 7, count=4),
                  C.GetSegmentAttribute(2, SEGMENT, EVENT_COUNT, ""))
        assert [type(r) for r in await wire.recv_n(2)] == [C.DataAppended] * 2
        assert await wire.recv() == C.SegmentAttribute(2, 7)
        # A block: one whole event, then a PartialEvent; its end completes that event and
        # carries two more whole events.
        split = events(b"partial-event")
        block = events(b"h") + encode(C.PartialEvent(split[:5]))
        tail = split[5:] + events(b"i", b"j")
        wire.send(C.AppendBlock(W1, block),
                  C.AppendBlockEnd(W1, len(events(b"h")), tail, 4, 11, 1))
        assert (await wire.recv()).event_number == 11
        again = await Wire.open(store.endpoint)  # the writer reconnects and retransmits
        assert await setup_writer(again) == 11
        again.send(append_end(W1, events(b"d"), 7), C.GetSegmentAttribute(3, SEGMENT,
                                                                          EVENT_COUNT, ""))
        assert await again.recv() == C.SegmentAttribute(3, 11)  # deduplicated: not counted
        await again.close()
        length = store.storage.get(SEGMENT).length
        wire.send(C.ConditionalAppend(W1, 12, length, C.Event(b"k"), 1),
                  C.GetSegmentAttribute(4, SEGMENT, EVENT_COUNT, ""))
        assert type(await wire.recv()) is C.DataAppended
        assert await wire.recv() == C.SegmentAttribute(4, 12)
        assert stored(store).endswith(events(b"h", b"partial-event", b"i", b"j", b"k"))
        await wire.close()


async def test_truncation_outside_the_data_reports_the_start_and_changes_nothing():
    """Scenarios truncate_beyond_length, truncate_below_start and truncate_sealed."""
    async with serving(SEGMENT) as store:
        store.storage.append(store.storage.get(SEGMENT), b"x" * 54)
        wire = await Wire.open(store.endpoint)
        wire.send(C.TruncateSegment(1, SEGMENT, 1000, ""), C.TruncateSegment(2, SEGMENT, 10, ""),
                  C.TruncateSegment(3, SEGMENT, 5, ""), C.TruncateSegment(4, SEGMENT, 55, ""),
                  C.SealSegment(5, SEGMENT, ""), C.TruncateSegment(6, SEGMENT, 20, ""),
                  C.GetStreamSegmentInfo(7, SEGMENT, ""))
        replies = await wire.recv_n(7)
        assert replies[:6] == [
            C.SegmentIsTruncated(1, SEGMENT, 0, "", 1000), C.SegmentTruncated(2, SEGMENT),
            C.SegmentIsTruncated(3, SEGMENT, 10, "", 5),
            C.SegmentIsTruncated(4, SEGMENT, 10, "", 55), C.SegmentSealed(5, SEGMENT),
            C.SegmentTruncated(6, SEGMENT)]
        assert (replies[6].is_sealed, replies[6].start_offset, replies[6].write_offset) == (
            True, 20, 54)
        await wire.close()


@pytest.mark.parametrize("command", [C.FlushToStorage(0, "", 5),
                                     C.ListStorageChunks(SEGMENT, "", 5)])
async def test_admin_commands_on_the_data_port_close_the_connection(command):
    """Scenarios flush_to_storage and list_storage_chunks: no reply, the connection closes;
    the replies before it are sent and other connections are not affected."""
    async with serving(SEGMENT) as store:
        wire, other = await Wire.open(store.endpoint), await Wire.open(store.endpoint)
        wire.send(C.GetSegmentAttribute(4, SEGMENT, W1, ""), command)
        assert await wire.closed_by_server()
        assert wire.pending == [C.SegmentAttribute(4, MIN)]
        other.send(C.GetSegmentAttribute(6, SEGMENT, W1, ""))
        assert await other.recv() == C.SegmentAttribute(6, MIN)
        await other.close()
        await wire.close()


async def test_a_deleted_sealed_segment_can_be_created_again():
    """Differs from the real store on purpose: right after deleting a sealed segment that holds
    data, its CreateSegment answers SegmentAlreadyExists (its storage deletes lazily). A name
    that is deleted is free here, at once: a stream deleted and created again works."""
    async with serving(SEGMENT) as store:
        store.storage.append(store.storage.get(SEGMENT), b"data")
        store.seal_segment(SEGMENT)
        wire = await Wire.open(store.endpoint)
        wire.send(C.DeleteSegment(1, SEGMENT, ""), C.CreateSegment(2, SEGMENT, C.NO_SCALE, 0, ""),
                  C.GetStreamSegmentInfo(3, SEGMENT, ""))
        replies = await wire.recv_n(3)
        assert replies[:2] == [C.SegmentDeleted(1, SEGMENT), C.SegmentCreated(2, SEGMENT)]
        assert (replies[2].is_sealed, replies[2].write_offset) == (False, 0)
        await wire.close()


async def test_create_seal_truncate_delete_and_policy():
    async with serving() as store:
        wire = await Wire.open(store.endpoint)
        name = "sc/st/3.#epoch.1"
        wire.send(C.CreateSegment(1, name, C.NO_SCALE, 0, ""),
                  C.CreateSegment(2, name, C.NO_SCALE, 0, ""),
                  C.UpdateSegmentPolicy(3, name, C.IN_EVENTS_PER_SEC, 10, ""),
                  C.TruncateSegment(4, name, 0, ""),
                  C.TruncateSegment(5, name, 7, ""),
                  C.LocateOffset(6, name, 0, ""),
                  C.SealSegment(7, name, ""), C.SealSegment(8, name, ""),
                  C.DeleteSegment(9, name, ""), C.DeleteSegment(10, name, ""),
                  C.SealSegment(11, name, ""), C.TruncateSegment(12, name, 3, ""),
                  C.UpdateSegmentPolicy(13, name, C.NO_SCALE, 0, ""),
                  C.LocateOffset(14, name, 0, ""))
        assert await wire.recv_n(14) == [
            C.SegmentCreated(1, name), C.SegmentAlreadyExists(2, name, ""),
            C.SegmentPolicyUpdated(3, name), C.SegmentTruncated(4, name),
            C.SegmentIsTruncated(5, name, 0, "", 7), C.OffsetLocated(6, name, 0),
            C.SegmentSealed(7, name), C.SegmentIsSealed(8, name, "", -1),
            C.SegmentDeleted(9, name), C.NoSuchSegment(10, name, "", -1),
            C.NoSuchSegment(11, name, "", -1), C.NoSuchSegment(12, name, "", 3),
            C.NoSuchSegment(13, name, "", -1), C.NoSuchSegment(14, name, "", -1)]
        await wire.close()


async def test_a_large_event_goes_through_a_transient_segment_and_a_merge():
    """The Java large-event writer's sequence (docs/protocol.md §9.3)."""
    async with serving(SEGMENT) as store:
        wire = await Wire.open(store.endpoint)
        wire.send(C.CreateTransientSegment(1, W1, SEGMENT, ""))
        created = await wire.recv()
        parent, marker, rest = created.segment.partition("#transient.")
        assert (type(created), created.request_id, parent, marker) == (
            C.SegmentCreated, 1, SEGMENT, "#transient.")
        assert rest.split(".")[0] == W1.hex and len(rest.split(".")[1]) == 32
        assert await setup_writer(wire, W1, created.segment, 2) == MIN
        record = events(b"L" * 100_000)
        chunks = [record[:40_000], record[40_000:80_000], record[80_000:]]
        offset = 0
        for number, chunk in enumerate(chunks):
            wire.send(C.ConditionalBlockEnd(W1, number, offset, chunk, 3 + number))
            offset += len(chunk)
        acks = await wire.recv_n(3)
        assert [(a.event_number, a.previous_event_number) for a in acks] == [
            (0, MIN), (1, 0), (2, 1)]
        wire.send(C.MergeSegments(9, SEGMENT, created.segment, ""))
        assert await wire.recv() == C.SegmentsMerged(9, SEGMENT, created.segment, len(record))
        assert stored(store) == record
        assert store.storage.get(created.segment) is None
        await wire.close()
    # Merged, so the connection's close does not delete it: nothing left to check beyond that.


async def test_a_transient_segment_needs_no_parent():
    """As the real store: CreateTransientSegment succeeds for a parent that does not exist."""
    async with serving() as store:
        wire = await Wire.open(store.endpoint)
        wire.send(C.CreateTransientSegment(1, W1, "scope/stream/7.#epoch.0", ""))
        created = await wire.recv()
        assert type(created) is C.SegmentCreated
        assert created.segment.startswith("scope/stream/7.#epoch.0#transient.")
        assert created.segment in store.storage and "scope/stream/7.#epoch.0" not in store.storage
        await wire.close()


async def test_transient_segments_die_with_their_connection_unless_merged():
    async with serving(SEGMENT) as store:
        wire = await Wire.open(store.endpoint)
        wire.send(C.CreateTransientSegment(1, W1, SEGMENT, ""))
        name = (await wire.recv()).segment
        assert name in store.storage
        await wire.close()
        for _ in range(int(WAIT / 0.01)):  # until the store has seen the close
            if name not in store.storage:
                break
            await asyncio.sleep(0.01)
        assert name not in store.storage


async def test_merges_check_attributes_and_batches_merge_in_order():
    async with serving("t", "a", "b") as store:
        for name, data in (("t", b"T"), ("a", b"A"), ("b", b"B")):
            store.storage.append(store.storage.get(name), data)
        attribute = uuid.UUID(int=5)
        wire = await Wire.open(store.endpoint)
        wire.send(C.MergeSegments(1, "t", "a", "", [
            C.ConditionalAttributeUpdate(attribute, C.ConditionalAttributeUpdate.REPLACE_IF_EQUALS,
                                         3, 2)]),
                  C.MergeSegments(2, "t", "missing", ""),
                  C.MergeSegmentsBatch(3, "t", ["a", "missing", "b"], ""))
        assert await wire.recv_n(3) == [
            C.SegmentAttributeUpdated(1, False), C.NoSuchSegment(2, "missing", "", -1),
            C.SegmentsBatchMerged(3, "t", ["a", "missing", "b"], [2, 2, 3])]
        assert stored(store, "t") == b"TAB"
        await wire.close()


# ---- table segments (their commands: test_server_tables.py) ----------------------------------

async def test_byte_commands_on_table_segments_are_unsupported():
    async with serving() as store:
        store.create_segment("tbl", TABLE)
        wire = await Wire.open(store.endpoint)
        wire.send(C.SetupAppend(2, W1, "tbl", ""))
        assert await wire.recv_n(1) == [C.OperationUnsupported(2, "setupAppend", "")]
        await wire.close()


# ---- placement and authentication ---------------------------------------------------------------

def owned_by(index: int, stores: int) -> str:
    return next(f"sc/st/{n}.#epoch.0" for n in range(1000)
                if store_index_of(f"sc/st/{n}.#epoch.0", stores) == index)


async def test_a_segment_another_store_owns_gets_wrong_host():
    mine, theirs = owned_by(0, 3), owned_by(1, 3)
    async with serving(mine, index=0, store_count=3) as store:
        wire = await Wire.open(store.endpoint)
        wire.send(C.SetupAppend(1, W1, theirs, ""), C.ReadSegment(theirs, 5, 10, "", 2),
                  C.GetStreamSegmentInfo(3, theirs, ""), C.CreateTableSegment(4, theirs),
                  C.CreateTransientSegment(5, W1, theirs, ""),
                  C.GetStreamSegmentInfo(6, mine, ""))
        replies = await wire.recv_n(6)
        assert replies[:5] == [C.WrongHost(i, theirs, "", "") for i in range(1, 5)] + [
            C.WrongHost(5, replies[4].segment, "", "")]
        assert replies[4].segment.startswith(theirs + "#transient.")
        assert replies[5].exists
        await wire.close()


async def test_delegation_tokens_are_checked():
    key = b"secret-key-for-tests-0123456789ab"
    good = make_token(key, "scope", "stream", time.time() + 600)
    expired = make_token(key, "scope", "stream", time.time() - 5)
    async with serving(SEGMENT, token_key=key) as store:
        wire = await Wire.open(store.endpoint)
        wire.send(C.GetStreamSegmentInfo(1, SEGMENT, ""),
                  C.GetStreamSegmentInfo(2, SEGMENT, expired),
                  C.ReadSegment(SEGMENT, 1234, 10, "garbage", 3),
                  C.SetupAppend(4, W1, SEGMENT, "not-a-token"),
                  C.GetStreamSegmentInfo(5, SEGMENT, good))
        replies = await wire.recv_n(5)
        assert replies[:4] == [
            C.AuthTokenCheckFailed(1, "", C.AuthTokenCheckFailed.TOKEN_CHECK_FAILED),
            C.AuthTokenCheckFailed(2, "", C.AuthTokenCheckFailed.TOKEN_EXPIRED),
            # Java's quirk: a ReadSegment's failure carries the read offset as request id.
            C.AuthTokenCheckFailed(1234, "", C.AuthTokenCheckFailed.TOKEN_CHECK_FAILED),
            C.AuthTokenCheckFailed(4, "", C.AuthTokenCheckFailed.TOKEN_CHECK_FAILED)]
        assert replies[4].exists
        wire.send(C.SetupAppend(6, W1, SEGMENT, expired))  # expired on the append path: closed
        assert await wire.closed_by_server()
        assert wire.pending == [C.AuthTokenCheckFailed(6, "",
                                                       C.AuthTokenCheckFailed.TOKEN_EXPIRED)]


# ---- malformed input ----------------------------------------------------------------------------

BAD_INPUTS = {
    "garbage": b"\x13\x37" * 20,
    "oversized length": struct.pack(">ii", C.KeepAlive.TYPE, C.MAX_WIRECOMMAND_SIZE),
    "negative length": struct.pack(">ii", C.KeepAlive.TYPE, -1),
    "unknown type": struct.pack(">ii", 13, 0),
    "top-level event": struct.pack(">ii", 0, 0),
    "a reply type": encode(C.DataAppended(1, W1, 1, 0, 0)),
    "append before setup": encode(append_end(W2, events(b"x"), 1)),
    "block without end": encode(C.AppendBlock(W1, events(b"x"))) + encode(C.KeepAlive()),
    "truncated payload": struct.pack(">ii", C.SetupAppend.TYPE, 3) + b"abc",
}


@pytest.mark.parametrize("bad", BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
async def test_malformed_input_closes_only_that_connection_and_loses_nothing(bad, caplog):
    async with serving(SEGMENT) as store:
        bystander = await Wire.open(store.endpoint)
        await setup_writer(bystander, W2, request_id=2)
        wire = await Wire.open(store.endpoint)
        await setup_writer(wire)
        # An append, a KeepAlive and the bad bytes in one write: what came first is answered.
        wire.send_raw(encode(append_end(W1, events(b"kept"), 1)) + encode(C.KeepAlive()) + bad)
        with caplog.at_level("WARNING", logger="pravega_wire.server.segmentstore"):
            assert await wire.closed_by_server()
        assert [type(r) for r in wire.pending] == [C.DataAppended, C.KeepAlive]
        assert any("closing connection" in r.getMessage() for r in caplog.records)
        bystander.send(append_end(W2, events(b"more"), 1, request_id=2))
        assert (await bystander.recv()).writer_id == W2
        assert stored(store) == events(b"kept", b"more")
        await bystander.close()


async def test_a_frame_split_across_writes_is_reassembled():
    async with serving(SEGMENT) as store:
        wire = await Wire.open(store.endpoint)
        await setup_writer(wire)
        frame = encode(append_end(W1, events(b"x" * 10_000), 1))
        for i in range(0, len(frame), 777):
            wire.send_raw(frame[i:i + 777])
            await asyncio.sleep(0)
        assert (await wire.recv()).current_segment_write_offset == 10_008
        await wire.close()
