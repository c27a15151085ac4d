"""The segment clients against the REAL segment store's behaviour.

Two kinds of peer:

- a scripted store (``realstore_script.py``) answering with the frames Pravega's own segment
  store sent in the recorded transcripts of ``tests/data/realstore/public.json`` (NoSuchSegment
  for the info of a missing segment, SegmentIsTruncated for a truncate past the length, a close
  without a frame for a table command on a stream segment, a held tail read...), through a real
  ConnectionPool;
- the embedded SegmentStore holding reads at the tail for longer (``read_wait``) than every
  client timeout these tests configure (reply timeout 0.2 s, keep-alive 0.1 s, read timeout
  0.5 s), as the real store holds them for about two minutes.
"""

from __future__ import annotations

import asyncio
import sys
import contextlib
import uuid

import pytest

from pravega_wire import commands as C
from pravega_wire.client import MetadataClient, RetryPolicy, SegmentReader, SegmentWriter
from pravega_wire.client.raw import ConditionalWriter, RawClient
from pravega_wire.client.reader import EndOfSegment
from pravega_wire.codec import decode
from pravega_wire.errors import (AdminCommandError, BadOffsetError, ConnectionFailedError,
                                 RetriesExhaustedError, SegmentSealedError, TimeoutError,
                                 WrongSegmentTypeError)
from pravega_wire.pool import ClientConfig, ConnectionPool
from pravega_wire.server.segmentstore import SegmentStore

from client_fakes import until
from realstore_script import CLOSE, HOLD, SCENARIOS, ScriptedStore, answer

pytestmark = pytest.mark.asyncio

FAST = RetryPolicy(initial_delay=0.001, multiplier=2.0, max_delay=0.01, attempts=3)
#: Client timeouts far below the store's hold of a tail read.
QUICK = ClientConfig(keepalive_interval=0.1, read_timeout=0.5,
                     max_connections_per_segment_store=1)
HOLD_FOR = 5.0  # the embedded store's hold: longer than every client timeout above


def recorded_request(scenario: str, request_type: str):
    """The request a scenario sent (decoded from its recorded bytes)."""
    for step in SCENARIOS[scenario]["steps"]:
        send = step.get("send")
        if send is not None and send["type"] == request_type:
            return decode(bytes.fromhex(send["wire_hex"]))
    raise KeyError(request_type)


def info_of(segment: str, length: int, *, sealed: bool = False):
    """The real store's StreamSegmentInfo (from info_existing_with_data) for ``segment``."""
    _, (info,) = answer("info_existing_with_data", "GetStreamSegmentInfo")
    return info._replace(segment_name=segment, write_offset=length, is_sealed=sealed)


# ---- MetadataClient: the real store's replies -----------------------------------------------

async def test_info_of_a_missing_or_deleted_segment_says_it_does_not_exist():
    missing = "scope-00/stream/12.#epoch.0"
    async with ScriptedStore(answer("info_missing", "GetStreamSegmentInfo"),
                             answer("info_deleted", "DeleteSegment"),
                             answer("info_deleted", "GetStreamSegmentInfo")) as store, \
            ConnectionPool(QUICK) as pool, MetadataClient(pool, store.endpoint) as meta:
        info = await meta.get_info(missing)
        assert (info.segment, info.exists, info.length, info.start_offset) == (missing, False,
                                                                               0, 0)
        segment = answer("info_deleted", "DeleteSegment")[1][0].segment
        assert await meta.delete(segment) is True
        assert not (await meta.get_info(segment)).exists
    assert store.request_types() == ["GetStreamSegmentInfo", "DeleteSegment",
                                     "GetStreamSegmentInfo"] and not store.errors


