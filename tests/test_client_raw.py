"""RawClient, MetadataClient and ConditionalWriter against the in-memory fake pool and store
(tests/client_fakes.py)."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from pravega_wire import commands as C
from pravega_wire.client._common import RetryPolicy
from pravega_wire.client.raw import ConditionalWriter, MetadataClient, RawClient, ServerError
from pravega_wire.errors import (AuthenticationError, ConnectionClosedError,
                                 ConnectionFailedError, IncompatibleVersionError,
                                 InvalidMessageError, NoSuchSegmentError, RetriesExhaustedError,
                                 SegmentSealedError, SegmentTruncatedError, TimeoutError,
                                 TokenExpiredError, WrongHostError)

from client_fakes import (NULL, FakeCluster, FakeLocator, FakePool, FakeTokens, event_record,
                          settle, until)

SEG = "scope/stream/0"
FAST = RetryPolicy(initial_delay=0.001, multiplier=2.0, max_delay=0.004, attempts=4)
ATTR = uuid.UUID(int=42)


@pytest.fixture
def cluster() -> FakeCluster:
    c = FakeCluster(stores=2)
    c.create(SEG, b"0123456789")
    return c


def info_request(**kw):
    return dict(segment_name=SEG, **kw)


# ---- RawClient -------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_replies_are_matched_to_requests_by_request_id(cluster):
    pool = FakePool(cluster)
    store = cluster.store()
    store.hold(C.GetSegmentAttribute)
    client = RawClient(pool, cluster.endpoints[0])
    cluster.segments[SEG].attributes[ATTR] = 7
    first = asyncio.ensure_future(client.request(C.GetSegmentAttribute, segment_name=SEG,
                                                 attribute_id=ATTR))
    second = asyncio.ensure_future(client.request(C.GetStreamSegmentInfo, segment_name=SEG))
    await until(lambda: store.held and second.done(), "requests")
    flow = pool.last_flow
    assert [c.request_id for c in flow.sent] == [(flow.flow_id << 32) | 1,
                                                 (flow.flow_id << 32) | 2]
    assert type(second.result()) is C.StreamSegmentInfo
    assert second.result().request_id == (flow.flow_id << 32) | 2
    assert not first.done()
    store.release()
    assert (await first).value == 7
    assert client.flow_id == flow.flow_id and client.server_version == C.WIRE_VERSION
    await client.close()
    assert flow.closed


@pytest.mark.asyncio
async def test_replies_in_any_order(cluster):
    pool = FakePool(cluster)
    store = cluster.store()
    store.hold(C.GetStreamSegmentInfo)
    client = RawClient(pool, cluster.endpoints[0])
    tasks = [asyncio.ensure_future(client.request(C.GetStreamSegmentInfo, segment_name=SEG))
             for _ in range(5)]
    await until(lambda: len(store.held) == 5, "requests")
    flow = pool.last_flow
    for _, cmd in reversed(store.held):
        flow.deliver(C.StreamSegmentInfo(cmd.request_id, SEG, True, False, False,
                                         cmd.request_id & 0xFF, 0, 0))
    replies = await asyncio.gather(*tasks)
    assert [r.last_modified for r in replies] == [1, 2, 3, 4, 5]


@pytest.mark.asyncio
async def test_failure_replies_go_to_their_request(cluster):
    client = RawClient(FakePool(cluster), cluster.endpoints[0])
    reply = await client.request(C.GetSegmentAttribute, segment_name="scope/stream/9",
                                 attribute_id=ATTR)
    assert type(reply) is C.NoSuchSegment
    assert not client.closed  # an answered failure does not close the client
    assert type(await client.request(C.GetStreamSegmentInfo, segment_name=SEG)) is \
        C.StreamSegmentInfo


@pytest.mark.asyncio
async def test_request_timeout_keeps_the_client_and_ignores_the_late_reply(cluster):
    pool = FakePool(cluster)
    store = cluster.store()
    store.hold(C.GetStreamSegmentInfo, times=1)
    client = RawClient(pool, cluster.endpoints[0])
    with pytest.raises(TimeoutError):
        await client.request(C.GetStreamSegmentInfo, segment_name=SEG, timeout=0.01)
    store.release()  # the late success reply matches nothing: ignored
    await settle()
    assert not client.closed
    assert type(await client.request(C.GetStreamSegmentInfo, segment_name=SEG)) is \
        C.StreamSegmentInfo


@pytest.mark.asyncio
async def test_an_unmatched_failure_reply_closes_the_client(cluster):
    pool = FakePool(cluster)
    client = RawClient(pool, cluster.endpoints[0])
    await client.request(C.GetStreamSegmentInfo, segment_name=SEG)
    flow = pool.last_flow
    flow.deliver(C.NoSuchSegment((flow.flow_id << 32) | 99, SEG, "", -1))
    await settle()
    assert client.closed and flow.closed
    with pytest.raises(ConnectionFailedError):
        await client.request(C.GetStreamSegmentInfo, segment_name=SEG)


@pytest.mark.asyncio
async def test_wrong_host_closes_the_client_and_fails_everything_pending(cluster):
    cluster.move(SEG, 1)
    pool = FakePool(cluster)
    store = cluster.store()
    store.hold(C.GetStreamSegmentInfo, times=1)
    client = RawClient(pool, cluster.endpoints[0])
    waiting = asyncio.ensure_future(client.request(C.GetStreamSegmentInfo, segment_name=SEG))
    await until(lambda: store.held, "request")
    with pytest.raises(WrongHostError):
        await client.request(C.GetSegmentAttribute, segment_name=SEG, attribute_id=ATTR)
    with pytest.raises(WrongHostError):
        await waiting
    assert client.closed and pool.last_flow.closed
    with pytest.raises(WrongHostError):
        await client.request(C.GetStreamSegmentInfo, segment_name=SEG)


@pytest.mark.asyncio
async def test_error_message_closes_the_client_with_a_server_error(cluster):
    pool = FakePool(cluster)
    store = cluster.store()
    store.hold(C.GetStreamSegmentInfo, times=1)
    client = RawClient(pool, cluster.endpoints[0])
    waiting = asyncio.ensure_future(client.request(C.GetStreamSegmentInfo, segment_name=SEG))
    await until(lambda: store.held, "request")
    with pytest.raises(ServerError) as info:
        await client.request(C.TruncateSegment, segment=SEG, truncation_offset=99)
    assert info.value.is_illegal_argument and info.value.segment == SEG
    with pytest.raises(ServerError):
        await waiting
    assert client.closed


@pytest.mark.asyncio
async def test_lost_connection_fails_pending_requests(cluster):
    pool = FakePool(cluster)
    store = cluster.store()
    store.hold(C.GetStreamSegmentInfo)
    client = RawClient(pool, cluster.endpoints[0])
    waiting = asyncio.ensure_future(client.request(C.GetStreamSegmentInfo, segment_name=SEG))
    await until(lambda: store.held, "request")
    pool.last_flow.drop()
    with pytest.raises(ConnectionFailedError) as info:
        await waiting
    assert not isinstance(info.value, ConnectionClosedError)
    assert client.closed


@pytest.mark.asyncio
async def test_refused_connection(cluster):
    pool = FakePool(cluster)
    pool.refuse()
    client = RawClient(pool, cluster.endpoints[0])
    results = await asyncio.gather(
        *(client.request(C.GetStreamSegmentInfo, segment_name=SEG) for _ in range(3)),
        return_exceptions=True)
    assert all(type(r) is ConnectionFailedError for r in results)
    assert len(pool.connects) == 1  # concurrent requests share one connection attempt


@pytest.mark.asyncio
async def test_a_send_that_fails_closes_the_client(cluster):
    pool = FakePool(cluster)
    client = RawClient(pool, cluster.endpoints[0])
    await client.request(C.GetStreamSegmentInfo, segment_name=SEG)
    pool.last_flow.dying = True  # gone, and nobody told us yet
    with pytest.raises(ConnectionFailedError):
        await client.request(C.GetStreamSegmentInfo, segment_name=SEG)
    assert client.closed


@pytest.mark.asyncio
async def test_a_command_that_cannot_be_built_leaves_the_client_open(cluster):
    client = RawClient(FakePool(cluster), cluster.endpoints[0])
    with pytest.raises(TypeError):
        await client.request(C.GetStreamSegmentInfo, no_such_field=1)
    assert not client.closed


@pytest.mark.asyncio
async def test_incompatible_hello_closes_the_client(cluster):
    pool = FakePool(cluster, hello=False)
    store = cluster.store()
    store.hold(C.GetStreamSegmentInfo)
    client = RawClient(pool, cluster.endpoints[0])
    waiting = asyncio.ensure_future(client.request(C.GetStreamSegmentInfo, segment_name=SEG))
    await until(lambda: store.held, "request")
    pool.last_flow.deliver(C.Hello(4, 3))
    with pytest.raises(IncompatibleVersionError):
        await waiting


@pytest.mark.asyncio
async def test_close_fails_pending_with_connection_closed(cluster):
    pool = FakePool(cluster)
    store = cluster.store()
    store.hold(C.GetStreamSegmentInfo)
    client = RawClient(pool, cluster.endpoints[0])
    waiting = asyncio.ensure_future(client.request(C.GetStreamSegmentInfo, segment_name=SEG))
    await until(lambda: store.held, "request")
    await client.close()
    with pytest.raises(ConnectionClosedError):
        await waiting
    with pytest.raises(ConnectionClosedError):
        await client.request(C.GetStreamSegmentInfo, segment_name=SEG)
    assert pool.last_flow.closed


@pytest.mark.asyncio
async def test_close_while_connecting(cluster):
    pool = FakePool(cluster)
    pool.gate = asyncio.Event()
    client = RawClient(pool, cluster.endpoints[0])
    waiting = asyncio.ensure_future(client.request(C.GetStreamSegmentInfo, segment_name=SEG))
    await until(lambda: pool.connects, "connect")
    await client.close()
    with pytest.raises(ConnectionClosedError):
        await waiting
    pool.gate.set()
    await settle()
    assert pool.open_flows() == []


def test_raw_client_validation():
    with pytest.raises(ValueError):
        RawClient(None, ("h", 1), timeout=0)
    with pytest.raises(TypeError):
        RawClient(None, "h:1")


# ---- MetadataClient --------------------------------------------------------------------------


def metadata(cluster, pool=None, **kwargs) -> MetadataClient:
    kwargs.setdefault("retry", FAST)
    where = kwargs.pop("where", cluster.endpoints[0])
    return MetadataClient(pool or FakePool(cluster), where, **kwargs)


@pytest.mark.asyncio
async def test_info(cluster):
    cluster.segments[SEG].start_offset = 4
    async with metadata(cluster) as client:
        info = await client.get_info(SEG)
        assert (info.exists, info.sealed, info.length, info.start_offset) == (True, False, 10, 4)
        missing = await client.get_info("scope/stream/9")
        assert (missing.exists, missing.deleted) == (False, True)
        assert "length=10" in repr(info)


@pytest.mark.asyncio
async def test_attributes_compare_and_set(cluster):
    async with metadata(cluster) as client:
        assert await client.get_attribute(SEG, ATTR) == NULL
        assert await client.compare_and_set_attribute(SEG, ATTR, NULL, 5) is True
        assert await client.compare_and_set_attribute(SEG, ATTR, NULL, 6) is False
        assert await client.get_attribute(SEG, ATTR) == 5
        assert await client.compare_and_set_attribute(SEG, ATTR, 5, 6) is True
        assert await client.get_attribute(SEG, ATTR) == 6


@pytest.mark.asyncio
async def test_create_seal_truncate_delete(cluster):
    pool = FakePool(cluster)
    async with metadata(cluster, pool) as client:
        assert await client.create("scope/stream/1") is True
        assert await client.create("scope/stream/1") is False
        await client.seal("scope/stream/1")
        await client.seal("scope/stream/1")  # already sealed: fine
        assert cluster.segments["scope/stream/1"].sealed
        await client.truncate(SEG, 6)
        await client.truncate(SEG, 3)  # already truncated past it: done
        assert cluster.segments[SEG].start_offset == 6
        with pytest.raises(ServerError):
            await client.truncate(SEG, 99)  # beyond the end: ErrorMessage(IllegalArgument)
        assert await client.delete("scope/stream/1") is True
        assert await client.delete("scope/stream/1") is False
        assert "scope/stream/1" not in cluster.segments
    assert all(flow.closed for flow in pool.flows)


@pytest.mark.asyncio
async def test_no_such_segment_fails_at_once(cluster):
    pool = FakePool(cluster)
    async with metadata(cluster, pool) as client:
        with pytest.raises(NoSuchSegmentError):
            await client.get_attribute("scope/stream/9", ATTR)
        with pytest.raises(NoSuchSegmentError):
            await client.truncate("scope/stream/9", 0)
    requests = [c for c in pool.flows[0].sent]
    assert len(requests) == 2  # no retries


@pytest.mark.asyncio
async def test_wrong_host_retries_on_a_fresh_client_at_the_new_endpoint(cluster):
    cluster.move(SEG, 1)
    locator = FakeLocator(cluster)
    locator.cache[SEG] = cluster.endpoints[0]
    pool = FakePool(cluster)
    async with metadata(cluster, pool, where=locator) as client:
        info = await client.get_info(SEG)
        assert info.length == 10
    assert locator.invalidations == [SEG]
    first, second = pool.flows
    assert first.endpoint == cluster.endpoints[0] and first.closed
    assert second.endpoint == cluster.endpoints[1]


@pytest.mark.asyncio
async def test_lost_connection_is_retried(cluster):
    pool = FakePool(cluster)
    store = cluster.store()
    store.on(C.GetStreamSegmentInfo, lambda flow, cmd: flow.drop())
    async with metadata(cluster, pool) as client:
        assert (await client.get_info(SEG)).length == 10
    assert len(pool.flows) == 2


@pytest.mark.asyncio
async def test_request_timeouts_are_retried(cluster):
    pool = FakePool(cluster)
    cluster.store().hold(C.GetStreamSegmentInfo, times=2)
    async with metadata(cluster, pool, timeout=0.01) as client:
        assert (await client.get_info(SEG)).length == 10
    assert len(pool.flows[0].sent) == 3  # the same connection: timeouts do not close it


@pytest.mark.asyncio
async def test_retries_exhausted(cluster):
    pool = FakePool(cluster)
    pool.refuse()
    async with metadata(cluster, pool) as client:
        with pytest.raises(RetriesExhaustedError) as info:
            await client.get_info(SEG)
    assert isinstance(info.value.__cause__, ConnectionFailedError)
    assert len(pool.connects) == FAST.attempts


@pytest.mark.asyncio
async def test_expired_token_is_refreshed_and_a_rejected_one_fails(cluster):
    cluster.valid_tokens = {"t2"}
    cluster.expired_tokens = {"t1"}
    tokens = FakeTokens("t1", "t2")
    async with metadata(cluster, token_provider=tokens) as client:
        assert (await client.get_info(SEG)).length == 10
    assert tokens.calls == [(SEG, False), (SEG, True)]
    async with metadata(cluster, token_provider=FakeTokens("forged")) as client:
        with pytest.raises(AuthenticationError) as info:
            await client.get_info(SEG)
        assert not isinstance(info.value, TokenExpiredError)


@pytest.mark.asyncio
async def test_other_failure_replies_are_typed_errors(cluster):
    store = cluster.store()
    async with metadata(cluster) as client:
        store.on(C.GetStreamSegmentInfo, lambda f, c: f.deliver(
            C.SegmentIsTruncated(c.request_id, SEG, 4, "", 0)))
        with pytest.raises(SegmentTruncatedError) as info:
            await client.get_info(SEG)
        assert info.value.start_offset == 4
        store.on(C.GetSegmentAttribute, lambda f, c: f.deliver(
            C.SegmentIsSealed(c.request_id, SEG, "", -1)))
        with pytest.raises(SegmentSealedError):
            await client.get_attribute(SEG, ATTR)
        store.on(C.GetSegmentAttribute, lambda f, c: f.deliver(
            C.OperationUnsupported(c.request_id, "getSegmentAttribute", "")))
        with pytest.raises(ServerError):
            await client.get_attribute(SEG, ATTR)
        store.on(C.GetSegmentAttribute, lambda f, c: f.deliver(
            C.SegmentDeleted(c.request_id, SEG)))  # a reply of the wrong kind: retried
        assert await client.get_attribute(SEG, ATTR) == NULL


@pytest.mark.asyncio
async def test_closed_metadata_client(cluster):
    pool = FakePool(cluster)
    client = metadata(cluster, pool)
    await client.get_info(SEG)
    await client.close()
    with pytest.raises(ConnectionClosedError):
        await client.get_info(SEG)
    assert len(pool.flows) == 1 and pool.flows[0].closed


# ---- ConditionalWriter -----------------------------------------------------------------------


def conditional(cluster, pool=None, **kwargs) -> ConditionalWriter:
    kwargs.setdefault("retry", FAST)
    where = kwargs.pop("where", cluster.endpoints[0])
    return ConditionalWriter(pool or FakePool(cluster), where, SEG, **kwargs)


def stored(cluster) -> bytes:
    return bytes(cluster.segments[SEG].data)


@pytest.mark.asyncio
async def test_conditional_write_true_at_the_expected_offset_false_elsewhere(cluster):
    pool = FakePool(cluster)
    async with conditional(cluster, pool) as writer:
        assert await writer.write(b"a", 10) is True
        assert await writer.write(b"b", 10) is False  # the segment is 19 bytes now
        assert await writer.write(b"c", 19) is True
    assert stored(cluster) == b"0123456789" + event_record(b"a") + event_record(b"c")
    flow, = pool.flows  # ConditionalCheckFailed kept the connection (and its session)
    assert [type(c) for c in flow.sent] == [C.SetupAppend] + [C.ConditionalAppend] * 3
    assert [c.event_number for c in flow.sent[1:]] == [1, 2, 3]
    assert flow.sent[1].event == C.Event(b"a") and flow.sent[1].expected_offset == 10


@pytest.mark.asyncio
async def test_conditional_write_applied_before_a_drop_is_not_written_twice(cluster):
    pool = FakePool(cluster)
    store = cluster.store()

    def apply_then_drop(flow, cmd):
        flow.mute()  # the reply is lost with the connection
        store.process(flow, cmd)
        flow.drop()

    store.on(C.ConditionalAppend, apply_then_drop)
    async with conditional(cluster, pool) as writer:
        assert await writer.write(b"a", 10) is True
    assert stored(cluster) == b"0123456789" + event_record(b"a")
    first, second = pool.flows
    assert [type(c) for c in second.sent] == [C.SetupAppend]  # AppendSetup said: done


@pytest.mark.asyncio
async def test_conditional_write_lost_before_the_store_applied_is_resent(cluster):
    pool = FakePool(cluster)
    store = cluster.store()
    store.on(C.ConditionalAppend, lambda flow, cmd: flow.drop())
    async with conditional(cluster, pool) as writer:
        assert await writer.write(b"a", 10) is True
    assert stored(cluster) == b"0123456789" + event_record(b"a")
    assert [type(c) for c in pool.flows[1].sent] == [C.SetupAppend, C.ConditionalAppend]
    assert pool.flows[1].sent[1].event_number == 1


@pytest.mark.asyncio
async def test_conditional_write_failures(cluster):
    pool = FakePool(cluster)
    store = cluster.store()
    async with conditional(cluster, pool) as writer:
        store.on(C.ConditionalAppend, lambda f, c: (f.deliver(
            C.InvalidEventNumber(c.writer_id, c.request_id, "", c.event_number))))
        assert await writer.write(b"a", 10) is True  # retried on a fresh connection
        assert len(pool.flows) == 2 and pool.flows[0].closed
        cluster.seal(SEG)
        with pytest.raises(SegmentSealedError):
            await writer.write(b"b", 19)
        del cluster.segments[SEG]
        with pytest.raises(NoSuchSegmentError):
            await writer.write(b"c", 19)
        with pytest.raises(InvalidMessageError):
            await writer.write(b"\0" * (8 * 1024 * 1024 + 1), 0)
        with pytest.raises(ValueError):
            await writer.write(b"x", -1)


@pytest.mark.asyncio
async def test_conditional_writer_refreshes_an_expired_token(cluster):
    cluster.valid_tokens = {"t2"}
    cluster.expired_tokens = {"t1"}
    tokens = FakeTokens("t1", "t2")
    async with conditional(cluster, token_provider=tokens) as writer:
        assert await writer.write(b"a", 10) is True
    assert tokens.calls == [(SEG, False), (SEG, True)]
    cluster.valid_tokens = {"good"}
    async with conditional(cluster, token_provider=FakeTokens("bad")) as writer:
        with pytest.raises(AuthenticationError):
            await writer.write(b"b", 19)


@pytest.mark.asyncio
async def test_conditional_writer_moves_after_wrong_host(cluster):
    cluster.move(SEG, 1)
    locator = FakeLocator(cluster)
    locator.cache[SEG] = cluster.endpoints[0]
    pool = FakePool(cluster)
    async with conditional(cluster, pool, where=locator) as writer:
        assert await writer.write(b"a", 10) is True
    assert locator.invalidations == [SEG]
    assert pool.last_flow.endpoint == cluster.endpoints[1]


@pytest.mark.asyncio
async def test_concurrent_conditional_writes_are_serialised(cluster):
    async with conditional(cluster) as writer:
        results = await asyncio.gather(*(writer.write(bytes([i]), 10 + 9 * i)
                                         for i in range(5)))
    assert results == [True] * 5
    assert stored(cluster)[10:] == b"".join(event_record(bytes([i])) for i in range(5))


# ---- more RawClient edges --------------------------------------------------------------------


@pytest.mark.asyncio
async def test_connecting_is_bounded_by_the_timeout(cluster):
    pool = FakePool(cluster)
    pool.gate = asyncio.Event()
    client = RawClient(pool, cluster.endpoints[0], timeout=0.01)
    with pytest.raises(ConnectionFailedError):
        await client.request(C.GetStreamSegmentInfo, segment_name=SEG)
    pool.gate.set()
    await settle()
    assert len(pool.flows) == 1 and pool.open_flows() == []  # produced late, then closed


@pytest.mark.asyncio
async def test_a_pool_error_of_another_kind_becomes_connection_failed(cluster):
    class BrokenPool:
        async def open_flow(self, endpoint, listener):
            raise RuntimeError("the pool is bound to another loop")

    client = RawClient(BrokenPool(), cluster.endpoints[0])
    with pytest.raises(ConnectionFailedError) as info:
        await client.request(C.GetStreamSegmentInfo, segment_name=SEG)
    assert isinstance(info.value.__cause__, RuntimeError)


@pytest.mark.asyncio
async def test_an_incompatible_server_at_connect(cluster):
    pool = FakePool(cluster, hello=C.Hello(4, 3))
    client = RawClient(pool, cluster.endpoints[0])
    with pytest.raises(IncompatibleVersionError):
        await client.request(C.GetStreamSegmentInfo, segment_name=SEG)
    assert pool.last_flow.closed
    async with metadata(cluster, pool) as meta:  # not retried
        with pytest.raises(IncompatibleVersionError):
            await meta.get_info(SEG)
    assert len(pool.connects) == 2


@pytest.mark.asyncio
async def test_a_command_that_cannot_be_encoded_leaves_the_client_open(cluster):
    client = RawClient(FakePool(cluster), cluster.endpoints[0])
    with pytest.raises(InvalidMessageError):
        await client.request(C.GetStreamSegmentInfo, segment_name="x" * 70_000)
    assert not client.closed and client._pending == {}
    assert type(await client.request(C.GetStreamSegmentInfo, segment_name=SEG)) is \
        C.StreamSegmentInfo
    assert "open" in repr(client)


@pytest.mark.asyncio
async def test_connection_lost_with_another_kind_of_error(cluster):
    client = RawClient(FakePool(cluster), cluster.endpoints[0])
    await client.request(C.GetStreamSegmentInfo, segment_name=SEG)
    client.connection_lost(OSError("reset"))
    with pytest.raises(ConnectionFailedError) as info:
        await client.request(C.GetStreamSegmentInfo, segment_name=SEG)
    assert isinstance(info.value.__cause__, OSError)
    assert "closed" in repr(client)


def test_segment_client_validation(cluster):
    with pytest.raises(TypeError):
        MetadataClient(None, ("h", 1), retry=3)
    with pytest.raises(ValueError):
        ConditionalWriter(None, ("h", 1), SEG, timeout=-1)
