"""What the segment clients share: retry policies, locators, event checks, flow listeners."""

from __future__ import annotations

import asyncio

import pytest

from pravega_wire.client._common import (MAX_EVENT_SIZE, Failures, FlowRelay, RetryPolicy,
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
    ({"multiplier": True}, TypeError), ({"jitter": "half"}, ValueError),
    ({"jitter": True}, ValueError), ({"random_source": 0.5}, TypeError),
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


def test_jitter_is_on_by_default_and_only_ever_shortens_a_wait():
    policy = RetryPolicy(initial_delay=0.1, multiplier=2, max_delay=1.0, attempts=6)
    assert policy.jitter == "equal"
    for retry in range(policy.attempts):
        ceiling = policy.delay(retry)
        waits = {policy.backoff(retry) for _ in range(50)}
        assert all(ceiling / 2 <= w <= ceiling for w in waits)
        assert len(waits) > 1  # a random draw each time: clients do not retry in lockstep


@pytest.mark.parametrize("jitter, expected", [
    (None, [0.1, 0.2, 0.4]),  # no jitter: the ceilings
    ("full", [0.0, 0.05, 0.3]),  # the draw's share of the ceiling
    ("equal", [0.05, 0.125, 0.35]),  # half the ceiling plus the draw's share of the other half
])
def test_jitter_is_deterministic_under_an_injected_random_source(jitter, expected):
    draws = iter([0.0, 0.25, 0.75])
    policy = RetryPolicy(initial_delay=0.1, multiplier=2, max_delay=1.0, attempts=3,
                         jitter=jitter, random_source=lambda: next(draws))
    assert [policy.backoff(n) for n in range(3)] == pytest.approx(expected)
    assert policy == RetryPolicy(initial_delay=0.1, multiplier=2, max_delay=1.0, attempts=3,
                                 jitter=jitter)  # the source is not part of the policy's value


def test_a_random_source_out_of_range_is_refused():
    policy = RetryPolicy(random_source=lambda: 1.5)
    with pytest.raises(ValueError, match="random_source"):
        policy.backoff(0)
    assert RetryPolicy(initial_delay=0, random_source=lambda: 1.5).backoff(0) == 0  # no draw


@pytest.mark.asyncio
async def test_run_waits_the_jittered_backoff_and_counts_failures_across_calls(monkeypatch):
    slept = []

    async def recording_sleep(delay):
        slept.append(delay)

    monkeypatch.setattr(asyncio, "sleep", recording_sleep)
    draws = iter([0.5] * 10)
    policy = RetryPolicy(initial_delay=0.1, multiplier=2, max_delay=1.0, attempts=4,
                         jitter="full", random_source=lambda: next(draws))

    async def failing():
        raise ConnectionError("down")

    failures = Failures()
    failures.failed(ConnectionError("lost"))  # counted before the call (a reader's lost flow)
    with pytest.raises(RetriesExhaustedError, match="reader failed 4 times") as info:
        await policy.run(failing, what="reader", failures=failures)
    assert slept == pytest.approx([0.05, 0.1, 0.2])  # before each retry, not before the 1st
    assert failures.number == 4 and isinstance(info.value.__cause__, ConnectionError)
    failures.reset()
    assert (failures.number, failures.last) == (0, None)

    slept.clear()
    with pytest.raises(RetriesExhaustedError):
        await policy.run(failing, wait_first=True)  # as the writer connects: wait first
    assert slept == pytest.approx([0.05, 0.1, 0.2, 0.4])


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
    listener = FlowRelay(replies.append, lambda l, e: losses.append(e))
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