async def test_truncate_past_the_length_is_a_bad_offset_and_below_the_start_is_done():
    beyond = "scope-00/stream/25.#epoch.0"
    below = "scope-00/stream/28.#epoch.0"
    async with ScriptedStore(answer("truncate_beyond_length", "TruncateSegment"),
                             answer("truncate_beyond_length", "GetStreamSegmentInfo"),
                             answer("truncate_below_start", "TruncateSegment", 0),
                             answer("truncate_below_start", "TruncateSegment", 1),
                             answer("truncate_sealed", "TruncateSegment")) as store, \
            ConnectionPool(QUICK) as pool, MetadataClient(pool, store.endpoint,
                                                          retry=FAST) as meta:
        with pytest.raises(BadOffsetError) as info:
            await meta.truncate(beyond, 1000)
        assert (info.value.start_offset, info.value.offset) == (0, 1000)
        assert isinstance(info.value, ValueError)
        assert (await meta.get_info(beyond)).length == 54  # unchanged
        await meta.truncate(below, 36)
        await meta.truncate(below, 18)  # below the start (36): done, no error
        sealed = answer("truncate_sealed", "TruncateSegment")[1][0].segment
        await meta.truncate(sealed, 18)  # a sealed segment can be truncated
    assert [cmd.truncation_offset for _, cmd in store.received
            if type(cmd) is C.TruncateSegment] == [1000, 36, 18, 18]
    assert not store.errors


async def test_seal_twice_delete_twice_create_twice_and_attributes():
    async with ScriptedStore(answer("seal_twice", "CreateSegment"),
                             answer("seal_twice", "SealSegment", 0),
                             answer("seal_twice", "SealSegment", 1),
                             answer("delete_twice", "DeleteSegment", 0),
                             answer("delete_twice", "DeleteSegment", 1),
                             answer("create_segment_existing", "CreateSegment", 1),
                             answer("update_attribute_cas_failure", "UpdateSegmentAttribute", 0),
                             answer("get_attribute_missing", "GetSegmentAttribute")) as store, \
            ConnectionPool(QUICK) as pool, MetadataClient(pool, store.endpoint) as meta:
        sealed = "scope-00/stream/21.#epoch.0"
        assert await meta.create(sealed) is True
        await meta.seal(sealed)
        await meta.seal(sealed)  # SegmentIsSealed: sealing a sealed segment succeeds
        deleted = answer("delete_twice", "DeleteSegment")[1][0].segment
        assert await meta.delete(deleted) is True
        assert await meta.delete(deleted) is False  # NoSuchSegment
        assert await meta.create("scope-00/stream/x") is False  # SegmentAlreadyExists
        attribute = uuid.uuid4()
        assert await meta.compare_and_set_attribute("scope-00/stream/x", attribute, 5, 7) \
            is False
        assert await meta.get_attribute("scope-00/stream/x", attribute) \
            == C.NULL_ATTRIBUTE_VALUE
    assert not store.errors and not store.script


async def test_an_attribute_update_on_a_sealed_segment_is_a_sealed_error():
    segment = answer("update_attribute_sealed", "UpdateSegmentAttribute")[1][0].segment
    async with ScriptedStore(answer("update_attribute_sealed", "UpdateSegmentAttribute")) \
            as store, ConnectionPool(QUICK) as pool, MetadataClient(pool, store.endpoint) as meta:
        with pytest.raises(SegmentSealedError):
            await meta.compare_and_set_attribute(segment, uuid.uuid4(), C.NULL_ATTRIBUTE_VALUE,
                                                 1)
    assert not store.errors


async def test_a_conditional_write_to_a_sealed_segment_is_a_sealed_error():
    """SetupAppend on a sealed segment succeeds (setup_append_sealed); the append then gets
    SegmentIsSealed (append_after_seal)."""
    (setup,) = answer("setup_append_sealed", "SetupAppend")[1]
    async with ScriptedStore(answer("setup_append_sealed", "SetupAppend"),
                             ("ConditionalAppend",
                              answer("append_after_seal", "AppendBlockEnd", 1)[1])) as store, \
            ConnectionPool(QUICK) as pool, \
            ConditionalWriter(pool, store.endpoint, setup.segment,
                              writer_id=setup.writer_id) as writer:
        with pytest.raises(SegmentSealedError):
            await writer.write(b"late", 0)
    assert store.request_types() == ["SetupAppend", "ConditionalAppend"] and not store.errors


# ---- requests that would make the store close a shared connection ---------------------------

async def test_admin_port_commands_are_refused_before_they_are_sent():
    segment = "scope-00/stream/12.#epoch.0"
    async with ScriptedStore(answer("info_missing", "GetStreamSegmentInfo")) as store, \
            ConnectionPool(QUICK) as pool:
        raw = RawClient(pool, store.endpoint)
        with pytest.raises(AdminCommandError):
            await raw.request(C.FlushToStorage, container_id=0, delegation_token="")
        with pytest.raises(AdminCommandError):
            await raw.request(C.ListStorageChunks, segment=segment, delegation_token="")
        reply = await raw.request(C.GetStreamSegmentInfo, segment_name=segment)
        assert type(reply) is C.NoSuchSegment  # the client, and its connection, are fine
        await raw.close()
    assert store.request_types() == ["GetStreamSegmentInfo"] and store.connections == 1


