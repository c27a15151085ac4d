"""Stream writer benchmarks: writing to a stream by routing key, and transactions, against the
embedded cluster (one segment store and the controller in a child process,
:class:`~pravega_wire.server.ChildCluster`) on loopback.

* **Stream writers**, 100 B events under ``KEYS`` routing keys on a 4-segment stream, ``await
  write`` for each, then a flush (every event acknowledged): :class:`EventStreamWriter`
  (client/events.py: follows scales, keeps each unacknowledged event's key) against the fixed
  :class:`~pravega_wire.client.StreamWriter` (client/stream.py), the same events per round.
* **Transactions**: one transaction of ``TXN_EVENTS`` events per round (begin, write, commit:
  the merge included), and ``SMALL_TXNS`` transactions of ``SMALL_EVENTS`` events each
  (transactions/s: bound by the controller's round trips).
* **A scale under way**: ``SCALE_EVENTS`` events written, the stream split under the writer,
  the flush (the writer learns of the seal, asks for the successors and writes the
  unacknowledged events again).

Run: ``.venv/bin/python -m pytest bench/test_bench_streams.py --benchmark-only -q
-p no:cacheprovider --benchmark-columns=median,mean,stddev,rounds``; rates are in
``extra_info``. Quote medians; the machine is shared.
"""

from __future__ import annotations

import asyncio
import itertools

import pytest


from pravega_wire.client import StreamWriter  # noqa: E402
from pravega_wire.client.controller import ControllerClient  # noqa: E402
from pravega_wire.client.events import EventStreamWriter  # noqa: E402
from pravega_wire.client.transactions import TransactionalEventStreamWriter  # noqa: E402
from pravega_wire.pool import ConnectionPool  # noqa: E402
from pravega_wire.server import ChildCluster  # noqa: E402

EVENT = b"e" * 100
KEYS = [f"key-{i}" for i in range(64)]
STREAM_EVENTS = 20_000
TXN_EVENTS = 20_000
SMALL_TXNS = 100
SMALL_EVENTS = 10
SCALE_EVENTS = 5_000
ROUNDS = 5


class _Env:
    """The cluster, a loop, a pool and a controller client, and fresh streams on demand."""

    def __init__(self) -> None:
        self.cluster = ChildCluster(stores=1)
        self.cluster.start()
        self.loop = asyncio.new_event_loop()
        self.pool = self.run(self._pool())
        self.ctl = self.run(self._controller())
        self.run(self.ctl.create_scope("bench"))
        self._names = itertools.count()

    async def _pool(self) -> ConnectionPool:
        return ConnectionPool()

    async def _controller(self) -> ControllerClient:
        return ControllerClient(self.cluster.controller_uri)

    def run(self, coro):
        return self.loop.run_until_complete(coro)

    def new_stream(self, segments: int) -> str:
        name = f"s{next(self._names)}"
        self.run(self.ctl.create_stream("bench", name, segments))
        return name

    def close(self) -> None:
        try:
            self.run(self.ctl.close())
            self.run(self.pool.close())
        finally:
            self.loop.close()
            self.cluster.stop()


@pytest.fixture(scope="module")
def env():
    environment = _Env()
    try:
        yield environment
    finally:
        environment.close()


def _record(benchmark, events: int, **extra: float) -> None:
    if benchmark.stats is None:  # --benchmark-disable: the body ran once, as a plain test
        return
    median = benchmark.stats.stats.median
    benchmark.extra_info.update({"events_per_round": events, "median_s": median,
                                 "events_per_s": round(events / median), **extra})


async def _keyed(writer, events: int) -> None:
    write = writer.write
    for i in range(events):
        await write(EVENT, KEYS[i % len(KEYS)])
    await writer.flush()


@pytest.mark.parametrize("kind", ["EventStreamWriter", "StreamWriter"])
def test_stream_writers(benchmark, env, kind):
    benchmark.group = f"stream writer, 4 segments, {STREAM_EVENTS} keyed 100 B events per round"
    stream = env.new_stream(4)

    async def open_writer():
        if kind == "EventStreamWriter":
            return await EventStreamWriter(env.pool, env.ctl, "bench", stream).__aenter__()
        return await StreamWriter.open(env.pool, env.ctl, "bench", stream)

    writer = env.run(open_writer())
    try:
        benchmark.pedantic(lambda: env.run(_keyed(writer, STREAM_EVENTS)), rounds=ROUNDS,
                           warmup_rounds=1)
        _record(benchmark, STREAM_EVENTS)
    finally:
        env.run(writer.close())


def test_one_big_transaction(benchmark, env):
    benchmark.group = f"transactions, {TXN_EVENTS} keyed 100 B events in one, committed"
    stream = env.new_stream(4)
    writer = TransactionalEventStreamWriter(env.pool, env.ctl, "bench", stream)

    async def one() -> None:
        txn = await writer.begin()
        for i in range(TXN_EVENTS):
            await txn.write(EVENT, KEYS[i % len(KEYS)])
        await txn.commit()

    try:
        benchmark.pedantic(lambda: env.run(one()), rounds=ROUNDS, warmup_rounds=1)
        _record(benchmark, TXN_EVENTS)
    finally:
        env.run(writer.close())


def test_small_transactions(benchmark, env):
    benchmark.group = f"transactions, {SMALL_TXNS} of {SMALL_EVENTS} events each, committed"
    stream = env.new_stream(4)
    writer = TransactionalEventStreamWriter(env.pool, env.ctl, "bench", stream)

    async def many() -> None:
        for _ in range(SMALL_TXNS):
            txn = await writer.begin()
            for i in range(SMALL_EVENTS):
                await txn.write(EVENT, KEYS[i])
            await txn.commit()

    try:
        benchmark.pedantic(lambda: env.run(many()), rounds=ROUNDS, warmup_rounds=1)
        _record(benchmark, SMALL_TXNS * SMALL_EVENTS)
        if benchmark.stats is not None:
            benchmark.extra_info["transactions_per_s"] = round(
                SMALL_TXNS / benchmark.stats.stats.median)
    finally:
        env.run(writer.close())


def test_a_scale_under_the_writer(benchmark, env):
    """Per round: a fresh 1-segment stream; ``SCALE_EVENTS`` written (not flushed), the stream
    split in two, then the flush that hands the unacknowledged events to the successors."""
    benchmark.group = f"a scale under the writer, {SCALE_EVENTS} events in flight"
    state: dict = {}

    def setup():
        stream = env.new_stream(1)

        async def prepare():
            writer = await EventStreamWriter(env.pool, env.ctl, "bench", stream).__aenter__()
            state.update(stream=stream, writer=writer)
        env.run(prepare())

    async def scale_and_flush() -> None:
        writer = state["writer"]
        for i in range(SCALE_EVENTS):
            await writer.write(EVENT, KEYS[i % len(KEYS)])
        await env.ctl.scale_stream("bench", state["stream"], [0], [(0.0, 0.5), (0.5, 1.0)])
        await writer.flush()
        await writer.close()
        assert writer.segments_sealed == 1

    benchmark.pedantic(lambda: env.run(scale_and_flush()), setup=setup, rounds=ROUNDS)
    _record(benchmark, SCALE_EVENTS)
