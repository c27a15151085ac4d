"""Fault hooks of the embedded segment store: each action over real sockets, rule counting, and
the JSON form a child process receives."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid

import pytest

from pravega_wire import commands as C
from pravega_wire.codec import FrameDecoder
from pravega_wire.errors import InvalidMessageError
from pravega_wire.server.faults import FaultPlan, FaultRule
from pravega_wire.server.segmentstore import SegmentStore
from pravega_wire.server.storage import NULL_ATTRIBUTE_VALUE
from test_server_support import SEGMENT, WAIT, Wire, append_end, events

W1 = uuid.UUID(int=0x31)
ATTRIBUTE = uuid.UUID(int=0x77)


@contextlib.asynccontextmanager
async def serving(plan: FaultPlan, **options):
    store = SegmentStore(faults=plan, **options)
    store.create_segment(SEGMENT)
    await store.start()
    try:
        yield store
    finally:
        await store.stop()


async def setup(wire: Wire) -> int:
    wire.send(C.SetupAppend(1, W1, SEGMENT, ""))
    return (await wire.recv()).last_event_number


def stored(store: SegmentStore) -> bytes:
    return b"".join(bytes(c) for c in store.storage.get(SEGMENT).iter_data())


# ---- rules without a store ----------------------------------------------------------------------

def test_a_rule_fires_on_the_nth_match_then_every_kth_at_most_times():
    rule = FaultRule("no_reply", nth=2, every=3, times=3)
    plan = FaultPlan([rule])
    fired = [plan.fire(("no_reply",), "X") is rule for _ in range(12)]
    assert [i + 1 for i, f in enumerate(fired) if f] == [2, 5, 8]
    assert (rule.seen, rule.fired, rule.exhausted) == (12, 3, True)


def test_rules_match_on_action_command_and_segment():
    plan = FaultPlan()
    rule = plan.fail_segment("a", "sealed", commands={"ReadSegment"})
    assert plan.fire(("fail_segment",), "ReadSegment", "b") is None
    assert plan.fire(("fail_segment",), "SetupAppend", "a") is None
    assert plan.fire(("no_reply",), "ReadSegment", "a") is None
    assert plan.fire(("fail_segment",), "ReadSegment", "a") is rule
    assert plan.fire(("fail_segment",), "ReadSegment", "a") is rule  # every match by default
    plan.clear()
    assert not plan.active and plan.fire(("fail_segment",), "ReadSegment", "a") is None


@pytest.mark.parametrize("bad", [
    dict(action="explode"), dict(action="no_reply", nth=0), dict(action="delay"),
    dict(action="fail_segment", segment="s", reply="teapot"),
    dict(action="fail_segment", reply="sealed")])
def test_invalid_rules_are_refused(bad):
    with pytest.raises(ValueError):
        FaultRule(**bad)


def test_a_plan_round_trips_through_json():
    plan = FaultPlan()
    plan.drop_after_append(nth=5, every=7, times=None, segment="s")
    plan.delay_replies(1.5, commands=["DataAppended"])
    plan.fail_segment("s", "wrong_host", commands="SetupAppend")
    copy = FaultPlan.from_json(json.loads(json.dumps(json.loads(plan.to_json()))))
    assert [r.to_dict() for r in copy.rules] == [r.to_dict() for r in plan.rules]
    with pytest.raises(ValueError):
        FaultPlan.from_json('{"not": "a list"}')
    with pytest.raises(ValueError):
        FaultPlan.from_json('[{"action": "no_reply", "unknown_field": 1}]')


# ---- actions, over sockets ----------------------------------------------------------------------

@pytest.mark.asyncio
async def test_drop_before_append_closes_without_applying():
    plan = FaultPlan()
    rule = plan.drop_before_append(nth=2)
    async with serving(plan) as store:
        wire = await Wire.open(store.endpoint)
        await setup(wire)
        wire.send(append_end(W1, events(b"one"), 1), append_end(W1, events(b"two"), 2))
        assert await wire.closed_by_server()
        assert stored(store) == events(b"one") and rule.fired == 1
        again = await Wire.open(store.endpoint)
        assert await setup(again) == 1
        again.send(append_end(W1, events(b"two"), 2))
        assert (await again.recv()).event_number == 2
        assert stored(store) == events(b"one", b"two")
        await again.close()


@pytest.mark.asyncio
async def test_drop_after_append_applies_then_closes_before_the_ack():
    plan = FaultPlan()
    plan.drop_after_append()
    async with serving(plan) as store:
        wire = await Wire.open(store.endpoint)
        await setup(wire)
        wire.send(append_end(W1, events(b"one"), 1))
        assert await wire.closed_by_server()
        assert wire.pending == []  # the ack never left
        assert stored(store) == events(b"one")
        again = await Wire.open(store.endpoint)
        assert await setup(again) == 1  # the writer learns it was stored
        await again.close()


@pytest.mark.asyncio
async def test_delayed_replies_are_held_in_order_and_written_at_close():
    plan = FaultPlan()
    plan.delay_replies(3600, commands={"SegmentAttribute"})
    store = SegmentStore(faults=plan)
    store.create_segment(SEGMENT)
    await store.start()
    wire = await Wire.open(store.endpoint)
    wire.send(C.GetSegmentAttribute(1, SEGMENT, ATTRIBUTE, ""), C.KeepAlive())
    assert await wire.quiet(0.3) == []  # held (for an hour)
    await store.stop()
    assert await wire.closed_by_server()
    assert wire.pending == [C.SegmentAttribute(1, NULL_ATTRIBUTE_VALUE), C.KeepAlive()]


@pytest.mark.asyncio
async def test_never_reply_swallows_only_matching_replies():
    plan = FaultPlan()
    rule = plan.never_reply(commands={"SegmentAttribute"})
    async with serving(plan) as store:
        wire = await Wire.open(store.endpoint)
        wire.send(C.GetSegmentAttribute(1, SEGMENT, ATTRIBUTE, ""), C.KeepAlive(),
                  C.GetSegmentAttribute(2, SEGMENT, ATTRIBUTE, ""))
        assert await wire.recv_n(2) == [C.KeepAlive(), C.SegmentAttribute(2, NULL_ATTRIBUTE_VALUE)]
        assert rule.fired == 1
        await wire.close()


@pytest.mark.asyncio
async def test_a_stalled_connection_is_accepted_but_never_served():
    plan = FaultPlan()
    plan.stall_connections()
    async with serving(plan) as store:
        stalled = await Wire.open(store.endpoint, hello=False)
        stalled.send(C.Hello(17, 5))
        assert await stalled.quiet(0.3) == []
        healthy = await Wire.open(store.endpoint)  # only the first connection stalls
        await healthy.close()
        assert store.connection_count == 2
    assert await stalled.closed_by_server()


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", ["garbage", "oversized", "unknown_type"])
async def test_bad_bytes_instead_of_a_reply_break_the_clients_decoder(kind):
    plan = FaultPlan()
    plan.send_garbage(kind, commands={"KeepAlive"})
    async with serving(plan) as store:
        wire = await Wire.open(store.endpoint)
        wire.send(C.KeepAlive())
        data = await asyncio.wait_for(wire.reader.read(1 << 16), WAIT)
        assert data
        with pytest.raises(InvalidMessageError):
            FrameDecoder().feed(data)
        wire.send(C.KeepAlive())  # the store goes on: the next reply is sound
        assert await wire.recv() == C.KeepAlive()
        await wire.close()


@pytest.mark.asyncio
async def test_a_reply_can_carry_a_wrong_request_id():
    plan = FaultPlan()
    plan.wrong_request_id(commands={"SegmentAttribute"}, delta=1 << 32)
    async with serving(plan) as store:
        wire = await Wire.open(store.endpoint)
        wire.send(C.GetSegmentAttribute(5, SEGMENT, ATTRIBUTE, ""),
                  C.GetSegmentAttribute(6, SEGMENT, ATTRIBUTE, ""))
        assert [r.request_id for r in await wire.recv_n(2)] == [5 + (1 << 32), 6]
        await wire.close()


@pytest.mark.asyncio
async def test_hello_can_be_answered_with_an_incompatible_version():
    plan = FaultPlan()
    plan.incompatible_hello()
    async with serving(plan) as store:
        wire = await Wire.open(store.endpoint, hello=False)
        wire.send(C.Hello(17, 5), C.KeepAlive())
        assert await wire.recv_n(2) == [C.Hello(4, 1), C.KeepAlive()]
        await wire.close()


@pytest.mark.asyncio
async def test_fail_segment_answers_requests_for_that_segment():
    plan = FaultPlan()
    plan.fail_segment(SEGMENT, "sealed", commands={"ReadSegment"})
    plan.fail_segment(SEGMENT, "no_such_segment", commands={"GetSegmentAttribute"})
    plan.fail_segment(SEGMENT, "wrong_host", commands={"SetupAppend"}, times=1)
    plan.fail_segment(SEGMENT, "token_expired", commands={"CreateSegment"})
    async with serving(plan) as store:
        wire = await Wire.open(store.endpoint)
        wire.send(C.ReadSegment(SEGMENT, 42, 10, "", 1),
                  C.GetSegmentAttribute(2, SEGMENT, ATTRIBUTE, ""),
                  C.SetupAppend(3, W1, SEGMENT, ""), C.CreateSegment(4, SEGMENT, 0, 0, ""),
                  C.SetupAppend(5, W1, SEGMENT, ""), C.GetStreamSegmentInfo(6, SEGMENT, ""))
        replies = await wire.recv_n(6)
        assert replies[:5] == [
            C.SegmentIsSealed(1, SEGMENT, "", 42), C.NoSuchSegment(2, SEGMENT, "", -1),
            C.WrongHost(3, SEGMENT, "", ""),
            C.AuthTokenCheckFailed(4, "", C.AuthTokenCheckFailed.TOKEN_EXPIRED),
            C.AppendSetup(5, SEGMENT, W1, NULL_ATTRIBUTE_VALUE)]
        assert replies[5].exists  # other commands are untouched
        await wire.close()


@pytest.mark.asyncio
async def test_fail_segment_on_appends_fails_the_append_and_forgets_the_writer():
    plan = FaultPlan()
    plan.fail_segment(SEGMENT, "sealed", commands={"Append"}, nth=2, times=1)
    async with serving(plan) as store:
        wire = await Wire.open(store.endpoint)
        await setup(wire)
        wire.send(append_end(W1, events(b"a"), 1, request_id=7),
                  append_end(W1, events(b"b"), 2, request_id=7))
        assert [type(r) for r in await wire.recv_n(2)] == [C.DataAppended, C.SegmentIsSealed]
        assert wire.pending == [] and stored(store) == events(b"a")
        wire.send(append_end(W1, events(b"c"), 3))
        assert await wire.closed_by_server()


@pytest.mark.asyncio
async def test_an_injected_expired_token_on_the_append_path_closes_the_connection():
    plan = FaultPlan()
    plan.fail_segment(SEGMENT, "token_expired", commands={"SetupAppend"})
    async with serving(plan) as store:
        wire = await Wire.open(store.endpoint)
        wire.send(C.SetupAppend(8, W1, SEGMENT, ""))
        assert await wire.closed_by_server()
        assert wire.pending == [
            C.AuthTokenCheckFailed(8, "", C.AuthTokenCheckFailed.TOKEN_EXPIRED)]