async def test_a_table_command_on_a_stream_segment_does_not_cost_the_pooled_connection():
    """As close_drops_pending_flows: a reader's read is held on the pooled connection when
    another flow sends a table command for a stream segment. On the real store that command
    closes the connection and the held read is lost; here it goes on a connection of its own,
    whose close is a WrongSegmentTypeError, and the held read is answered."""
    segment = "scope-00/stream/87.#epoch.0"
    update = recorded_request("table_command_on_stream_segment", "UpdateTableEntries")
    async with ScriptedStore(("GetStreamSegmentInfo", [info_of(segment, 18)]),
                             ("ReadSegment", HOLD),
                             ("UpdateTableEntries", CLOSE),
                             ("UpdateTableEntries", CLOSE),
                             ("ReadSegment", HOLD)) as store, \
            ConnectionPool(QUICK) as pool:
        async with SegmentReader(pool, store.endpoint, segment, offset=18, retry=FAST,
                                 reply_timeout=0.2) as reader:
            read = asyncio.ensure_future(reader.read_event())
            await until(lambda: store.held, "the held read")
            raw = RawClient(pool, store.endpoint)
            for _ in range(2):  # not remembered as a table segment: a new connection each time
                with pytest.raises(WrongSegmentTypeError):
                    await raw.send_request(lambda rid: update._replace(
                        request_id=rid, segment=segment))
            assert not read.done()
            store.answer(answer("read_at_tail_then_append", "ReadSegment")[1])
            assert bytes(await asyncio.wait_for(read, 5)) == b"event-1-" * 3 + b"event-"
            assert reader.connections == 1
            assert not raw.closed
            await raw.close()
    # The reader's info and read, and its next read, on the pooled connection (0); each table
    # command on a connection of its own.
    assert [index for index, cmd in store.received] == [0, 0, 1, 2, 0]
    assert not store.errors


async def test_a_table_segment_is_tried_once_alone_then_shares_the_pooled_connection():
    table = "scope-00/_tables/t127"
    async with ScriptedStore(answer("create_table_plain", "CreateTableSegment", 0),
                             answer("create_table_plain", "GetTableSegmentInfo"),
                             answer("create_table_plain", "GetTableSegmentInfo")) as store, \
            ConnectionPool(QUICK) as pool:
        raw = RawClient(pool, store.endpoint)
        created = await raw.request(C.CreateTableSegment, segment=table, delegation_token="",
                                    key_length=0)
        assert type(created) is C.SegmentCreated
        for _ in range(2):
            info = await raw.request(C.GetTableSegmentInfo, segment_name=table,
                                     delegation_token="")
            assert type(info) is C.TableSegmentInfo
        await raw.close()
    # The create went alone (connection 1, dedicated); the pooled one (0) carries the rest.
    assert [index for index, _ in store.received] == [1, 0, 0]
    assert store.connections == 2 and not store.errors


async def test_a_raw_read_past_the_end_of_a_sealed_segment_is_refused():
    segment = "scope-00/stream/101.#epoch.0"
    sealed = info_of(segment, 36, sealed=True)
    async with ScriptedStore(("GetStreamSegmentInfo", [sealed]),
                             ("GetStreamSegmentInfo", [sealed]),
                             answer("read_end_of_sealed", "ReadSegment", 0)) as store, \
            ConnectionPool(QUICK) as pool:
        raw = RawClient(pool, store.endpoint)
        with pytest.raises(BadOffsetError) as info:
            await raw.request(C.ReadSegment, segment=segment, offset=37, suggested_length=10,
                              delegation_token="")
        assert (info.value.offset, info.value.start_offset) == (37, 0)
        reply = await raw.request(C.ReadSegment, segment=segment, offset=36,
                                  suggested_length=10, delegation_token="")
        assert type(reply) is C.SegmentRead and reply.end_of_segment
        await raw.close()
    assert store.request_types() == ["GetStreamSegmentInfo", "GetStreamSegmentInfo",
                                     "ReadSegment"] and not store.errors


# ---- SegmentReader against the scripted real store -------------------------------------------

