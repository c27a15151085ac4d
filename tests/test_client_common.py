"""What the segment clients share: retry policies, locators, event checks, flow listeners."""

from __future__ import annotations

import asyncio

import pytest

from pravega_wire.client._common import (MAX_EVENT_SIZE, FlowListener, RetryPolicy,
                                         StaticLocator, as_locator, event_bytes, no_token)
from pravega_wire.errors import InvalidMessageError, RetriesExhaustedError


def test_backoff_schedule_grows_and_is_capped():
    policy = RetryPolicy(initial_delay=0.001, multiplier=10, max_delay=5.0, attempts=10)
    assert list(policy.delays()) == pytest.approx(
        [0.001, 0.01, 0.1, 1.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0])
    assert policy.worst_case_wait() == pytest.approx(31.111)
    assert RetryPolicy().worst_case_wait() < 40
    assert RetryPolicy(initial_delay=0, attempts=3).worst_case_wait() == 0
    assert RetryPolicy(multiplier=1, initial_delay=0.5, attempts=3).delay(2) == 0.5
    assert RetryPolicy().delay(10_000) == RetryPolicy().max_delay
    with pytest.raises(ValueError):
        RetryPolicy().delay(-1)


@pytest.mark.parametrize("kwargs, error", [
    ({"attempts": 0}, ValueError), ({"multiplier": 0.5}, ValueError),
    ({"initial_delay": -1}, ValueError), ({"max_delay": float("inf")}, ValueError),
    ({"attempts": 2.0}, TypeError), ({"initial_delay": "1"}, TypeError),
    ({"multiplier": True}, TypeError),
])
def test_retry_policy_validation(kwargs, error):
    with pytest.raises(error):
        RetryPolicy(**kwargs)


@pytest.mark.asyncio
async def test_run_retries_what_it_is_told_to():
    policy = RetryPolicy(initial_delay=0, attempts=3)
    calls = []

    async def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("again")
        return "done"

    assert await policy.run(flaky) == "done" and len(calls) == 3

    async def always():
        calls.append(1)
        raise ConnectionError("never")

    calls.clear()
    with pytest.raises(RetriesExhaustedError) as info:
        await policy.run(always, what="thing")
    assert len(calls) == 3 and isinstance(info.value.__cause__, ConnectionError)
    assert "thing failed 3 times" in str(info.value)

    calls.clear()
    with pytest.raises(ConnectionError):
        await policy.run(always, retry_on=lambda e: False)
    assert len(calls) == 1


@pytest.mark.asyncio
async def test_locators():
    static = StaticLocator(("h", 1))
    assert await static.get_endpoint("any") == ("h", 1)
    static.invalidate("any")
    routed = as_locator(lambda segment: ("h", len(segment)))
    assert await routed.get_endpoint("abc") == ("h", 3)
    assert as_locator(static) is static
    with pytest.raises(TypeError):
        StaticLocator(("h", "1"))
    with pytest.raises(TypeError):
        await as_locator(lambda segment: "h:1").get_endpoint("x")
    assert await no_token("s", False) == ""


def test_event_bytes():
    data = b"abc"
    assert event_bytes(data) is data  # no copy of bytes
    buffer = bytearray(b"abc")
    copy = event_bytes(buffer)
    buffer[0] = 0
    assert copy == b"abc" and type(copy) is bytes
    assert event_bytes(memoryview(b"\1\0\0\0").cast("I")) == b"\1\0\0\0"
    assert len(event_bytes(b"\0" * MAX_EVENT_SIZE)) == MAX_EVENT_SIZE
    with pytest.raises(InvalidMessageError):
        event_bytes(b"\0" * (MAX_EVENT_SIZE + 1))
    for bad in ("text", 3, None, [1]):
        with pytest.raises(TypeError):
            event_bytes(bad)


def test_flow_listener_forwards_until_let_go():
    replies, losses = [], []
    listener = FlowListener(replies.append, lambda l, e: losses.append(e))
    listener.reply_received("r1")
    listener.connection_lost(None)
    listener.active = False
    listener.reply_received("r2")
    listener.connection_lost(None)
    assert replies == ["r1"] and losses == [None]


def test_a_bytes_subclass_becomes_plain_bytes():
    class Payload(bytes):
        pass

    converted = event_bytes(Payload(b"xy"))
    assert type(converted) is bytes and converted == b"xy"


@pytest.mark.asyncio
async def test_open_flow_closes_a_flow_nobody_claimed():
    from pravega_wire.client._common import open_flow

    class Flow:
        closed = False

        def close(self):
            self.closed = True

    flow = Flow()
    gate = asyncio.Event()

    async def opening():
        await gate.wait()
        return flow

    waiter = asyncio.ensure_future(open_flow(opening()))
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    gate.set()
    for _ in range(5):
        await asyncio.sleep(0)
    assert flow.closed

    async def failing():
        await gate.wait()
        raise ConnectionError("refused")

    gate.clear()
    waiter = asyncio.ensure_future(open_flow(failing()))
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    gate.set()
    for _ in range(5):
        await asyncio.sleep(0)  # the failure is consumed: no "exception never retrieved"
