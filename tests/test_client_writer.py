"""The segment writer against the in-memory fake pool and store (tests/client_fakes.py):
setup, acknowledgements and their checks, reconnects without loss or duplicates, failures that
end the writer, flush, backpressure, batches, close."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import uuid

import pytest

from pravega_wire import commands as C
from pravega_wire.appends import Append
from pravega_wire.client import largeevents
from pravega_wire.client._common import MAX_EVENT_SIZE, RetryPolicy
from pravega_wire.client.writer import MAX_BATCH_SIZE, EventWriterConfig, SegmentWriter
from pravega_wire.errors import (AuthenticationError, ConnectionClosedError,
                                 IncompatibleVersionError, InvalidMessageError,
                                 NoSuchSegmentError, RetriesExhaustedError, SegmentSealedError,
                                 TimeoutError, TokenExpiredError)

from client_fakes import (FAST_RETRY, NULL, FakeCluster, FakeLocator, FakePool, FakeTokens,
                          event_record, settle, until)

SEG = "scope/stream/0"
FAST = FAST_RETRY


def config(**kwargs) -> EventWriterConfig:
    kwargs.setdefault("retry", FAST)
    return EventWriterConfig(**kwargs)


def events(n: int, prefix: str = "e") -> list:
    return [f"{prefix}{i}".encode() * (i % 3 + 1) for i in range(n)]


async def start(cluster: FakeCluster, *, fast_path: bool = True, where=None, **kwargs):
    pool = FakePool(cluster, fast_path=fast_path)
    cfg = kwargs.pop("config", None) or config()
    writer = await SegmentWriter.open(pool, where or cluster.endpoints[0], SEG, config=cfg,
                                      **kwargs)
    return writer, pool


@pytest.fixture
def cluster() -> FakeCluster:
    c = FakeCluster(stores=2)
    c.create(SEG)
    return c


# ---- setup and acknowledgements -----------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("fast_path", [True, False], ids=["append_event", "append"])
async def test_setup_then_events_numbered_and_stored_in_order(cluster, fast_path):
    writer, pool = await start(cluster, fast_path=fast_path)
    flow = pool.last_flow
    assert writer.state == "ready"
    assert pool.connects == [(cluster.endpoints[0], False)]  # pooled by default
    setup = flow.sent[0]
    assert setup == C.SetupAppend(flow.flow_id << 32, writer.writer_id, SEG, "")
    assert writer.request_id == flow.flow_id << 32
    payloads = events(5)
    for p in payloads:
        assert writer.write_nowait(p) is None
    await writer.flush()
    assert cluster.events(SEG) == payloads
    appends = flow.appends
    assert [a.event_number for a in appends] == [1, 2, 3, 4, 5]
    assert all(a.event_count == 1 and a.request_id == writer.request_id
               and a.writer_id == writer.writer_id and a.segment == SEG
               and a.expected_length is None for a in appends)
    assert [a.data for a in appends] == [event_record(p) for p in payloads]
    assert flow.fast_appends == (5 if fast_path else 0)
    assert writer.acked_events == 5 and writer.unacknowledged == 0
    assert writer.last_event_number == 5
    assert writer.segment_length == len(cluster.segments[SEG].data)
    await writer.close()
    assert flow.closed


@pytest.mark.asyncio
async def test_write_nowait_creates_no_future_and_flush_still_works(cluster):
    writer, pool = await start(cluster)
    cluster.store().ack_mode = "manual"
    loop = asyncio.get_running_loop()
    made = []
    original = loop.create_future

    def counting():
        made.append(1)
        return original()

    loop.create_future = counting
    try:
        for p in events(50):
            assert writer.write_nowait(p) is None
        assert made == []
        assert writer.unacknowledged == 50
    finally:
        del loop.create_future
    flushing = asyncio.ensure_future(writer.flush())
    await settle()
    assert not flushing.done()
    cluster.store().send_acks()
    await flushing
    assert cluster.events(SEG) == events(50)
    assert type(pool.last_flow.sent[-1]) is C.KeepAlive  # flush closes an open block


@pytest.mark.asyncio
async def test_one_cumulative_ack_resolves_every_covered_write(cluster):
    writer, pool = await start(cluster)
    store = cluster.store()
    store.ack_mode = "manual"
    futures = [writer.write_acked(p) for p in events(5)]
    await settle()
    assert not any(f.done() for f in futures)
    store.send_acks()
    await settle()
    assert all(f.done() and f.result() is None for f in futures)
    acks = [r for _, r in pool.delivered if type(r) is C.DataAppended]
    assert len(acks) == 1 and acks[0].event_number == 5
    more = [writer.write_acked(p) for p in events(3, "x")]
    store.send_acks()
    await asyncio.gather(*more)
    acks = [r for _, r in pool.delivered if type(r) is C.DataAppended]
    assert [(a.previous_event_number, a.event_number) for a in acks] == [(NULL, 5), (5, 8)]
    assert writer.acked_events == 8


@pytest.mark.asyncio
async def test_acks_for_part_of_the_writes_resolve_only_those(cluster):
    writer, pool = await start(cluster)
    cluster.store().ack_mode = "manual"
    futures = [writer.write_acked(p) for p in events(4)]
    await settle()
    flow = pool.last_flow
    flow.deliver(C.DataAppended(writer.request_id, writer.writer_id, 2, NULL, 0))
    await settle()
    assert [f.done() for f in futures] == [True, True, False, False]
    assert writer.unacknowledged == 2


@pytest.mark.asyncio
@pytest.mark.parametrize("previous, number", [(3, 3), (4, 3), (1, 3)],
                         ids=["previous_equal", "previous_above", "gap"])
async def test_bad_ack_reconnects_and_nothing_is_lost_or_doubled(cluster, previous, number):
    writer, pool = await start(cluster)
    cluster.store().ack_mode = "manual"
    payloads = events(3)
    for p in payloads:
        writer.write_nowait(p)
    await settle()
    first = pool.last_flow
    # The store has stored 1..3 but not acknowledged them; this ack breaks a rule:
    # previous < number, and no event in flight at or below previous (1 is, for "gap").
    first.deliver(C.DataAppended(writer.request_id, writer.writer_id, number, previous, 0))
    await until(lambda: len(pool.flows) == 2 and writer.state == "ready", "reconnect")
    assert first.closed
    second = pool.last_flow
    assert second.appends == []  # AppendSetup said 3: everything was stored
    await writer.flush()
    assert cluster.events(SEG) == payloads
    assert writer.connections == 2


@pytest.mark.asyncio
async def test_ack_with_nothing_in_flight_is_harmless(cluster):
    writer, pool = await start(cluster)
    writer.write_nowait(b"a")
    await writer.flush()
    pool.last_flow.deliver(C.DataAppended(writer.request_id, writer.writer_id, 1, NULL, 0))
    await settle()
    assert writer.state == "ready" and writer.connections == 1


# ---- reconnecting ---------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("fast_path", [True, False], ids=["append_event", "append"])
async def test_drop_before_the_store_applied_resends_with_original_numbers(cluster, fast_path):
    writer, pool = await start(cluster, fast_path=fast_path)
    store = cluster.store()
    store.hold(Append, times=3)  # received, never applied (lost with the connection)
    payloads = events(3)
    for p in payloads:
        writer.write_nowait(p)
    first = pool.last_flow
    first.drop()
    store.held.clear()
    await until(lambda: writer.state == "ready" and len(pool.flows) == 2, "reconnect")
    second = pool.last_flow
    assert type(second.sent[0]) is C.SetupAppend
    assert [a.event_number for a in second.appends] == [1, 2, 3]
    assert [a.data for a in second.appends] == [event_record(p) for p in payloads]
    await writer.flush()
    assert cluster.events(SEG) == payloads
    assert store.violations == []


@pytest.mark.asyncio
async def test_drop_after_the_store_applied_resends_nothing(cluster):
    writer, pool = await start(cluster)
    store = cluster.store()
    store.ack_mode = "manual"  # applied, acknowledgement lost with the connection
    payloads = events(3)
    futures = [writer.write_acked(p) for p in payloads]
    pool.last_flow.drop()
    await asyncio.gather(*futures)
    second = pool.last_flow
    assert len(pool.flows) == 2
    assert [type(c) for c in second.sent] == [C.SetupAppend]
    assert cluster.events(SEG) == payloads


@pytest.mark.asyncio
async def test_drop_with_part_applied_resends_only_the_rest(cluster):
    writer, pool = await start(cluster)
    store = cluster.store()
    store.ack_mode = "manual"
    for p in events(2):
        writer.write_nowait(p)
    store.hold(Append)
    for p in events(4)[2:]:
        writer.write_nowait(p)
    pool.last_flow.drop()
    store.held.clear()
    store.clear_rules()
    store.ack_mode = "each"
    await until(lambda: writer.state == "ready" and len(pool.flows) == 2, "reconnect")
    assert [a.event_number for a in pool.last_flow.appends] == [3, 4]
    await writer.flush()
    assert cluster.events(SEG) == events(4)


@pytest.mark.asyncio
async def test_a_late_append_from_the_old_connection_is_deduplicated(cluster):
    writer, pool = await start(cluster)
    store = cluster.store()
    store.hold(Append, times=2)
    payloads = events(2)
    for p in payloads:
        writer.write_nowait(p)
    pool.last_flow.drop()
    await writer.flush()  # resent on the new connection and stored there
    store.release()  # the old connection's copies reach the store only now
    assert store.deduplicated == 2
    assert cluster.events(SEG) == payloads


@pytest.mark.asyncio
async def test_new_events_go_out_only_after_the_resend(cluster):
    writer, pool = await start(cluster)
    store = cluster.store()
    store.hold(Append, times=2)
    for p in events(2):
        writer.write_nowait(p)
    pool.gate = asyncio.Event()  # the reconnect waits
    pool.last_flow.drop()
    store.held.clear()
    await until(lambda: len(pool.connects) == 2, "reconnect attempt")
    assert writer.state == "connecting"
    for p in events(5)[2:]:
        writer.write_nowait(p)  # queued while connecting
    pool.gate.set()
    await writer.flush()
    second = pool.last_flow
    assert type(second.sent[0]) is C.SetupAppend
    assert [a.event_number for a in second.appends] == [1, 2, 3, 4, 5]
    assert cluster.events(SEG) == events(5)


@pytest.mark.asyncio
async def test_refused_connects_are_retried_with_backoff_until_one_succeeds(cluster):
    pool = FakePool(cluster)
    pool.refuse(times=3)
    writer = await SegmentWriter.open(pool, cluster.endpoints[0], SEG, config=config())
    assert len(pool.connects) == 4 and len(pool.flows) == 1
    writer.write_nowait(b"x")
    await writer.flush()
    assert cluster.events(SEG) == [b"x"]


@pytest.mark.asyncio
async def test_the_connection_breaking_inside_a_send_reconnects_once(cluster):
    writer, pool = await start(cluster)
    payloads = events(3)
    writer.write_nowait(payloads[0])
    pool.last_flow.break_on_send = True  # connection_lost from inside append, then raise
    writer.write_nowait(payloads[1])
    writer.write_nowait(payloads[2])
    await writer.flush()
    assert len(pool.flows) == 2 and writer.connections == 2
    assert cluster.events(SEG) == payloads


@pytest.mark.asyncio
async def test_invalid_event_number_reconnects(cluster):
    writer, pool = await start(cluster)
    store = cluster.store()

    def refuse(flow, append):
        flow.deliver(C.InvalidEventNumber(writer.writer_id, append.request_id, "",
                                          append.event_number))
        flow.drop()

    store.on(Append, refuse)
    writer.write_nowait(b"a")
    writer.write_nowait(b"b")
    await writer.flush()
    assert writer.connections == 2
    assert cluster.events(SEG) == [b"a", b"b"]


@pytest.mark.asyncio
@pytest.mark.parametrize("reply", [
    C.ErrorMessage(0, SEG, "boom", C.ErrorMessage.UNSPECIFIED),
    C.OperationUnsupported(0, "appends", ""),
    C.SegmentIsTruncated(0, SEG, 10, "", 5),
], ids=lambda r: type(r).__name__)
async def test_other_failure_replies_reconnect(cluster, reply):
    writer, pool = await start(cluster)
    cluster.store().ack_mode = "manual"
    writer.write_nowait(b"a")
    await settle()
    pool.last_flow.deliver(reply._replace(request_id=writer.request_id))
    cluster.store().ack_mode = "each"
    await writer.flush()
    assert writer.connections == 2
    assert cluster.events(SEG) == [b"a"]


@pytest.mark.asyncio
async def test_setup_timeout_gives_up_the_attempt_and_retries(cluster):
    store = cluster.store()
    store.hold(C.SetupAppend, times=1)  # the first SetupAppend is never answered
    writer, pool = await start(cluster, config=config(setup_timeout=0.02))
    assert len(pool.flows) == 2 and pool.flows[0].closed
    assert writer.connections == 2
    writer.write_nowait(b"a")
    await writer.flush()
    assert cluster.events(SEG) == [b"a"]


@pytest.mark.asyncio
async def test_no_acknowledgement_within_ack_timeout_reconnects_and_resends(cluster):
    writer, pool = await start(cluster, config=config(ack_timeout=0.02))
    store = cluster.store()
    store.hold(Append, times=2)  # a connection that swallows appends
    writer.write_nowait(b"a")
    writer.write_nowait(b"b")
    await writer.flush()
    assert writer.connections == 2 and pool.flows[0].closed
    assert cluster.events(SEG) == [b"a", b"b"]


@pytest.mark.asyncio
async def test_stale_callbacks_from_a_flow_let_go_are_ignored(cluster):
    writer, pool = await start(cluster)
    first = pool.last_flow
    first.drop()
    await until(lambda: writer.state == "ready" and len(pool.flows) == 2, "reconnect")
    first.listener.connection_lost(None)
    first.listener.reply_received(C.SegmentIsSealed(writer.request_id, SEG, "", 1))
    first.listener.reply_received(C.DataAppended(0, writer.writer_id, 9, 8, 0))
    await settle()
    assert writer.state == "ready" and writer.connections == 2 and len(pool.flows) == 2
    writer.write_nowait(b"a")
    await writer.flush()
    assert cluster.events(SEG) == [b"a"]


@pytest.mark.asyncio
async def test_writer_that_connects_on_first_write(cluster):
    pool = FakePool(cluster)
    writer = SegmentWriter(pool, cluster.endpoints[0], SEG, config=config())
    assert writer.state == "connecting" and pool.connects == []
    writer.write_nowait(b"a")
    future = writer.write_acked(b"b")
    await future
    await writer.flush()
    assert cluster.events(SEG) == [b"a", b"b"] and len(pool.flows) == 1
    await writer.close()


# ---- WrongHost ----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_wrong_host_at_setup_invalidates_and_reresolves(cluster):
    cluster.move(SEG, 1)
    locator = FakeLocator(cluster)
    locator.cache[SEG] = cluster.endpoints[0]  # stale
    writer, pool = await start(cluster, where=locator)
    assert locator.invalidations == [SEG]
    assert [ep for ep, _ in pool.connects] == cluster.endpoints
    assert pool.flows[0].closed
    writer.write_nowait(b"a")
    await writer.flush()
    assert pool.last_flow.endpoint == cluster.endpoints[1]
    assert cluster.events(SEG) == [b"a"]


@pytest.mark.asyncio
async def test_wrong_host_mid_stream_moves_the_writer_without_loss(cluster):
    locator = FakeLocator(cluster)
    writer, pool = await start(cluster, where=locator)
    writer.write_nowait(b"a")
    await writer.flush()
    cluster.move(SEG, 1)  # the segment container moved
    writer.write_nowait(b"b")
    writer.write_nowait(b"c")
    await writer.flush()
    assert locator.invalidations == [SEG]
    assert pool.last_flow.endpoint == cluster.endpoints[1]
    assert [a.event_number for a in pool.last_flow.appends] == [2, 3]
    assert cluster.events(SEG) == [b"a", b"b", b"c"]


# ---- failures that end the writer ------------------------------------------------------------


@pytest.mark.asyncio
async def test_sealed_segment_hands_back_unacknowledged_events_in_order(cluster):
    writer, pool = await start(cluster)
    store = cluster.store()
    first = writer.write_acked(b"a")
    await first
    store.ack_mode = "manual"
    pending = [writer.write_acked(p) for p in (b"b", b"c")]
    writer.write_nowait(b"d")
    writer.write_batch_nowait([b"e", b"f"])
    await settle()
    cluster.seal(SEG)
    store.ack_mode = "each"
    writer.write_nowait(b"g")  # this append meets the seal: SegmentIsSealed
    with pytest.raises(SegmentSealedError) as info:
        await writer.flush()
    assert info.value.unacknowledged == [b"b", b"c", b"d", b"e", b"f", b"g"]
    for future in pending:
        with pytest.raises(SegmentSealedError):
            future.result()
    sealed = [r for _, r in pool.delivered if type(r) is C.SegmentIsSealed]
    assert sealed[0].offset == 7  # the append path reports the event number there
    with pytest.raises(SegmentSealedError):
        writer.write_nowait(b"h")
    assert writer.state == "failed" and pool.last_flow.closed
    assert writer.last_event_number == 7
    await writer.close()


@pytest.mark.asyncio
async def test_sealed_at_setup_fails_open(cluster):
    cluster.seal(SEG)
    pool = FakePool(cluster)
    with pytest.raises(SegmentSealedError):
        await SegmentWriter.open(pool, cluster.endpoints[0], SEG, config=config())
    assert len(pool.connects) == 1 and pool.flows[0].closed


@pytest.mark.asyncio
async def test_sealed_right_after_setup_while_resending(cluster):
    """SegmentIsSealed in the same burst as AppendSetup: the resent events come back."""
    writer, pool = await start(cluster)
    store = cluster.store()
    store.hold(Append, times=2)
    writer.write_nowait(b"a")
    writer.write_nowait(b"b")

    def setup_then_seal(flow, cmd):
        store.process(flow, cmd)
        flow.deliver(C.SegmentIsSealed(cmd.request_id, SEG, "", 1))

    store.on(C.SetupAppend, setup_then_seal)
    pool.last_flow.drop()
    store.held.clear()
    with pytest.raises(SegmentSealedError) as info:
        await writer.flush()
    assert info.value.unacknowledged == [b"a", b"b"]


@pytest.mark.asyncio
async def test_missing_segment(cluster):
    pool = FakePool(cluster)
    with pytest.raises(NoSuchSegmentError):
        await SegmentWriter.open(pool, cluster.endpoints[0], "scope/stream/9", config=config())
    writer, pool = await start(cluster)
    cluster.store().ack_mode = "manual"
    future = writer.write_acked(b"a")
    await settle()
    del cluster.segments[SEG]
    writer.write_nowait(b"b")
    with pytest.raises(NoSuchSegmentError) as info:
        await future
    assert info.value.unacknowledged == [b"a", b"b"]


@pytest.mark.asyncio
async def test_expired_token_is_refreshed_and_the_setup_retried(cluster):
    cluster.valid_tokens = {"t2"}
    cluster.expired_tokens = {"t1"}
    tokens = FakeTokens("t1", "t2")
    writer, pool = await start(cluster, token_provider=tokens)
    assert tokens.calls == [(SEG, False), (SEG, True)]
    assert [f.sent[0].delegation_token for f in pool.flows] == ["t1", "t2"]
    writer.write_nowait(b"a")
    await writer.flush()
    assert cluster.events(SEG) == [b"a"]


@pytest.mark.asyncio
async def test_token_expiring_mid_stream_reconnects_with_a_fresh_one(cluster):
    tokens = FakeTokens("t1", "t2")
    writer, pool = await start(cluster, token_provider=tokens)
    store = cluster.store()
    store.on(Append, lambda flow, a: flow.deliver(C.AuthTokenCheckFailed(
        a.request_id, "", C.AuthTokenCheckFailed.TOKEN_EXPIRED)))
    writer.write_nowait(b"a")
    await writer.flush()
    assert tokens.calls[-1] == (SEG, True)
    assert pool.last_flow.sent[0].delegation_token == "t2"
    assert cluster.events(SEG) == [b"a"]


@pytest.mark.asyncio
async def test_rejected_token_fails_with_authentication_error(cluster):
    cluster.valid_tokens = {"good"}
    pool = FakePool(cluster)
    with pytest.raises(AuthenticationError) as info:
        await SegmentWriter.open(pool, cluster.endpoints[0], SEG, config=config(),
                                 token_provider=FakeTokens("bad"))
    assert not isinstance(info.value, TokenExpiredError)
    assert len(pool.connects) == 1
    cluster.valid_tokens = None
    writer, pool = await start(cluster)
    cluster.store().on(Append, lambda flow, a: flow.deliver(C.AuthTokenCheckFailed(
        a.request_id, "", C.AuthTokenCheckFailed.TOKEN_CHECK_FAILED)))
    future = writer.write_acked(b"a")
    with pytest.raises(AuthenticationError):
        await future
    assert writer.failure is future.exception()


@pytest.mark.asyncio
async def test_retries_exhausted_fail_every_pending_write_and_flush(cluster, monkeypatch):
    slept = []
    real_sleep = asyncio.sleep

    async def recording_sleep(delay, *args):
        if delay:
            slept.append(delay)
        return await real_sleep(delay, *args)

    monkeypatch.setattr(asyncio, "sleep", recording_sleep)
    draws = [0.0, 0.25, 0.5, 0.75, 0.9]  # the injected random source: one draw per wait
    policy = dataclasses.replace(FAST, random_source=iter(draws).__next__)
    pool = FakePool(cluster)
    pool.refuse()  # nothing ever connects
    writer = SegmentWriter(pool, cluster.endpoints[0], SEG, config=config(retry=policy))
    futures = [writer.write_acked(p) for p in (b"a", b"b")]
    writer.write_nowait(b"c")
    with pytest.raises(RetriesExhaustedError) as info:
        await writer.flush()
    assert len(pool.connects) == FAST.attempts
    # The policy's backoff before each attempt (equal jitter: half the ceiling plus the draw's
    # share of the other half), and nothing more.
    assert slept == pytest.approx([d / 2 + d / 2 * r for d, r in zip(FAST.delays(), draws)])
    assert sum(slept) <= FAST.worst_case_wait()
    assert info.value.unacknowledged == [b"a", b"b", b"c"]
    for future in futures:
        assert isinstance(future.exception(), RetriesExhaustedError)
    with pytest.raises(RetriesExhaustedError):
        writer.write_nowait(b"d")


@pytest.mark.asyncio
async def test_retries_exhausted_after_the_connection_dies_mid_stream(cluster):
    writer, pool = await start(cluster)
    cluster.store().ack_mode = "manual"
    future = writer.write_acked(b"a")
    await settle()
    pool.refuse()
    pool.last_flow.drop()
    with pytest.raises(RetriesExhaustedError):
        await future
    with pytest.raises(RetriesExhaustedError):
        await writer.flush()
    assert len(pool.connects) == 1 + FAST.attempts


@pytest.mark.asyncio
async def test_open_fails_with_retries_exhausted(cluster):
    pool = FakePool(cluster)
    pool.refuse()
    with pytest.raises(RetriesExhaustedError):
        await SegmentWriter.open(pool, cluster.endpoints[0], SEG, config=config())
    assert len(pool.connects) == FAST.attempts


# ---- flush, backpressure ---------------------------------------------------------------------


@pytest.mark.asyncio
async def test_flush_timeout_leaves_the_events_in_flight(cluster):
    writer, pool = await start(cluster)
    store = cluster.store()
    store.ack_mode = "manual"
    writer.write_nowait(b"a")
    with pytest.raises(TimeoutError):
        await writer.flush(timeout=0.01)
    assert writer.unacknowledged == 1 and writer.state == "ready"
    store.send_acks()
    await writer.flush(timeout=5)
    assert writer.unacknowledged == 0
    await writer.flush()  # nothing in flight: returns at once


@pytest.mark.asyncio
async def test_write_waits_while_over_max_inflight_bytes(cluster):
    writer, pool = await start(cluster, config=config(max_inflight_bytes=100))
    store = cluster.store()
    store.ack_mode = "manual"
    await writer.write(b"x" * 60)  # 68 bytes in flight
    await writer.write(b"y" * 60)  # 68 <= 100: admitted, now 136
    assert writer.inflight_bytes == 136
    third = asyncio.ensure_future(writer.write(b"z" * 60))
    await settle()
    assert not third.done() and writer.last_event_number == 2
    store.send_acks()
    await third
    assert writer.last_event_number == 3
    store.send_acks()
    await writer.flush()
    assert cluster.events(SEG) == [b"x" * 60, b"y" * 60, b"z" * 60]


@pytest.mark.asyncio
async def test_a_write_waiting_for_room_fails_when_the_writer_fails(cluster):
    writer, pool = await start(cluster, config=config(max_inflight_bytes=10))
    cluster.store().ack_mode = "manual"
    await writer.write(b"x" * 20)
    blocked = asyncio.ensure_future(writer.write(b"y"))
    await settle()
    cluster.seal(SEG)
    cluster.store().ack_mode = "each"
    pool.last_flow.deliver(C.SegmentIsSealed(writer.request_id, SEG, "", 1))
    with pytest.raises(SegmentSealedError):
        await blocked


# ---- batches, sizes, payloads ----------------------------------------------------------------


@pytest.mark.asyncio
async def test_batch_is_one_append_numbered_by_its_last_event(cluster):
    writer, pool = await start(cluster)
    writer.write_nowait(b"first")
    writer.write_batch_nowait([b"a", bytearray(b"bb"), memoryview(b"ccc")])
    writer.write_batch_nowait([])  # nothing
    writer.write_batch_nowait([b"solo"])
    writer.write_nowait(b"last")
    await writer.flush()
    appends = pool.last_flow.appends
    assert [(a.event_number, a.event_count) for a in appends] == [(1, 1), (4, 3), (5, 1),
                                                                 (6, 1)]
    assert appends[1].data == b"".join(event_record(p) for p in (b"a", b"bb", b"ccc"))
    assert cluster.events(SEG) == [b"first", b"a", b"bb", b"ccc", b"solo", b"last"]
    assert writer.acked_events == 6


@pytest.mark.asyncio
async def test_event_and_batch_size_limits(cluster, monkeypatch):
    # Over 8 MiB an event is a large event (tests/test_large_events.py), up to 1 GiB: a
    # smaller large-event limit here keeps the test's memory small.
    monkeypatch.setattr(largeevents, "MAX_LARGE_EVENT_SIZE", MAX_EVENT_SIZE + 1)
    writer, pool = await start(cluster)
    with pytest.raises(InvalidMessageError):
        writer.write_nowait(b"\0" * (MAX_EVENT_SIZE + 2))
    with pytest.raises(InvalidMessageError):
        writer.write_acked(bytearray(MAX_EVENT_SIZE + 2))
    with pytest.raises(InvalidMessageError):
        writer.write_batch_nowait([b"\0" * MAX_EVENT_SIZE, b"\0" * MAX_EVENT_SIZE])
    with pytest.raises(TypeError):
        writer.write_nowait("text")
    with pytest.raises(TypeError):
        writer.write_batch_nowait([b"ok", 5])
    assert writer.last_event_number == 0  # nothing was numbered
    writer.write_nowait(b"\1" * MAX_EVENT_SIZE)
    writer.write_batch_nowait([b"\2" * (MAX_EVENT_SIZE // 2), b"\3" * 100])
    assert 2 * (MAX_EVENT_SIZE + 8) > MAX_BATCH_SIZE  # Java's batch bound would not fit a frame
    await writer.flush()
    assert [len(e) for e in cluster.events(SEG)] == [MAX_EVENT_SIZE, MAX_EVENT_SIZE // 2, 100]


@pytest.mark.asyncio
async def test_a_mutable_buffer_is_copied_when_written(cluster):
    writer, pool = await start(cluster)
    cluster.store().hold(Append, times=1)
    buffer = bytearray(b"before")
    writer.write_nowait(buffer)
    buffer[:] = b"after!"
    pool.last_flow.drop()  # forces a resend from the writer's copy
    cluster.store().held.clear()
    await writer.flush()
    assert cluster.events(SEG) == [b"before"]


# ---- close ---------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_close_flushes_then_closes_the_pooled_flow(cluster):
    writer, pool = await start(cluster)
    writer.write_nowait(b"a")
    await writer.close()
    assert cluster.events(SEG) == [b"a"]
    assert pool.last_flow.closed and not pool.last_flow.dedicated
    assert writer.state == "closed"
    with pytest.raises(ConnectionClosedError):
        writer.write_nowait(b"b")
    await writer.close()  # idempotent


@pytest.mark.asyncio
async def test_dedicated_connection_when_pooling_is_off(cluster):
    writer, pool = await start(cluster, config=config(enable_connection_pooling=False))
    flow = pool.last_flow
    assert pool.connects == [(cluster.endpoints[0], True)] and flow.dedicated
    assert flow.flow_id == 0 and writer.request_id == 0
    writer.write_nowait(b"a")
    await writer.flush()
    assert cluster.events(SEG) == [b"a"]
    await writer.close()
    assert flow.closed


@pytest.mark.asyncio
async def test_close_without_flush_fails_pending_writes_with_their_events(cluster):
    writer, pool = await start(cluster)
    cluster.store().ack_mode = "manual"
    future = writer.write_acked(b"a")
    writer.write_nowait(b"b")
    await writer.close(flush=False)
    error = future.exception()
    assert isinstance(error, ConnectionClosedError)
    assert error.unacknowledged == [b"a", b"b"]
    assert pool.last_flow.closed


@pytest.mark.asyncio
async def test_close_while_connecting_stops_the_connection_attempt(cluster):
    pool = FakePool(cluster)
    pool.gate = asyncio.Event()
    writer = SegmentWriter(pool, cluster.endpoints[0], SEG, config=config())
    future = writer.write_acked(b"a")
    await settle()
    await writer.close(flush=False)
    assert isinstance(future.exception(), ConnectionClosedError)
    pool.gate.set()
    await settle()
    assert pool.open_flows() == []


@pytest.mark.asyncio
async def test_context_manager_flushes_on_exit(cluster):
    pool = FakePool(cluster)
    async with SegmentWriter(pool, cluster.endpoints[0], SEG, config=config()) as writer:
        writer.write_nowait(b"a")
    assert cluster.events(SEG) == [b"a"] and pool.last_flow.closed


@pytest.mark.asyncio
async def test_latency_recording(cluster):
    writer, pool = await start(cluster, config=config(record_latency=True))
    writer.write_nowait(b"a")
    writer.write_batch_nowait([b"b", b"c"])
    await writer.flush()
    assert writer.latency.count == 3  # one per event, a batch's events alike
    assert 0 < writer.latency.percentile(0.5) <= writer.latency.percentile(0.99)
    with pytest.deprecated_call():  # the old list, kept as a deprecated alias
        latencies = writer.latencies
    assert len(latencies) == 3 and latencies == sorted(latencies) and latencies[0] > 0


def test_config_validation():
    with pytest.raises(ValueError):
        EventWriterConfig(setup_timeout=0)
    with pytest.raises(ValueError):
        EventWriterConfig(max_inflight_bytes=0)
    with pytest.raises(TypeError):
        EventWriterConfig(retry=3)
    with pytest.raises(TypeError):
        EventWriterConfig(ack_timeout="1")
    assert EventWriterConfig(ack_timeout=None).ack_timeout is None


@pytest.mark.asyncio
async def test_constructor_validation(cluster):
    pool = FakePool(cluster)
    with pytest.raises(TypeError):
        SegmentWriter(pool, cluster.endpoints[0], "")
    with pytest.raises(TypeError):
        SegmentWriter(pool, cluster.endpoints[0], SEG, writer_id="not-a-uuid")
    with pytest.raises(TypeError):
        SegmentWriter(pool, "not-an-endpoint", SEG)
    writer = SegmentWriter(pool, cluster.endpoints[0], SEG, writer_id=uuid.UUID(int=7))
    assert writer.writer_id == uuid.UUID(int=7)


# ---- races around connecting ---------------------------------------------------------------


@pytest.mark.asyncio
async def test_cancelling_open_closes_the_writer_and_leaks_no_flow(cluster):
    pool = FakePool(cluster)
    pool.gate = asyncio.Event()
    opening = asyncio.ensure_future(SegmentWriter.open(pool, cluster.endpoints[0], SEG,
                                                       config=config()))
    await until(lambda: pool.connects, "connect")
    opening.cancel()
    with pytest.raises(asyncio.CancelledError):
        await opening
    pool.gate.set()
    await settle()
    assert len(pool.flows) == 1 and pool.open_flows() == []  # produced late, then closed


@pytest.mark.asyncio
async def test_connection_lost_while_the_flow_is_handed_over(cluster):
    pool = FakePool(cluster)
    pool.lose_next_open = True
    writer = await SegmentWriter.open(pool, cluster.endpoints[0], SEG, config=config())
    assert len(pool.flows) == 2 and pool.flows[0].closed and writer.connections == 1
    writer.write_nowait(b"a")
    await writer.flush()
    assert cluster.events(SEG) == [b"a"]


@pytest.mark.asyncio
async def test_an_unrequested_append_setup_is_ignored(cluster):
    writer, pool = await start(cluster)
    writer.write_nowait(b"a")
    pool.last_flow.deliver(C.AppendSetup(writer.request_id, SEG, writer.writer_id, 99))
    await writer.flush()
    assert writer.connections == 1 and cluster.events(SEG) == [b"a"]


@pytest.mark.asyncio
@pytest.mark.parametrize("breaks", ["with_callback", "silently"])
async def test_the_connection_failing_during_the_resend(cluster, breaks):
    writer, pool = await start(cluster)
    store = cluster.store()
    store.hold(Append, times=2)
    writer.write_nowait(b"a")
    writer.write_nowait(b"b")

    def setup_then_break(flow, cmd):
        store.process(flow, cmd)  # AppendSetup is on its way
        if breaks == "with_callback":
            flow.break_on_send = True  # the first resend: connection_lost, then an error
        else:
            flow.dying = True  # the first resend just fails; nobody calls back

    store.on(C.SetupAppend, setup_then_break)
    pool.last_flow.drop()
    store.held.clear()
    await writer.flush()
    assert writer.connections == 3
    assert cluster.events(SEG) == [b"a", b"b"]


@pytest.mark.asyncio
async def test_ack_timeout_counts_from_the_last_progress(cluster):
    writer, pool = await start(cluster, config=config(ack_timeout=0.02))
    store = cluster.store()
    store.ack_mode = "manual"
    writer.write_nowait(b"a")
    writer.write_nowait(b"b")
    await settle()
    first = pool.last_flow
    first.deliver(C.DataAppended(writer.request_id, writer.writer_id, 1, NULL, 0))
    store.ack_mode = "each"  # the next connection acknowledges; this one never acks "b"
    await writer.flush()
    assert first.closed and writer.connections == 2
    assert cluster.events(SEG) == [b"a", b"b"]


@pytest.mark.asyncio
async def test_repr_and_more_validation(cluster):
    writer, pool = await start(cluster)
    assert "ready" in repr(writer) and SEG in repr(writer)
    with pytest.raises(TypeError):
        SegmentWriter(pool, cluster.endpoints[0], SEG, config={})
    with pytest.raises(TypeError):
        EventWriterConfig(max_inflight_bytes=1.5)


@pytest.mark.asyncio
async def test_ack_timeout_does_nothing_once_everything_is_acknowledged(cluster):
    writer, pool = await start(cluster, config=config(ack_timeout=0.005))
    fired = asyncio.Event()
    check_progress = writer._check_progress

    def watched(acked_then):
        check_progress(acked_then)
        fired.set()

    writer._check_progress = watched  # armed by the write below
    writer.write_nowait(b"a")
    await writer.flush()
    await asyncio.wait_for(fired.wait(), 5)  # the watchdog fired, with nothing in flight
    assert writer.connections == 1 and writer.state == "ready"


# ---- every acknowledged event stored exactly once, in order, whatever happens ------------------


async def _chaos(seed: int) -> None:
    rng = random.Random(seed)
    cluster = FakeCluster(stores=2)
    cluster.create(SEG)
    locator = FakeLocator(cluster)
    pool = FakePool(cluster, fast_path=rng.random() < 0.5)
    cfg = config(retry=RetryPolicy(initial_delay=0, attempts=1000),
                 enable_connection_pooling=rng.random() < 0.5)
    writer = await SegmentWriter.open(pool, locator, SEG, config=cfg)
    payloads = [f"{seed}:{i}".encode() * rng.randint(1, 4) for i in range(150)]
    futures = []
    i = 0
    while i < len(payloads):
        roll = rng.random()
        if roll < 0.6:
            writer.write_nowait(payloads[i])
            i += 1
        elif roll < 0.85:
            futures.append(writer.write_acked(payloads[i]))
            i += 1
        else:
            n = rng.randint(2, 4)
            writer.write_batch_nowait(payloads[i:i + n])
            i += n
        owner = cluster.stores[cluster.owner_of(SEG)]
        action = rng.random()
        if action < 0.06:  # the connection dies; appends it held may or may not be lost
            open_flows = pool.open_flows()
            if open_flows:
                flow = open_flows[-1]
                if rng.random() < 0.5:
                    for store in cluster.stores.values():
                        store.held = [(f, c) for f, c in store.held if f is not flow]
                flow.drop()
        elif action < 0.10:
            owner.ack_mode = "manual" if owner.ack_mode == "each" else "each"
        elif action < 0.14:
            owner.send_acks()
        elif action < 0.18:
            owner.hold(Append, times=rng.randint(1, 6))
        elif action < 0.22:
            for store in cluster.stores.values():
                store.clear_rules()
                store.release()  # late appends, possibly of connections long gone
        elif action < 0.24:
            cluster.move(SEG, rng.randrange(2))  # the segment container moves
        if rng.random() < 0.2:
            await settle(rng.randint(1, 5))
    for store in cluster.stores.values():
        store.clear_rules()
        store.release()
        store.ack_mode = "each"
        store.send_acks()
    await writer.flush()
    await asyncio.gather(*futures)
    assert cluster.events(SEG) == payloads
    assert writer.acked_events == len(payloads) and writer.unacknowledged == 0
    for store in cluster.stores.values():
        assert store.violations == []
    await writer.close()


@pytest.mark.asyncio
@pytest.mark.parametrize("seed", range(40))
async def test_chaos_nothing_lost_nothing_doubled(seed):
    await _chaos(seed)


@pytest.mark.asyncio
async def test_an_incompatible_store_is_not_retried(cluster):
    pool = FakePool(cluster)
    pool.refuse(error=IncompatibleVersionError)
    with pytest.raises(IncompatibleVersionError):
        await SegmentWriter.open(pool, cluster.endpoints[0], SEG, config=config())
    assert len(pool.connects) == 1
    writer, pool = await start(cluster)
    writer.write_nowait(b"a")
    await writer.flush()
    pool.refuse(error=IncompatibleVersionError)  # the store came back speaking another version
    pool.last_flow.drop(IncompatibleVersionError("Hello(4, 1)"))
    with pytest.raises(IncompatibleVersionError):
        await writer.write_acked(b"b")