async def test_a_held_read_is_answered_with_the_new_bytes_and_the_end_of_a_sealed_segment():
    segment = "scope-00/stream/101.#epoch.0"
    async with ScriptedStore(answer("read_end_of_sealed", "ReadSegment", 1)) as store, \
            ConnectionPool(QUICK) as pool:
        async with SegmentReader(pool, store.endpoint, segment, retry=FAST) as reader:
            assert [bytes(await reader.read_event(timeout=5)) for _ in range(2)] == [
                b"event-0-ev", b"event-1-ev"]
            with pytest.raises(EndOfSegment):
                await reader.read_event(timeout=5)
    assert store.request_types() == ["ReadSegment"] and not store.errors


async def test_an_expired_hold_reissues_the_same_read_and_is_not_a_failure():
    """The store's hold ran out: an empty SegmentRead(at_tail) (read_at_tail_held_long). The
    reader sends the same read again on the same flow, as often as it takes (more times than
    its retry policy allows failures), and gets the data when it comes."""
    segment = "scope-00/stream/85.#epoch.0"
    expired = answer("read_at_tail_held_long", "ReadSegment")
    (data,) = answer("read_at_tail_then_append", "ReadSegment")[1]
    script = [("GetStreamSegmentInfo", [info_of(segment, 18)])]
    script += [expired] * (FAST.attempts + 2)
    script += [("ReadSegment", [data._replace(segment=segment)]), ("ReadSegment", HOLD)]
    async with ScriptedStore(*script) as store, ConnectionPool(QUICK) as pool:
        async with SegmentReader(pool, store.endpoint, segment, offset=18, retry=FAST,
                                 reply_timeout=0.2) as reader:
            assert bytes(await reader.read_event(timeout=5)) == b"event-1-" * 3 + b"event-"
            assert reader.connections == 1
            await until(lambda: store.held, "the next read")
    reads = [cmd for _, cmd in store.received if type(cmd) is C.ReadSegment]
    assert len(reads) == FAST.attempts + 4
    assert {(r.offset, r.request_id) for r in reads[:-1]} == {(18, reads[0].request_id)}
    assert store.connections == 1 and not store.errors


async def test_a_read_held_while_the_segment_is_sealed_ends_the_segment():
    segment = "scope-00/stream/21.#epoch.0"
    async with ScriptedStore(("ReadSegment", HOLD)) as store, ConnectionPool(QUICK) as pool:
        async with SegmentReader(pool, store.endpoint, segment, retry=FAST) as reader:
            read = asyncio.ensure_future(reader.read_event())
            await until(lambda: store.held, "the held read")
            store.answer(answer("seal_twice", "SealSegment", 1)[1])  # SegmentIsSealed
            with pytest.raises(EndOfSegment):
                await asyncio.wait_for(read, 5)
    assert store.request_types() == ["ReadSegment"] and not store.errors


async def test_a_reader_never_reads_past_the_end_of_a_sealed_segment():
    """The real store closes the whole connection on such a read: the reader asks the
    segment's info first and ends there; the pooled connection goes on serving."""
    segment = "scope-00/stream/101.#epoch.0"
    async with ScriptedStore(("GetStreamSegmentInfo", [info_of(segment, 36, sealed=True)]),
                             answer("info_missing", "GetStreamSegmentInfo")) as store, \
            ConnectionPool(QUICK) as pool:
        async with SegmentReader(pool, store.endpoint, segment, offset=50,
                                 retry=FAST) as reader:
            with pytest.raises(EndOfSegment):
                await reader.read_event(timeout=5)
        async with MetadataClient(pool, store.endpoint) as meta:
            assert not (await meta.get_info("scope-00/stream/12.#epoch.0")).exists
    assert store.request_types() == ["GetStreamSegmentInfo", "GetStreamSegmentInfo"]
    assert store.connections == 1 and not store.errors


async def test_a_silent_store_is_found_by_the_connections_keepalive_not_a_reply_timeout():
    """A store that stops answering (not even KeepAlive) fails the flow after the
    connection's read timeout; the reader reconnects, and gives up after its retries."""
    segment = "scope-00/stream/87.#epoch.0"
    async with ScriptedStore(*[("ReadSegment", HOLD)] * FAST.attempts) as store, \
            ConnectionPool(QUICK) as pool:
        store.keepalive_echo = False
        async with SegmentReader(pool, store.endpoint, segment, retry=FAST,
                                 reply_timeout=0.05) as reader:
            with pytest.raises(RetriesExhaustedError) as info:
                await reader.read_event(timeout=30)
    assert isinstance(info.value.__cause__, ConnectionFailedError)
    assert store.connections == FAST.attempts == len(store.received)
    assert store.keepalives  # the connection asked before it gave up


# ---- SegmentReader against an embedded store that holds tail reads ---------------------------

@contextlib.asynccontextmanager
async def _store_with(segment: str, events=()):
    """An embedded store holding tail reads for HOLD_FOR s, with ``segment`` holding
    ``events``."""
    store = SegmentStore(read_wait=HOLD_FOR)
    await store.start()
    try:
        async with ConnectionPool(QUICK) as pool:
            async with MetadataClient(pool, store.endpoint) as meta:
                assert await meta.create(segment)
            if events:
                async with SegmentWriter(pool, store.endpoint, segment) as writer:
                    for event in events:
                        writer.write_nowait(event)
                    await writer.flush()
        yield store
    finally:
        await store.stop()


async def test_a_reader_idle_at_the_tail_outlives_every_client_timeout():
    segment = "tail/stream/0.#epoch.0"
    async with _store_with(segment) as store:
        async with ConnectionPool(QUICK) as pool, \
                SegmentReader(pool, store.endpoint, segment, retry=FAST,
                              reply_timeout=0.2) as reader:
            read = asyncio.ensure_future(reader.read_event())
            await until(lambda: store.stats["ReadSegment"], "the read")
            # Idle for 1.5 s: 7 reply timeouts, 3 read timeouts, 15 keep-alive intervals.
            done, _ = await asyncio.wait((read,), timeout=1.5)
            assert not done
            async with SegmentWriter(pool, store.endpoint, segment) as writer:
                await writer.write(b"late")
            assert bytes(await asyncio.wait_for(read, 5)) == b"late"
            assert reader.connections == 1
            assert store.stats["KeepAlive"] >= 2  # the connection kept itself alive
        assert store.stats["ReadSegment"] == 2  # the held one, then the next one at the tail


async def test_read_event_timeout_leaves_the_held_read_for_the_next_call():
    segment = "tail/stream/1.#epoch.0"
    async with _store_with(segment, [b"first"]) as store:
        async with ConnectionPool(QUICK) as pool, \
                SegmentReader(pool, store.endpoint, segment, retry=FAST,
                              reply_timeout=0.2) as reader:
            assert bytes(await reader.read_event(timeout=5)) == b"first"
            # the read of "first", then the one the store now holds at the tail (sent by the
            # reader as "first" came back: wait until it has reached the store)
            await until(lambda: store.stats["ReadSegment"] == 2, "the held read")
            reads = store.stats["ReadSegment"]
            for _ in range(3):
                with pytest.raises(TimeoutError) as info:
                    await reader.read_event(timeout=0.3)
                # one class with the builtin since Python 3.11 (SegmentReader's docstring says so)
                assert isinstance(info.value, asyncio.TimeoutError) or sys.version_info < (3, 11)
            assert store.stats["ReadSegment"] == reads  # still the one held read
            async with SegmentWriter(pool, store.endpoint, segment) as writer:
                await writer.write(b"second")
            assert bytes(await reader.read_event(timeout=5)) == b"second"
            # The held read brought it (not re-sent); then the next read waits at the tail.
            assert store.stats["ReadSegment"] == reads + 1
            assert reader.connections == 1


async def test_a_reader_past_the_end_of_a_sealed_embedded_segment_ends_without_reading():
    segment = "tail/stream/2.#epoch.0"
    async with _store_with(segment, [b"only"]) as store:
        async with ConnectionPool(QUICK) as pool:
            async with MetadataClient(pool, store.endpoint) as meta:
                await meta.seal(segment)
                length = (await meta.get_info(segment)).length
            async with SegmentReader(pool, store.endpoint, segment, offset=length + 10,
                                     retry=FAST) as reader:
                with pytest.raises(EndOfSegment):
                    await reader.read_event(timeout=5)
            async with SegmentReader(pool, store.endpoint, segment, offset=length,
                                     retry=FAST) as reader:
                with pytest.raises(EndOfSegment):
                    await reader.read_event(timeout=5)
        assert store.stats["ReadSegment"] == 1  # only the read at the very end
